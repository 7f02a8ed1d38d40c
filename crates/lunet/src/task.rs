//! Tasks: what `lunet.spawn` returns. A task is a coroutine the scheduler
//! runs, plus what the script can ask of it: `join`, `cancel`, `status`.
//!
//! The `Task` is heap-allocated and shared by its userdata handles (there may
//! be several: `spawn`'s result, `lunet.current()`, the error hook's argument)
//! and by the scheduler while it runs. It is freed when it has ended and no
//! handle is left. Its results (or its error) stay on its coroutine's stack,
//! which the task keeps referenced, until then.

use std::ffi::{c_int, c_void, CStr};

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{push_bytes, to_number, type_name, Raise};
use lunet_abi::lua_fn;

use lunet_abi::handle;
use crate::runtime::{self, Runtime};
use crate::sched::{self, Shape, Spec, WaitId, CANCELLED};
use crate::waits::millis;

pub const META: &CStr = c"lunet.task";

/// Called when a watched task ends, its state set (before its error is
/// reported); returns whether the watcher takes the error in charge (it will
/// hand it to a waiting caller, so it is not reported).
pub type Watch = unsafe fn(rt: *mut Runtime, ctx: *mut c_void, t: *mut Task) -> bool;

/// Calls `f(rt, ctx, t)` when `t` ends (`t` must be live). A watcher that
/// must not run any more removes itself with [`unwatch`].
///
/// # Safety
/// Loop thread; `ctx` valid until called or unwatched.
pub unsafe fn watch(t: *mut Task, f: Watch, ctx: *mut c_void) {
    (*t).watchers.push((f, ctx));
}

/// Removes a watcher added by [`watch`] (all entries of it).
///
/// # Safety
/// `t` alive.
pub unsafe fn unwatch(t: *mut Task, f: Watch, ctx: *mut c_void) {
    (*t).watchers.retain(|&(g, c)| !(std::ptr::fn_addr_eq(g, f) && c == ctx));
}

/// Calls the watchers of an ended task; whether one takes its error.
unsafe fn notify(rt: *mut Runtime, t: *mut Task) -> bool {
    let mut taken = false;
    for (f, ctx) in std::mem::take(&mut (*t).watchers) {
        taken |= f(rt, ctx, t);
    }
    taken
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    Live,
    Done,
    Failed,
    Cancelled,
}

pub struct Task {
    pub co: *mut lua_State,
    co_ref: c_int,
    pub state: State,
    /// `cancel` was called: every wait of the task raises the cancellation.
    pub cancelled: bool,
    /// Registry reference of the reason given to `cancel` (returned by `join`).
    reason: c_int,
    /// The earliest `lunet.deadline` in force (loop time, ms).
    pub deadline: Option<u64>,
    /// The wait the task is in, if any.
    pub wait: Option<WaitId>,
    joiners: Vec<WaitId>,
    /// Called when the task ends (`wait_any`, task groups).
    watchers: Vec<(Watch, *mut c_void)>,
    /// Userdata handles pointing at this task.
    handles: u32,
    /// Number of results on the coroutine's stack once done.
    nres: c_int,
}

/// Pushes a new handle for `t`.
///
/// # Safety
/// `L` valid with free stack slots; `t` alive.
pub unsafe fn push(L: *mut lua_State, t: *mut Task) {
    handle::push(L, META, t.cast());
    (*t).handles += 1;
}

unsafe fn arg(L: *mut lua_State, idx: c_int, what: &str) -> Result<*mut Task, Raise> {
    match handle::get(L, idx, META) {
        Some(p) if !p.is_null() => Ok(p.cast()),
        _ => Err(format!("{what} expects a task (got {})", type_name(L, idx)).into()),
    }
}

/// Keeps `t` alive while the scheduler still needs it (counted like a handle:
/// a finaliser that collects the last real handle meanwhile cannot free it).
pub unsafe fn pin(t: *mut Task) {
    (*t).handles += 1;
}

