//! Coordination between tasks: `lunet.channel`, `lunet.semaphore`,
//! `lunet.waitgroup`, `lunet.wait_any` and `lunet.group`.
//!
//! Glue only: the queue logic is in [`crate::sync`]. Every wait is a wait of
//! the scheduler (`sched::park`) whose unhook takes it out of the primitive's
//! queue, so timeouts, the task's deadline and cancellation apply as to any
//! other wait; a primitive that hands a waiter a value or a permit wakes it
//! with `sched::wake_later` (resumed on the next loop iteration, in the
//! order woken). Invariant: a waiter in a primitive's queue is always a live
//! wait of the scheduler (every way a wait ends early calls its unhook
//! first), so a wake never fails and nothing handed over is lost.
//!
//! Each object is a heap block shared by its userdata handles and by the
//! waits parked on it (their unhooks point at it); it is freed when no
//! handle and no waiter is left. Channel values are registry references.

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_int, c_void, CStr};

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::handle;
use lunet_abi::lua::{push_bytes, push_fail, to_number, type_name, Raise};
use lunet_abi::lua_fn;

use crate::runtime::{self, Kind, Runtime};
use crate::sched::{self, Shape, Spec, Wake, WaitId};
use crate::sync::{Channel, Recvd, Semaphore, Sent, WaitGroup};
use crate::task::{self, opt_ms, State, Task};
use crate::trace;

pub const CHANNEL: &CStr = c"lunet.channel";
pub const SEMAPHORE: &CStr = c"lunet.semaphore";
pub const WAITGROUP: &CStr = c"lunet.waitgroup";
pub const GROUP: &CStr = c"lunet.group";

const CLOSED: &str = "closed";

/// The object behind the handle at `idx`, or a "expects a ..." error. For
/// the methods built by [`methods`], whose upvalue 2 is the metatable of
/// their kind of handle: the same check as `handle::get`, without looking
/// the metatable up by name on every call (these are the hot paths).
unsafe fn arg<T>(L: *mut lua_State, idx: c_int, what: &str, kind: &str) -> Result<*mut T, Raise> {
    if ffi::lua_type(L, idx) == ffi::LUA_TUSERDATA && ffi::lua_getmetatable(L, idx) != 0 {
        let same = ffi::lua_rawequal(L, -1, ffi::lua_upvalueindex(2)) != 0;
        ffi::lua_settop(L, -2);
        let slot = ffi::lua_touserdata(L, idx) as *mut *mut c_void;
        if same && !(*slot).is_null() {
            return Ok((*slot).cast());
        }
    }
    Err(format!("{what} expects a {kind} (got {})", type_name(L, idx)).into())
}

/// Pushes the methods table of the handles registered as `meta` (creating
/// the metatable if needed): closures over the runtime and the metatable,
/// the waiting ones behind the yield guard (named `<prefix>.<name>`).
pub(crate) unsafe fn methods(
    L: *mut lua_State,
    rt: *mut Runtime,
    prefix: &str,
    meta: &CStr,
    fns: &[(&CStr, ffi::lua_CFunction, Kind)],
) -> Result<(), Raise> {
    ffi::luaL_newmetatable(L, meta.as_ptr());
    let mt = ffi::lua_gettop(L);
    ffi::lua_createtable(L, 0, fns.len() as c_int);
    for &(name, f, kind) in fns {
        ffi::lua_pushlightuserdata(L, rt.cast());
        ffi::lua_pushvalue(L, mt);
        ffi::lua_pushcclosure(L, f, 2);
        if kind == Kind::Yields {
            lunet_abi::lua::guard(L, &format!("{prefix}.{}", name.to_str().unwrap_or("?")))?;
        }
        ffi::lua_setfield(L, -2, name.as_ptr());
    }
    ffi::lua_remove(L, mt);
    Ok(())
}

