//! The `lunet.socket` Lua module: argument checking and return shapes for TCP
//! and Unix stream sockets. The work is done by `stream` (shared connection
//! and listener logic), `tcp`, `pipe` and `connect`.

use std::ffi::c_int;

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{push_bytes, push_fail, raw_field, to_bytes, to_number, type_name, Raise};
use lunet_abi::lua_fn;

use crate::connect::{self, Start, INVALID};
use crate::dns;
use crate::runtime::{self, strerror, Runtime};
use crate::stream::{self, Arg, Family, ReadNow, Sock, Timeouts, WriteNow, CLOSED};
use crate::task::opt_ms;
use crate::{pipe, tcp};

const NOT_SOCKET: &str = "invalid socket handle";
const NOT_CONNECTION: &str = "not a connection";

/// The connection at argument 1, or the error to return for it.
unsafe fn conn_arg(L: *mut lua_State) -> Result<*mut Sock, &'static str> {
    match stream::arg(L, 1) {
        Arg::Sock(s) if (*s).is_listener() => Err(NOT_CONNECTION),
        Arg::Sock(s) if (*s).is_closed() => Err(CLOSED),
        Arg::Sock(s) => Ok(s),
        Arg::Dead => Err(CLOSED),
        Arg::NotSocket => Err(NOT_SOCKET),
    }
}

lua_fn! {
    /// `socket.listen(protocol, host, port [, opts])` -> listener | nil, err;
    /// `opts.timeout` bounds each `accept` wait.
    pub fn l_listen(L) {
        let rt = runtime::of(L);
        let timeout = opts_timeout(L, if to_bytes(L, 1) == Some(b"unix") { 3 } else { 4 }, "socket.listen")?;
        let top = ffi::lua_gettop(L);
        let slot = lunet_abi::handle::push_slot(L, stream::META);
        let proto = to_bytes(L, 1);
        let result = match proto {
            Some(b"tcp") => {
                let (Some(host), Some(port)) = (to_bytes(L, 2), dns::port(to_number(L, 3))) else {
                    return Ok(push_fail(L, INVALID));
                };
                tcp::listen(rt, host, port)
            }
            Some(b"unix") => match to_bytes(L, 2) {
                Some(path) => pipe::listen(rt, path),
                None => return Ok(push_fail(L, "invalid unix socket path")),
            },
            _ => return Ok(push_fail(L, "only tcp and unix are supported")),
        };
        match result {
            Ok(s) => {
                (*s).timeouts.read = timeout;
                stream::fill(slot, s);
                Ok(1)
            }
            Err(msg) => {
                ffi::lua_settop(L, top);
                Ok(push_fail(L, &msg))
            }
        }
    }
}

lua_fn! {
    /// `socket.accept(listener)` -> conn | nil, err (yields while none is queued)
    pub fn l_accept(L) {
        let s = match stream::arg(L, 1) {
            Arg::Sock(s) if !(*s).is_listener() => return Ok(push_fail(L, "not a listening socket")),
            Arg::Sock(s) if (*s).is_closed() => return Ok(push_fail(L, "listener closed")),
            Arg::Sock(s) => s,
            Arg::Dead => return Ok(push_fail(L, "listener closed")),
            Arg::NotSocket => return Ok(push_fail(L, "not a listening socket")),
        };
        match stream::accept(L, s) {
            Some(n) => Ok(n),
            None => Ok(ffi::lua_yield(L, 0)),
        }
    }
}

/// `opts.timeout` of the options table at `idx` (none when absent).
unsafe fn opts_timeout(L: *mut lua_State, idx: c_int, what: &str) -> Result<Option<u64>, Raise> {
    match ffi::lua_type(L, idx) {
        ffi::LUA_TNONE | ffi::LUA_TNIL => return Ok(None),
        ffi::LUA_TTABLE => {}
        _ => return Err(format!("{what} expects an options table (got {})", type_name(L, idx)).into()),
    }
    raw_field(L, idx, c"timeout");
    let r = opt_ms(L, -1, &format!("{what} option timeout"));
    ffi::lua_settop(L, -2);
    r
}

