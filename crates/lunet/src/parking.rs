//! Parking lots for idle connections: `socket.parking`, `socket.park`,
//! `lot:next()`. The bookkeeping is [`crate::lot::Lot`]; this is the glue to
//! the sockets, the scheduler and the lot's libuv timer (its idle timeouts).
//!
//! A parked connection keeps reading (libuv's read stays started, as for any
//! connection) but belongs to no task: the lot holds a registry reference to
//! its handle. Its next input, its end, or its timeout makes it *ready*: it
//! joins the lot's ready queue, and one waiting task (the latest) is woken on
//! the next loop iteration. That task takes ready connections with
//! `lot:next()` without waiting again until the queue is empty, so one resume
//! serves every connection that became ready in one poll of the loop (under
//! load, dozens). A task that takes one and leaves others queued wakes the
//! next waiter, in case it is about to wait for something else.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;

use libuv_sys2 as uv;
use lunet_abi::ffi::{self, lua_State};
use lunet_abi::handle;
use lunet_abi::lua::{push_bytes, push_fail, raw_field, to_number, Raise};
use lunet_abi::lua_fn;

use crate::lot::Lot;
use crate::runtime::{self, Kind, Runtime};
use crate::sched::{self, Shape, Spec, WaitId};
use crate::stream::{self, Sock};

pub const META: &CStr = c"lunet.socket.parking";

/// `Sock::lot_key` of a connection in a lot's ready queue.
pub const READY: u32 = u32::MAX;

/// A connection in a lot.
#[derive(Clone, Copy)]
pub struct Entry {
    sock: *mut Sock,
    /// Registry reference to its handle.
    uref: c_int,
    timed_out: bool,
}

/// A task waiting in `lot:next()`: its wait, and its coroutine (to know it
/// when it comes back after being woken).
#[derive(Clone, Copy)]
struct Waiter {
    id: WaitId,
    co: *mut lua_State,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Waiter) -> bool {
        self.id == other.id
    }
}

pub struct Parking {
    rt: *mut Runtime,
    lot: Lot<Entry, Waiter>,
    timer: uv::uv_timer_t,
    /// When the timer fires, if it runs.
    armed: Option<u64>,
    /// The timer keeps the loop alive (tasks wait for parked connections).
    held: bool,
    /// The coroutine of the task woken for the ready queue that has not
    /// come back to `next()` yet (null: none).
    woken: *mut lua_State,
    max_waiting: usize,
    closed: bool,
    /// The Lua handle still points here.
    ud: bool,
    /// libuv has closed the timer.
    gone: bool,
}

/// The timer runs at least this often while tasks wait for parked
/// connections without an expiry, so that they keep the loop alive.
const FAR: u64 = 3_600_000;

// ---------------------------------------------------------------- timer

unsafe fn update_timer(p: *mut Parking) {
    let pk = &mut *p;
    if pk.closed {
        return;
    }
    let hold = pk.lot.waiting() > 0 && pk.lot.parked() > 0;
    let want = match pk.lot.next_expiry() {
        Some(e) => Some(e),
        None if hold => Some(sched::now(pk.rt).saturating_add(FAR)),
        None => None,
    };
    match (want, pk.armed) {
        // Armed earlier than needed (or with nothing left to expire): it
        // fires, finds nothing and re-arms, which is cheaper than stopping
        // and starting it as connections come and go, request after request.
        (Some(w), Some(a)) if a <= w => {}
        (None, _) => {}
        (Some(w), _) => {
            let now = uv::uv_now((*pk.rt).uv);
            uv::uv_timer_start(&mut pk.timer, Some(on_timer), w.saturating_sub(now), 0);
            pk.armed = Some(w);
        }
    }
    if hold != pk.held {
        pk.held = hold;
        let h = ptr::addr_of_mut!(pk.timer).cast();
        if hold {
            uv::uv_ref(h);
        } else {
            uv::uv_unref(h);
        }
    }
}