/// Ends a [`pin`]; frees `t` if it has ended and nothing else holds it.
///
/// # Safety
/// Loop thread; `t` pinned.
pub unsafe fn unpin(rt: *mut Runtime, t: *mut Task) {
    (*t).handles -= 1;
    maybe_free(rt, t);
}

/// Frees `t` if it has ended and no handle is left.
unsafe fn maybe_free(rt: *mut Runtime, t: *mut Task) {
    if (*t).state != State::Live && (*t).handles == 0 {
        let b = Box::from_raw(t);
        ffi::luaL_unref((*rt).aux, ffi::LUA_REGISTRYINDEX, b.co_ref);
        ffi::luaL_unref((*rt).aux, ffi::LUA_REGISTRYINDEX, b.reason);
    }
}

/// The end of a task's run: `ok` with its results on its stack, or with its
/// error on top. Reports an error nobody is joining; wakes the joiners.
///
/// # Safety
/// Loop thread; called by the scheduler right after the final resume.
pub unsafe fn finished(rt: *mut Runtime, t: *mut Task, ok: bool) {
    // Reporting allocates, and a finaliser run by that allocation may drop
    // the task's last handle: keep it until the end.
    pin(t);
    let co = (*t).co;
    (*rt).sched.tasks.remove(&(co as usize));
    (*t).wait = None;
    if ok {
        (*t).state = State::Done;
        (*t).nres = ffi::lua_gettop(co);
    } else {
        let is_cancel = (*t).cancelled
            && ffi::lua_type(co, -1) == ffi::LUA_TSTRING
            && lunet_abi::lua::to_bytes(co, -1) == Some(CANCELLED.as_bytes());
        if is_cancel {
            (*t).state = State::Cancelled;
        } else {
            (*t).state = State::Failed;
            if !notify(rt, t) && (*t).joiners.is_empty() {
                sched::report(rt, co, t);
            }
        }
        ffi::lua_insert(co, 1);
        ffi::lua_settop(co, 1);
        (*t).nres = 1;
    }
    notify(rt, t);
    wake_joiners(rt, t);
    unpin(rt, t);
}

/// A task cancelled before its first run never runs.
///
/// # Safety
/// Loop thread.
pub unsafe fn cancelled_before_start(rt: *mut Runtime, t: *mut Task) {
    (*rt).sched.tasks.remove(&((*t).co as usize));
    (*t).state = State::Cancelled;
    (*t).wait = None;
    notify(rt, t);
    wake_joiners(rt, t);
}

unsafe fn wake_joiners(rt: *mut Runtime, t: *mut Task) {
    for id in std::mem::take(&mut (*t).joiners) {
        sched::joined_later(rt, id, t);
    }
    maybe_free(rt, t);
}

/// Pushes the error value of a failed task.
///
/// # Safety
/// `t` failed; `L` has a free slot.
pub unsafe fn push_error(L: *mut lua_State, t: *mut Task) {
    ffi::lua_pushvalue((*t).co, 1);
    ffi::lua_xmove((*t).co, L, 1);
}

/// Pushes what `join` returns for an ended task: `true, ...results`,
/// `false, err`, or `false, "cancelled"` (plus the reason given to
/// `cancel`, if any).
///
/// # Safety
/// `t` has ended; `L` has room (the stack is checked here).
pub unsafe fn push_outcome(L: *mut lua_State, t: *mut Task) -> c_int {
    let co = (*t).co;
    match (*t).state {
        State::Done => {
            let n = (*t).nres;
            ffi::lua_checkstack(L, n + 1);
            ffi::lua_checkstack(co, n);
            ffi::lua_pushboolean(L, 1);
            for i in 1..=n {
                ffi::lua_pushvalue(co, i);
            }
            ffi::lua_xmove(co, L, n);
            n + 1
        }
        State::Failed => {
            ffi::lua_pushboolean(L, 0);
            ffi::lua_pushvalue(co, 1);
            ffi::lua_xmove(co, L, 1);
            2
        }
        State::Cancelled | State::Live => {
            ffi::lua_pushboolean(L, 0);
            push_bytes(L, CANCELLED.as_bytes());
            if (*t).reason == ffi::LUA_NOREF {
                return 2;
            }
            ffi::lua_rawgeti(L, ffi::LUA_REGISTRYINDEX, (*t).reason as _);
            3
        }
    }
}

