//! Worker mode: the side of `lunet-run --workers` that runs in each worker.
//!
//! The supervisor (`supervisor.lua`) starts every worker with
//! `LUNET_WORKER_ID`, `LUNET_WORKER_COUNT`, `LUNET_WORKER_GENERATION`,
//! `LUNET_DRAIN_TIMEOUT` (ms) and `LUNET_SUPERVISOR_PID` in its environment;
//! they are read (and removed, so the worker's own children do not inherit
//! them) when the runtime is created. In worker mode:
//!
//! - TCP listeners get SO_REUSEPORT whatever their options say (`tcp.rs`),
//!   so that every worker (and the next generation during a reload) can bind
//!   the same port; the kernel spreads new connections over them.
//! - SIGHUP is ignored (it is the supervisor's). SIGTERM or SIGINT starts
//!   the drain: every listener is closed at once (no new connection is
//!   queued on a process that will not accept it); [`SETTLE_MS`] later the
//!   `draining` flag is set and `lunet.on_drain` hooks run; the process ends
//!   when its work is done, or after the drain timeout (`lunet.stop()`: every
//!   wait is cancelled). A second signal ends the process at once.
//! - `lunet.run()` writes the readiness byte the supervisor waits for
//!   (`LUNET_READY_FD`, see `process.rs`) as the loop starts.
//! - The worker asks for SIGTERM if the supervisor dies (PR_SET_PDEATHSIG).
//!
//! The signal handles are unreferenced: they never keep the loop alive.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;

use libuv_sys2 as uv;
use lunet_abi::ffi;
use lunet_abi::lua_fn;

use crate::runtime::{self, Runtime};
use crate::sched::{self, Shape, Spec, WaitId};
use crate::stream::{self, Sock};

/// The worker state of a runtime (`supervised` false outside worker mode).
pub struct Worker {
    pub supervised: bool,
    pub id: u32,
    pub count: u32,
    pub generation: u32,
    pub draining: bool,
    drain_ms: u64,
    signals: Vec<*mut uv::uv_signal_t>,
    timer: *mut uv::uv_timer_t,
    waiters: Vec<WaitId>,
    /// Write end of the readiness pipe (see `process.rs`), -1 if none.
    ready_fd: c_int,
}

impl Default for Worker {
    fn default() -> Self {
        Worker {
            supervised: false,
            id: 1,
            count: 1,
            generation: 1,
            draining: false,
            drain_ms: DRAIN_MS,
            signals: Vec::new(),
            timer: ptr::null_mut(),
            waiters: Vec::new(),
            ready_fd: -1,
        }
    }
}

/// `--drain-timeout`'s default: 30 s.
pub const DRAIN_MS: u64 = 30_000;

/// The worker identity from environment values (id, count, generation,
/// drain ms); None unless id and count are valid.
pub fn parse(id: Option<&str>, count: Option<&str>, generation: Option<&str>, drain: Option<&str>) -> Option<(u32, u32, u32, u64)> {
    let id: u32 = id?.parse().ok()?;
    let count: u32 = count?.parse().ok()?;
    if id == 0 || count == 0 || id > count {
        return None;
    }
    let generation = generation.and_then(|g| g.parse().ok()).filter(|&g| g >= 1).unwrap_or(1);
    let drain = drain.and_then(|d| d.parse().ok()).unwrap_or(DRAIN_MS);
    Some((id, count, generation, drain))
}

unsafe fn take_env(name: &CStr) -> Option<String> {
    let v = libc::getenv(name.as_ptr());
    if v.is_null() {
        return None;
    }
    let s = CStr::from_ptr(v).to_string_lossy().into_owned();
    libc::unsetenv(name.as_ptr());
    Some(s)
}