/// A whole number argument in `lo..=hi` (`default` when absent).
unsafe fn int_arg(L: *mut lua_State, idx: c_int, default: Option<i64>, lo: i64, hi: i64, what: &str) -> Result<i64, Raise> {
    if ffi::lua_type(L, idx) <= ffi::LUA_TNIL {
        if let Some(d) = default {
            return Ok(d);
        }
    }
    if ffi::lua_type(L, idx) != ffi::LUA_TNUMBER {
        return Err(format!("{what} expects a whole number (got {})", type_name(L, idx)).into());
    }
    let n = to_number(L, idx).unwrap_or(f64::NAN);
    if n.fract() != 0.0 || !(lo as f64..=hi as f64).contains(&n) {
        return Err(format!("{what} expects a whole number from {lo} to {hi} (got {n})").into());
    }
    Ok(n as i64)
}

unsafe fn unref(rt: *mut Runtime, r: c_int) {
    ffi::luaL_unref((*rt).aux, ffi::LUA_REGISTRYINDEX, r);
}

/// Wakes `id` with `true`: it was a waiter in a primitive's queue, so the
/// wake cannot be refused (tracing builds check it).
unsafe fn wake_true(rt: *mut Runtime, id: WaitId) {
    let ok = sched::wake_later(rt, id, Wake::True);
    trace::check(ok, "a primitive's waiter was not waiting");
}

/// Fails a waiter taken out of a primitive's queue with `nil, msg`.
unsafe fn fail(rt: *mut Runtime, id: WaitId, msg: &'static str) {
    if sched::is_waiting(rt, id) {
        sched::fail_later(rt, id, msg);
    }
}

// ---------------------------------------------------------------- channels

pub struct Chan {
    core: Channel<WaitId, c_int, *mut AnyWait>,
    handles: u32,
}

unsafe fn chan_free_if_unused(rt: *mut Runtime, c: *mut Chan) {
    if (*c).handles == 0 && !(*c).core.has_waiters() {
        let mut b = Box::from_raw(c);
        for r in b.core.drain_values() {
            unref(rt, r);
        }
    }
}

/// Wakes the `wait_any` waiters of a channel that became ready.
unsafe fn chan_notify(rt: *mut Runtime, c: *mut Chan) {
    for aw in (*c).core.take_watchers() {
        any_fire(rt, aw, Item::Chan(c));
    }
}

unsafe fn unhook_recv(rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    let c = ctx as *mut Chan;
    (*c).core.cancel_receiver(id);
    chan_free_if_unused(rt, c);
}

unsafe fn unhook_send(rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    let c = ctx as *mut Chan;
    // The value was not delivered: the send fails (timeout, cancellation).
    if let Some(r) = (*c).core.cancel_sender(id) {
        unref(rt, r);
    }
    chan_free_if_unused(rt, c);
}

lua_fn! {
    /// `lunet.channel([capacity])` -> channel (capacity 0, the default: rendezvous).
    pub fn l_channel(L) {
        let cap = int_arg(L, 1, Some(0), 0, i32::MAX as i64, "lunet.channel")?;
        let slot = handle::push_slot(L, CHANNEL);
        let c = Box::into_raw(Box::new(Chan { core: Channel::new(cap as usize), handles: 1 }));
        *slot = c.cast();
        Ok(1)
    }
}

lua_fn! {
    /// `ch:send(v [, ms])` -> `true` | `nil, "closed"` | `nil, "timeout"`
    pub fn l_send(L) {
        let c: *mut Chan = arg(L, 1, "channel:send", "channel")?;
        if ffi::lua_type(L, 2) <= ffi::LUA_TNIL {
            return Err("channel:send: cannot send nil".into());
        }
        let ms = opt_ms(L, 3, "channel:send")?;
        let rt = runtime::of(L);
        ffi::lua_pushvalue(L, 2);
        let mut v = ffi::luaL_ref(L, ffi::LUA_REGISTRYINDEX);
        loop {
            match (*c).core.send(v) {
                Sent::Handed(r, back) => {
                    if sched::wake_later(rt, r, Wake::Value(back)) {
                        ffi::lua_pushboolean(L, 1);
                        return Ok(1);
                    }
                    v = back; // (cannot happen: see the module notes)
                }
                Sent::Buffered => {
                    chan_notify(rt, c);
                    ffi::lua_pushboolean(L, 1);
                    return Ok(1);
                }
                Sent::Closed(back) => {
                    unref(rt, back);
                    return Ok(push_fail(L, CLOSED));
                }
                Sent::Full(back) => {
                    let id = sched::park(rt, L, Spec::new(Shape::Two).timeout(ms).unhook(unhook_send, c.cast()));
                    if sched::is_waiting(rt, id) {
                        (*c).core.park_sender(id, back);
                        chan_notify(rt, c);
                    } else {
                        unref(rt, back); // cancelled or out of time already
                    }
                    return Ok(ffi::lua_yield(L, 0));
                }
            }
        }
    }
}

