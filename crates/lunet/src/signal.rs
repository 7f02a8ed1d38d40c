//! `lunet.signal`: one-shot waits for process signals.
//!
//! One libuv signal handle per signal number, created on the first wait for
//! it. The handle is started while at least one coroutine waits for that
//! signal (an active handle keeps the loop alive, and libuv's handler replaces
//! the default action, so the signal does not kill the process) and stopped
//! as soon as nobody waits any more, which gives the default action back.
//! A delivery wakes every coroutine that was waiting when it arrived.

use std::collections::hash_map::{Entry, HashMap};
use std::ffi::{c_int, c_void};

use libuv_sys2 as uv;
use lunet_abi::ffi;
use lunet_abi::lua::{push_bytes, push_fail, to_bytes, type_name};
use lunet_abi::lua_fn;

use crate::runtime::{self, strerror, Runtime};
use crate::sched::{self, Shape, Spec, WaitId};

/// The signals `signal.wait` accepts, by name (also accepted with a `SIG`
/// prefix). SIGPIPE and SIGCHLD are left out on purpose: stopping a handle
/// resets the signal to its default action, which would undo an ignored
/// SIGPIPE (sockets rely on it) and disturb child-process handling.
pub const SIGNALS: &[(&str, c_int)] = &[
    ("INT", libc::SIGINT),
    ("TERM", libc::SIGTERM),
    ("HUP", libc::SIGHUP),
    ("QUIT", libc::SIGQUIT),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("WINCH", libc::SIGWINCH),
    ("ALRM", libc::SIGALRM),
    ("CONT", libc::SIGCONT),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
];

/// The signal number for `name` (`"HUP"` or `"SIGHUP"`).
pub fn lookup(name: &[u8]) -> Option<c_int> {
    let bare = name.strip_prefix(b"SIG").unwrap_or(name);
    SIGNALS.iter().find(|(n, _)| n.as_bytes() == bare).map(|&(_, num)| num)
}

struct Watch {
    handle: *mut uv::uv_signal_t,
    /// Waiting coroutines, each with the name it asked for (returned to it).
    waiters: Vec<(WaitId, Vec<u8>)>,
}

/// Per-runtime state of `lunet.signal`.
#[derive(Default)]
pub struct Signals {
    watches: HashMap<c_int, Watch>,
}

impl Signals {
    /// Releases every waiting coroutine and closes the handles.
    ///
    /// # Safety
    /// Shutdown only, on the loop thread.
    pub unsafe fn shutdown(rt: *mut Runtime) {
        let watches = std::mem::take(&mut (*rt).signals.watches);
        for (_, w) in watches {
            for (id, _) in w.waiters {
                sched::forget(rt, id);
            }
            uv::uv_close(w.handle.cast(), Some(on_close));
        }
    }
}

unsafe extern "C" fn on_close(h: *mut uv::uv_handle_t) {
    drop(Box::from_raw(h as *mut uv::uv_signal_t));
}

/// The watch for `signum`, its handle created if needed (not started).
unsafe fn watch<'a>(rt: *mut Runtime, signum: c_int) -> Result<&'a mut Watch, c_int> {
    let w = match (*rt).signals.watches.entry(signum) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => {
            let h = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_signal_t>()));
            let rc = uv::uv_signal_init((*rt).uv, h);
            if rc != 0 {
                drop(Box::from_raw(h));
                return Err(rc);
            }
            (*h).data = rt.cast();
            e.insert(Watch { handle: h, waiters: Vec::new() })
        }
    };
    Ok(&mut *(w as *mut Watch))
}

lua_fn! {
    /// `signal.wait(name)` -> `name` | `nil, err`
    pub fn l_wait(L) {
        let rt = runtime::of(L);
        if ffi::lua_type(L, 1) != ffi::LUA_TSTRING {
            return Err(format!("signal.wait requires a signal name (got {})", type_name(L, 1)).into());
        }
        let name = to_bytes(L, 1).unwrap_or_default();
        let Some(signum) = lookup(name) else {
            return Ok(push_fail(L, "unsupported signal name"));
        };
        let w = match watch(rt, signum) {
            Ok(w) => w,
            Err(rc) => return Ok(push_fail(L, &strerror(rc))),
        };
        if uv::uv_is_active(w.handle.cast()) == 0 {
            let rc = uv::uv_signal_start(w.handle, Some(on_signal), signum);
            if rc != 0 {
                return Ok(push_fail(L, &strerror(rc)));
            }
        }
        let name = name.to_vec();
        let id = sched::park(rt, L, Spec::new(Shape::Two).unhook(unhook, signum as usize as *mut c_void));
        if let Some(w) = (*rt).signals.watches.get_mut(&signum) {
            w.waiters.push((id, name));
        }
        Ok(ffi::lua_yield(L, 0))
    }
}

/// A wait that ended early leaves the list; the last one stops the handle
/// (giving the signal its default action back).
unsafe fn unhook(rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    let signum = ctx as usize as c_int;
    if let Some(w) = (*rt).signals.watches.get_mut(&signum) {
        w.waiters.retain(|(j, _)| *j != id);
        if w.waiters.is_empty() {
            uv::uv_signal_stop(w.handle);
        }
    }
}

unsafe extern "C" fn on_signal(h: *mut uv::uv_signal_t, signum: c_int) {
    let rt = (*h).data as *mut Runtime;
    let Some(w) = (*rt).signals.watches.get_mut(&signum) else {
        uv::uv_signal_stop(h);
        return;
    };
    // Wake those waiting now; a coroutine that waits again while being woken
    // joins the (still started) handle's new list for the next delivery.
    let batch = std::mem::take(&mut w.waiters);
    for (id, name) in batch {
        sched::complete(rt, id, |co| {
            push_bytes(co, &name);
            1
        });
    }
    if let Some(w) = (*rt).signals.watches.get(&signum) {
        if w.waiters.is_empty() {
            uv::uv_signal_stop(w.handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(lookup(b"HUP"), Some(libc::SIGHUP));
        assert_eq!(lookup(b"SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(lookup(b"INT"), Some(libc::SIGINT));
        assert_eq!(lookup(b"QUIT"), Some(libc::SIGQUIT));
        for bad in [&b""[..], b"SIG", b"hup", b"KILL", b"PIPE", b"CHLD", b"INT\0", b"SIGSIGINT"] {
            assert_eq!(lookup(bad), None, "{bad:?}");
        }
    }
}