/// Reads the worker environment and, in worker mode, arms the signals.
///
/// # Safety
/// Runtime creation, after `sched::init`.
pub unsafe fn init(rt: *mut Runtime) {
    let id = take_env(c"LUNET_WORKER_ID");
    let count = take_env(c"LUNET_WORKER_COUNT");
    let generation = take_env(c"LUNET_WORKER_GENERATION");
    let drain = take_env(c"LUNET_DRAIN_TIMEOUT");
    let parent = take_env(c"LUNET_SUPERVISOR_PID").and_then(|p| p.parse::<libc::pid_t>().ok());
    let ready = take_env(c"LUNET_READY_FD").and_then(|f| f.parse::<c_int>().ok());
    let Some((id, count, generation, drain_ms)) = parse(id.as_deref(), count.as_deref(), generation.as_deref(), drain.as_deref()) else {
        return;
    };
    let w = &mut (*rt).worker;
    w.supervised = true;
    w.id = id;
    w.count = count;
    w.generation = generation;
    w.drain_ms = drain_ms;
    w.ready_fd = ready.filter(|&fd| fd >= 0 && libc::fcntl(fd, libc::F_GETFD) != -1).unwrap_or(-1);
    if w.ready_fd >= 0 {
        libc::fcntl(w.ready_fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    // SIGHUP is meant for the supervisor (reload): a worker that receives
    // it too (a signal sent to the whole group) keeps going.
    for signum in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let h = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_signal_t>()));
        if uv::uv_signal_init((*rt).uv, h) != 0 {
            drop(Box::from_raw(h));
            continue;
        }
        (*h).data = rt.cast();
        uv::uv_signal_start(h, Some(on_signal), signum);
        uv::uv_unref(h.cast());
        (*rt).worker.signals.push(h);
    }
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
    if let Some(p) = parent {
        if libc::getppid() != p {
            // The supervisor is already gone.
            libc::kill(libc::getpid(), libc::SIGTERM);
        }
    }
}

unsafe extern "C" fn on_signal(h: *mut uv::uv_signal_t, signum: c_int) {
    let rt = (*h).data as *mut Runtime;
    if signum == libc::SIGHUP {
        return;
    }
    if !(*rt).worker.timer.is_null() {
        crate::work::exit_now(128 + signum);
    }
    drain(rt);
}

/// How long after closing its listeners a worker starts to drain its
/// connections (ms). The supervisor signals a whole generation at once; by
/// the time any of its workers closes a keep-alive connection (its client
/// reconnects), every worker of the generation has closed its listeners, so
/// the new connection reaches a new worker instead of the queue of a
/// listener about to close (the kernel resets what such a queue holds).
pub const SETTLE_MS: u64 = 200;

/// Starts the drain (once): listeners closed at once; after [`SETTLE_MS`],
/// `draining` set, hooks woken and the drain timeout armed.
///
/// # Safety
/// Loop thread, outside Lua calls (a libuv callback), worker mode.
pub unsafe fn drain(rt: *mut Runtime) {
    if !(*rt).worker.timer.is_null() || (*rt).closing {
        return;
    }
    close_listeners(rt);
    let t = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_timer_t>()));
    if uv::uv_timer_init((*rt).uv, t) != 0 {
        drop(Box::from_raw(t));
        return;
    }
    (*t).data = rt.cast();
    (*rt).worker.timer = t;
    // Referenced: the hooks run even if nothing else is left to do.
    uv::uv_timer_start(t, Some(on_settled), SETTLE_MS, 0);
}

unsafe extern "C" fn on_settled(t: *mut uv::uv_timer_t) {
    let rt = (*t).data as *mut Runtime;
    (*rt).worker.draining = true;
    for id in std::mem::take(&mut (*rt).worker.waiters) {
        sched::complete(rt, id, |co| {
            ffi::lua_pushboolean(co, 1);
            1
        });
    }
    uv::uv_timer_start(t, Some(on_drain_timeout), (*rt).worker.drain_ms, 0);
    uv::uv_unref(t.cast());
}