lua_fn! {
    /// `lunet.spawn(fn, ...)` -> task: runs `fn(...)` in a new coroutine, now,
    /// up to its first wait.
    pub fn l_spawn(L) {
        let rt = runtime::of(L);
        let (t, nargs) = create(L, rt, 1, "lunet.spawn")?;
        sched::start(rt, (*t).co, nargs, t);
        Ok(1)
    }
}

/// Creates a task for the function at `base` and the arguments above it,
/// pushes its handle, and returns it with its argument count; the caller
/// starts it with [`sched::start`] (after setting up what must be in place
/// before its first run).
///
/// # Safety
/// Loop thread; `L` the calling state of an entry point.
pub unsafe fn create(L: *mut lua_State, rt: *mut Runtime, base: c_int, what: &str) -> Result<(*mut Task, c_int), Raise> {
    {
        if ffi::lua_type(L, base) != ffi::LUA_TFUNCTION {
            return Err(format!("{what} expects a function (got {})", type_name(L, base)).into());
        }
        let n = ffi::lua_gettop(L) - base + 1;
        if ffi::lua_checkstack(L, n + 4) == 0 {
            return Err(format!("{what}: too many arguments").into());
        }
        let co = ffi::lua_newthread(L);
        let co_ref = ffi::luaL_ref(L, ffi::LUA_REGISTRYINDEX);
        let t = Box::into_raw(Box::new(Task {
            co,
            co_ref,
            state: State::Live,
            cancelled: false,
            reason: ffi::LUA_NOREF,
            deadline: None,
            wait: None,
            joiners: Vec::new(),
            watchers: Vec::new(),
            handles: 0,
            nres: 0,
        }));
        push(L, t);
        (*rt).sched.tasks.insert(co as usize, t);
        ffi::lua_checkstack(co, n + 1);
        for i in base..base + n {
            ffi::lua_pushvalue(L, i);
        }
        ffi::lua_xmove(L, co, n);
        Ok((t, n - 1))
    }
}

lua_fn! {
    /// `task:_ended([ms])` -> whether the task has ended (checks the
    /// arguments of `join`, whose Lua side returns `_outcome` at once then).
    pub fn l_ended(L) {
        let t = arg(L, 1, "task:join")?;
        opt_ms(L, 2, "task:join")?;
        ffi::lua_pushboolean(L, ((*t).state != State::Live) as c_int);
        Ok(1)
    }
}

lua_fn! {
    /// `task:_outcome()` -> what `join` returns for an ended task.
    pub fn l_outcome(L) {
        let t = arg(L, 1, "task:join")?;
        if (*t).state == State::Live {
            return Err("task:join: the task has not ended".into());
        }
        Ok(push_outcome(L, t))
    }
}

lua_fn! {
    /// `task:_wait([ms])`: the waiting half of `task:join([ms])` ->
    /// `true, ...` | `false, err` | `nil, "timeout"`
    pub fn l_join(L) {
        let t = arg(L, 1, "task:join")?;
        let ms = opt_ms(L, 2, "task:join")?;
        let rt = runtime::of(L);
        if (*t).state != State::Live {
            return Ok(push_outcome(L, t));
        }
        if (*t).co == L {
            return Err("task:join: a task cannot join itself".into());
        }
        let id = sched::park(rt, L, Spec::new(Shape::Two).timeout(ms).unhook(unjoin, t.cast()));
        (*t).joiners.push(id);
        Ok(ffi::lua_yield(L, 0))
    }
}

