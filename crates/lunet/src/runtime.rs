//! The per-Lua-state runtime: the libuv loop, the auxiliary thread used for
//! bookkeeping, the yield guard, the ABI table for drivers, and shutdown.
//!
//! A `Runtime` is created by the first `luaopen_lunet*` call on a Lua state and
//! is never freed (handles and finalisers may refer to it until the process
//! ends). It is reached from Lua C functions through upvalue 1 and from libuv
//! callbacks through handle data pointers. It is only touched on the loop thread.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;

use libuv_sys2 as uv;
use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{guard, push_bytes, Raise};
use lunet_abi::{lua_fn, LunetAbi, ABI_VERSION, REGISTRY_KEY};

use crate::{connect, fs, process, sched, signal, stats, stream, trace, udp, work, worker};

const RUNTIME_KEY: &CStr = c"lunet.runtime";
const SENTINEL_META: &CStr = c"lunet.runtime.sentinel";
/// Registry field holding the sentinel itself (its metatable is registered
/// under [`SENTINEL_META`], which `__gc` checks).
const SENTINEL_KEY: &CStr = c"lunet.runtime.sentinel.handle";

pub struct Runtime {
    pub uv: *mut uv::uv_loop_t,
    /// A thread owned by the runtime, for stack work outside any coroutine.
    pub aux: *mut lua_State,
    pub running: bool,
    /// Set at shutdown: callbacks release waiters instead of resuming them.
    pub closing: bool,
    /// Set by `lunet-run --dangerously-skip-loopback-restriction`.
    pub skip_loopback_restriction: bool,
    pub sched: sched::Sched,
    pub streams: stream::Streams,
    pub udp: udp::Udps,
    pub fs: fs::Fs,
    pub signals: signal::Signals,
    /// `lunet.process` children, worker mode, `lunet.stats` counters.
    pub procs: process::Procs,
    pub worker: worker::Worker,
    pub counters: stats::Counters,
    /// Driver jobs: the run and done queues served by drains on the pool.
    pub pool: work::Pool,
    pub abi: LunetAbi,
}

/// The runtime of the running C function (its upvalue 1).
///
/// # Safety
/// Only for C functions created by [`push_fn`].
#[inline(always)]
pub unsafe fn of(L: *mut lua_State) -> *mut Runtime {
    ffi::lua_touserdata(L, ffi::lua_upvalueindex(1)) as *mut Runtime
}

/// Returns the runtime of `L`'s Lua state, creating it on first use.
///
/// # Safety
/// `L` must be valid with a few free stack slots.
pub unsafe fn ensure(L: *mut lua_State) -> Result<*mut Runtime, Raise> {
    ffi::lua_getfield(L, ffi::LUA_REGISTRYINDEX, RUNTIME_KEY.as_ptr());
    let existing = ffi::lua_touserdata(L, -1) as *mut Runtime;
    ffi::lua_settop(L, -2);
    if !existing.is_null() {
        return Ok(existing);
    }

    let uv_loop = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_loop_t>()));
    let rc = uv::uv_loop_init(uv_loop);
    if rc != 0 {
        drop(Box::from_raw(uv_loop));
        return Err(format!("lunet: cannot create the event loop: {}", strerror(rc)).into());
    }

    let aux = ffi::lua_newthread(L);
    ffi::luaL_ref(L, ffi::LUA_REGISTRYINDEX); // kept for the life of the state

    let rt = Box::into_raw(Box::new(Runtime {
        uv: uv_loop,
        aux,
        running: false,
        closing: false,
        skip_loopback_restriction: skip_loopback_from_env(),
        sched: sched::Sched::new(),
        streams: stream::Streams::default(),
        udp: udp::Udps::default(),
        fs: fs::Fs::default(),
        signals: signal::Signals::default(),
        procs: process::Procs::default(),
        worker: worker::Worker::default(),
        counters: stats::Counters::default(),
        pool: work::Pool::default(),
        abi: LunetAbi {
            version: ABI_VERSION,
            size: std::mem::size_of::<LunetAbi>() as u32,
            ctx: ptr::null_mut(),
            queue_work: work::abi_queue_work,
            queue_work_interruptible: work::abi_queue_work_interruptible,
            uv_loop: abi_uv_loop,
            wait: work::abi_wait,
            wake: work::abi_wake,
        },
    }));
    (*rt).abi.ctx = rt.cast();
    sched::init(rt);
    worker::init(rt);
    work::exit_guard();
    ignore_sigpipe();
    default_pool_size();
    work::init(rt);

    ffi::lua_pushlightuserdata(L, rt.cast());
    ffi::lua_setfield(L, ffi::LUA_REGISTRYINDEX, RUNTIME_KEY.as_ptr());
    ffi::lua_pushlightuserdata(L, ptr::addr_of_mut!((*rt).abi).cast());
    ffi::lua_setfield(L, ffi::LUA_REGISTRYINDEX, REGISTRY_KEY.as_ptr());

    // A userdata whose finaliser shuts the runtime down when the state closes.
    let slot = ffi::lua_newuserdata(L, std::mem::size_of::<*mut Runtime>()) as *mut *mut Runtime;
    slot.write(rt);
    ffi::luaL_newmetatable(L, SENTINEL_META.as_ptr());
    ffi::lua_pushcfunction(L, l_shutdown);
    ffi::lua_setfield(L, -2, c"__gc".as_ptr());
    ffi::lua_setmetatable(L, -2);
    ffi::lua_setfield(L, ffi::LUA_REGISTRYINDEX, SENTINEL_KEY.as_ptr());
    Ok(rt)
}