lua_fn! {
    /// `socket.connect(host, port [, opts])` / `socket.connect(path [, opts])`
    /// -> conn | nil, err (yields); `opts.timeout` bounds the whole connect.
    pub fn l_connect(L) {
        let rt = runtime::of(L);
        let Some(host) = to_bytes(L, 1) else {
            return Ok(push_fail(L, INVALID));
        };
        let unix = host.contains(&b'/');
        let timeout = opts_timeout(L, if unix { 2 } else { 3 }, "socket.connect")?;
        let host = to_bytes(L, 1).unwrap_or_default();
        let start = if unix {
            connect::unix(L, rt, host, timeout)
        } else {
            match dns::port(to_number(L, 2)) {
                Some(port) if port != 0 && !host.is_empty() => connect::tcp(L, rt, host, port, timeout),
                _ => return Ok(push_fail(L, INVALID)),
            }
        };
        match start {
            Start::Failed(n) => Ok(n),
            Start::Wait => Ok(ffi::lua_yield(L, 0)),
        }
    }
}

lua_fn! {
    /// `socket.read(conn)` -> data | nil, nil (EOF) | nil, err (yields until data)
    pub fn l_read(L) {
        let s = match conn_arg(L) {
            Ok(s) => s,
            Err(msg) => return Ok(push_fail(L, msg)),
        };
        match stream::read(L, s) {
            ReadNow::Done(n) => Ok(n),
            ReadNow::Wait => Ok(ffi::lua_yield(L, 0)),
        }
    }
}

lua_fn! {
    /// `socket.write(conn, data)` -> nil | err (yields until the kernel has it all)
    pub fn l_write(L) {
        if !matches!(ffi::lua_type(L, 2), ffi::LUA_TSTRING | ffi::LUA_TNUMBER) {
            return Err(format!("socket.write expects a string to write (got {})", type_name(L, 2)).into());
        }
        let s = match conn_arg(L) {
            Ok(s) => s,
            Err(msg) => {
                push_bytes(L, msg.as_bytes());
                return Ok(1);
            }
        };
        // A number argument is converted to a string in place, so the bytes
        // below stay on the stack (and alive) while the caller is parked.
        let data = to_bytes(L, 2).unwrap_or_default();
        match stream::write(L, s, data, 2) {
            WriteNow::Done(None) => {
                ffi::lua_pushnil(L);
                Ok(1)
            }
            WriteNow::Done(Some(err)) => {
                push_bytes(L, err.as_bytes());
                Ok(1)
            }
            WriteNow::Wait => Ok(ffi::lua_yield(L, 0)),
        }
    }
}

lua_fn! {
    /// `socket.close(handle)` -> nil (idempotent; wakes every waiter)
    pub fn l_close(L) {
        match stream::arg(L, 1) {
            Arg::Sock(s) => {
                stream::close(s, true);
                Ok(0)
            }
            Arg::Dead => Ok(0),
            Arg::NotSocket => Ok(push_fail(L, NOT_SOCKET)),
        }
    }
}

lua_fn! {
    /// `socket.getpeername(conn)` -> "ip:port" | "unix" | nil, err
    pub fn l_getpeername(L) {
        let s = match conn_arg(L) {
            Ok(s) => s,
            Err(msg) => return Ok(push_fail(L, msg)),
        };
        match (*s).family {
            Family::Unix => push_bytes(L, b"unix"),
            Family::Tcp => match tcp::name(s, true) {
                Ok(a) => push_bytes(L, dns::format(&a).as_bytes()),
                Err(rc) => return Ok(push_fail(L, &strerror(rc))),
            },
        }
        Ok(1)
    }
}

