//! The Lua-facing functions every driver shares, and the module table.
//!
//! Each is a raw C function (so it can `lua_yield`) generic over the driver,
//! with the core's ABI table as upvalue 1. Bodies return [`Raise`] for
//! programmer errors and `finish` raises once they have returned; a Lua error
//! raised inside (an allocation's finaliser) unwinds through them (no
//! `catch_unwind`, see `lunet_abi::lua`). Yielding functions are wrapped in
//! the core's Lua-side guard.

use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::Ordering;

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{core_abi, finish, guard, push_bytes, push_fail, run_chunk, type_name, Raise, Ret};
use lunet_abi::LunetAbi;

use crate::handle::{to_handle, Handle, LIVE};
use crate::job::{close_in_background, submit, Job, Op, CLOSED};
use crate::values::read_params;
use crate::Driver;

/// The Lua side of the module (see the file).
const DB_LUA: &str = include_str!("db.lua");

const SHUTTING_DOWN: &str = "the lunet runtime is shutting down";

#[inline]
unsafe fn abi_of(L: *mut lua_State) -> &'static LunetAbi {
    &*(ffi::lua_touserdata(L, ffi::lua_upvalueindex(1)) as *const LunetAbi)
}

#[inline]
unsafe fn entry(L: *mut lua_State, body: impl FnOnce() -> Ret) -> c_int {
    finish(L, body())
}

fn bad_arg(n: c_int, fname: &str, expected: &str, got: &str) -> Raise {
    format!("bad argument #{n} to '{fname}' ({expected} expected, got {got})").into()
}

/// The connection argument at index 1, or the error to raise.
unsafe fn conn_arg<'a, D: Driver>(L: *mut lua_State, fname: &str) -> Result<&'a mut Handle<D>, Raise> {
    to_handle::<D>(L, 1).ok_or_else(|| bad_arg(1, fname, &format!("{} connection", D::NAME), type_name(L, 1)))
}

#[derive(Clone, Copy)]
enum Kind {
    Query,
    Exec,
}

unsafe fn open<D: Driver>(L: *mut lua_State) -> Ret {
    let config = D::config(L, 1)?;
    match submit(L, Job::<D>::new(abi_of(L), Op::Open(Some(config)))) {
        Ok(()) => Ok(ffi::lua_yield(L, 0)),
        Err(_) => Ok(push_fail(L, SHUTTING_DOWN)),
    }
}

/// `query(conn, sql, ...)` and `exec(conn, sql, ...)`.
unsafe fn statement<D: Driver>(L: *mut lua_State, kind: Kind, fname: &str) -> Ret {
    let h = conn_arg::<D>(L, fname)?;
    if ffi::lua_type(L, 2) != ffi::LUA_TSTRING {
        return Err(bad_arg(2, fname, "string", type_name(L, 2)));
    }
    let mut len = 0usize;
    let p = ffi::lua_tolstring(L, 2, &mut len);
    let sql = std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec();
    let params = read_params(L, 3, ffi::lua_gettop(L), fname)?;
    let shared = match (h.closed, h.shared()) {
        (false, Some(s)) => s,
        _ => return Ok(push_fail(L, CLOSED)),
    };
    let op = match kind {
        Kind::Query => Op::Query { shared, sql, params },
        Kind::Exec => Op::Exec { shared, sql, params },
    };
    match submit(L, Job::<D>::new(abi_of(L), op)) {
        Ok(()) => Ok(ffi::lua_yield(L, 0)),
        Err(_) => Ok(push_fail(L, SHUTTING_DOWN)),
    }
}

/// Marks the handle closed and closes its connection in the background.
unsafe fn close_handle<D: Driver>(L: *mut lua_State, h: &mut Handle<D>) {
    if h.closed {
        return;
    }
    h.closed = true;
    if let Some(shared) = h.shared() {
        shared.closing.store(true, Ordering::Release);
        close_in_background(abi_of(L), shared);
    }
}

unsafe fn close<D: Driver>(L: *mut lua_State, fname: &str) -> Ret {
    let h = conn_arg::<D>(L, fname)?;
    close_handle(L, h);
    Ok(0)
}

/// `__gc`: closes a connection the script forgot, then drops the reference.
unsafe fn gc<D: Driver>(L: *mut lua_State) -> Ret {
    if let Some(h) = to_handle::<D>(L, 1) {
        close_handle(L, h);
        h.release();
    }
    Ok(0)
}

unsafe fn tostring<D: Driver>(L: *mut lua_State) -> Ret {
    let text = match to_handle::<D>(L, 1) {
        Some(h) if !h.closed => format!("{} connection ({:p})", D::NAME, h as *const Handle<D>),
        Some(_) => format!("{} connection (closed)", D::NAME),
        None => format!("{} connection (invalid)", D::NAME),
    };
    push_bytes(L, text.as_bytes());
    Ok(1)
}