lua_fn! {
    /// `ch:recv([ms])` -> `v` | `nil, "closed"` | `nil, "timeout"`
    pub fn l_recv(L) {
        let c: *mut Chan = arg(L, 1, "channel:recv", "channel")?;
        let ms = opt_ms(L, 2, "channel:recv")?;
        let rt = runtime::of(L);
        match (*c).core.recv() {
            Recvd::Value(v, sender) => {
                if let Some(s) = sender {
                    wake_true(rt, s);
                }
                ffi::lua_rawgeti(L, ffi::LUA_REGISTRYINDEX, v as _);
                unref(rt, v);
                Ok(1)
            }
            Recvd::Closed => Ok(push_fail(L, CLOSED)),
            Recvd::Empty => {
                let id = sched::park(rt, L, Spec::new(Shape::Two).timeout(ms).unhook(unhook_recv, c.cast()));
                if sched::is_waiting(rt, id) {
                    (*c).core.park_receiver(id);
                }
                Ok(ffi::lua_yield(L, 0))
            }
        }
    }
}

lua_fn! {
    /// `ch:close()`: no more sends; waiting receivers and senders get
    /// `nil, "closed"`; buffered values can still be received.
    pub fn l_close(L) {
        let c: *mut Chan = arg(L, 1, "channel:close", "channel")?;
        let rt = runtime::of(L);
        if let Some((receivers, senders)) = (*c).core.close() {
            for r in receivers {
                fail(rt, r, CLOSED);
            }
            for (s, v) in senders {
                unref(rt, v);
                fail(rt, s, CLOSED);
            }
            chan_notify(rt, c);
        }
        Ok(0)
    }
}

lua_fn! {
    /// `ch:len()`, `#ch` -> the number of buffered values.
    pub fn l_len(L) {
        let c: *mut Chan = arg(L, 1, "channel:len", "channel")?;
        ffi::lua_pushnumber(L, (*c).core.len() as f64);
        Ok(1)
    }
}

lua_fn! {
    fn l_chan_gc(L) {
        if let Some(p) = handle::take(L, 1, CHANNEL) {
            let c = p as *mut Chan;
            (*c).handles -= 1;
            chan_free_if_unused(runtime::of(L), c);
        }
        Ok(0)
    }
}

lua_fn! {
    fn l_chan_tostring(L) {
        match handle::get(L, 1, CHANNEL) {
            Some(p) if !p.is_null() => {
                let c = p as *mut Chan;
                let state = if (*c).core.is_closed() { ", closed" } else { "" };
                push_bytes(L, format!("lunet.channel: {:p} ({}/{}{state})", c, (*c).core.len(), (*c).core.capacity()).as_bytes());
            }
            _ => push_bytes(L, b"lunet.channel"),
        }
        Ok(1)
    }
}

// ---------------------------------------------------------------- semaphores

pub struct Sem {
    core: Semaphore<WaitId>,
    handles: u32,
}

unsafe fn sem_free_if_unused(c: *mut Sem) {
    if (*c).handles == 0 && !(*c).core.has_waiters() {
        drop(Box::from_raw(c));
    }
}

unsafe fn unhook_acquire(_rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    let s = ctx as *mut Sem;
    (*s).core.cancel(id);
    sem_free_if_unused(s);
}

lua_fn! {
    /// `lunet.semaphore(n)` -> semaphore with `n` permits (n >= 1).
    pub fn l_semaphore(L) {
        let n = int_arg(L, 1, None, 1, i32::MAX as i64, "lunet.semaphore")?;
        let slot = handle::push_slot(L, SEMAPHORE);
        *slot = Box::into_raw(Box::new(Sem { core: Semaphore::new(n as usize), handles: 1 })).cast();
        Ok(1)
    }
}