/// The loopback-only rule can only be lifted from outside Lua: by the
/// environment variable [`SKIP_LOOPBACK_ENV`] set to `1` when the runtime is
/// created (`lunet-run --dangerously-skip-loopback-restriction` sets it for
/// itself just before loading lunet, and unsets it again).
pub const SKIP_LOOPBACK_ENV: &CStr = c"LUNET_DANGEROUSLY_SKIP_LOOPBACK_RESTRICTION";

unsafe fn skip_loopback_from_env() -> bool {
    let v = libc::getenv(SKIP_LOOPBACK_ENV.as_ptr());
    !v.is_null() && CStr::from_ptr(v).to_bytes() == b"1"
}

/// A peer that goes away must turn writes into `"broken pipe"` errors, not kill
/// the process. Leaves a handler the host program installed alone.
unsafe fn ignore_sigpipe() {
    let mut old: libc::sigaction = std::mem::zeroed();
    if libc::sigaction(libc::SIGPIPE, ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_DFL {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// libuv's thread pool (files, name lookups, database statements) has 4
/// threads unless `UV_THREADPOOL_SIZE` says otherwise, read once at its first
/// use. Database work blocks a thread per statement, so lunet asks for
/// [`POOL_THREADS`] when the program has not chosen a size itself.
pub const POOL_THREADS: &CStr = c"16";

unsafe fn default_pool_size() {
    if libc::getenv(c"UV_THREADPOOL_SIZE".as_ptr()).is_null() {
        libc::setenv(c"UV_THREADPOOL_SIZE".as_ptr(), POOL_THREADS.as_ptr(), 0);
    }
}

unsafe extern "C" fn abi_uv_loop(ctx: *mut c_void) -> *mut c_void {
    (*(ctx as *mut Runtime)).uv.cast()
}

/// libuv's message for an error code (`"connection refused"`, ...).
pub fn strerror(code: c_int) -> String {
    // SAFETY: uv_strerror returns a static string (or a leaked one for unknown codes).
    unsafe { CStr::from_ptr(uv::uv_strerror(code)).to_string_lossy().into_owned() }
}

/// How a module function is exposed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Called directly.
    Plain,
    /// May `lua_yield`: wrapped in the yieldability guard under this name.
    Yields,
}

/// Builds a module table from `(name, function, kind)` entries. `prefix` is the
/// module's user-facing name (`"lunet"`, `"socket"`), used in guard errors.
///
/// # Safety
/// `L` must be valid; `rt` its runtime.
pub unsafe fn new_module(
    L: *mut lua_State,
    rt: *mut Runtime,
    prefix: &str,
    fns: &[(&CStr, ffi::lua_CFunction, Kind)],
) -> Result<(), Raise> {
    ffi::lua_createtable(L, 0, fns.len() as c_int);
    for &(name, f, kind) in fns {
        push_fn(L, rt, f);
        if kind == Kind::Yields {
            guard(L, &format!("{prefix}.{}", name.to_str().unwrap_or("?")))?;
        }
        ffi::lua_setfield(L, -2, name.as_ptr());
    }
    Ok(())
}

/// Sets `_VERSION` (the workspace's version) in the module table on top of
/// the stack. Every `luaopen_*` calls it: spec/version_spec.lua checks them.
///
/// # Safety
/// `L` must be valid with a table on top and a free stack slot.
pub unsafe fn set_version(L: *mut lua_State) {
    push_bytes(L, crate::VERSION.as_bytes());
    ffi::lua_setfield(L, -2, c"_VERSION".as_ptr());
}

/// Pushes `f` as a closure over the runtime.
///
/// # Safety
/// `L` must be valid with free stack slots.
pub unsafe fn push_fn(L: *mut lua_State, rt: *mut Runtime, f: ffi::lua_CFunction) {
    ffi::lua_pushlightuserdata(L, rt.cast());
    ffi::lua_pushcclosure(L, f, 1);
}

lua_fn! {
    /// `lunet.run()`: runs the loop until no work is left.
    pub fn l_run(L) {
        let rt = of(L);
        if ffi::lua_pushthread(L) != 1 {
            ffi::lua_settop(L, -2);
            return Err("lunet.run must be called from the main thread, not from a coroutine".into());
        }
        ffi::lua_settop(L, -2);
        if (*rt).running {
            return Err("lunet.run is already running (re-entrant call)".into());
        }
        if (*rt).closing {
            return Err("lunet.run called while the Lua state is closing".into());
        }
        if sched::hooks_active(rt) {
            // Every coroutine resumed here would yield through LuaJIT's
            // hook path, which cannot be resumed properly.
            return Err("lunet.run cannot be called from a finaliser or a debug hook".into());
        }
        (*rt).running = true;
        crate::worker::ready(rt);
        uv::uv_run((*rt).uv, uv::uv_run_mode_UV_RUN_DEFAULT);
        (*rt).running = false;
        Ok(0)
    }
}

lua_fn! {
    /// `lunet._exit_if_busy(status, close)`: ends the process at once,
    /// running no exit handler, if pool work is in flight (else returns): the
    /// guard of the `os.exit` wrapper. With `close`, the runtime is shut down
    /// first, as closing the state would (waits released, tracing summary).
    pub fn l_exit_if_busy(L) {
        if work::pool_busy() {
            if ffi::lua_toboolean(L, 2) != 0 {
                shutdown(of(L));
            }
            work::exit_now(ffi::lua_tointeger(L, 1) as c_int);
        }
        Ok(0)
    }
}

lua_fn! {
    /// `lunet._pool_busy()` -> whether work (driver jobs, file requests,
    /// connect's name lookups) is still running on the thread pool, for tests
    /// that count descriptors: such work may still open or close one.
    pub fn l_pool_busy(L) {
        ffi::lua_pushboolean(L, work::pool_busy() as c_int);
        Ok(1)
    }
}

lua_fn! {
    /// `lunet.stop()`: cancels every wait and makes `lunet.run()` return once
    /// the cancelled coroutines have run.
    pub fn l_stop_all(L) {
        sched::stop(of(L));
        Ok(0)
    }
}

lua_fn! {
    /// `lunet._loopback_restricted()` -> boolean.
    pub fn l_loopback_restricted(L) {
        ffi::lua_pushboolean(L, (!(*of(L)).skip_loopback_restriction) as c_int);
        Ok(1)
    }
}

lua_fn! {
    /// `lunet._trace()` -> table of tracing counters (`enabled`, `taken`,
    /// `released`, `resumes`, `checks`), for tests of debug builds.
    pub fn l_trace(L) {
        let (t, r, n, c) = trace::counts();
        ffi::lua_createtable(L, 0, 5);
        ffi::lua_pushboolean(L, trace::ENABLED as c_int);
        ffi::lua_setfield(L, -2, c"enabled".as_ptr());
        for (k, v) in [(c"taken", t), (c"released", r), (c"resumes", n), (c"checks", c)] {
            ffi::lua_pushnumber(L, v as f64);
            ffi::lua_setfield(L, -2, k.as_ptr());
        }
        Ok(1)
    }
}

#[cfg(feature = "trace")]
lua_fn! {
    /// `lunet._trace_leak()` (trace builds only): counts a reference that is
    /// never released, so tests can see the shutdown check abort.
    pub fn l_trace_leak(_L) {
        trace::ref_taken();
        Ok(0)
    }
}

lua_fn! {
    /// `lunet._pending()` -> number of coroutines parked in lunet waits.
    pub fn l_pending(L) {
        ffi::lua_pushnumber(L, (*of(L)).sched.pending() as f64);
        Ok(1)
    }
}

lua_fn! {
    /// `lunet._stop()`: makes a running `lunet.run()` return after the current
    /// callback (test helper for runaway tests; waits stay registered).
    pub fn l_stop(L) {
        uv::uv_stop((*of(L)).uv);
        Ok(0)
    }
}

lua_fn! {
    /// Finaliser of the runtime sentinel: runs when the Lua state closes.
    fn l_shutdown(L) {
        if let Some(rt) = lunet_abi::handle::get(L, 1, SENTINEL_META) {
            if !rt.is_null() {
                shutdown(rt as *mut Runtime);
            }
        }
        Ok(0)
    }
}

/// Releases every pending wait (so no coroutine is resumed into a closing
/// state), closes every handle, lets libuv finish the close callbacks, then
/// prints the tracing summary. Work still running on the thread pool cannot be
/// interrupted; its results are dropped when it finishes, if the process lives.
unsafe fn shutdown(rt: *mut Runtime) {
    if (*rt).closing {
        return;
    }
    (*rt).closing = true;
    sched::shutdown(rt);
    work::shutdown(rt);
    connect::shutdown(rt);
    stream::shutdown(rt);
    udp::shutdown(rt);
    fs::Fs::shutdown(rt);
    signal::Signals::shutdown(rt);
    uv::uv_walk((*rt).uv, Some(close_any), ptr::null_mut());
    uv::uv_run((*rt).uv, uv::uv_run_mode_UV_RUN_NOWAIT);
    trace::summary();
}

unsafe extern "C" fn close_any(h: *mut uv::uv_handle_t, _: *mut c_void) {
    if uv::uv_is_closing(h) == 0 {
        uv::uv_close(h, None);
    }
}