lua_fn! {
    /// `socket.getsockname(handle)` -> host, port (TCP) | path (Unix) | nil, err
    pub fn l_getsockname(L) {
        let s = match stream::arg(L, 1) {
            Arg::Sock(s) if (*s).is_closed() => return Ok(push_fail(L, CLOSED)),
            Arg::Sock(s) => s,
            Arg::Dead => return Ok(push_fail(L, CLOSED)),
            Arg::NotSocket => return Ok(push_fail(L, NOT_SOCKET)),
        };
        match (*s).family {
            Family::Tcp => match tcp::name(s, false) {
                Ok(a) => {
                    push_bytes(L, a.ip().to_string().as_bytes());
                    ffi::lua_pushnumber(L, a.port() as f64);
                    Ok(2)
                }
                Err(rc) => Ok(push_fail(L, &strerror(rc))),
            },
            Family::Unix => match pipe::sockname(s) {
                Ok(path) => {
                    push_bytes(L, &path);
                    Ok(1)
                }
                Err(rc) => Ok(push_fail(L, &strerror(rc))),
            },
        }
    }
}

lua_fn! {
    /// `socket.set_read_buffer_size(n)`: the size of reads (1 byte .. 16 MiB).
    pub fn l_set_read_buffer_size(L) {
        let rt: *mut Runtime = runtime::of(L);
        match to_number(L, 1) {
            Some(n) if n.fract() == 0.0 && n >= 1.0 && n <= stream::MAX_READ_SIZE as f64 => {
                (*rt).streams.read_size = n as usize;
                Ok(0)
            }
            _ => Err(Raise::from(format!(
                "socket.set_read_buffer_size expects an integer from 1 to {} (got {})",
                stream::MAX_READ_SIZE,
                type_name(L, 1)
            ))),
        }
    }
}

/// The open socket (connection or listener) at argument 1 for a setter.
unsafe fn open_arg(L: *mut lua_State, what: &str) -> Result<*mut Sock, Raise> {
    match stream::arg(L, 1) {
        Arg::Sock(s) => Ok(s),
        Arg::Dead => Err(format!("{what}: socket closed").into()),
        Arg::NotSocket => Err(format!("{what} expects a socket (got {})", type_name(L, 1)).into()),
    }
}

lua_fn! {
    /// `socket.settimeout(handle, ms | nil)`: the time limit of every later
    /// wait on the handle (read, write, accept); nil = none.
    pub fn l_settimeout(L) {
        let s = open_arg(L, "socket.settimeout")?;
        let ms = opt_ms(L, 2, "socket.settimeout")?;
        (*s).timeouts = Timeouts { send: ms, read: ms };
        Ok(0)
    }
}

lua_fn! {
    /// `socket.settimeouts(handle, connect_ms, send_ms, read_ms)` (OpenResty's
    /// order). `connect_ms` is checked but has no effect: a handle exists only
    /// once connected (`connect`'s `opts.timeout` bounds the connect).
    pub fn l_settimeouts(L) {
        let s = open_arg(L, "socket.settimeouts")?;
        opt_ms(L, 2, "socket.settimeouts")?;
        (*s).timeouts = Timeouts {
            send: opt_ms(L, 3, "socket.settimeouts")?,
            read: opt_ms(L, 4, "socket.settimeouts")?,
        };
        Ok(0)
    }
}

lua_fn! {
    fn l_gc(L) {
        stream::gc(L);
        Ok(0)
    }
}

lua_fn! {
    fn l_tostring(L) {
        let s = match stream::arg(L, 1) {
            Arg::Sock(s) => Some(s),
            _ => None,
        };
        push_bytes(L, stream::describe(s).as_bytes());
        Ok(1)
    }
}

/// Creates (or refreshes) the handles' metatable; its `__index` is the
/// module table on top of the stack, so every function is also a method.
///
/// # Safety
/// `L` must be valid with the module table on top.
pub unsafe fn set_metatable(L: *mut lua_State, rt: *mut Runtime) {
    lunet_abi::handle::set_metatable(L, rt.cast(), stream::META, l_gc, l_tostring);
}