unsafe extern "C" fn on_timer(t: *mut uv::uv_timer_t) {
    let p = (*t).data as *mut Parking;
    (*p).armed = None;
    let now = uv::uv_now((*(*p).rt).uv);
    while let Some(mut e) = (*p).lot.pop_expired(now) {
        if (*p).closed {
            break;
        }
        e.timed_out = true;
        (*e.sock).lot_key = READY;
        (*p).lot.queue_ready(e);
    }
    wake_one(p);
}

unsafe extern "C" fn on_timer_close(h: *mut uv::uv_handle_t) {
    let p = (*h).data as *mut Parking;
    (*p).gone = true;
    if !(*p).ud && (*p).lot.waiting() == 0 {
        drop(Box::from_raw(p));
    }
}

// ---------------------------------------------------------------- readiness

/// Called by the socket code when a connection in a lot has news: bytes in
/// its buffer, its end, or its error. It becomes ready (if it was not
/// already). Loop thread.
///
/// # Safety
/// `s` is in a lot.
pub unsafe fn input(s: *mut Sock) {
    let p = (*s).lot;
    let key = (*s).lot_key;
    if key == READY {
        return; // already queued
    }
    let Some(e) = (*p).lot.unpark(key) else { return };
    (*s).lot_key = READY;
    (*p).lot.queue_ready(e);
    wake_one(p);
}

/// Pushes `conn, data, nil, waiting` or `conn, nil, err, waiting` for a ready
/// entry and lets it go (the connection leaves the lot).
unsafe fn push_entry(L: *mut lua_State, p: *mut Parking, e: Entry) -> c_int {
    ffi::lua_rawgeti(L, ffi::LUA_REGISTRYINDEX, e.uref as i64);
    stream::push_parked_input(L, e.sock, e.timed_out);
    ffi::lua_pushinteger(L, (*p).lot.waiting() as i64);
    release((*p).rt, e);
    4
}

unsafe fn release(rt: *mut Runtime, e: Entry) {
    (*e.sock).lot = ptr::null_mut();
    (*e.sock).lot_key = 0;
    ffi::luaL_unref((*rt).aux, ffi::LUA_REGISTRYINDEX, e.uref);
}

/// A connection in a lot is being closed: it leaves the lot.
///
/// # Safety
/// `s` is in a lot.
pub unsafe fn forget(s: *mut Sock) {
    let p = (*s).lot;
    let e = if (*s).lot_key == READY {
        (*p).lot.remove_ready(|e| e.sock == s)
    } else {
        (*p).lot.unpark((*s).lot_key)
    };
    match e {
        Some(e) => {
            release((*p).rt, e);
            update_timer(p);
        }
        None => {
            (*s).lot = ptr::null_mut();
        }
    }
}

// ---------------------------------------------------------------- Lua API

unsafe fn lot_arg(L: *mut lua_State, idx: c_int, what: &str) -> Result<*mut Parking, Raise> {
    match handle::get(L, idx, META) {
        Some(p) if !p.is_null() => Ok(p.cast()),
        Some(_) => Err(format!("{what}: the parking lot is gone").into()),
        None => Err(format!("{what} expects a parking lot (from socket.parking)").into()),
    }
}

lua_fn! {
    /// `socket.parking([opts])` -> a parking lot; `opts.max_waiting` (default
    /// 16): a task calling `lot:next()` when that many already wait gets
    /// `nil, "surplus"` at once.
    pub fn l_parking(L) {
        let rt = runtime::of(L);
        let mut max_waiting = 16usize;
        match ffi::lua_type(L, 1) {
            ffi::LUA_TNIL | ffi::LUA_TNONE => {}
            ffi::LUA_TTABLE => {
                raw_field(L, 1, c"max_waiting");
                if ffi::lua_type(L, -1) != ffi::LUA_TNIL {
                    match to_number(L, -1) {
                        Some(n) if ffi::lua_type(L, -1) == ffi::LUA_TNUMBER && n.fract() == 0.0 && (1.0..=1e6).contains(&n) => {
                            max_waiting = n as usize;
                        }
                        _ => return Err("socket.parking: max_waiting must be a whole number from 1 to 1000000".into()),
                    }
                }
                ffi::lua_settop(L, 1);
            }
            _ => return Err("socket.parking expects an options table or nothing".into()),
        }
        let slot = handle::push_slot(L, META);
        let p = Box::into_raw(Box::new(Parking {
            rt,
            lot: Lot::default(),
            timer: std::mem::zeroed(),
            armed: None,
            held: false,
            woken: ptr::null_mut(),
            max_waiting,
            closed: false,
            ud: true,
            gone: false,
        }));
        uv::uv_timer_init((*rt).uv, &mut (*p).timer);
        (*p).timer.data = p.cast();
        uv::uv_unref(ptr::addr_of_mut!((*p).timer).cast());
        *slot = p.cast();
        Ok(1)
    }
}

