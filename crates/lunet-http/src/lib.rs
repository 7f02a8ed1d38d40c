//! lunet-http: `lunet.http` (an HTTP/1.1 server with Server-Sent Events and
//! WebSocket) and `lunet.httpc` (an HTTP/1.1 client with a keep-alive pool).
//!
//! Where the work happens: the socket I/O is Lua code (`wire.lua`,
//! `http.lua`, `httpc.lua`, embedded here like the core embeds `core.lua`)
//! calling `lunet.socket`'s framed reads and vectored writes, so every wait
//! is a lunet wait with its timeouts, deadlines and cancellation, and this
//! crate links neither libuv nor the core. Rust does the byte work that Lua
//! does badly or unsafely: parsing message heads (`httparse`), the framing
//! and request-smuggling rules (`head`), chunk sizes, and the WebSocket
//! accept key, masking and UTF-8 checks (`ws`).
//!
//! The one shared object holds both modules (`luaopen_lunet_http` and
//! `luaopen_lunet_httpc`); the build installs it as `lunet/http.so` and
//! `lunet/httpc.so`, so Lua's C loader finds each module's entry point.

#![allow(non_snake_case)] // `L` is the Lua state, as everywhere in the Lua C API.
#![allow(clippy::missing_safety_doc)]

pub mod head;
pub mod ws;

use std::ffi::{c_int, CStr};

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{push_bytes, run_chunk, to_bytes, to_number, type_name, Raise};
use lunet_abi::lua_fn;

use head::{Body, Limits, Parsed};

// Sets a field of a table we built (a raw set: it has no metatable, and
// the key's length is known).
unsafe fn set_str(L: *mut lua_State, t: c_int, k: &[u8], v: &[u8]) {
    push_bytes(L, k);
    push_bytes(L, v);
    ffi::lua_rawset(L, t);
}

unsafe fn arg_bytes<'a>(L: *mut lua_State, idx: c_int, what: &str) -> Result<&'a [u8], Raise> {
    to_bytes(L, idx).ok_or_else(|| Raise::from(format!("{what} must be a string (got {})", type_name(L, idx))))
}

unsafe fn arg_count(L: *mut lua_State, idx: c_int, what: &str) -> Result<usize, Raise> {
    match to_number(L, idx) {
        Some(n) if n >= 1.0 && n <= (1u64 << 40) as f64 => Ok(n as usize),
        _ => Err(format!("{what} must be a positive number").into()),
    }
}

