//! `lunet.stats()`: what this process's runtime is doing, read on demand.
//!
//! Every figure belongs to the process (one worker): plain counters bumped
//! on the loop thread, libuv's own loop metrics, a walk over the loop's
//! handles, and one relaxed atomic load for the thread pool. Nothing is
//! shared between workers and nothing takes a lock, so asking costs the
//! asker alone, and keeping the counters costs an addition per read or
//! write. Whole-service figures are the sum over workers (each answers for
//! itself, for example on its own metrics endpoint).

use std::ffi::{c_int, c_void, CStr};

use libuv_sys2 as uv;
use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua_fn;

use crate::runtime;
use crate::sched;
use crate::stream::Sock;
use crate::task::State;

/// Counters kept by the modules as they work.
#[derive(Default, Clone, Copy, Debug)]
pub struct Counters {
    /// Bytes received on stream sockets (TCP and Unix).
    pub bytes_in: u64,
    /// Bytes handed to the kernel for stream sockets (`socket.write`).
    pub bytes_out: u64,
}

/// Open handles by kind.
#[derive(Default, Debug)]
struct Handles {
    listeners: u32,
    connections: u32,
    udp: u32,
    timers: u32,
    signals: u32,
    processes: u32,
    other: u32,
}

unsafe extern "C" fn count(h: *mut uv::uv_handle_t, arg: *mut c_void) {
    if uv::uv_is_closing(h) != 0 {
        return;
    }
    let n = &mut *(arg as *mut Handles);
    let t = uv::uv_handle_get_type(h);
    let slot = match t {
        uv::uv_handle_type_UV_TCP | uv::uv_handle_type_UV_NAMED_PIPE => {
            let s = (*h).data as *mut Sock;
            if !s.is_null() && (*s).is_listener() {
                &mut n.listeners
            } else {
                &mut n.connections
            }
        }
        uv::uv_handle_type_UV_UDP => &mut n.udp,
        uv::uv_handle_type_UV_TIMER if uv::uv_is_active(h) != 0 => &mut n.timers,
        uv::uv_handle_type_UV_TIMER => return,
        uv::uv_handle_type_UV_SIGNAL => &mut n.signals,
        uv::uv_handle_type_UV_PROCESS => &mut n.processes,
        _ if uv::uv_is_active(h) != 0 => &mut n.other,
        _ => return,
    };
    *slot += 1;
}

unsafe fn set(L: *mut lua_State, key: &CStr, v: f64) {
    ffi::lua_pushnumber(L, v);
    ffi::lua_setfield(L, -2, key.as_ptr());
}

lua_fn! {
    /// `lunet._stats()` -> the table of `lunet.stats()` (before the hooks).
    pub fn l_stats(L) {
        let rt = runtime::of(L);
        ffi::lua_createtable(L, 0, 10);
        set(L, c"pid", libc::getpid() as f64);

        let mut m: uv::uv_metrics_t = std::mem::zeroed();
        uv::uv_metrics_info((*rt).uv, &mut m);
        set(L, c"loop_iterations", m.loop_count as f64);
        set(L, c"loop_events", m.events as f64);

        // Tasks by state, as task:status() names them.
        let (mut running, mut ready, mut waiting) = (0u32, 0u32, 0u32);
        for &t in (*rt).sched.tasks.values() {
            if (*t).state != State::Live {
                continue;
            }
            if t == (*rt).sched.current {
                running += 1;
            } else {
                match (*t).wait {
                    Some(id) if sched::is_waiting(rt, id) => waiting += 1,
                    Some(_) => ready += 1,
                    None if ffi::lua_status((*t).co) == ffi::LUA_YIELD => waiting += 1,
                    None => running += 1,
                }
            }
        }
        ffi::lua_createtable(L, 0, 3);
        set(L, c"running", running as f64);
        set(L, c"ready", ready as f64);
        set(L, c"waiting", waiting as f64);
        ffi::lua_setfield(L, -2, c"tasks".as_ptr());
        set(L, c"waits", (*rt).sched.pending() as f64);

        let mut h = Handles::default();
        uv::uv_walk((*rt).uv, Some(count), (&mut h as *mut Handles).cast());
        ffi::lua_createtable(L, 0, 7);
        for (k, v) in [
            (c"listeners", h.listeners),
            (c"connections", h.connections),
            (c"udp", h.udp),
            (c"timers", h.timers),
            (c"signals", h.signals),
            (c"processes", h.processes),
            (c"other", h.other),
        ] {
            set(L, k, v as f64);
        }
        ffi::lua_setfield(L, -2, c"handles".as_ptr());

        let c = (*rt).counters;
        set(L, c"bytes_in", c.bytes_in as f64);
        set(L, c"bytes_out", c.bytes_out as f64);
        set(L, c"pool_pending", crate::work::pool_pending() as f64);
        ffi::lua_pushboolean(L, (*rt).worker.draining as c_int);
        ffi::lua_setfield(L, -2, c"draining".as_ptr());
        Ok(1)
    }
}