lua_fn! {
    /// `socket.park(conn, lot [, timeout_ms])` -> true | nil, err: the
    /// connection waits in the lot, without a task, for its next input.
    pub fn l_park(L) {
        let p = lot_arg(L, 2, "socket.park")?;
        let timeout = crate::task::opt_ms(L, 3, "socket.park")?;
        let s = match stream::arg(L, 1) {
            stream::Arg::Sock(s) if (*s).is_listener() => return Ok(push_fail(L, "not a connection")),
            stream::Arg::Sock(s) if (*s).is_closed() => return Ok(push_fail(L, stream::CLOSED)),
            stream::Arg::Sock(s) => s,
            stream::Arg::Dead => return Ok(push_fail(L, stream::CLOSED)),
            stream::Arg::NotSocket => return Ok(push_fail(L, "invalid socket handle")),
        };
        if (*p).closed {
            return Ok(push_fail(L, "parking lot closed"));
        }
        if !(*s).lot.is_null() {
            return Ok(push_fail(L, "the connection is already parked"));
        }
        if stream::has_reader(s) {
            return Ok(push_fail(L, "another read already in progress"));
        }
        let rt = (*p).rt;
        ffi::lua_pushvalue(L, 1);
        let uref = ffi::luaL_ref(L, ffi::LUA_REGISTRYINDEX);
        let e = Entry { sock: s, uref, timed_out: false };
        (*s).lot = p;
        if stream::has_news(s) {
            // Ready at once (pipelined bytes, its end): queued, and a waiting
            // task is woken to take it (nobody is resumed from inside this call).
            (*s).lot_key = READY;
            (*p).lot.queue_ready(e);
            wake_one(p);
        } else {
            let expiry = timeout.map(|ms| sched::now(rt).saturating_add(ms));
            (*s).lot_key = (*p).lot.park(e, expiry);
            update_timer(p);
        }
        ffi::lua_pushboolean(L, 1);
        Ok(1)
    }
}

/// Wakes (on the next loop iteration) the latest live waiter, which then
/// takes what is queued, unless one is already on its way; with none, the
/// queue waits for the next `next()`.
unsafe fn wake_one(p: *mut Parking) {
    let rt = (*p).rt;
    if (*p).woken.is_null() && (*p).lot.ready_len() > 0 {
        while let Some(w) = (*p).lot.pop_waiter() {
            if sched::wake_plain_later(rt, w.id) {
                (*p).woken = w.co;
                break;
            }
        }
    }
    update_timer(p);
}

unsafe fn unhook_waiter(_rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    let p = ctx as *mut Parking;
    (*p).lot.remove_waiter(&Waiter { id, co: ptr::null_mut() });
    update_timer(p);
    if (*p).gone && !(*p).ud && (*p).lot.waiting() == 0 {
        drop(Box::from_raw(p));
    }
}

