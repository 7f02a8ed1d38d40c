//! The one handle lifecycle, shared by every kind of lunet object that Lua
//! holds (sockets, UDP sockets, tasks, database connections): a full userdata
//! holding one pointer, with a metatable registered under a unique name.
//!
//! - [`push`] makes a handle; [`get`] recognises one (never raises: it
//!   compares metatables raw); [`take`] clears it (finalisers, close), after
//!   which [`get`] reports it as cleared;
//! - [`set_metatable`] installs `__index` (the module table on top of the
//!   stack, so functions double as methods), `__gc`, `__tostring`, and a
//!   `__metatable` field that keeps scripts from swapping the metatable.
//!
//! Being plain userdata with string-named metatables, handles are recognised
//! across separately built libraries (mlua userdata is not). Registry reads
//! are raw. A database connection's handle holds a larger block
//! ([`push_block`], [`block`]) behind the same check.

use std::ffi::{c_int, c_void, CStr};

use crate::ffi::{self, lua_State};
use crate::lua::raw_field;

/// Pushes a new handle for `p` with the metatable registered as `meta`.
///
/// # Safety
/// `L` valid with free stack slots; the metatable must exist.
pub unsafe fn push(L: *mut lua_State, meta: &CStr, p: *mut c_void) {
    push_slot(L, meta).write(p);
}

/// Pushes a new, empty handle (it holds null, like a cleared one) and returns
/// its slot. An entry point that creates a resource pushes the handle first
/// and fills it after: the allocation may raise (a finaliser's error), and a
/// resource created before it would then belong to nobody.
///
/// # Safety
/// As for [`push`].
pub unsafe fn push_slot(L: *mut lua_State, meta: &CStr) -> *mut *mut c_void {
    let slot = push_block(L, meta, std::mem::size_of::<*mut c_void>()) as *mut *mut c_void;
    slot.write(std::ptr::null_mut());
    slot
}

/// Pushes a handle whose block is `size` bytes (uninitialised: the caller
/// writes it at once) and returns the block. Handles that hold more than one
/// pointer (a database connection's state) use this and [`block`].
///
/// # Safety
/// As for [`push`].
pub unsafe fn push_block(L: *mut lua_State, meta: &CStr, size: usize) -> *mut c_void {
    let b = ffi::lua_newuserdata(L, size);
    raw_field(L, ffi::LUA_REGISTRYINDEX, meta);
    ffi::lua_setmetatable(L, -2);
    b
}

/// The block of the handle of kind `meta` at `idx`, or null for anything
/// else (never raises: the metatables are compared raw).
///
/// # Safety
/// `L` valid with two free stack slots.
pub unsafe fn block(L: *mut lua_State, idx: c_int, meta: &CStr) -> *mut c_void {
    let p = ffi::lua_touserdata(L, idx);
    if p.is_null() || ffi::lua_type(L, idx) != ffi::LUA_TUSERDATA || ffi::lua_getmetatable(L, idx) == 0 {
        return std::ptr::null_mut();
    }
    raw_field(L, ffi::LUA_REGISTRYINDEX, meta);
    let same = ffi::lua_rawequal(L, -1, -2) != 0;
    ffi::lua_settop(L, -3);
    if same {
        p
    } else {
        std::ptr::null_mut()
    }
}

/// The slot of the handle of kind `meta` at `idx`, or null for anything else.
///
/// # Safety
/// `L` valid with two free stack slots.
pub unsafe fn slot(L: *mut lua_State, idx: c_int, meta: &CStr) -> *mut *mut c_void {
    block(L, idx, meta) as *mut *mut c_void
}

/// `None` if the value at `idx` is not a handle of kind `meta`; otherwise the
/// pointer it holds (null once cleared by [`take`]).
///
/// # Safety
/// As for [`slot`].
pub unsafe fn get(L: *mut lua_State, idx: c_int, meta: &CStr) -> Option<*mut c_void> {
    let s = slot(L, idx, meta);
    if s.is_null() {
        None
    } else {
        Some(*s)
    }
}

/// Clears the handle at `idx` and returns what it held (None if it is not a
/// handle of this kind or was already cleared).
///
/// # Safety
/// As for [`slot`].
pub unsafe fn take(L: *mut lua_State, idx: c_int, meta: &CStr) -> Option<*mut c_void> {
    let s = slot(L, idx, meta);
    if s.is_null() || (*s).is_null() {
        return None;
    }
    let p = *s;
    *s = std::ptr::null_mut();
    Some(p)
}

/// Creates (or refreshes) the metatable `meta`: `__index` is the table on top
/// of the stack (left there), `__gc` and `__tostring` are closures over `up`
/// (upvalue 1, as lunet's entry points expect).
///
/// # Safety
/// `L` valid with a table on top and free stack slots.
pub unsafe fn set_metatable(L: *mut lua_State, up: *mut c_void, meta: &CStr, gc: ffi::lua_CFunction, tostring: ffi::lua_CFunction) {
    ffi::luaL_newmetatable(L, meta.as_ptr());
    ffi::lua_pushvalue(L, -2);
    ffi::lua_setfield(L, -2, c"__index".as_ptr());
    for (name, f) in [(c"__gc", gc), (c"__tostring", tostring)] {
        ffi::lua_pushlightuserdata(L, up);
        ffi::lua_pushcclosure(L, f, 1);
        ffi::lua_setfield(L, -2, name.as_ptr());
    }
    ffi::lua_pushstring(L, meta.as_ptr());
    ffi::lua_setfield(L, -2, c"__metatable".as_ptr());
    ffi::lua_settop(L, -2);
}