/// Pushes the headers as a table of lower-case names; repeated fields are
/// joined with ", " (`cookie` with "; ", RFC 9110 5.3 and RFC 6265 5.4).
unsafe fn push_header_map(L: *mut lua_State, headers: &[httparse::Header<'_>]) {
    ffi::lua_createtable(L, 0, headers.len() as c_int);
    let t = ffi::lua_gettop(L);
    let mut name = Vec::with_capacity(32);
    for h in headers {
        name.clear();
        name.extend(h.name.bytes().map(|c| c.to_ascii_lowercase()));
        push_bytes(L, &name);
        ffi::lua_pushvalue(L, -1);
        ffi::lua_rawget(L, t);
        if ffi::lua_type(L, -1) == ffi::LUA_TSTRING {
            push_bytes(L, if name == b"cookie" { b"; " } else { b", " });
            push_bytes(L, h.value);
            ffi::lua_concat(L, 3);
        } else {
            ffi::lua_settop(L, -2);
            push_bytes(L, h.value);
        }
        ffi::lua_rawset(L, t);
    }
}

lua_fn! {
    /// `parse_request(buf, max_headers, max_line, max_head)` →
    /// `head_len, method, target, path, query, minor, headers, length,
    /// chunked, close, expect` (length: the Content-Length or false) |
    /// `false` (incomplete) | `nil, status, reason`. Plain values, so that
    /// Lua builds the request table with one constructor.
    fn l_parse_request(L) {
        let buf = arg_bytes(L, 1, "buffer")?;
        let lim = Limits {
            max_headers: arg_count(L, 2, "max_headers")?,
            max_line: arg_count(L, 3, "max_line")?,
            max_head: arg_count(L, 4, "max_head")?,
        };
        let mut storage = head::header_storage();
        let r = match head::parse_request(buf, &mut storage, lim) {
            Parsed::Partial => {
                ffi::lua_pushboolean(L, 0);
                return Ok(1);
            }
            Parsed::Fail(code, why) => {
                ffi::lua_pushnil(L);
                ffi::lua_pushnumber(L, code as f64);
                push_bytes(L, why.as_bytes());
                return Ok(3);
            }
            Parsed::Done(r) => r,
        };
        ffi::lua_pushnumber(L, r.head_len as f64);
        push_bytes(L, r.method.as_bytes());
        let t = r.target.as_bytes();
        push_bytes(L, t);
        match t.iter().position(|&c| c == b'?') {
            Some(q) => {
                push_bytes(L, &t[..q]);
                push_bytes(L, &t[q + 1..]);
            }
            None => {
                ffi::lua_pushvalue(L, -1);
                push_bytes(L, b"");
            }
        }
        ffi::lua_pushnumber(L, r.minor as f64);
        push_header_map(L, r.headers);
        match r.body {
            Body::Length(n) => ffi::lua_pushnumber(L, n as f64),
            _ => ffi::lua_pushboolean(L, 0),
        }
        ffi::lua_pushboolean(L, (r.body == Body::Chunked) as c_int);
        ffi::lua_pushboolean(L, r.close as c_int);
        ffi::lua_pushboolean(L, r.expect_continue as c_int);
        Ok(11)
    }
}

lua_fn! {
    /// `parse_response(buf, method, max_headers, max_head)` →
    /// `head_len, status, headers, body, length, close` (headers as an array
    /// of `{name =, value =}`; body `"none"|"length"|"chunked"|"close"`) |
    /// `false` (incomplete) | `nil, err`.
    fn l_parse_response(L) {
        let buf = arg_bytes(L, 1, "buffer")?;
        let method = arg_bytes(L, 2, "method")?;
        let max_headers = arg_count(L, 3, "max_headers")?;
        let max_head = arg_count(L, 4, "max_head")?;
        let mut storage = head::header_storage();
        let r = match head::parse_response(buf, &mut storage, max_headers, max_head, method) {
            Parsed::Partial => {
                ffi::lua_pushboolean(L, 0);
                return Ok(1);
            }
            Parsed::Fail(_, why) => {
                ffi::lua_pushnil(L);
                push_bytes(L, why.as_bytes());
                return Ok(2);
            }
            Parsed::Done(r) => r,
        };
        ffi::lua_pushnumber(L, r.head_len as f64);
        ffi::lua_pushnumber(L, r.status as f64);
        ffi::lua_createtable(L, r.headers.len() as c_int, 0);
        let t = ffi::lua_gettop(L);
        for (i, h) in r.headers.iter().enumerate() {
            ffi::lua_createtable(L, 0, 2);
            set_str(L, t + 1, b"name", h.name.as_bytes());
            set_str(L, t + 1, b"value", h.value);
            ffi::lua_rawseti(L, t, i as ffi::lua_Integer + 1);
        }
        let (kind, len): (&[u8], f64) = match r.body {
            Body::None => (b"none", 0.0),
            Body::Length(n) => (b"length", n as f64),
            Body::Chunked => (b"chunked", 0.0),
            Body::Close => (b"close", 0.0),
        };
        push_bytes(L, kind);
        ffi::lua_pushnumber(L, len);
        ffi::lua_pushboolean(L, r.close as c_int);
        Ok(6)
    }
}

lua_fn! {
    /// `chunk_size(line)` → the size | nil (a malformed size line).
    fn l_chunk_size(L) {
        match head::chunk_size(arg_bytes(L, 1, "chunk size line")?) {
            Some(n) => ffi::lua_pushnumber(L, n as f64),
            None => ffi::lua_pushnil(L),
        }
        Ok(1)
    }
}

lua_fn! {
    /// `ws_accept(key)` → the `Sec-WebSocket-Accept` value | nil (not a valid key).
    fn l_ws_accept(L) {
        let key = arg_bytes(L, 1, "key")?;
        if ws::key_ok(key) {
            push_bytes(L, ws::accept_key(key).as_bytes());
        } else {
            ffi::lua_pushnil(L);
        }
        Ok(1)
    }
}

lua_fn! {
    /// `ws_mask(data, key)`: `data` XOR the 4-byte `key`.
    fn l_ws_mask(L) {
        let data = arg_bytes(L, 1, "data")?;
        let key = arg_bytes(L, 2, "key")?;
        let key: [u8; 4] = key.try_into().map_err(|_| Raise::from("masking key must be 4 bytes"))?;
        push_bytes(L, &ws::mask(data, key));
        Ok(1)
    }
}

lua_fn! {
    /// `utf8_valid(s)` → whether `s` is well-formed UTF-8.
    fn l_utf8_valid(L) {
        let s = arg_bytes(L, 1, "string")?;
        ffi::lua_pushboolean(L, std::str::from_utf8(s).is_ok() as c_int);
        Ok(1)
    }
}

const WIRE_LUA: &str = include_str!("wire.lua");
const HTTP_LUA: &str = include_str!("http.lua");
const HTTPC_LUA: &str = include_str!("httpc.lua");

/// Registry field caching the shared wire table.
const WIRE_KEY: &CStr = c"lunet.http.wire";

/// Pushes the table of shared I/O helpers, built once per Lua state from
/// `wire.lua` and the native functions.
unsafe fn push_wire(L: *mut lua_State) -> Result<(), Raise> {
    if lunet_abi::lua::raw_field(L, ffi::LUA_REGISTRYINDEX, WIRE_KEY) == ffi::LUA_TTABLE {
        return Ok(());
    }
    ffi::lua_settop(L, -2);
    run_chunk(L, WIRE_LUA, c"=lunet.http.wire").map_err(|e| Raise::from(format!("lunet.http: {e}")))?;
    ffi::lua_createtable(L, 0, 6);
    let fns: [(&CStr, ffi::lua_CFunction); 6] = [
        (c"parse_request", l_parse_request),
        (c"parse_response", l_parse_response),
        (c"chunk_size", l_chunk_size),
        (c"ws_accept", l_ws_accept),
        (c"ws_mask", l_ws_mask),
        (c"utf8_valid", l_utf8_valid),
    ];
    for (name, f) in fns {
        ffi::lua_pushcfunction(L, f);
        ffi::lua_setfield(L, -2, name.as_ptr());
    }
    ffi::lua_call(L, 1, 1); // builds a table; raises only if a require fails
    ffi::lua_pushvalue(L, -1);
    ffi::lua_setfield(L, ffi::LUA_REGISTRYINDEX, WIRE_KEY.as_ptr());
    Ok(())
}

/// Runs a module's chunk: it returns a function called with the wire table
/// and lunet's yield-guard factory (so the calls that wait behave like the
/// core's), which builds and returns the module.
unsafe fn open_module(L: *mut lua_State, src: &str, name: &CStr) -> Result<c_int, Raise> {
    push_wire(L)?;
    run_chunk(L, lunet_abi::GUARD_LUA, c"=lunet.guard").map_err(|e| Raise::from(format!("lunet guard: {e}")))?;
    run_chunk(L, src, name).map_err(|e| Raise::from(format!("{}: {e}", name.to_string_lossy())))?;
    ffi::lua_pushvalue(L, -3);
    ffi::lua_pushvalue(L, -3);
    ffi::lua_call(L, 2, 1);
    Ok(1)
}

lua_fn! {
    /// `require("lunet.http")`
    #[no_mangle]
    pub fn luaopen_lunet_http(L) {
        open_module(L, HTTP_LUA, c"=lunet.http")
    }
}

lua_fn! {
    /// `require("lunet.httpc")`
    #[no_mangle]
    pub fn luaopen_lunet_httpc(L) {
        open_module(L, HTTPC_LUA, c"=lunet.httpc")
    }
}