lua_fn! {
    /// `sem:acquire([ms])` -> `true` | `nil, "timeout"`
    pub fn l_acquire(L) {
        let s: *mut Sem = arg(L, 1, "semaphore:acquire", "semaphore")?;
        let ms = opt_ms(L, 2, "semaphore:acquire")?;
        if (*s).core.try_acquire() {
            ffi::lua_pushboolean(L, 1);
            return Ok(1);
        }
        let rt = runtime::of(L);
        let id = sched::park(rt, L, Spec::new(Shape::Two).timeout(ms).unhook(unhook_acquire, s.cast()));
        if sched::is_waiting(rt, id) {
            (*s).core.park(id);
        }
        Ok(ffi::lua_yield(L, 0))
    }
}

lua_fn! {
    /// `sem:release()`: gives a permit back (to the longest waiter, if any).
    /// Raises if no permit is held.
    pub fn l_release(L) {
        let s: *mut Sem = arg(L, 1, "semaphore:release", "semaphore")?;
        let rt = runtime::of(L);
        loop {
            match (*s).core.release() {
                Err(_) => return Err("semaphore:release: no permit is held (more releases than acquires)".into()),
                Ok(None) => return Ok(0),
                Ok(Some(w)) => {
                    if sched::wake_later(rt, w, Wake::True) {
                        return Ok(0);
                    }
                    // (Cannot happen: see the module notes. The permit goes on.)
                }
            }
        }
    }
}

lua_fn! {
    /// `sem:available()` -> permits free now.
    pub fn l_available(L) {
        let s: *mut Sem = arg(L, 1, "semaphore:available", "semaphore")?;
        ffi::lua_pushnumber(L, (*s).core.available() as f64);
        Ok(1)
    }
}

lua_fn! {
    fn l_sem_gc(L) {
        if let Some(p) = handle::take(L, 1, SEMAPHORE) {
            let s = p as *mut Sem;
            (*s).handles -= 1;
            sem_free_if_unused(s);
        }
        Ok(0)
    }
}

lua_fn! {
    fn l_sem_tostring(L) {
        match handle::get(L, 1, SEMAPHORE) {
            Some(p) if !p.is_null() => {
                let s = p as *mut Sem;
                push_bytes(L, format!("lunet.semaphore: {:p} ({} free)", s, (*s).core.available()).as_bytes());
            }
            _ => push_bytes(L, b"lunet.semaphore"),
        }
        Ok(1)
    }
}

// ---------------------------------------------------------------- wait groups

pub struct Wg {
    core: WaitGroup<WaitId>,
    handles: u32,
}

unsafe fn wg_free_if_unused(w: *mut Wg) {
    if (*w).handles == 0 && !(*w).core.has_waiters() {
        drop(Box::from_raw(w));
    }
}

unsafe fn unhook_wg(_rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    let w = ctx as *mut Wg;
    (*w).core.cancel(id);
    wg_free_if_unused(w);
}

lua_fn! {
    /// `lunet.waitgroup()` -> wait group (counter 0).
    pub fn l_waitgroup(L) {
        let slot = handle::push_slot(L, WAITGROUP);
        *slot = Box::into_raw(Box::new(Wg { core: WaitGroup::default(), handles: 1 })).cast();
        Ok(1)
    }
}

unsafe fn wg_add(L: *mut lua_State, w: *mut Wg, n: i64, what: &str) -> Result<c_int, Raise> {
    match (*w).core.add(n) {
        Err(_) => Err(format!("{what}: the counter would go below zero ({} + {n})", (*w).core.count()).into()),
        Ok(woken) => {
            let rt = runtime::of(L);
            for id in woken {
                wake_true(rt, id);
            }
            Ok(0)
        }
    }
}

lua_fn! {
    /// `wg:add([n])`: adds `n` (default 1, may be negative) to the counter.
    pub fn l_add(L) {
        let w: *mut Wg = arg(L, 1, "waitgroup:add", "waitgroup")?;
        let n = int_arg(L, 2, Some(1), -(1 << 53), 1 << 53, "waitgroup:add")?;
        wg_add(L, w, n, "waitgroup:add")
    }
}

