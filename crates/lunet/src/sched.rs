//! The scheduler: it owns every wait and is the only place that resumes a
//! coroutine.
//!
//! A coroutine that waits in lunet (sleep, read, write, accept, connect, UDP
//! receive, fs, signal, pool work, join) is an entry of one registry: the
//! coroutine, a registry reference that keeps it alive, its task (if it is
//! one), an optional deadline, how to unhook it from what it waits on, and the
//! shape of its failure values. Modules keep only the [`WaitId`]; a completion
//! whose id went stale (the wait timed out, was cancelled, or the runtime shut
//! down) is ignored, so nothing is ever resumed twice or with the wrong values.
//!
//! Deadlines live in one indexed heap served by one libuv timer. `sleep(0)`,
//! deferred resumes (cancellation, closing a handle from Lua code, joins) and
//! deferred task starts go through one ready list served by an idle handle on
//! the next loop iteration. Waits woken by channels, semaphores and the like
//! go through a second list served by the same handle, in rounds: one woken
//! while the lists are served runs in the same iteration (up to
//! [`WOKEN_ROUNDS`] rounds).
//!
//! Rules that keep Lua errors out of frames that cannot unwind them:
//! - values for a resume are pushed on the runtime's own thread inside a
//!   protected call and then moved onto the coroutine (a finaliser that runs
//!   during those allocations runs on that thread, never on the parked
//!   coroutine, and its error cannot escape into a libuv callback);
//! - error objects are formatted, and the error hook called, inside protected
//!   calls;
//! - a new coroutine is never started where a yield would take LuaJIT's
//!   "yield from a hook" path (inside a finaliser or a debug hook): it is
//!   started on the next loop iteration instead, as is a spawn nested deeper
//!   than [`MAX_DEPTH`] (so recursive spawning cannot overflow the C stack);
//! - cancellation is raised inside the cancelled coroutine itself, by a
//!   one-instruction count hook installed just for its resume.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::io::Write;

use libuv_sys2 as uv;
use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{push_bytes, to_bytes};

use crate::runtime::Runtime;
use crate::task::{self, Task};
use crate::trace;
use crate::waits::{DeadlineHeap, Slab};

pub use crate::waits::WaitId;

/// How deep spawns may nest (a task spawning a task before its first wait,
/// and so on) before a new task's start is left to the next loop iteration.
pub const MAX_DEPTH: u32 = 200;

/// How many rounds of woken waits one loop iteration serves: a wait woken
/// by a channel, semaphore, ... while the ready list is being served runs in
/// the same iteration, up to this many hand-offs deep (a ping-pong between
/// two tasks does not pay a loop iteration per message; it cannot hold off
/// I/O for longer than this many rounds either).
pub const WOKEN_ROUNDS: u32 = 8;

/// The error value raised in a cancelled task at its wait point.
pub const CANCELLED: &str = "cancelled";
pub const TIMEOUT: &str = "timeout";

/// Called when a wait ends early (timeout, cancellation, shutdown): the
/// module forgets the wait and stops what it started, if it can.
pub type Unhook = unsafe fn(rt: *mut Runtime, ctx: *mut c_void, id: WaitId);

/// The values a wait returns when it fails with a message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shape {
    /// `msg` (calls that return one value, such as `socket.write`).
    One,
    /// `nil, msg`.
    Two,
    /// `nil, nil, msg` (`udp.recv`).
    Three,
}

/// What a module tells [`park`] about a new wait.
pub struct Spec {
    pub shape: Shape,
    pub unhook: Option<(Unhook, *mut c_void)>,
    /// The call's own time limit in ms (per-handle timeouts); the task's
    /// deadline applies as well, the earlier one wins.
    pub timeout: Option<u64>,
}

impl Spec {
    pub fn new(shape: Shape) -> Spec {
        Spec { shape, unhook: None, timeout: None }
    }
    pub fn unhook(mut self, f: Unhook, ctx: *mut c_void) -> Spec {
        self.unhook = Some((f, ctx));
        self
    }
    pub fn timeout(mut self, ms: Option<u64>) -> Spec {
        self.timeout = ms;
        self
    }
}

/// How a wait on the ready list will be resumed.
#[derive(Clone, Copy)]
enum Pending {
    None,
    /// With no values (`sleep(0)`, or a sleep's own end).
    Plain,
    /// A task's first run; its function and arguments are on its stack.
    Start(c_int),
    Fail(&'static str),
    Cancel,
    /// A `join` whose task has ended.
    Joined(*mut Task),
    /// Woken by a coordination primitive (channel, semaphore, ...).
    Woken(Wake),
}

/// What a wait woken by [`wake_later`] returns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wake {
    /// `true`.
    True,
    /// A number (`wait_any`'s index).
    Index(u32),
    /// The registry value `r` (released once delivered, or with the wait).
    Value(c_int),
}

struct Wait {
    co: *mut lua_State,
    anchor: c_int,
    task: *mut Task,
    shape: Shape,
    unhook: Option<(Unhook, *mut c_void)>,
    /// Its deadline is its own normal end (a sleep), not a timeout.
    ends_ok: bool,
    /// It has an entry in the deadline heap.
    timed: bool,
    pending: Pending,
}