unsafe fn unjoin(_rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    let t = ctx as *mut Task;
    (*t).joiners.retain(|&j| j != id);
}

lua_fn! {
    /// `task:cancel([reason])`: ends the task's current wait with a
    /// cancellation raised at the wait point; every later wait raises it
    /// again. `join` returns `false, "cancelled", reason`.
    pub fn l_cancel(L) {
        let t = arg(L, 1, "task:cancel")?;
        let rt = runtime::of(L);
        if (*t).state == State::Live && !(*t).cancelled && ffi::lua_type(L, 2) > ffi::LUA_TNIL {
            ffi::lua_pushvalue(L, 2);
            (*t).reason = ffi::luaL_ref(L, ffi::LUA_REGISTRYINDEX);
        }
        cancel(rt, t);
        Ok(0)
    }
}

/// Cancels a live task (see `task:cancel`); nothing for an ended or
/// already cancelled one.
///
/// # Safety
/// Loop thread; `t` alive.
pub unsafe fn cancel(rt: *mut Runtime, t: *mut Task) {
    if (*t).state == State::Live && !(*t).cancelled {
        (*t).cancelled = true;
        if let Some(id) = (*t).wait {
            if sched::is_waiting(rt, id) {
                sched::cancel_wait(rt, id);
            }
        }
    }
}

lua_fn! {
    /// `task:status()` -> "running" | "waiting" | "ready" | "done" | "failed" | "cancelled"
    pub fn l_status(L) {
        let t = arg(L, 1, "task:status")?;
        let rt = runtime::of(L);
        let s: &CStr = match (*t).state {
            State::Done => c"done",
            State::Failed => c"failed",
            State::Cancelled => c"cancelled",
            State::Live => match (*t).wait {
                Some(id) if sched::is_waiting(rt, id) => c"waiting",
                Some(_) => c"ready",
                None if ffi::lua_status((*t).co) == ffi::LUA_YIELD => c"waiting",
                None => c"running",
            },
        };
        ffi::lua_pushstring(L, s.as_ptr());
        Ok(1)
    }
}

lua_fn! {
    /// `lunet.current()` -> the running task, or nil (main thread, or a
    /// coroutine lunet did not spawn).
    pub fn l_current(L) {
        let rt = runtime::of(L);
        let cur = (*rt).sched.current;
        if !cur.is_null() && (*cur).co == L {
            push(L, cur);
        } else {
            ffi::lua_pushnil(L);
        }
        Ok(1)
    }
}

/// The optional time argument at `idx`, in ms (`nil`/absent = none).
///
/// # Safety
/// `L` valid.
pub unsafe fn opt_ms(L: *mut lua_State, idx: c_int, what: &str) -> Result<Option<u64>, Raise> {
    if ffi::lua_type(L, idx) <= ffi::LUA_TNIL {
        return Ok(None);
    }
    ms_arg(L, idx, what).map(Some)
}

/// The required time argument at `idx`, in ms.
///
/// # Safety
/// `L` valid.
pub unsafe fn ms_arg(L: *mut lua_State, idx: c_int, what: &str) -> Result<u64, Raise> {
    if ffi::lua_type(L, idx) != ffi::LUA_TNUMBER {
        return Err(format!("{what} expects a time in milliseconds (got {})", type_name(L, idx)).into());
    }
    millis(to_number(L, idx).unwrap_or(f64::NAN)).map_err(|e| Raise::from(format!("{what}: time {e}")))
}