lua_fn! {
    /// `wg:done()`: `wg:add(-1)`.
    pub fn l_done(L) {
        let w: *mut Wg = arg(L, 1, "waitgroup:done", "waitgroup")?;
        wg_add(L, w, -1, "waitgroup:done")
    }
}

lua_fn! {
    /// `wg:count()` -> the counter.
    pub fn l_count(L) {
        let w: *mut Wg = arg(L, 1, "waitgroup:count", "waitgroup")?;
        ffi::lua_pushnumber(L, (*w).core.count() as f64);
        Ok(1)
    }
}

lua_fn! {
    /// `wg:wait([ms])` -> `true` (the counter is zero) | `nil, "timeout"`
    pub fn l_wg_wait(L) {
        let w: *mut Wg = arg(L, 1, "waitgroup:wait", "waitgroup")?;
        let ms = opt_ms(L, 2, "waitgroup:wait")?;
        if !(*w).core.must_wait() {
            ffi::lua_pushboolean(L, 1);
            return Ok(1);
        }
        let rt = runtime::of(L);
        let id = sched::park(rt, L, Spec::new(Shape::Two).timeout(ms).unhook(unhook_wg, w.cast()));
        if sched::is_waiting(rt, id) {
            (*w).core.park(id);
        }
        Ok(ffi::lua_yield(L, 0))
    }
}

lua_fn! {
    fn l_wg_gc(L) {
        if let Some(p) = handle::take(L, 1, WAITGROUP) {
            let w = p as *mut Wg;
            (*w).handles -= 1;
            wg_free_if_unused(w);
        }
        Ok(0)
    }
}

lua_fn! {
    fn l_wg_tostring(L) {
        match handle::get(L, 1, WAITGROUP) {
            Some(p) if !p.is_null() => {
                let w = p as *mut Wg;
                push_bytes(L, format!("lunet.waitgroup: {:p} ({})", w, (*w).core.count()).as_bytes());
            }
            _ => push_bytes(L, b"lunet.waitgroup"),
        }
        Ok(1)
    }
}

// ---------------------------------------------------------------- wait_any

#[derive(Clone, Copy, PartialEq, Eq)]
enum Item {
    Task(*mut Task),
    Chan(*mut Chan),
}

/// One `wait_any` wait: the distinct objects it watches, each with the
/// first index it has in the list.
pub struct AnyWait {
    id: Option<WaitId>,
    items: Vec<(Item, u32)>,
}

/// Ends a `wait_any` wait: off every object it watches, and freed.
unsafe fn any_unregister(rt: *mut Runtime, aw: *mut AnyWait) {
    let b = Box::from_raw(aw);
    for &(item, _) in &b.items {
        match item {
            Item::Task(t) => task::unwatch(t, any_task_ended, aw.cast()),
            Item::Chan(c) => {
                (*c).core.unwatch(aw);
                chan_free_if_unused(rt, c);
            }
        }
    }
}

/// `item` became ready: the wait returns its index.
unsafe fn any_fire(rt: *mut Runtime, aw: *mut AnyWait, item: Item) {
    let idx = (*aw).items.iter().find(|(i, _)| *i == item).map_or(0, |&(_, n)| n);
    let ok = (*aw).id.is_some_and(|id| sched::wake_later(rt, id, Wake::Index(idx)));
    trace::check(ok, "a wait_any waiter was not waiting");
    any_unregister(rt, aw);
}

unsafe fn any_task_ended(rt: *mut Runtime, ctx: *mut c_void, t: *mut Task) -> bool {
    any_fire(rt, ctx.cast(), Item::Task(t));
    false // the error is the joiner's; unjoined, it is reported as usual
}

unsafe fn unhook_any(rt: *mut Runtime, ctx: *mut c_void, _id: WaitId) {
    any_unregister(rt, ctx.cast());
}

