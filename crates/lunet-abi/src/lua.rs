//! Stateless helpers for writing raw Lua C functions in Rust: the one error
//! helper, panic-safe entry points, and argument checks that never raise on
//! their own (so they are safe inside `catch_unwind`).
//!
//! Why raw C functions: a yielding entry point must be able to
//! `return lua_yield(L, n)`, which mlua's closures cannot do on LuaJIT.
//!
//! The rule for Lua errors: they must be able to unwind through every frame
//! between the Lua API call that raises and the Lua code that catches. Any
//! call that allocates can raise (LuaJIT 2.1 propagates an error from a `__gc`
//! finaliser that runs during the allocation, and memory can run out), and so
//! can anything that calls a metamethod. Entry points are therefore plain
//! `extern "C-unwind"` functions with no `catch_unwind` around their bodies: a
//! Lua error unwinds through them (running `Drop`), while `catch_unwind` would
//! abort the process on it. Rust panics in entry points are bugs (the misuse
//! fuzzer hunts for them); bodies return [`Raise`] for programmer errors and
//! [`finish`] raises after the body's locals are gone.

use std::borrow::Cow;
use std::ffi::{c_int, CStr};

use crate::ffi::{self, lua_State};

/// A programmer error to raise as a Lua error (with the caller's position).
#[derive(Debug)]
pub struct Raise(pub Cow<'static, str>);

impl From<&'static str> for Raise {
    fn from(s: &'static str) -> Self {
        Raise(Cow::Borrowed(s))
    }
}

impl From<String> for Raise {
    fn from(s: String) -> Self {
        Raise(Cow::Owned(s))
    }
}

/// What the body of a Lua entry point returns: the number of results it
/// pushed (or `lua_yield`'s return value), or an error to raise.
pub type Ret = Result<c_int, Raise>;

/// Defines a raw Lua C function. [`Raise`] values are raised after the body
/// has returned (its locals dropped), like `luaL_error` would.
///
/// ```ignore
/// lua_fn! { fn l_answer(L) { push_int(L, 42); Ok(1) } }
/// ```
#[macro_export]
macro_rules! lua_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($L:ident) $body:block) => {
        $(#[$m])*
        #[allow(non_snake_case, unused_unsafe)]
        $vis unsafe extern "C-unwind" fn $name($L: *mut $crate::ffi::lua_State) -> ::std::ffi::c_int {
            let r = (|| -> $crate::lua::Ret { unsafe { $body } })();
            unsafe { $crate::lua::finish($L, r) }
        }
    };
}

/// Turns the outcome of a [`lua_fn!`] body into a return value or a Lua error.
///
/// # Safety
/// Must be called directly by a Lua C function on its own state.
pub unsafe fn finish(L: *mut lua_State, r: Ret) -> c_int {
    match r {
        Ok(n) => n,
        Err(Raise(msg)) => raise(L, &msg),
    }
}

/// Raises `msg` as a Lua error, prefixed with the calling Lua code's position
/// like `luaL_error` does. A function that waits is called by its yield guard
/// (`GUARD_LUA`), whose position would say nothing: the guard's caller's is
/// used instead.
///
/// # Safety
/// `L` must be the state of the running C function. Never returns.
pub unsafe fn raise(L: *mut lua_State, msg: &str) -> ! {
    ffi::luaL_where(L, 1);
    if to_bytes(L, -1).is_some_and(|w| w.starts_with(b"lunet.guard:")) {
        ffi::lua_settop(L, -2);
        ffi::luaL_where(L, 2);
    }
    push_bytes(L, msg.as_bytes());
    ffi::lua_concat(L, 2);
    ffi::lua_error(L)
}

/// Pushes a byte string (any bytes, NULs included).
///
/// # Safety
/// `L` must be valid with a free stack slot.
#[inline]
pub unsafe fn push_bytes(L: *mut lua_State, b: &[u8]) {
    ffi::lua_pushlstring(L, b.as_ptr().cast(), b.len());
}

/// Pushes `nil, msg`: the runtime-failure return shape. Returns 2.
///
/// # Safety
/// `L` must be valid with two free stack slots.
#[inline]
pub unsafe fn push_fail(L: *mut lua_State, msg: &str) -> c_int {
    ffi::lua_pushnil(L);
    push_bytes(L, msg.as_bytes());
    2
}

/// The bytes of the string (or number, in its string form) at `idx`.
/// The slice lives as long as the value stays on the stack.
///
/// # Safety
/// `idx` must be a valid index. Numbers are converted in place, like
/// `lua_tolstring` does, so do not use this while traversing a table.
#[inline]
pub unsafe fn to_bytes<'a>(L: *mut lua_State, idx: c_int) -> Option<&'a [u8]> {
    match ffi::lua_type(L, idx) {
        ffi::LUA_TSTRING | ffi::LUA_TNUMBER => {
            let mut len = 0usize;
            let p = ffi::lua_tolstring(L, idx, &mut len);
            Some(std::slice::from_raw_parts(p.cast(), len))
        }
        _ => None,
    }
}