/// `escape(str)` or `escape(conn, str)`.
unsafe fn escape<D: Driver>(L: *mut lua_State, fname: &str) -> Ret {
    let (info, idx) = match to_handle::<D>(L, 1) {
        Some(h) => (h.shared_ref().map(|s| &s.info), 2),
        None => (None, 1),
    };
    let t = ffi::lua_type(L, idx);
    if t != ffi::LUA_TSTRING && t != ffi::LUA_TNUMBER {
        return Err(bad_arg(idx, fname, "string", type_name(L, idx)));
    }
    let mut len = 0usize;
    let p = ffi::lua_tolstring(L, idx, &mut len);
    let escaped = D::escape(info, std::slice::from_raw_parts(p.cast::<u8>(), len));
    push_bytes(L, &escaped);
    Ok(1)
}

/// `stats(conn)`: the statement cache's counters (zeros once closed).
unsafe fn stats<D: Driver>(L: *mut lua_State, fname: &str) -> Ret {
    let h = conn_arg::<D>(L, fname)?;
    let s = match h.shared_ref() {
        Some(shared) if !h.closed => shared.stats.load(),
        _ => Default::default(),
    };
    ffi::lua_createtable(L, 0, 5);
    for (name, v) in [
        (c"cache_size", s.size),
        (c"cache_capacity", s.capacity),
        (c"cache_hits", s.hits),
        (c"cache_misses", s.misses),
        (c"cache_evictions", s.evictions),
    ] {
        ffi::lua_pushnumber(L, v as f64);
        ffi::lua_setfield(L, -2, name.as_ptr());
    }
    Ok(1)
}

/// `_session(conn)` → in_transaction, broken (as of its last statement; a
/// closed connection is broken).
unsafe fn session<D: Driver>(L: *mut lua_State, fname: &str) -> Ret {
    let h = conn_arg::<D>(L, fname)?;
    let bits = match h.shared_ref() {
        Some(shared) if !h.closed => shared.session.load(Ordering::Relaxed),
        _ => 2,
    };
    ffi::lua_pushboolean(L, (bits & 1) as c_int);
    ffi::lua_pushboolean(L, (bits >> 1 & 1) as c_int);
    Ok(2)
}

/// `park(w [, ms])` (for the pool): parks the running coroutine in a plain
/// scheduler wait, storing its token in `w.token` (a field the caller has
/// already set, so the store allocates nothing), and yields. Resumed with
/// nothing by `wake(token)`, with `nil, "timeout"` after `ms` or at the
/// task's deadline; a cancellation is raised.
unsafe fn park(L: *mut lua_State) -> Ret {
    let abi = abi_of(L);
    let ms = match ffi::lua_type(L, 2) {
        ffi::LUA_TNUMBER => {
            let ms = ffi::lua_tonumber(L, 2);
            if ms.is_nan() || ms < 0.0 {
                0
            } else {
                ms.min(i64::MAX as f64) as i64
            }
        }
        _ => -1,
    };
    if ffi::lua_type(L, 1) != ffi::LUA_TTABLE {
        return Err(bad_arg(1, "park", "table", type_name(L, 1)));
    }
    ffi::lua_settop(L, 1);
    ffi::lua_pushstring(L, c"token".as_ptr());
    let token = (abi.wait)(abi.ctx, L, ms);
    if token == 0 {
        return Ok(push_fail(L, SHUTTING_DOWN));
    }
    ffi::lua_pushlightuserdata(L, token as usize as *mut c_void);
    ffi::lua_rawset(L, 1);
    ffi::lua_settop(L, 0);
    Ok(ffi::lua_yield(L, 0))
}

/// `wake(token)` → whether the wait `token` will be resumed.
unsafe fn wake(L: *mut lua_State) -> Ret {
    let abi = abi_of(L);
    let token = ffi::lua_touserdata(L, 1) as usize as u64;
    ffi::lua_pushboolean(L, (abi.wake)(abi.ctx, token));
    Ok(1)
}

unsafe fn connections(L: *mut lua_State) -> Ret {
    ffi::lua_pushnumber(L, LIVE.load(Ordering::Relaxed) as f64);
    Ok(1)
}

macro_rules! entry_points {
    ($($name:ident => |$L:ident| $body:expr;)*) => {
        $(
            unsafe extern "C-unwind" fn $name<D: Driver>($L: *mut lua_State) -> c_int {
                entry($L, || unsafe { $body })
            }
        )*
    };
}