lua_fn! {
    /// `lunet.wait_any(list [, ms])` -> the index of the first item of `list`
    /// (tasks and channels) that is ready: a task that has ended, a channel
    /// that has a value or is closed | `nil, "timeout"`
    pub fn l_wait_any(L) {
        if ffi::lua_type(L, 1) != ffi::LUA_TTABLE {
            return Err(format!("lunet.wait_any expects a list of tasks and channels (got {})", type_name(L, 1)).into());
        }
        let ms = opt_ms(L, 2, "lunet.wait_any")?;
        let n = ffi::lua_objlen(L, 1);
        if n == 0 {
            return Err("lunet.wait_any expects a non-empty list".into());
        }
        if n > u32::MAX as usize {
            return Err("lunet.wait_any: the list is too long".into());
        }
        let mut items: Vec<(Item, u32)> = Vec::new();
        let mut ready = None;
        for i in 1..=n {
            ffi::lua_rawgeti(L, 1, i as _);
            let item = if let Some(p) = handle::get(L, -1, task::META).filter(|p| !p.is_null()) {
                Item::Task(p.cast())
            } else if let Some(p) = handle::get(L, -1, CHANNEL).filter(|p| !p.is_null()) {
                Item::Chan(p.cast())
            } else {
                let tn = type_name(L, -1);
                ffi::lua_settop(L, -2);
                return Err(format!("lunet.wait_any: item {i} is not a task or a channel (got {tn})").into());
            };
            ffi::lua_settop(L, -2);
            let is_ready = match item {
                Item::Task(t) => (*t).state != State::Live,
                Item::Chan(c) => (*c).core.ready(),
            };
            if is_ready && ready.is_none() {
                ready = Some(i);
            }
            if !items.iter().any(|(x, _)| *x == item) {
                items.push((item, i as u32));
            }
        }
        if let Some(i) = ready {
            ffi::lua_pushnumber(L, i as f64);
            return Ok(1);
        }
        let rt = runtime::of(L);
        let aw = Box::into_raw(Box::new(AnyWait { id: None, items }));
        let id = sched::park(rt, L, Spec::new(Shape::Two).timeout(ms).unhook(unhook_any, aw.cast()));
        (*aw).id = Some(id);
        if sched::is_waiting(rt, id) {
            for &(item, _) in &(*aw).items {
                match item {
                    Item::Task(t) => task::watch(t, any_task_ended, aw.cast()),
                    Item::Chan(c) => (*c).core.watch(aw),
                }
            }
        } else {
            // Cancelled or out of time already: the unhook, called when the
            // wait is served, frees it (it watches nothing yet).
            (*aw).items.clear();
        }
        Ok(ffi::lua_yield(L, 0))
    }
}

// ---------------------------------------------------------------- task groups

pub struct Group {
    /// Live children, with the order they were spawned in.
    live: HashMap<usize, u64>,
    seq: u64,
    waiters: VecDeque<WaitId>,
    /// The first child that failed (pinned), returned by `wait`.
    failed: *mut Task,
    cancelled: bool,
    /// The task that created the group: its end cancels the children left.
    owner: *mut Task,
    handles: u32,
}

unsafe fn group_free_if_unused(rt: *mut Runtime, g: *mut Group) {
    let gr = &*g;
    if gr.handles == 0 && gr.live.is_empty() && gr.waiters.is_empty() {
        let b = Box::from_raw(g);
        if !b.owner.is_null() {
            task::unwatch(b.owner, group_owner_ended, g.cast());
        }
        if !b.failed.is_null() {
            task::unpin(rt, b.failed);
        }
    }
}

/// Cancels every live child, in the order they were spawned.
unsafe fn group_cancel(rt: *mut Runtime, g: *mut Group) {
    (*g).cancelled = true;
    let mut live: Vec<(u64, usize)> = (*g).live.iter().map(|(&t, &s)| (s, t)).collect();
    live.sort_unstable();
    for (_, t) in live {
        task::cancel(rt, t as *mut Task);
    }
}