/// Pushes `t[key]` for the table `t` at `idx` without consulting its
/// metatable (`lua_rawget`), and returns the Lua type of the value pushed.
///
/// This is how a user's table (an options table, say) is read inside an
/// entry point: `lua_getfield` would run an `__index` metamethod in the
/// middle of lunet's work (it may raise, yield, or change state lunet has
/// already checked). A raw read runs no Lua code. Only the table's own
/// fields are seen.
///
/// # Safety
/// `idx` must be a valid index holding a table (or `LUA_REGISTRYINDEX`);
/// two free stack slots.
pub unsafe fn raw_field(L: *mut lua_State, idx: c_int, key: &CStr) -> c_int {
    // Relative indices move once the key is pushed; pseudo-indices do not.
    let t = if idx < 0 && idx > ffi::LUA_REGISTRYINDEX { ffi::lua_gettop(L) + idx + 1 } else { idx };
    ffi::lua_pushstring(L, key.as_ptr());
    ffi::lua_rawget(L, t);
    ffi::lua_type(L, -1)
}

/// The number at `idx` (numeric strings accepted, as the Lua API does).
///
/// # Safety
/// `idx` must be a valid index.
#[inline]
pub unsafe fn to_number(L: *mut lua_State, idx: c_int) -> Option<f64> {
    if ffi::lua_isnumber(L, idx) != 0 {
        Some(ffi::lua_tonumber(L, idx))
    } else {
        None
    }
}

/// The Lua type name of the value at `idx` ("no value" for an absent argument).
///
/// # Safety
/// `L` must be valid.
pub unsafe fn type_name(L: *mut lua_State, idx: c_int) -> &'static str {
    let p = ffi::lua_typename(L, ffi::lua_type(L, idx));
    CStr::from_ptr(p).to_str().unwrap_or("?")
}

/// Loads and runs the Lua chunk `src`, leaving its single result on the stack.
/// Only for the library's own embedded chunks; an error here is a bug.
///
/// # Safety
/// `L` must be valid with free stack slots.
pub unsafe fn run_chunk(L: *mut lua_State, src: &str, name: &CStr) -> Result<(), String> {
    let rc = ffi::luaL_loadbuffer(L, src.as_ptr().cast(), src.len(), name.as_ptr());
    if rc == 0 && ffi::lua_pcall(L, 0, 1, 0) == 0 {
        return Ok(());
    }
    let msg = to_bytes(L, -1).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
    ffi::lua_settop(L, -2);
    Err(msg)
}

/// Registry field caching the guard factory built from [`crate::GUARD_LUA`].
const GUARD_KEY: &CStr = c"lunet.guard";

/// Replaces the C function on top of the stack by its yieldability-guarded Lua
/// wrapper, which raises `<full_name> must be called from coroutine` or
/// `<full_name> called in non-yieldable context` before calling it.
///
/// # Safety
/// `L` must be valid with a C function on top and a few free stack slots.
pub unsafe fn guard(L: *mut lua_State, full_name: &str) -> Result<(), Raise> {
    if raw_field(L, ffi::LUA_REGISTRYINDEX, GUARD_KEY) != ffi::LUA_TFUNCTION {
        ffi::lua_settop(L, -2);
        run_chunk(L, crate::GUARD_LUA, c"=lunet.guard").map_err(|e| Raise::from(format!("lunet guard: {e}")))?;
        ffi::lua_pushvalue(L, -1);
        ffi::lua_setfield(L, ffi::LUA_REGISTRYINDEX, GUARD_KEY.as_ptr());
    }
    push_bytes(L, full_name.as_bytes());
    ffi::lua_pushvalue(L, -3);
    ffi::lua_call(L, 2, 1); // the factory only builds a closure: cannot fail
    ffi::lua_replace(L, -2);
    Ok(())
}

/// Returns the core's ABI table, loading the core with `require("lunet")`
/// first if this state has not loaded it yet (so a driver can be required on
/// its own).
///
/// # Safety
/// `L` must be valid with a few free stack slots.
pub unsafe fn core_abi(L: *mut lua_State) -> Result<&'static crate::LunetAbi, Raise> {
    if let Ok(abi) = crate::fetch(L) {
        return Ok(abi);
    }
    ffi::lua_getglobal(L, c"require".as_ptr());
    push_bytes(L, b"lunet");
    if ffi::lua_pcall(L, 1, 0, 0) != 0 {
        let why = to_bytes(L, -1).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        ffi::lua_settop(L, -2);
        return Err(format!("{}: {why}", crate::FetchError::Missing).into());
    }
    crate::fetch(L).map_err(|e| Raise::from(e.to_string()))
}