unsafe extern "C" fn on_drain_timeout(t: *mut uv::uv_timer_t) {
    let rt = (*t).data as *mut Runtime;
    let w = &(*rt).worker;
    eprintln!("[lunet] worker {} (pid {}): drain timeout ({} ms), stopping", w.id, libc::getpid(), w.drain_ms);
    sched::stop(rt);
}

/// Closes every open TCP and Unix listener of the runtime (their accepters
/// get `nil, "listener closed"`).
unsafe fn close_listeners(rt: *mut Runtime) {
    let mut found: Vec<*mut Sock> = Vec::new();
    uv::uv_walk((*rt).uv, Some(find_listener), (&mut found as *mut Vec<*mut Sock>).cast());
    for s in found {
        stream::close(s, true);
    }
}

unsafe extern "C" fn find_listener(h: *mut uv::uv_handle_t, arg: *mut c_void) {
    let t = uv::uv_handle_get_type(h);
    if (t == uv::uv_handle_type_UV_TCP || t == uv::uv_handle_type_UV_NAMED_PIPE) && uv::uv_is_closing(h) == 0 {
        let s = (*h).data as *mut Sock;
        if !s.is_null() && (*s).is_listener() && !(*s).is_closed() {
            (*(arg as *mut Vec<*mut Sock>)).push(s);
        }
    }
}

lua_fn! {
    /// `lunet._worker()` -> supervised, id, count, generation, draining
    pub fn l_worker(L) {
        let w = &(*runtime::of(L)).worker;
        ffi::lua_pushboolean(L, w.supervised as c_int);
        ffi::lua_pushnumber(L, w.id as f64);
        ffi::lua_pushnumber(L, w.count as f64);
        ffi::lua_pushnumber(L, w.generation as f64);
        ffi::lua_pushboolean(L, w.draining as c_int);
        Ok(5)
    }
}

lua_fn! {
    /// `lunet._drain_wait()` -> true once the worker drains (at once if it
    /// does already). Never ends outside worker mode; holds no handle, so
    /// it does not keep the loop alive.
    pub fn l_drain_wait(L) {
        let rt = runtime::of(L);
        if (*rt).worker.draining {
            ffi::lua_pushboolean(L, 1);
            return Ok(1);
        }
        let id = sched::park(rt, L, Spec::new(Shape::One).unhook(unhook, ptr::null_mut()));
        (*rt).worker.waiters.push(id);
        Ok(ffi::lua_yield(L, 0))
    }
}

unsafe fn unhook(rt: *mut Runtime, _ctx: *mut c_void, id: WaitId) {
    (*rt).worker.waiters.retain(|&j| j != id);
}

/// Tells the supervisor this worker is serving: `lunet.run()` calls it as
/// the loop starts (under lunet-run, after the main chunk, whose listeners
/// are open by then). Once; nothing outside worker mode.
///
/// # Safety
/// Loop thread.
pub unsafe fn ready(rt: *mut Runtime) {
    let w = &mut (*rt).worker;
    if w.ready_fd >= 0 {
        libc::write(w.ready_fd, b"1".as_ptr().cast(), 1);
        libc::close(w.ready_fd);
        w.ready_fd = -1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity() {
        assert_eq!(parse(Some("1"), Some("2"), Some("3"), Some("500")), Some((1, 2, 3, 500)));
        assert_eq!(parse(Some("2"), Some("2"), None, None), Some((2, 2, 1, DRAIN_MS)));
        assert_eq!(parse(Some("3"), Some("2"), None, None), None);
        assert_eq!(parse(Some("0"), Some("2"), None, None), None);
        assert_eq!(parse(Some("x"), Some("2"), None, None), None);
        assert_eq!(parse(None, Some("2"), None, None), None);
        assert_eq!(parse(Some("1"), Some("1"), Some("0"), Some("x")), Some((1, 1, 1, DRAIN_MS)));
    }
}
