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
pub mod pipe;
pub mod runtime;
pub mod sched;
pub mod signal;
pub mod socket;
pub mod stream;
pub mod tcp;
pub mod timer;
pub mod trace;
pub mod udp;
pub mod work;

use std::ffi::c_int;

use lunet_abi::ffi;
use lunet_abi::lua::type_name;
use lunet_abi::lua_fn;

use runtime::Kind::{Plain, Yields};

lua_fn! {
    /// `lunet.spawn(fn, ...)`: runs `fn(...)` in a new coroutine, now, up to its
    /// first yield.
    fn l_spawn(L) {
        if ffi::lua_type(L, 1) != ffi::LUA_TFUNCTION {
            return Err(format!("lunet.spawn expects a function (got {})", type_name(L, 1)).into());
        }
        let n = ffi::lua_gettop(L);
        let co = ffi::lua_newthread(L); // stays on our stack, referenced, while it starts
        ffi::lua_checkstack(L, n + 1);
        for i in 1..=n {
            ffi::lua_pushvalue(L, i);
        }
        ffi::lua_xmove(L, co, n);
        sched::start(runtime::of(L), co, n - 1);
        Ok(0)
    }
}

lua_fn! {
    /// `require("lunet")`
    #[no_mangle]
    pub fn luaopen_lunet(L) {
        let rt = runtime::ensure(L)?;
        runtime::new_module(L, rt, "lunet", &[
            #[cfg(feature = "trace")]
            (c"_trace_leak", runtime::l_trace_leak, Plain),
            (c"spawn", l_spawn, Plain),
            (c"sleep", timer::l_sleep, Yields),
            (c"run", runtime::l_run, Plain),
            (c"_skip_loopback_restriction", runtime::l_skip_loopback, Plain),
            (c"_loopback_restricted", runtime::l_loopback_restricted, Plain),
            (c"_trace", runtime::l_trace, Plain),
            (c"_pending", runtime::l_pending, Plain),
            (c"_stop", runtime::l_stop, Plain),
        ])?;
        Ok(1 as c_int)
    }
}

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
            (c"write", socket::l_write, Yields),
            (c"close", socket::l_close, Plain),
            (c"getpeername", socket::l_getpeername, Plain),
            (c"getsockname", socket::l_getsockname, Plain),
            (c"set_read_buffer_size", socket::l_set_read_buffer_size, Plain),
        ])?;
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
            (c"_always_queue", udp::l_always_queue, Plain),
        ])?;
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
        Ok(1 as c_int)
    }
}

lua_fn! {
    /// `require("lunet.signal")`
    #[no_mangle]
    pub fn luaopen_lunet_signal(L) {
        let rt = runtime::ensure(L)?;
        runtime::new_module(L, rt, "signal", &[(c"wait", signal::l_wait, Yields)])?;
        Ok(1 as c_int)
    }
}