unsafe fn group_child_ended(rt: *mut Runtime, ctx: *mut c_void, t: *mut Task) -> bool {
    let g = ctx as *mut Group;
    (*g).live.remove(&(t as usize));
    let mut taken = false;
    if (*t).state == State::Failed && (*g).failed.is_null() {
        task::pin(t);
        (*g).failed = t;
        taken = !(*g).waiters.is_empty();
        group_cancel(rt, g);
    }
    if (*g).live.is_empty() {
        for id in std::mem::take(&mut (*g).waiters) {
            wake_true(rt, id);
        }
    }
    group_free_if_unused(rt, g);
    taken
}

unsafe fn group_owner_ended(rt: *mut Runtime, ctx: *mut c_void, _t: *mut Task) -> bool {
    let g = ctx as *mut Group;
    (*g).owner = std::ptr::null_mut();
    if !(*g).live.is_empty() {
        group_cancel(rt, g);
    }
    group_free_if_unused(rt, g);
    false
}

unsafe fn unhook_group_wait(rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    let g = ctx as *mut Group;
    let q = &mut (*g).waiters;
    if let Some(i) = q.iter().position(|&w| w == id) {
        q.remove(i);
        // A wait for the group that ends early (timeout, cancellation) ends
        // the group: its children must not outlive it.
        if !(*rt).closing {
            group_cancel(rt, g);
        }
    }
    group_free_if_unused(rt, g);
}

lua_fn! {
    /// `lunet.group()` -> group. Created in a task, the group's children are
    /// cancelled when that task ends.
    pub fn l_group(L) {
        let rt = runtime::of(L);
        let cur = (*rt).sched.current;
        let owner = if !cur.is_null() && (*cur).co == L { cur } else { std::ptr::null_mut() };
        let slot = handle::push_slot(L, GROUP);
        let g = Box::into_raw(Box::new(Group {
            live: HashMap::new(),
            seq: 0,
            waiters: VecDeque::new(),
            failed: std::ptr::null_mut(),
            cancelled: false,
            owner,
            handles: 1,
        }));
        *slot = g.cast();
        if !owner.is_null() {
            task::watch(owner, group_owner_ended, g.cast());
        }
        Ok(1)
    }
}

lua_fn! {
    /// `g:spawn(fn, ...)` -> task | `nil, "cancelled"` (the group was cancelled).
    pub fn l_group_spawn(L) {
        let g: *mut Group = arg(L, 1, "group:spawn", "group")?;
        if ffi::lua_type(L, 2) != ffi::LUA_TFUNCTION {
            return Err(format!("group:spawn expects a function (got {})", type_name(L, 2)).into());
        }
        if (*g).cancelled {
            return Ok(push_fail(L, sched::CANCELLED));
        }
        let rt = runtime::of(L);
        let (t, nargs) = task::create(L, rt, 2, "group:spawn")?;
        (*g).seq += 1;
        (*g).live.insert(t as usize, (*g).seq);
        task::watch(t, group_child_ended, g.cast());
        sched::start(rt, (*t).co, nargs, t);
        Ok(1)
    }
}

lua_fn! {
    /// `g:_wait([ms])`: the waiting half of `g:wait` -> `true` once every
    /// child has ended | `nil, "timeout"` (the children are cancelled).
    pub fn l_group_wait(L) {
        let g: *mut Group = arg(L, 1, "group:wait", "group")?;
        let ms = opt_ms(L, 2, "group:wait")?;
        if (*g).live.is_empty() {
            ffi::lua_pushboolean(L, 1);
            return Ok(1);
        }
        let rt = runtime::of(L);
        let cur = (*rt).sched.current;
        if !cur.is_null() && (*cur).co == L && (*g).live.contains_key(&(cur as usize)) {
            return Err("group:wait: a child cannot wait for its own group".into());
        }
        let id = sched::park(rt, L, Spec::new(Shape::Two).timeout(ms).unhook(unhook_group_wait, g.cast()));
        if sched::is_waiting(rt, id) {
            (*g).waiters.push_back(id);
        }
        Ok(ffi::lua_yield(L, 0))
    }
}

