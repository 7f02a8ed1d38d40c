//! The one place that parks, resumes and reports coroutines.
//!
//! A coroutine waiting in a lunet operation is a [`Waiter`]: the coroutine plus
//! a registry reference that keeps it alive (the script may hold no reference
//! to it at all). Every libuv callback that completes a wait ends in [`wake`]
//! or [`Waiter::cancel`]; nothing else calls `lua_resume`.

use std::ffi::c_int;
use std::io::Write;

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::to_bytes;

use crate::runtime::Runtime;
use crate::trace;

/// A coroutine parked in a lunet wait. Not `Clone`: exactly one owner ends it,
/// by [`wake`] or [`Waiter::cancel`].
#[derive(Debug)]
pub struct Waiter {
    co: *mut lua_State,
    anchor: c_int,
}

impl Waiter {
    /// Anchors the running coroutine `co` so it survives garbage collection
    /// while it waits. The caller must yield right after registering the waiter
    /// (yieldability was checked by the Lua-side guard before this point).
    ///
    /// # Safety
    /// `co` must be the running coroutine of a yielding entry point.
    #[inline]
    pub unsafe fn park(rt: *mut Runtime, co: *mut lua_State) -> Waiter {
        (*rt).parked += 1;
        ffi::lua_pushthread(co);
        let anchor = ffi::luaL_ref(co, ffi::LUA_REGISTRYINDEX);
        trace::ref_taken();
        Waiter { co, anchor }
    }

    pub fn thread(&self) -> *mut lua_State {
        self.co
    }

    /// A waiter that refers to no coroutine, for unit tests of wait queues.
    #[cfg(test)]
    pub fn dummy() -> Waiter {
        Waiter { co: std::ptr::null_mut(), anchor: 0 }
    }

    /// Ends the wait without resuming (shutdown, or the waiter's owner is gone).
    ///
    /// # Safety
    /// The Lua state must still be open.
    pub unsafe fn cancel(self, rt: *mut Runtime) {
        (*rt).parked -= 1;
        ffi::luaL_unref(self.co, ffi::LUA_REGISTRYINDEX, self.anchor);
        trace::ref_released();
    }
}

/// Resumes a parked coroutine with the values `push` puts on its stack (it
/// returns how many). The wait ends (its registry reference is released)
/// before the resume; for the duration of `lua_resume` the coroutine is kept
/// alive on the runtime's own thread stack instead, because while it resumes
/// another coroutine nothing else references it. This way a script that exits
/// from inside the resume leaves no wait behind.
///
/// A coroutine that is not suspended in a yield (someone else resumed it, or it
/// died) is left alone: `push` is not called.
///
/// # Safety
/// Loop thread only; `rt` must be the coroutine's runtime.
#[inline]
pub unsafe fn wake(rt: *mut Runtime, w: Waiter, push: impl FnOnce(*mut lua_State) -> c_int) {
    let co = w.co;
    if ffi::lua_status(co) != ffi::LUA_YIELD {
        w.cancel(rt);
        return;
    }
    let aux = (*rt).aux;
    ffi::lua_rawgeti(aux, ffi::LUA_REGISTRYINDEX, w.anchor as _);
    w.cancel(rt);
    trace::check(ffi::lua_gettop(co) == 0, "a parked coroutine has values on its stack");
    ffi::lua_checkstack(co, 8);
    let nargs = push(co);
    trace::check(ffi::lua_gettop(co) == nargs, "values pushed for a resume do not match the count");
    run(rt, co, nargs);
    ffi::lua_settop(aux, -2);
}

/// Ends a wait because what it waited on is going away: resumes the coroutine
/// with the values `push` gives when `resume` is set and the runtime is not
/// shutting down, and otherwise only releases the wait (finalisers and
/// shutdown never run Lua code in a parked coroutine).
///
/// # Safety
/// As for [`wake`].
pub unsafe fn end(rt: *mut Runtime, w: Waiter, resume: bool, push: impl FnOnce(*mut lua_State) -> c_int) {
    if resume && !(*rt).closing {
        wake(rt, w, push);
    } else {
        w.cancel(rt);
    }
}

/// Starts a new coroutine: `co` holds the function and `nargs` arguments.
///
/// # Safety
/// Loop thread only; `co` must be a fresh thread referenced by the caller.
pub unsafe fn start(rt: *mut Runtime, co: *mut lua_State, nargs: c_int) {
    run(rt, co, nargs);
}

unsafe fn run(rt: *mut Runtime, co: *mut lua_State, nargs: c_int) {
    let aux = (*rt).aux;
    let aux_top = ffi::lua_gettop(aux);
    trace::resumed();
    let status = ffi::lua_resume_(co, nargs);
    match status {
        // Finished, or suspended (in a lunet wait, which anchored it, or in a bare
        // coroutine.yield that nobody will answer). Yielded or returned values
        // have no receiver.
        0 | ffi::LUA_YIELD => ffi::lua_settop(co, 0),
        _ => report(aux, co),
    }
    trace::check(ffi::lua_gettop(aux) == aux_top, "runtime stack changed across a resume");
}

/// Prints `[lunet] coroutine error: <msg>` and the traceback of the dead
/// coroutine (its stack is intact after a failed resume) to stderr.
unsafe fn report(aux: *mut lua_State, co: *mut lua_State) {
    let msg = match to_bytes(co, -1) {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => {
            let tn = lunet_abi::lua::type_name(co, -1);
            if ffi::luaL_callmeta(co, -1, c"__tostring".as_ptr()) != 0 {
                let s = to_bytes(co, -1).map(|b| String::from_utf8_lossy(b).into_owned());
                ffi::lua_settop(co, -2);
                s.unwrap_or_else(|| format!("(error object is a {tn} value)"))
            } else {
                format!("(error object is a {tn} value)")
            }
        }
    };
    ffi::luaL_traceback(aux, co, std::ptr::null(), 0);
    let tb = to_bytes(aux, -1).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
    ffi::lua_settop(aux, -2);
    ffi::lua_settop(co, 0);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "[lunet] coroutine error: {msg}\n{tb}");
}