lua_fn! {
    /// `lunet._deadline_push(ms)` -> previous deadline (or nil): used by the
    /// Lua side of `lunet.deadline`.
    pub fn l_deadline_push(L) {
        let ms = ms_arg(L, 1, "lunet.deadline")?;
        let rt = runtime::of(L);
        let cur = (*rt).sched.current;
        if cur.is_null() || (*cur).co != L {
            return Err("lunet.deadline must be called from a task".into());
        }
        let prev = (*cur).deadline;
        let d = sched::now(rt).saturating_add(ms);
        (*cur).deadline = Some(prev.map_or(d, |p| p.min(d)));
        match prev {
            Some(p) => ffi::lua_pushnumber(L, p as f64),
            None => ffi::lua_pushnil(L),
        }
        Ok(1)
    }
}

lua_fn! {
    /// `lunet._deadline_pop(prev)`: restores the deadline `_deadline_push` returned.
    pub fn l_deadline_pop(L) {
        let rt = runtime::of(L);
        let cur = (*rt).sched.current;
        if !cur.is_null() && (*cur).co == L {
            (*cur).deadline = to_number(L, 1).map(|d| d as u64);
        }
        Ok(0)
    }
}

lua_fn! {
    /// `lunet.on_error(fn | nil)`: the handler for errors that end a task
    /// nobody joins, called as `fn(err, traceback, task)`.
    pub fn l_on_error(L) {
        let rt = runtime::of(L);
        let t = ffi::lua_type(L, 1);
        if t != ffi::LUA_TFUNCTION && t > ffi::LUA_TNIL {
            return Err(format!("lunet.on_error expects a function or nil (got {})", type_name(L, 1)).into());
        }
        let s = &mut (*rt).sched;
        ffi::luaL_unref(L, ffi::LUA_REGISTRYINDEX, s.on_error);
        s.on_error = ffi::LUA_NOREF;
        if t == ffi::LUA_TFUNCTION {
            ffi::lua_pushvalue(L, 1);
            s.on_error = ffi::luaL_ref(L, ffi::LUA_REGISTRYINDEX);
        }
        Ok(0)
    }
}

lua_fn! {
    fn l_gc(L) {
        let rt = runtime::of(L);
        if let Some(p) = handle::take(L, 1, META) {
            let t = p as *mut Task;
            (*t).handles -= 1;
            maybe_free(rt, t);
        }
        Ok(0)
    }
}

lua_fn! {
    fn l_tostring(L) {
        match handle::get(L, 1, META) {
            Some(p) if !p.is_null() => {
                let t = p as *mut Task;
                push_bytes(L, format!("lunet.task: {:p} ({:?})", t, (*t).state).to_lowercase().as_bytes());
            }
            _ => push_bytes(L, b"lunet.task"),
        }
        Ok(1)
    }
}

lua_fn! {
    fn l_eq(L) {
        let a = handle::get(L, 1, META);
        let b = handle::get(L, 2, META);
        ffi::lua_pushboolean(L, (a.is_some() && a == b) as c_int);
        Ok(1)
    }
}

/// Creates the task metatable and leaves its methods table on the stack
/// (`cancel`, `status`, and the parts of `join`, which the Lua side of the
/// module completes).
///
/// # Safety
/// `L` valid.
pub unsafe fn set_metatable(L: *mut lua_State, rt: *mut Runtime) -> Result<(), Raise> {
    runtime::new_module(L, rt, "task", &[
        (c"_ended", l_ended, runtime::Kind::Plain),
        (c"_outcome", l_outcome, runtime::Kind::Plain),
        (c"join", l_join, runtime::Kind::Yields), // the Lua side wraps it
        (c"cancel", l_cancel, runtime::Kind::Plain),
        (c"status", l_status, runtime::Kind::Plain),
    ])?;
    handle::set_metatable(L, rt.cast(), META, l_gc, l_tostring);
    ffi::lua_getfield(L, ffi::LUA_REGISTRYINDEX, META.as_ptr());
    runtime::push_fn(L, rt, l_eq);
    ffi::lua_setfield(L, -2, c"__eq".as_ptr());
    ffi::lua_settop(L, -2);
    Ok(())
}