pub struct Sched {
    waits: Slab<Wait>,
    deadlines: DeadlineHeap,
    timer: *mut uv::uv_timer_t,
    armed: Option<u64>,
    idle: *mut uv::uv_idle_t,
    ready: Vec<WaitId>,
    spare: Vec<WaitId>,
    /// Waits woken by coordination primitives ([`wake_later`]).
    woken: Vec<WaitId>,
    spare_woken: Vec<WaitId>,
    /// The wait of each coroutine that is not a task (tasks keep theirs).
    bare: HashMap<usize, WaitId>,
    /// Live tasks by coroutine (for a task's coroutine resumed by another).
    pub tasks: HashMap<usize, *mut Task>,
    /// The task whose coroutine lunet is running right now, if any.
    pub current: *mut Task,
    depth: u32,
    /// Registry reference of the probe coroutine (see [`hooks_active`]).
    probe: c_int,
    probe_co: *mut lua_State,
    /// Registry reference of the function given to `lunet.on_error`.
    pub on_error: c_int,
    /// `lunet.stop()` was called: every wait is cancelled and the loop stops.
    pub stopping: bool,
    /// A cancellation hook was installed for the resume in progress.
    hooked: bool,
    /// Bytes a framed read had received when its wait ended early: its
    /// failure returns them as a third value (see [`attach_partial`]).
    partials: HashMap<WaitId, Vec<u8>>,
}

impl Default for Sched {
    fn default() -> Self {
        Sched::new()
    }
}

impl Sched {
    pub fn new() -> Sched {
        Sched {
            waits: Slab::default(),
            deadlines: DeadlineHeap::default(),
            timer: std::ptr::null_mut(),
            armed: None,
            idle: std::ptr::null_mut(),
            ready: Vec::new(),
            spare: Vec::new(),
            woken: Vec::new(),
            spare_woken: Vec::new(),
            bare: HashMap::new(),
            tasks: HashMap::new(),
            current: std::ptr::null_mut(),
            depth: 0,
            probe: ffi::LUA_NOREF,
            probe_co: std::ptr::null_mut(),
            on_error: ffi::LUA_NOREF,
            stopping: false,
            hooked: false,
            partials: HashMap::new(),
        }
    }

    /// Waits registered and not ended (parked coroutines and queued starts).
    pub fn pending(&self) -> usize {
        self.waits.len()
    }
}

/// Creates the libuv handles and the runtime thread's protected-call
/// trampoline (kept at its stack slot 1).
///
/// # Safety
/// `rt` must be fully constructed with an initialised loop and `aux` thread.
pub unsafe fn init(rt: *mut Runtime) {
    let s = &mut (*rt).sched;
    s.timer = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_timer_t>()));
    s.idle = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_idle_t>()));
    uv::uv_timer_init((*rt).uv, s.timer);
    uv::uv_idle_init((*rt).uv, s.idle);
    (*s.timer).data = rt.cast();
    (*s.idle).data = rt.cast();
    let aux = (*rt).aux;
    ffi::lua_settop(aux, 0);
    ffi::lua_pushcfunction(aux, trampoline);
}

// ---------------------------------------------------------------- parking

/// Registers a wait for the running coroutine `L`, which must yield right
/// after (yieldability was checked by the Lua-side guard). A task that was
/// cancelled, or whose deadline has passed, gets its cancellation or timeout
/// on the next loop iteration, through the same path as any other.
///
/// # Safety
/// `L` must be the running coroutine of a yielding entry point of `rt`.
pub unsafe fn park(rt: *mut Runtime, L: *mut lua_State, spec: Spec) -> WaitId {
    let s = &mut (*rt).sched;
    let cur = s.current;
    let task = if !cur.is_null() && (*cur).co == L {
        cur
    } else {
        // A task's coroutine that another coroutine resumed, or not a task.
        s.tasks.get(&(L as usize)).copied().unwrap_or(std::ptr::null_mut())
    };
    let mut deadline = spec.timeout.map(|ms| now(rt).saturating_add(ms));
    let mut pending = Pending::None;
    if !task.is_null() {
        if (*task).cancelled {
            pending = Pending::Cancel;
        }
        deadline = min_opt(deadline, (*task).deadline);
    }
    let id = insert(rt, L, task, spec.shape, spec.unhook, false);
    // A coroutine has one wait at a time. An older one still registered means
    // the script resumed the coroutine itself while it waited: that wait is
    // over, and its completion must never resume the coroutine again.
    let older = if task.is_null() {
        (*rt).sched.bare.insert(L as usize, id)
    } else {
        (*task).wait.replace(id)
    };
    if let Some(old) = older {
        drop_stale(rt, old);
    }
    if let Some(d) = deadline {
        if matches!(pending, Pending::None) && d <= uv::uv_now((*rt).uv) {
            pending = Pending::Fail(TIMEOUT);
        }
        if matches!(pending, Pending::None) {
            arm(rt, id, d);
        }
    }
    if !matches!(pending, Pending::None) {
        // The module has not stored the id yet: it is unhooked when the
        // wait is served, and meanwhile its completions are refused.
        (*rt).sched.waits.get_mut(id).unwrap().pending = pending;
        queue(rt, id);
    }
    id
}

/// `lunet.sleep(ms)`: a wait that ends normally at its own deadline (or at
/// once, on the next loop iteration, for 0), and with `nil, "timeout"` if an
/// enclosing `lunet.deadline` is earlier.
///
/// # Safety
/// As for [`park`].
pub unsafe fn park_sleep(rt: *mut Runtime, L: *mut lua_State, ms: u64) {
    if ms == 0 {
        // The hot path (`sleep(0)` to let others run): straight onto the
        // ready list, unless the task has a deadline or was cancelled.
        let cur = (*rt).sched.current;
        if !cur.is_null() && (*cur).co == L && !(*cur).cancelled && (*cur).deadline.is_none() {
            let id = insert(rt, L, cur, Shape::Two, None, false);
            if let Some(old) = (*cur).wait.replace(id) {
                drop_stale(rt, old);
            }
            (*rt).sched.waits.get_mut(id).unwrap().pending = Pending::Plain;
            queue(rt, id);
            return;
        }
    }
    let id = park(rt, L, Spec::new(Shape::Two));
    let s = &mut (*rt).sched;
    let Some(w) = s.waits.get_mut(id) else { return };
    if !matches!(w.pending, Pending::None) {
        return; // cancelled or already timed out
    }
    if ms == 0 {
        w.pending = Pending::Plain;
        unarm(rt, id);
        queue(rt, id);
        return;
    }
    let own = now(rt).saturating_add(ms);
    let task_deadline = if w.task.is_null() { None } else { (*w.task).deadline };
    if task_deadline.is_none_or(|d| own <= d) {
        w.ends_ok = true;
        arm(rt, id, own);
    }
}

