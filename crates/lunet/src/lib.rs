//! lunet core: the `lunet` Lua module (spawn, sleep, run) and, as they arrive,
//! its submodules, all in one `lunet.so`. Lua's all-in-one C loader finds
//! `luaopen_lunet_<sub>` here for `require("lunet.<sub>")`, with or without a
//! prior `require("lunet")`.
//!
//! Layout: `runtime` (loop, ABI table, shutdown), `sched` (the one resume
//! point), `trace` (debug-build counters), and one module per libuv handle or
//! request kind (`timer`, `work`, `fs`, `signal`, `udp`, ...).

#![allow(non_snake_case)] // `L` is the Lua state, as everywhere in the Lua C API.
#![allow(clippy::missing_safety_doc)]

pub mod connect;
pub mod dns;
pub mod fs;
pub mod lot;
pub mod parking;
pub mod pipe;
pub mod primitives;
pub mod process;
pub mod readbuf;
pub mod runtime;
pub mod sched;
pub mod signal;
pub mod socket;
pub mod sockopt;
pub mod stats;
pub mod sync;
pub mod stream;
pub mod tcp;
pub mod timer;
pub mod tls;
pub mod trace;
pub mod task;
pub mod udp;
pub mod waits;
pub mod work;
pub mod worker;

use std::ffi::c_int;

use lunet_abi::ffi;
use lunet_abi::lua::run_chunk;
use lunet_abi::lua_fn;

use runtime::Kind::{Plain, Yields};

/// The release, from the Cargo workspace (the one place that holds it): every
/// module's `_VERSION`, and through it `lunet-run --version` and the rockspecs
/// (spec/version_spec.lua checks them).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

lua_fn! {
    /// `require("lunet")`
    #[no_mangle]
    pub fn luaopen_lunet(L) {
        let rt = runtime::ensure(L)?;
        runtime::new_module(L, rt, "lunet", &[
            #[cfg(feature = "trace")]
            (c"_trace_leak", runtime::l_trace_leak, Plain),
            (c"spawn", task::l_spawn, Plain),
            (c"sleep", timer::l_sleep, Yields),
            (c"run", runtime::l_run, Plain),
            (c"current", task::l_current, Plain),
            (c"on_error", task::l_on_error, Plain),
            (c"now", timer::l_now, Plain),
            (c"hrtime", timer::l_hrtime, Plain),
            (c"getpid", timer::l_getpid, Plain),
            (c"stop", runtime::l_stop_all, Plain),
            (c"channel", primitives::l_channel, Plain),
            (c"semaphore", primitives::l_semaphore, Plain),
            (c"waitgroup", primitives::l_waitgroup, Plain),
            (c"group", primitives::l_group, Plain),
            (c"wait_any", primitives::l_wait_any, Yields),
            (c"_deadline_push", task::l_deadline_push, Plain),
            (c"_deadline_pop", task::l_deadline_pop, Plain),
            (c"_exit_if_busy", runtime::l_exit_if_busy, Plain),
            (c"_pool_busy", runtime::l_pool_busy, Plain),
            (c"_loopback_restricted", runtime::l_loopback_restricted, Plain),
            (c"_trace", runtime::l_trace, Plain),
            (c"_pending", runtime::l_pending, Plain),
            (c"_stop", runtime::l_stop, Plain),
            (c"_worker", worker::l_worker, Plain),
            (c"_drain_wait", worker::l_drain_wait, Yields),
            (c"_stats", stats::l_stats, Plain),
            (c"_supervisor", l_supervisor, Plain),
        ])?;
        runtime::set_version(L);
        task::set_metatable(L, rt)?; // leaves the task methods on the stack
        primitives::set_metatables(L, rt)?; // leaves the group methods
        // The parts written in Lua: deadline, every, task:join, group:wait.
        run_chunk(L, CORE_LUA, c"=lunet").map_err(|e| format!("lunet: {e}"))?;
        ffi::lua_pushvalue(L, -4);
        ffi::lua_pushvalue(L, -4);
        ffi::lua_pushvalue(L, -4);
        ffi::lua_call(L, 3, 0);
        ffi::lua_settop(L, -3);
        // Worker mode and stats: worker(), on_drain, stats, on_stats.
        run_chunk(L, WORKER_LUA, c"=lunet.worker").map_err(|e| format!("lunet: {e}"))?;
        ffi::lua_pushvalue(L, -2);
        ffi::lua_call(L, 1, 0);
        Ok(1 as c_int)
    }
}

/// Lua parts of the core module; called with the module table.
const CORE_LUA: &str = include_str!("core.lua");
const WORKER_LUA: &str = include_str!("worker.lua");

lua_fn! {
    /// `require("lunet.test")`: the test helper for users' busted specs.
    #[no_mangle]
    pub fn luaopen_lunet_test(L) {
        run_chunk(L, TEST_LUA, c"=lunet.test").map_err(|e| format!("lunet.test: {e}"))?;
        Ok(1 as c_int)
    }
}