lua_fn! {
    /// `g:_outcome()` -> what `g:wait` returns once every child has ended:
    /// `true` | `false, err, task` (the first failure) | `false, "cancelled"`
    pub fn l_group_outcome(L) {
        let g: *mut Group = arg(L, 1, "group:wait", "group")?;
        let f = (*g).failed;
        if !f.is_null() {
            ffi::lua_pushboolean(L, 0);
            task::push_error(L, f);
            task::push(L, f);
            return Ok(3);
        }
        if (*g).cancelled {
            ffi::lua_pushboolean(L, 0);
            push_bytes(L, sched::CANCELLED.as_bytes());
            return Ok(2);
        }
        ffi::lua_pushboolean(L, 1);
        Ok(1)
    }
}

lua_fn! {
    /// `g:cancel()`: cancels every child; later spawns return `nil, "cancelled"`.
    pub fn l_group_cancel(L) {
        let g: *mut Group = arg(L, 1, "group:cancel", "group")?;
        group_cancel(runtime::of(L), g);
        Ok(0)
    }
}

lua_fn! {
    /// `g:size()` -> the number of live children.
    pub fn l_group_size(L) {
        let g: *mut Group = arg(L, 1, "group:size", "group")?;
        ffi::lua_pushnumber(L, (*g).live.len() as f64);
        Ok(1)
    }
}

lua_fn! {
    fn l_group_gc(L) {
        if let Some(p) = handle::take(L, 1, GROUP) {
            let g = p as *mut Group;
            (*g).handles -= 1;
            group_free_if_unused(runtime::of(L), g);
        }
        Ok(0)
    }
}

lua_fn! {
    fn l_group_tostring(L) {
        match handle::get(L, 1, GROUP) {
            Some(p) if !p.is_null() => {
                let g = p as *mut Group;
                push_bytes(L, format!("lunet.group: {:p} ({} live)", g, (*g).live.len()).as_bytes());
            }
            _ => push_bytes(L, b"lunet.group"),
        }
        Ok(1)
    }
}

// ---------------------------------------------------------------- registration

/// Creates the metatables of channels, semaphores, wait groups and groups
/// and leaves the group methods table on the stack (the Lua side of the
/// module completes `wait`).
///
/// # Safety
/// `L` valid.
pub unsafe fn set_metatables(L: *mut lua_State, rt: *mut Runtime) -> Result<(), Raise> {
    methods(L, rt, "channel", CHANNEL, &[
        (c"send", l_send, Kind::Yields),
        (c"recv", l_recv, Kind::Yields),
        (c"close", l_close, Kind::Plain),
        (c"len", l_len, Kind::Plain),
    ])?;
    handle::set_metatable(L, rt.cast(), CHANNEL, l_chan_gc, l_chan_tostring);
    ffi::lua_getfield(L, ffi::LUA_REGISTRYINDEX, CHANNEL.as_ptr());
    ffi::lua_getfield(L, -2, c"len".as_ptr());
    ffi::lua_setfield(L, -2, c"__len".as_ptr());
    ffi::lua_settop(L, -3);

    methods(L, rt, "semaphore", SEMAPHORE, &[
        (c"acquire", l_acquire, Kind::Yields),
        (c"release", l_release, Kind::Plain),
        (c"available", l_available, Kind::Plain),
    ])?;
    handle::set_metatable(L, rt.cast(), SEMAPHORE, l_sem_gc, l_sem_tostring);
    ffi::lua_settop(L, -2);

    methods(L, rt, "waitgroup", WAITGROUP, &[
        (c"add", l_add, Kind::Plain),
        (c"done", l_done, Kind::Plain),
        (c"count", l_count, Kind::Plain),
        (c"wait", l_wg_wait, Kind::Yields),
    ])?;
    handle::set_metatable(L, rt.cast(), WAITGROUP, l_wg_gc, l_wg_tostring);
    ffi::lua_settop(L, -2);

    methods(L, rt, "group", GROUP, &[
        (c"spawn", l_group_spawn, Kind::Plain),
        (c"wait", l_group_wait, Kind::Yields), // the Lua side wraps it
        (c"_outcome", l_group_outcome, Kind::Plain),
        (c"cancel", l_group_cancel, Kind::Plain),
        (c"size", l_group_size, Kind::Plain),
    ])?;
    handle::set_metatable(L, rt.cast(), GROUP, l_group_gc, l_group_tostring);
    Ok(())
}