#[inline]
unsafe fn insert(
    rt: *mut Runtime,
    co: *mut lua_State,
    task: *mut Task,
    shape: Shape,
    unhook: Option<(Unhook, *mut c_void)>,
    pushed: bool,
) -> WaitId {
    // The anchor keeps a waiting coroutine alive: a registry reference (the
    // thread is on its own stack if the caller pushed it). A task needs none:
    // the task holds its coroutine for as long as it lives, and a task that
    // waits has not ended. Tracing counts every wait either way.
    let anchor = if task.is_null() {
        if !pushed {
            ffi::lua_pushthread(co);
        }
        ffi::luaL_ref(co, ffi::LUA_REGISTRYINDEX)
    } else {
        if pushed {
            ffi::lua_settop(co, -2);
        }
        ffi::LUA_NOREF
    };
    trace::ref_taken();
    (*rt).sched.waits.insert(Wait { co, anchor, task, shape, unhook, ends_ok: false, timed: false, pending: Pending::None })
}

/// The loop's clock for a new time limit. While the loop runs, libuv's
/// cached time (updated every iteration, as for its own timers); outside it
/// (the main chunk, before `lunet.run`) the cache may be stale by however long
/// the script has been busy, so it is refreshed first.
pub unsafe fn now(rt: *mut Runtime) -> u64 {
    if !(*rt).running {
        uv::uv_update_time((*rt).uv);
    }
    uv::uv_now((*rt).uv)
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

unsafe fn arm(rt: *mut Runtime, id: WaitId, deadline: u64) {
    let s = &mut (*rt).sched;
    if let Some(w) = s.waits.get_mut(id) {
        w.timed = true;
    }
    s.deadlines.push(id.slot(), deadline);
    if s.armed.is_none_or(|a| deadline < a) {
        let now = uv::uv_now((*rt).uv);
        uv::uv_timer_start(s.timer, Some(on_timer), deadline.saturating_sub(now), 0);
        s.armed = Some(deadline);
    }
}

/// Takes the wait's deadline out of the heap. The timer stays armed for an
/// earlier deadline (it fires, finds nothing due and re-arms) unless no
/// deadline is left: an armed timer keeps the loop alive.
#[inline]
unsafe fn unarm(rt: *mut Runtime, id: WaitId) {
    let s = &mut (*rt).sched;
    match s.waits.get_mut(id) {
        Some(w) if w.timed => w.timed = false,
        Some(_) => return,
        None => {}
    }
    if s.deadlines.remove(id.slot()) && s.deadlines.is_empty() && s.armed.is_some() {
        uv::uv_timer_stop(s.timer);
        s.armed = None;
    }
}

#[inline]
unsafe fn queue(rt: *mut Runtime, id: WaitId) {
    let s = &mut (*rt).sched;
    if s.ready.is_empty() {
        uv::uv_idle_start(s.idle, Some(on_idle));
    }
    s.ready.push(id);
}

/// Ends a wait before its operation completed: unhooks it from its module
/// now and resumes it with `how` on the next loop iteration.
unsafe fn end_early(rt: *mut Runtime, id: WaitId, how: Pending) {
    let s = &mut (*rt).sched;
    let Some(w) = s.waits.get_mut(id) else { return };
    let was_queued = !matches!(w.pending, Pending::None);
    w.pending = how;
    let unhook = w.unhook.take();
    unarm(rt, id);
    if let Some((f, ctx)) = unhook {
        f(rt, ctx, id);
    }
    if !was_queued {
        queue(rt, id);
    }
}

// ---------------------------------------------------------------- ending

/// Takes a wait out of the registry (its id goes stale).
#[inline]
unsafe fn take(rt: *mut Runtime, id: WaitId) -> Option<Wait> {
    let s = &mut (*rt).sched;
    let w = s.waits.remove(id)?;
    if !s.partials.is_empty() {
        s.partials.remove(&id);
    }
    if w.timed {
        s.deadlines.remove(id.slot());
        if s.deadlines.is_empty() && s.armed.is_some() {
            uv::uv_timer_stop(s.timer);
            s.armed = None;
        }
    }
    if w.task.is_null() {
        if s.bare.get(&(w.co as usize)) == Some(&id) {
            s.bare.remove(&(w.co as usize));
        }
    } else if (*w.task).wait == Some(id) {
        (*w.task).wait = None;
    }
    Some(w)
}

/// Ends a wait its coroutine has left behind: unhooked, released, and
/// dropped from the ready list's view.
unsafe fn drop_stale(rt: *mut Runtime, id: WaitId) {
    let unhook = (*rt).sched.waits.get_mut(id).and_then(|w| w.unhook.take());
    if let Some((f, ctx)) = unhook {
        f(rt, ctx, id);
    }
    forget(rt, id);
}

/// Completes a wait: resumes its coroutine with the values `push` puts on
/// the stack it is given (it returns how many). A stale id is ignored and
/// `push` is not called; so is a coroutine that is no longer suspended in
/// its yield (the script resumed it itself). A caller that must know
/// whether its values were handed over sets a flag at the end of `push`
/// (a push that raised did not hand them over).
///
/// `push` runs inside a protected call on the runtime's own thread, so it
/// may allocate freely. A completion is also the module letting go of the
/// wait: if it is refused, its unhook is never called.
///
/// # Safety
/// Loop thread, outside any Lua call of this state (libuv callbacks).
pub unsafe fn complete(rt: *mut Runtime, id: WaitId, push: impl FnOnce(*mut lua_State) -> c_int) {
    match (*rt).sched.waits.get_mut(id) {
        None => {} // stale
        Some(w) if !matches!(w.pending, Pending::None) => {
            // Already ending (timeout, cancel, close): refused. The module
            // is done with it (it may free what the unhook would touch).
            w.unhook = None;
        }
        Some(_) => deliver(rt, id, push),
    }
}

/// Ends the wait `id` whatever its state and resumes it with `push`'s values.
unsafe fn deliver(rt: *mut Runtime, id: WaitId, push: impl FnOnce(*mut lua_State) -> c_int) {
    let Some(w) = take(rt, id) else { return };
    if (*rt).closing {
        release(rt, w);
        return;
    }
    let mut push = Some(push);
    let mut f = |L: *mut lua_State| (push.take().unwrap())(L);
    resume(rt, w, Values::Push(&mut f))
}

/// Called from an unhook: if the wait fails with a message (a timeout), it
/// returns `bytes` as a value after the message (`nil, "timeout", partial`).
///
/// # Safety
/// Loop thread.
pub unsafe fn attach_partial(rt: *mut Runtime, id: WaitId, bytes: Vec<u8>) {
    if (*rt).sched.waits.get(id).is_some() {
        (*rt).sched.partials.insert(id, bytes);
    }
}

/// The failure values of the wait `id`: [`push_failure`]'s, then the
/// partial bytes an unhook attached, if any.
unsafe fn failure(rt: *mut Runtime, id: WaitId, shape: Shape, msg: &'static str) -> impl FnOnce(*mut lua_State) -> c_int {
    let partial = if (*rt).sched.partials.is_empty() { None } else { (*rt).sched.partials.remove(&id) };
    move |L| {
        let n = push_failure(L, shape, msg);
        match partial {
            Some(p) => {
                push_bytes(L, &p);
                n + 1
            }
            None => n,
        }
    }
}

/// Completes a wait with no values.
///
/// # Safety
/// As for [`complete`].
pub unsafe fn complete_plain(rt: *mut Runtime, id: WaitId) {
    if let Some(w) = take(rt, id) {
        // (Called for waits that end normally and for served sleeps.)
        if (*rt).closing {
            release(rt, w);
        } else {
            resume(rt, w, Values::None);
        }
    }
}

/// Ends a wait from Lua code (closing its handle): it is resumed with the
/// failure `msg` on the next loop iteration, never inside the caller (which
/// may be a finaliser). The module has already forgotten the wait.
///
/// # Safety
/// Loop thread.
pub unsafe fn fail_later(rt: *mut Runtime, id: WaitId, msg: &'static str) {
    if (*rt).closing {
        if let Some(w) = take(rt, id) {
            release(rt, w);
        }
        return;
    }
    if let Some(w) = (*rt).sched.waits.get_mut(id) {
        w.unhook = None;
    }
    end_early(rt, id, Pending::Fail(msg));
}

/// Ends a wait without resuming it (its owner is being freed at shutdown or
/// by a finaliser).
///
/// # Safety
/// Loop thread.
pub unsafe fn forget(rt: *mut Runtime, id: WaitId) {
    if let Some(w) = take(rt, id) {
        release(rt, w);
    }
}

#[inline]
unsafe fn release(rt: *mut Runtime, w: Wait) {
    if w.anchor != ffi::LUA_NOREF {
        ffi::luaL_unref((*rt).aux, ffi::LUA_REGISTRYINDEX, w.anchor);
    }
    trace::ref_released();
    match w.pending {
        Pending::Joined(t) => task::unpin(rt, t),
        // Not delivered (the coroutine was no longer suspended in its wait).
        Pending::Woken(Wake::Value(r)) => ffi::luaL_unref((*rt).aux, ffi::LUA_REGISTRYINDEX, r),
        _ => {}
    }
}

/// Cancels the wait of `task` (if it has one) on the next loop iteration.
///
/// # Safety
/// Loop thread.
pub unsafe fn cancel_wait(rt: *mut Runtime, id: WaitId) {
    end_early(rt, id, Pending::Cancel);
}

/// Whether the wait is still registered and not already on its way out
/// (completions for a wait on its way out are refused).
pub unsafe fn is_waiting(rt: *mut Runtime, id: WaitId) -> bool {
    (*rt).sched.waits.get(id).is_some_and(|w| matches!(w.pending, Pending::None))
}

/// Ends a plain wait (the ABI's `wake`) from anywhere on the loop thread,
/// Lua code included: it is resumed with no values on the next loop
/// iteration. Returns false if it had already ended (or is stale).
///
/// # Safety
/// Loop thread.
pub unsafe fn wake_plain_later(rt: *mut Runtime, id: WaitId) -> bool {
    if !is_waiting(rt, id) {
        return false;
    }
    if let Some(w) = (*rt).sched.waits.get_mut(id) {
        w.unhook = None;
    }
    end_early(rt, id, Pending::Plain);
    true
}

/// Queues the resumption of a join whose task has ended.
///
/// # Safety
/// Loop thread; `t` must stay alive until the joiner runs (the joiner holds it).
pub unsafe fn joined_later(rt: *mut Runtime, id: WaitId, t: *mut Task) {
    let Some(w) = (*rt).sched.waits.get_mut(id) else { return };
    w.unhook = None;
    task::pin(t); // until the joiner has its results (or its wait is gone)
    end_early(rt, id, Pending::Joined(t));
}

/// Wakes a wait on behalf of a coordination primitive, which has already
/// taken it out of its own queue: it is resumed with `wake`'s values once
/// the caller has returned to the loop, in the order woken — in the same
/// loop iteration when woken while the ready list is served (see
/// [`WOKEN_ROUNDS`]), else in the next. Never inside the caller. Returns false, and keeps
/// nothing, if the wait is stale or already ending (the caller keeps its
/// value or permit then).
///
/// # Safety
/// Loop thread.
pub unsafe fn wake_later(rt: *mut Runtime, id: WaitId, wake: Wake) -> bool {
    if !is_waiting(rt, id) {
        return false;
    }
    let s = &mut (*rt).sched;
    if let Some(w) = s.waits.get_mut(id) {
        w.unhook = None;
        w.pending = Pending::Woken(wake);
    }
    unarm(rt, id);
    let s = &mut (*rt).sched;
    if s.ready.is_empty() && s.woken.is_empty() {
        uv::uv_idle_start(s.idle, Some(on_idle));
    }
    s.woken.push(id);
    true
}

/// Pushes a wake's value: a boolean, a number or an existing value (no
/// allocation, so nothing can raise; a yielded coroutine has the free slot).
unsafe fn push_wake(L: *mut lua_State, wake: Wake) -> c_int {
    match wake {
        Wake::True => ffi::lua_pushboolean(L, 1),
        Wake::Index(i) => ffi::lua_pushnumber(L, i as f64),
        Wake::Value(r) => {
            ffi::lua_rawgeti(L, ffi::LUA_REGISTRYINDEX, r as _);
            ffi::luaL_unref(L, ffi::LUA_REGISTRYINDEX, r);
        }
    }
    1
}

enum Values<'a> {
    None,
    /// Values that can be pushed straight onto the coroutine.
    Wake(Wake),
    Push(&'a mut dyn FnMut(*mut lua_State) -> c_int),
    Cancel,
}

/// Resumes the coroutine of an ended wait.
#[inline]
unsafe fn resume(rt: *mut Runtime, mut w: Wait, values: Values) {
    let co = w.co;
    if ffi::lua_status(co) != ffi::LUA_YIELD {
        release(rt, w);
        return;
    }
    // A finished task whose results this resume delivers stays pinned
    // until they are pushed.
    let joined = match std::mem::replace(&mut w.pending, Pending::None) {
        Pending::Joined(t) => Some(t),
        _ => None,
    };
    // While it runs, the coroutine is kept alive on the runtime's thread
    // instead of by the wait's reference (a script that exits from inside
    // the resume leaves no wait behind).
    let aux = (*rt).aux;
    let anchored = hold(aux, w.anchor);
    let (task, shape) = (w.task, w.shape);
    release(rt, w);
    trace::check(ffi::lua_gettop(co) == 0, "a parked coroutine has values on its stack");
    let nargs = match values {
        Values::None => 0,
        Values::Wake(wake) => push_wake(co, wake),
        Values::Cancel => {
            arm_cancel_hook(co);
            (*rt).sched.hooked = true;
            0
        }
        Values::Push(f) => match protected(rt, f) {
            Ok(n) => {
                ffi::lua_xmove(aux, co, n);
                n
            }
            Err(()) => {
                // The push raised (a finaliser error, out of memory): the
                // coroutine gets that error as a runtime failure instead.
                let nils = push_failure_nils(co, shape);
                ffi::lua_xmove(aux, co, 1);
                nils + 1
            }
        },
    };
    if let Some(t) = joined {
        task::unpin(rt, t);
    }
    run(rt, co, nargs, task);
    if anchored {
        ffi::lua_settop(aux, -2);
    }
}

/// Keeps an anchored coroutine alive on the runtime's thread while it runs
/// (its wait's reference is released before the resume). Returns whether
/// something was pushed.
#[inline]
unsafe fn hold(aux: *mut lua_State, anchor: c_int) -> bool {
    if anchor == ffi::LUA_NOREF {
        return false;
    }
    ffi::lua_rawgeti(aux, ffi::LUA_REGISTRYINDEX, anchor as _);
    true
}

/// Pushes the failure values of a wait of `shape` with `msg`.
pub unsafe fn push_failure(L: *mut lua_State, shape: Shape, msg: &str) -> c_int {
    let nils = push_failure_nils(L, shape);
    push_bytes(L, msg.as_bytes());
    nils + 1
}

/// The `nil`s that come before the message in a failure of `shape`.
unsafe fn push_failure_nils(L: *mut lua_State, shape: Shape) -> c_int {
    let nils = match shape {
        Shape::One => 0,
        Shape::Two => 1,
        Shape::Three => 2,
    };
    for _ in 0..nils {
        ffi::lua_pushnil(L);
    }
    nils
}

// ---------------------------------------------------------------- protected calls

type PushFn<'a> = &'a mut dyn FnMut(*mut lua_State) -> c_int;

/// Runs `f` on the runtime's thread inside `lua_pcall`; on success its
/// results are on top of that thread's stack. On failure the error value is
/// left there (one value) and `Err` returned.
unsafe fn protected(rt: *mut Runtime, f: PushFn) -> Result<c_int, ()> {
    let aux = (*rt).aux;
    let base = ffi::lua_gettop(aux);
    ffi::lua_checkstack(aux, 4);
    ffi::lua_pushvalue(aux, 1);
    let mut f = f;
    ffi::lua_pushlightuserdata(aux, (&mut f as *mut PushFn).cast());
    if ffi::lua_pcall(aux, 1, ffi::LUA_MULTRET, 0) != 0 {
        return Err(());
    }
    Ok(ffi::lua_gettop(aux) - base)
}

unsafe extern "C-unwind" fn trampoline(L: *mut lua_State) -> c_int {
    let f = ffi::lua_touserdata(L, 1) as *mut PushFn;
    ffi::lua_settop(L, 0);
    ffi::lua_checkstack(L, 16);
    (*f)(L)
}

// ---------------------------------------------------------------- running

/// Starts a new coroutine: `co` holds the function and `nargs` arguments and
/// is referenced by the caller. It runs now, up to its first wait, unless
/// spawns are nested too deep or a yield could not work here (inside a
/// finaliser or a debug hook); then it starts on the next loop iteration.
///
/// # Safety
/// Loop thread only; `co` must be a fresh thread.
pub unsafe fn start(rt: *mut Runtime, co: *mut lua_State, nargs: c_int, task: *mut Task) {
    if (*rt).sched.depth >= MAX_DEPTH || hooks_active(rt) {
        ffi::lua_pushthread(co);
        let id = insert(rt, co, task, Shape::Two, None, true);
        if !task.is_null() {
            (*task).wait = Some(id);
        }
        end_early(rt, id, Pending::Start(nargs));
        return;
    }
    run(rt, co, nargs, task);
}

/// Whether LuaJIT is running a finaliser or a debug hook right now: there,
/// `lua_yield` from a coroutine started by us would take the "yield from a
/// hook" path, which unwinds through our frames and cannot be resumed
/// properly. Found out by letting a probe coroutine yield: a regular yield
/// returns from `lua_yield`, the hook path does not.
pub unsafe fn hooks_active(rt: *mut Runtime) -> bool {
    const SRC: &str = "local y = ... while true do y() end";
    let s = &mut (*rt).sched;
    let aux = (*rt).aux;
    let mut nargs = 0;
    if s.probe_co.is_null() {
        let co = ffi::lua_newthread(aux);
        s.probe = ffi::luaL_ref(aux, ffi::LUA_REGISTRYINDEX);
        if ffi::luaL_loadbuffer(co, SRC.as_ptr().cast(), SRC.len(), c"=lunet.probe".as_ptr()) != 0 {
            ffi::luaL_unref(aux, ffi::LUA_REGISTRYINDEX, s.probe);
            return false;
        }
        ffi::lua_pushcfunction(co, probe_yield);
        s.probe_co = co;
        nargs = 1;
    }
    let co = s.probe_co;
    PROBE_CLEAN.with(|c| c.set(false));
    let st = ffi::lua_resume_(co, nargs);
    let clean = PROBE_CLEAN.with(|c| c.get());
    if st != ffi::LUA_YIELD || !clean {
        // The probe is unusable now; make a new one next time.
        let s = &mut (*rt).sched;
        ffi::luaL_unref(aux, ffi::LUA_REGISTRYINDEX, s.probe);
        s.probe = ffi::LUA_NOREF;
        s.probe_co = std::ptr::null_mut();
    }
    !clean
}

thread_local! {
    static PROBE_CLEAN: Cell<bool> = const { Cell::new(false) };
}

/// Called by the probe coroutine's loop: a yield that notes whether
/// `lua_yield` returned (a regular yield) or unwound (the hook path).
unsafe extern "C-unwind" fn probe_yield(L: *mut lua_State) -> c_int {
    let r = ffi::lua_yield(L, 0);
    PROBE_CLEAN.with(|c| c.set(true));
    r
}

thread_local! {
    /// The debug hook a cancellation temporarily replaces.
    static SAVED_HOOK: Cell<Option<(Option<ffi::lua_Hook>, c_int, c_int)>> = const { Cell::new(None) };
}

/// Makes the next instruction the coroutine executes raise the cancellation:
/// a count hook of one instruction, removed (and any user hook restored) as
/// it fires.
unsafe fn arm_cancel_hook(co: *mut lua_State) {
    let saved = (ffi::lua_gethook(co), ffi::lua_gethookmask(co), ffi::lua_gethookcount(co));
    SAVED_HOOK.with(|h| h.set(Some(saved)));
    ffi::lua_sethook(co, Some(cancel_hook), ffi::LUA_MASKCOUNT, 1);
}

unsafe fn restore_hook(L: *mut lua_State) {
    if let Some((f, mask, count)) = SAVED_HOOK.with(|h| h.take()) {
        ffi::lua_sethook(L, f, mask, count);
    }
}

unsafe extern "C-unwind" fn cancel_hook(L: *mut lua_State, _ar: *mut ffi::lua_Debug) {
    restore_hook(L);
    ffi::lua_pushlstring(L, CANCELLED.as_ptr().cast(), CANCELLED.len());
    ffi::lua_error(L);
}

/// Resumes `co` with `nargs` values on its stack and handles how it stopped.
unsafe fn run(rt: *mut Runtime, co: *mut lua_State, nargs: c_int, task: *mut Task) {
    let aux = (*rt).aux;
    let aux_top = ffi::lua_gettop(aux);
    let s = &mut (*rt).sched;
    let prev = s.current;
    s.current = task;
    s.depth += 1;
    trace::resumed();
    let status = ffi::lua_resume_(co, nargs);
    let s = &mut (*rt).sched;
    s.depth -= 1;
    s.current = prev;
    if std::mem::take(&mut s.hooked) {
        restore_hook(co);
    }
    match status {
        0 if !task.is_null() => task::finished(rt, task, true),
        // Finished, or suspended (in a lunet wait, which anchored it, or in a
        // bare coroutine.yield that nobody will answer): nobody receives the
        // values.
        0 | ffi::LUA_YIELD => ffi::lua_settop(co, 0),
        _ if !task.is_null() => task::finished(rt, task, false),
        _ => {
            report(rt, co, std::ptr::null_mut());
            ffi::lua_settop(co, 0);
        }
    }
    if trace::ENABLED && ffi::lua_gettop(aux) != aux_top {
        // Say what changed before the check aborts (tracing builds only).
        let top = ffi::lua_gettop(aux);
        let types: Vec<&str> = (aux_top.min(top) + 1..=aux_top.max(top)).map(|i| lunet_abi::lua::type_name(aux, i)).collect();
        eprintln!("[lunet trace] runtime stack {aux_top} -> {top} across a resume (status {status}, task {}, depth {}): {types:?}", !task.is_null(), (*rt).sched.depth);
    }
    trace::check(ffi::lua_gettop(aux) == aux_top, "runtime stack changed across a resume");
}

/// Reports the error that ended `co` (its value on top of `co`'s stack,
/// left there): calls the `lunet.on_error` handler as
/// `fn(err, traceback, task)`, or prints `[lunet] coroutine error: <msg>` and
/// the traceback to stderr. Everything that could raise (building the
/// traceback, a `__tostring`, the handler) runs in a protected call; a failing
/// handler falls back to the default report.
///
/// # Safety
/// Loop thread; `co` dead with its error value on top.
pub unsafe fn report(rt: *mut Runtime, co: *mut lua_State, task: *mut Task) {
    let aux = (*rt).aux;
    let handler = (*rt).sched.on_error;
    if handler != ffi::LUA_NOREF {
        let mut call = |L: *mut lua_State| -> c_int {
            ffi::lua_rawgeti(L, ffi::LUA_REGISTRYINDEX, handler as _);
            ffi::lua_pushvalue(co, -1);
            ffi::lua_xmove(co, L, 1);
            ffi::luaL_traceback(L, co, std::ptr::null(), 0);
            if task.is_null() {
                ffi::lua_pushnil(L);
            } else {
                task::push(L, task);
            }
            ffi::lua_call(L, 3, 0);
            0
        };
        if protected(rt, &mut call).is_ok() {
            return;
        }
        let why = text(aux, -1);
        ffi::lua_settop(aux, -2);
        let _ = writeln!(std::io::stderr().lock(), "[lunet] error handler failed: {why}");
    }
    let mut traceback = |L: *mut lua_State| -> c_int {
        ffi::luaL_traceback(L, co, std::ptr::null(), 0);
        1
    };
    let ok = protected(rt, &mut traceback).is_ok();
    let tb = if ok { text(aux, -1) } else { String::new() };
    ffi::lua_settop(aux, -2);
    let msg = describe(rt, co);
    let _ = writeln!(std::io::stderr().lock(), "[lunet] coroutine error: {msg}\n{tb}");
}

/// The error value on top of `co` as text: a string as it is; another
/// value through its `__tostring`, called in a protected call (one that
/// raises, yields or returns no string gives a placeholder, as does a value
/// without one). Even looking the metamethod up runs in the protected call:
/// pushing its name may start a collection step, and so a finaliser.
pub unsafe fn describe(rt: *mut Runtime, co: *mut lua_State) -> String {
    if let Some(b) = to_bytes_raw(co, -1) {
        return String::from_utf8_lossy(b).into_owned();
    }
    let tn = lunet_abi::lua::type_name(co, -1);
    let aux = (*rt).aux;
    let mut conv = |L: *mut lua_State| -> c_int {
        ffi::lua_pushvalue(co, -1);
        ffi::lua_xmove(co, L, 1);
        if ffi::luaL_callmeta(L, -1, c"__tostring".as_ptr()) == 0 {
            ffi::lua_pushnil(L);
        }
        1 // the text (or nil) on top
    };
    // One value on the runtime's thread either way: the text, or the error.
    let out = match protected(rt, &mut conv) {
        Ok(_) => to_bytes_raw(aux, -1).map(|b| String::from_utf8_lossy(b).into_owned()),
        Err(()) => None,
    };
    ffi::lua_settop(aux, -2);
    out.unwrap_or_else(|| format!("(error object is a {tn} value)"))
}

/// The bytes of a string value, without converting numbers in place.
unsafe fn to_bytes_raw<'a>(L: *mut lua_State, idx: c_int) -> Option<&'a [u8]> {
    if ffi::lua_type(L, idx) == ffi::LUA_TSTRING {
        to_bytes(L, idx)
    } else {
        None
    }
}

unsafe fn text(L: *mut lua_State, idx: c_int) -> String {
    to_bytes_raw(L, idx).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
}

// ---------------------------------------------------------------- callbacks

unsafe extern "C" fn on_timer(h: *mut uv::uv_timer_t) {
    let rt = (*h).data as *mut Runtime;
    let now = uv::uv_now((*rt).uv);
    (*rt).sched.armed = None;
    // Take the due waits first: resuming them may add new ones.
    let mut due = Vec::new();
    while let Some(slot) = (*rt).sched.deadlines.pop_due(now) {
        if let Some(id) = (*rt).sched.waits.id_at(slot) {
            due.push(id);
        }
    }
    for id in due {
        let s = &mut (*rt).sched;
        let Some(w) = s.waits.get_mut(id) else { continue };
        if !matches!(w.pending, Pending::None) {
            continue;
        }
        if w.ends_ok {
            complete_plain(rt, id);
        } else {
            let shape = w.shape;
            if let Some((f, ctx)) = w.unhook.take() {
                f(rt, ctx, id);
            }
            let push = failure(rt, id, shape, TIMEOUT);
            complete(rt, id, push);
        }
    }
    let s = &mut (*rt).sched;
    match s.deadlines.peek() {
        Some((next, _)) if s.armed.is_none_or(|a| next < a) => {
            uv::uv_timer_start(s.timer, Some(on_timer), next.saturating_sub(uv::uv_now((*rt).uv)), 0);
            s.armed = Some(next);
        }
        Some(_) => {}
        None if s.armed.is_none() => {
            uv::uv_timer_stop(s.timer);
        }
        None => {}
    }
}

unsafe extern "C" fn on_idle(h: *mut uv::uv_idle_t) {
    let rt = (*h).data as *mut Runtime;
    let s = &mut (*rt).sched;
    // A `lunet.stop()` made before this batch ends the loop after it (one
    // made while it runs queues its cancellations for the next batch).
    let stop_after = std::mem::take(&mut s.stopping);
    // Serve what was queued before this iteration; what is queued while
    // serving waits for the next one, except waits woken by coordination
    // primitives: those run in this iteration too, for up to WOKEN_ROUNDS
    // rounds (each round serves those woken during the one before, in the
    // order woken).
    let mut batch = std::mem::replace(&mut s.ready, std::mem::take(&mut s.spare));
    let mut round = 0;
    loop {
        let s = &mut (*rt).sched;
        let mut woken = std::mem::replace(&mut s.woken, std::mem::take(&mut s.spare_woken));
        for id in woken.drain(..) {
            serve(rt, id);
        }
        (*rt).sched.spare_woken = woken;
        if round == 0 {
            for id in batch.drain(..) {
                serve(rt, id);
            }
        }
        round += 1;
        if (*rt).sched.woken.is_empty() || round >= WOKEN_ROUNDS {
            break;
        }
    }
    let s = &mut (*rt).sched;
    s.spare = batch;
    if s.ready.is_empty() && s.woken.is_empty() {
        uv::uv_idle_stop(s.idle);
    }
    if stop_after {
        uv::uv_stop((*rt).uv);
    } else if s.stopping {
        uv::uv_idle_start(s.idle, Some(on_idle));
    }
}

unsafe fn serve(rt: *mut Runtime, id: WaitId) {
    let Some(w) = (*rt).sched.waits.get_mut(id) else { return };
    let pending = w.pending;
    if matches!(pending, Pending::Plain) && w.unhook.is_none() && !(*rt).closing {
        // `sleep(0)`: the hot path.
        let w = take(rt, id).unwrap();
        resume(rt, w, Values::None);
        return;
    }
    if let Pending::Woken(wake) = pending {
        // Channels, semaphores, ...: the other hot path. Pushing the value
        // neither allocates nor raises, so no protected call is needed.
        if !(*rt).closing {
            let w = take(rt, id).unwrap();
            resume(rt, w, Values::Wake(wake));
            return;
        }
    }
    // A wait that ended as it was registered is unhooked only now.
    if let Some((f, ctx)) = w.unhook.take() {
        f(rt, ctx, id);
    }
    let Some(w) = (*rt).sched.waits.get(id) else { return };
    if (*rt).closing {
        forget(rt, id);
        return;
    }
    match pending {
        Pending::None => {}
        Pending::Plain => complete_plain(rt, id),
        Pending::Fail(msg) => {
            let push = failure(rt, id, w.shape, msg);
            deliver(rt, id, push);
        }
        Pending::Cancel => {
            if let Some(w) = take(rt, id) {
                resume(rt, w, Values::Cancel);
            }
        }
        Pending::Joined(t) => {
            deliver(rt, id, |L| task::push_outcome(L, t));
        }
        Pending::Woken(_) => forget(rt, id), // (closing; served above otherwise)
        Pending::Start(nargs) => {
            let Some(w) = take(rt, id) else { return };
            let (co, task) = (w.co, w.task);
            let aux = (*rt).aux;
            let anchored = hold(aux, w.anchor);
            release(rt, w);
            if !task.is_null() && (*task).cancelled {
                ffi::lua_settop(co, 0);
                task::cancelled_before_start(rt, task);
            } else {
                run(rt, co, nargs, task);
            }
            if anchored {
                ffi::lua_settop(aux, -2);
            }
        }
    }
}

// ---------------------------------------------------------------- stop and shutdown

/// `lunet.stop()`: cancels every wait (tasks stay cancelled) and makes
/// `lunet.run()` return once they have all ended.
///
/// # Safety
/// Loop thread.
pub unsafe fn stop(rt: *mut Runtime) {
    (*rt).sched.stopping = true;
    for id in (*rt).sched.waits.ids() {
        let w = (*rt).sched.waits.get(id).unwrap();
        if !w.task.is_null() {
            (*w.task).cancelled = true;
        }
        if matches!(w.pending, Pending::None | Pending::Plain) {
            end_early(rt, id, Pending::Cancel);
        }
    }
    // The loop stops after the next batch of the ready list, which holds
    // these cancellations (and runs even if it is empty).
    let s = &mut (*rt).sched;
    uv::uv_idle_start(s.idle, Some(on_idle));
}

/// Shutdown: releases every wait without resuming it (unhooking each from
/// its module), and stops the handles.
///
/// # Safety
/// Runtime shutdown only.
pub unsafe fn shutdown(rt: *mut Runtime) {
    for id in (*rt).sched.waits.ids() {
        drop_stale(rt, id);
    }
    let s = &mut (*rt).sched;
    s.ready.clear();
    s.woken.clear();
    uv::uv_timer_stop(s.timer);
    uv::uv_idle_stop(s.idle);
}