const TEST_LUA: &str = include_str!("test.lua");
const SOCKET_LUA: &str = include_str!("socket.lua");

lua_fn! {
    /// `require("lunet.socket")`
    #[no_mangle]
    pub fn luaopen_lunet_socket(L) {
        let rt = runtime::ensure(L)?;
        runtime::new_module(L, rt, "socket", &[
            (c"listen", socket::l_listen, Plain),
            (c"accept", socket::l_accept, Yields),
            (c"connect", socket::l_connect, Yields),
            (c"read", socket::l_read, Yields),
            (c"read_until", socket::l_read_until, Yields),
            (c"unread", socket::l_unread, Plain),
            (c"write", socket::l_write, Yields),
            (c"shutdown", socket::l_shutdown, Yields),
            (c"setoption", socket::l_setoption, Plain),
            (c"getoption", socket::l_getoption, Plain),
            (c"close", socket::l_close, Plain),
            (c"getpeername", socket::l_getpeername, Plain),
            (c"getsockname", socket::l_getsockname, Plain),
            (c"set_read_buffer_size", socket::l_set_read_buffer_size, Plain),
            (c"settimeout", socket::l_settimeout, Plain),
            (c"settimeouts", socket::l_settimeouts, Plain),
            (c"_starttls", socket::l_starttls, Yields),
            (c"tlsinfo", socket::l_tlsinfo, Plain),
            (c"parking", parking::l_parking, Plain),
            (c"park", parking::l_park, Plain),
        ])?;
        parking::set_metatable(L, rt)?;
        ffi::lua_settop(L, -2);
        // The Lua side (TLS connects, starttls, lot:next) completes the table.
        run_chunk(L, SOCKET_LUA, c"=lunet.socket").map_err(|e| format!("lunet.socket: {e}"))?;
        ffi::lua_pushvalue(L, -2);
        runtime::push_fn(L, rt, timer::l_now);
        ffi::lua_call(L, 2, 0);
        runtime::set_version(L);
        socket::set_metatable(L, rt);
        Ok(1 as c_int)
    }
}

lua_fn! {
    /// `require("lunet.udp")`
    #[no_mangle]
    pub fn luaopen_lunet_udp(L) {
        let rt = runtime::ensure(L)?;
        runtime::new_module(L, rt, "udp", &[
            (c"bind", udp::l_bind, Plain),
            (c"send", udp::l_send, Plain),
            (c"recv", udp::l_recv, Yields),
            (c"close", udp::l_close, Plain),
            (c"getsockname", udp::l_getsockname, Plain),
            (c"stats", udp::l_stats, Plain),
            (c"settimeout", udp::l_settimeout, Plain),
            (c"_always_queue", udp::l_always_queue, Plain),
        ])?;
        runtime::set_version(L);
        udp::set_metatable(L, rt);
        Ok(1 as c_int)
    }
}

lua_fn! {
    /// `require("lunet.fs")`
    #[no_mangle]
    pub fn luaopen_lunet_fs(L) {
        let rt = runtime::ensure(L)?;
        runtime::new_module(L, rt, "fs", &[
            (c"open", fs::l_open, Yields),
            (c"read", fs::l_read, Yields),
            (c"write", fs::l_write, Yields),
            (c"close", fs::l_close, Yields),
            (c"stat", fs::l_stat, Yields),
            (c"scandir", fs::l_scandir, Yields),
        ])?;
        runtime::set_version(L);
        Ok(1 as c_int)
    }
}

lua_fn! {
    /// `require("lunet.signal")`
    #[no_mangle]
    pub fn luaopen_lunet_signal(L) {
        let rt = runtime::ensure(L)?;
        runtime::new_module(L, rt, "signal", &[(c"wait", signal::l_wait, Yields)])?;
        runtime::set_version(L);
        Ok(1 as c_int)
    }
}

lua_fn! {
    /// `require("lunet.process")`
    #[no_mangle]
    pub fn luaopen_lunet_process(L) {
        let rt = runtime::ensure(L)?;
        runtime::new_module(L, rt, "process", &[
            (c"spawn", process::l_spawn, Plain),
            (c"wait", process::l_wait, Yields),
            (c"ready", process::l_ready, Yields),
            (c"kill", process::l_kill, Plain),
            (c"cpus", process::l_cpus, Plain),
            (c"pid", process::l_pid, Plain),
        ])?;
        runtime::set_version(L);
        Ok(1 as c_int)
    }
}

lua_fn! {
    /// `lunet._supervisor()` -> the supervisor of `lunet-run --workers`
    /// (a table; see supervisor.lua). Internal: lunet-run's alone.
    pub fn l_supervisor(L) {
        run_chunk(L, SUPERVISOR_LUA, c"=lunet.supervisor").map_err(|e| format!("lunet.supervisor: {e}"))?;
        Ok(1 as c_int)
    }
}

const SUPERVISOR_LUA: &str = include_str!("supervisor.lua");