lua_fn! {
    /// `lot:_next()` -> conn, data, nil, waiting | conn, nil, err, waiting |
    /// nil, "closed" | nil, "surplus"; nothing when woken to look again
    /// (the Lua side loops).
    fn l_next(L) {
        let p = lot_arg(L, 1, "lot:next")?;
        if (*p).closed {
            return Ok(push_fail(L, "closed"));
        }
        if (*p).woken == L {
            (*p).woken = ptr::null_mut(); // the task woken for the queue is here
        }
        if let Some(&e) = (*p).lot.first_ready() {
            // Pushed before it leaves the queue: a push that raises (an
            // allocation's error) leaves it there for the next `next`.
            let n = push_entry(L, p, e);
            (*p).lot.take_ready();
            // More are queued: another waiter looks too, in case this task
            // is about to wait for something else.
            wake_one(p);
            return Ok(n);
        }
        if (*p).lot.waiting() >= (*p).max_waiting {
            return Ok(push_fail(L, "surplus"));
        }
        let spec = Spec::new(Shape::Two).unhook(unhook_waiter, p.cast());
        let id = sched::park((*p).rt, L, spec);
        (*p).lot.add_waiter(Waiter { id, co: L });
        update_timer(p);
        Ok(ffi::lua_yield(L, 0))
    }
}

lua_fn! {
    /// `lot:waiting()` -> the number of tasks waiting in `lot:next()`.
    fn l_waiting(L) {
        let p = lot_arg(L, 1, "lot:waiting")?;
        ffi::lua_pushinteger(L, (*p).lot.waiting() as i64);
        Ok(1)
    }
}

lua_fn! {
    /// `lot:count()` -> connections parked, connections ready (queued).
    fn l_count(L) {
        let p = lot_arg(L, 1, "lot:count")?;
        ffi::lua_pushinteger(L, (*p).lot.parked() as i64);
        ffi::lua_pushinteger(L, (*p).lot.ready_len() as i64);
        Ok(2)
    }
}

/// Closes the lot: every connection in it is closed, every waiting task gets
/// `nil, "closed"` (on the next loop iteration). Returns how many
/// connections it closed.
unsafe fn close(p: *mut Parking, wake: bool) -> usize {
    if (*p).closed {
        return 0;
    }
    let rt = (*p).rt;
    (*p).closed = true;
    let (parked, ready, waiters) = (*p).lot.drain();
    let n = parked.len() + ready.len();
    for e in parked.into_iter().chain(ready) {
        release(rt, e);
        stream::close(e.sock, wake);
    }
    for w in waiters {
        if wake && sched::is_waiting(rt, w.id) {
            sched::fail_later(rt, w.id, "closed");
        } else {
            sched::forget(rt, w.id);
        }
    }
    uv::uv_close(ptr::addr_of_mut!((*p).timer).cast(), Some(on_timer_close));
    n
}

lua_fn! {
    /// `lot:close()` -> the number of connections it closed.
    fn l_close(L) {
        let p = lot_arg(L, 1, "lot:close")?;
        let n = close(p, true);
        ffi::lua_pushinteger(L, n as i64);
        Ok(1)
    }
}

lua_fn! {
    fn l_gc(L) {
        if let Some(p) = handle::take(L, 1, META) {
            let p = p as *mut Parking;
            (*p).ud = false;
            if (*(*p).rt).closing {
                // (libuv's handles are being closed by the runtime: leave it.)
                return Ok(0);
            }
            close(p, false);
        }
        Ok(0)
    }
}

lua_fn! {
    fn l_tostring(L) {
        let s = match handle::get(L, 1, META) {
            Some(p) if !p.is_null() => {
                let p = p as *mut Parking;
                if (*p).closed {
                    "parking lot (closed)".to_string()
                } else {
                    format!("parking lot: {} parked, {} ready, {} waiting", (*p).lot.parked(), (*p).lot.ready_len(), (*p).lot.waiting())
                }
            }
            _ => "parking lot (closed)".to_string(),
        };
        push_bytes(L, s.as_bytes());
        Ok(1)
    }
}

/// Creates the metatable of parking lots.
///
/// # Safety
/// `L` valid.
pub unsafe fn set_metatable(L: *mut lua_State, rt: *mut Runtime) -> Result<(), Raise> {
    crate::primitives::methods(L, rt, "lot", META, &[
        (c"_next", l_next, Kind::Yields),
        (c"waiting", l_waiting, Kind::Plain),
        (c"count", l_count, Kind::Plain),
        (c"close", l_close, Kind::Plain),
    ])?;
    handle::set_metatable(L, rt.cast(), META, l_gc, l_tostring);
    Ok(())
}