entry_points! {
    l_open => |L| open::<D>(L);
    l_query => |L| statement::<D>(L, Kind::Query, &format!("{}.query", D::NAME));
    l_exec => |L| statement::<D>(L, Kind::Exec, &format!("{}.exec", D::NAME));
    l_query_params => |L| statement::<D>(L, Kind::Query, &format!("{}.query_params", D::NAME));
    l_exec_params => |L| statement::<D>(L, Kind::Exec, &format!("{}.exec_params", D::NAME));
    l_close => |L| close::<D>(L, &format!("{}.close", D::NAME));
    l_escape => |L| escape::<D>(L, &format!("{}.escape", D::NAME));
    l_stats => |L| stats::<D>(L, &format!("{}.stats", D::NAME));
    l_session => |L| session::<D>(L, &format!("{}._session", D::NAME));
    l_gc => |L| gc::<D>(L);
    l_tostring => |L| tostring::<D>(L);
}

unsafe extern "C-unwind" fn l_connections(L: *mut lua_State) -> c_int {
    entry(L, || unsafe { connections(L) })
}

unsafe extern "C-unwind" fn l_park(L: *mut lua_State) -> c_int {
    entry(L, || unsafe { park(L) })
}

unsafe extern "C-unwind" fn l_wake(L: *mut lua_State) -> c_int {
    entry(L, || unsafe { wake(L) })
}

/// Builds the driver's module table (left on the stack) and its connection
/// metatable. Call from the driver's `luaopen_*` function and return 1.
///
/// The module has `open`, `query`, `exec`, `query_params`, `exec_params`
/// (the yielding ones, guarded), `escape`, `close`, and `_connections()`
/// (how many connections of this driver are open, for tests). Connections
/// have the same functions as methods (`conn:query(sql, ...)`).
///
/// # Safety
/// `L` must be the state of the running `luaopen_*` C function.
pub unsafe fn open_module<D: Driver>(L: *mut lua_State) -> Result<c_int, Raise> {
    let abi = core_abi(L)?;
    let fns: [(&CStr, ffi::lua_CFunction, bool, bool); 10] = [
        // name, function, yields, is a method
        (c"open", l_open::<D>, true, false),
        (c"query", l_query::<D>, true, true),
        (c"exec", l_exec::<D>, true, true),
        (c"query_params", l_query_params::<D>, true, true),
        (c"exec_params", l_exec_params::<D>, true, true),
        (c"escape", l_escape::<D>, false, true),
        (c"close", l_close::<D>, false, true),
        (c"stats", l_stats::<D>, false, true),
        (c"_session", l_session::<D>, false, true),
        (c"_connections", l_connections, false, false),
    ];
    // The Lua side (db.lua): error codes of timeouts, the transaction helper.
    run_chunk(L, DB_LUA, c"=lunet.db").map_err(|e| Raise::from(format!("lunet-db: {e}")))?;
    let lib = ffi::lua_gettop(L);
    ffi::lua_createtable(L, 0, fns.len() as c_int + 1); // module
    push_bytes(L, env!("CARGO_PKG_VERSION").as_bytes());
    ffi::lua_setfield(L, -2, c"_VERSION".as_ptr());
    ffi::lua_createtable(L, 0, fns.len() as c_int); // methods
    let push_closure = |f: ffi::lua_CFunction| {
        ffi::lua_pushlightuserdata(L, abi as *const LunetAbi as *mut c_void);
        ffi::lua_pushcclosure(L, f, 1);
    };
    for (name, f, yields, method) in fns {
        push_closure(f);
        if yields {
            ffi::lua_getfield(L, lib, c"wrap".as_ptr());
            ffi::lua_insert(L, -2);
            ffi::lua_call(L, 1, 1); // only builds a closure: cannot fail
            guard(L, &format!("{}.{}", D::NAME, name.to_str().unwrap_or("?")))?;
        }
        if method {
            ffi::lua_pushvalue(L, -1);
            ffi::lua_setfield(L, -3, name.as_ptr());
        }
        ffi::lua_setfield(L, -3, name.as_ptr());
    }
    // The metatable is (re)filled on every load so it always matches this
    // module: the one handle lifecycle (`__index` = the methods, `__gc`,
    // `__tostring`, a protected metatable), plus a `__name`.
    lunet_abi::handle::set_metatable(L, abi as *const LunetAbi as *mut c_void, D::METATABLE, l_gc::<D>, l_tostring::<D>);
    ffi::lua_getfield(L, ffi::LUA_REGISTRYINDEX, D::METATABLE.as_ptr());
    push_bytes(L, format!("{} connection", D::NAME).as_bytes());
    ffi::lua_setfield(L, -2, c"__name".as_ptr());
    ffi::lua_settop(L, -3); // drop metatable and methods; the module is on top
    ffi::lua_getfield(L, lib, c"install".as_ptr());
    ffi::lua_pushvalue(L, -2);
    push_bytes(L, D::NAME.as_bytes());
    push_closure(l_park);
    guard(L, &format!("{}.pool", D::NAME))?;
    push_closure(l_wake);
    ffi::lua_call(L, 4, 0);
    ffi::lua_replace(L, lib); // the module, in place of the library
    Ok(1)
}
