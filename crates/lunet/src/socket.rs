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
use crate::readbuf::{self, Request};
use crate::tls;
use std::ffi::CStr;
use crate::sockopt::{self, ListenOpts, Opt, Value};
use crate::stream::{self, Arg, Family, ReadNow, Sock, Timeouts, WriteNow, CLOSED};
use libuv_sys2 as uv;
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
        let unix = to_bytes(L, 1) == Some(b"unix");
        let oi = if unix { 3 } else { 4 };
        let timeout = opts_timeout(L, oi, "socket.listen")?;
        let lo = listen_opts(L, oi, unix)?;
        // TLS options are checked and the certificate loaded before binding.
        let server_tls = if ffi::lua_type(L, oi) == ffi::LUA_TTABLE {
            raw_field(L, oi, c"tls");
            let r = match ffi::lua_type(L, -1) {
                ffi::LUA_TNIL => Ok(None),
                ffi::LUA_TBOOLEAN if ffi::lua_toboolean(L, -1) == 0 => Ok(None),
                _ => tls_opts(L, -1, "socket.listen").map(Some),
            };
            ffi::lua_settop(L, -2);
            match r? {
                Some(o) => match (*rt).streams.tls.server(&o) {
                    Ok(cfg) => Some(cfg),
                    Err(e) => return Ok(push_fail(L, &e)),
                },
                None => None,
            }
        } else {
            None
        };
        let top = ffi::lua_gettop(L);
        let slot = lunet_abi::handle::push_slot(L, stream::META);
        let proto = to_bytes(L, 1);
        let result = match proto {
            Some(b"tcp") => {
                let (Some(host), Some(port)) = (to_bytes(L, 2), dns::port(to_number(L, 3))) else {
                    return Ok(push_fail(L, INVALID));
                };
                tcp::listen(rt, host, port, &lo)
            }
            Some(b"unix") => match to_bytes(L, 2) {
                Some(path) => pipe::listen(rt, path, lo.backlog),
                None => return Ok(push_fail(L, "invalid unix socket path")),
            },
            _ => return Ok(push_fail(L, "only tcp and unix are supported")),
        };
        match result {
            Ok(s) => {
                (*s).timeouts.set_read(timeout);
                stream::fill(slot, s);
                if let Some(cfg) = server_tls {
                    stream::set_listener_tls(s, cfg);
                }
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

/// `backlog`, `reuseport` and `ipv6only` of `socket.listen`'s options table
/// at `idx` (checked as a table already).
unsafe fn listen_opts(L: *mut lua_State, idx: c_int, unix: bool) -> Result<ListenOpts, Raise> {
    let mut o = ListenOpts::default();
    if ffi::lua_type(L, idx) != ffi::LUA_TTABLE {
        return Ok(o);
    }
    raw_field(L, idx, c"backlog");
    let backlog = match ffi::lua_type(L, -1) {
        ffi::LUA_TNIL => Ok(None),
        _ => match to_number(L, -1) {
            Some(n) if ffi::lua_type(L, -1) == ffi::LUA_TNUMBER && n.fract() == 0.0 && (1.0..=65535.0).contains(&n) => Ok(Some(n as c_int)),
            _ => Err(Raise::from("socket.listen: option backlog must be an integer from 1 to 65535")),
        },
    };
    ffi::lua_settop(L, -2);
    if let Some(b) = backlog? {
        o.backlog = b;
    }
    for (key, name) in [(c"reuseport", "reuseport"), (c"ipv6only", "ipv6only")] {
        raw_field(L, idx, key);
        let t = ffi::lua_type(L, -1);
        let v = ffi::lua_toboolean(L, -1) != 0;
        ffi::lua_settop(L, -2);
        match t {
            ffi::LUA_TNIL => continue,
            ffi::LUA_TBOOLEAN => {}
            _ => return Err(format!("socket.listen: option {name} must be a boolean").into()),
        }
        if unix && v {
            return Err(format!("socket.listen: option {name} applies to TCP listeners only").into());
        }
        if name == "reuseport" {
            o.reuseport = v;
        } else {
            o.ipv6only = v;
        }
    }
    Ok(o)
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

/// The largest size `read(conn, n)` and the `max` options accept.
const MAX_SIZE: f64 = 2147483647.0;

/// An integer argument from `lo` to 2^31 - 1 at `idx`, or a raised error.
unsafe fn size_arg(L: *mut lua_State, idx: c_int, lo: f64, what: &str) -> Result<usize, Raise> {
    match to_number(L, idx) {
        Some(n) if ffi::lua_type(L, idx) == ffi::LUA_TNUMBER && n.fract() == 0.0 && n >= lo && n <= MAX_SIZE => {
            Ok(n as usize)
        }
        _ => Err(format!("{what} must be an integer from {lo} to 2147483647 (got {})", describe_value(L, idx)).into()),
    }
}

/// A short description of the value at `idx` for error messages.
unsafe fn describe_value(L: *mut lua_State, idx: c_int) -> String {
    match ffi::lua_type(L, idx) {
        ffi::LUA_TNUMBER => format!("{}", to_number(L, idx).unwrap_or(f64::NAN)),
        _ => type_name(L, idx).to_string(),
    }
}

/// The options table at `idx` (nil/absent = none); raises for other values.
unsafe fn opts_arg(L: *mut lua_State, idx: c_int, what: &str) -> Result<bool, Raise> {
    match ffi::lua_type(L, idx) {
        ffi::LUA_TNONE | ffi::LUA_TNIL => Ok(false),
        ffi::LUA_TTABLE => Ok(true),
        _ => Err(format!("{what} expects an options table (got {})", type_name(L, idx)).into()),
    }
}

/// `opts.max` of the options table at `idx` (if any), or `default`.
unsafe fn opt_max(L: *mut lua_State, idx: c_int, what: &str, default: Option<usize>) -> Result<Option<usize>, Raise> {
    if !opts_arg(L, idx, what)? {
        return Ok(default);
    }
    raw_field(L, idx, c"max");
    let r = if ffi::lua_type(L, -1) == ffi::LUA_TNIL { Ok(default) } else { size_arg(L, -1, 1.0, &format!("{what} option max")).map(Some) };
    ffi::lua_settop(L, -2);
    r
}

/// The request of `socket.read(conn [, fmt [, opts]])`.
unsafe fn read_request(L: *mut lua_State, s: *mut Sock) -> Result<Request, Raise> {
    const WHAT: &str = "socket.read";
    match ffi::lua_type(L, 2) {
        ffi::LUA_TNONE | ffi::LUA_TNIL => {
            opts_arg(L, 3, WHAT)?;
            Ok(Request::Any { limit: stream::read_size(s) })
        }
        ffi::LUA_TNUMBER => {
            let n = size_arg(L, 2, 0.0, "socket.read: size")?;
            if opts_arg(L, 3, WHAT)? {
                return Err("socket.read: options apply to \"*l\", \"*L\" and \"*a\" only".into());
            }
            Ok(Request::Exactly(n))
        }
        ffi::LUA_TSTRING => {
            let f = to_bytes(L, 2).unwrap_or_default();
            let f = f.strip_prefix(b"*").unwrap_or(f);
            match f {
                b"l" | b"L" => {
                    let max = opt_max(L, 3, WHAT, Some(readbuf::LINE_MAX))?.unwrap_or(readbuf::LINE_MAX);
                    Ok(Request::Line { keep: f == b"L", max })
                }
                b"a" => Ok(Request::All { max: opt_max(L, 3, WHAT, None)? }),
                _ => Err(format!(
                    "socket.read: invalid format '{}' (expected a size, \"*l\", \"*L\" or \"*a\")",
                    String::from_utf8_lossy(to_bytes(L, 2).unwrap_or_default())
                )
                .into()),
            }
        }
        _ => Err(format!("socket.read: invalid format (a {}; expected a size, \"*l\", \"*L\" or \"*a\")", type_name(L, 2)).into()),
    }
}

/// Parks or answers a read of `req` on the connection `s`.
unsafe fn do_read(L: *mut lua_State, s: *mut Sock, req: Request) -> c_int {
    match stream::read(L, s, req) {
        ReadNow::Done(n) => n,
        ReadNow::Wait => ffi::lua_yield(L, 0),
    }
}

lua_fn! {
    /// `socket.read(conn [, fmt [, opts]])`: `fmt` nil (what one read
    /// delivers), n (exactly n bytes), "*l" / "*L" (a line without / with its
    /// end), "*a" (everything until the peer closes). Yields until answered.
    pub fn l_read(L) {
        let s = match conn_arg(L) {
            Ok(s) => s,
            Err(msg) => return Ok(push_fail(L, msg)),
        };
        let req = read_request(L, s)?;
        Ok(do_read(L, s, req))
    }
}

lua_fn! {
    /// `socket.read_until(conn, delim [, opts])` -> the bytes before `delim`
    /// (`opts.inclusive`: with it); `opts.max` (default 1 MiB) bounds them.
    pub fn l_read_until(L) {
        const WHAT: &str = "socket.read_until";
        let delim = match (ffi::lua_type(L, 2), to_bytes(L, 2)) {
            (ffi::LUA_TSTRING, Some(d)) if !d.is_empty() => d,
            (ffi::LUA_TSTRING, _) => return Err("socket.read_until: the delimiter must not be empty".into()),
            _ => return Err(format!("socket.read_until expects a delimiter string (got {})", type_name(L, 2)).into()),
        };
        let max = opt_max(L, 3, WHAT, Some(readbuf::UNTIL_MAX))?.unwrap_or(readbuf::UNTIL_MAX);
        if delim.len() > max {
            return Err(format!("socket.read_until: the delimiter ({} bytes) is longer than max ({max})", delim.len()).into());
        }
        let inclusive = opts_arg(L, 3, WHAT)? && {
            raw_field(L, 3, c"inclusive");
            let t = ffi::lua_type(L, -1);
            let v = ffi::lua_toboolean(L, -1) != 0;
            ffi::lua_settop(L, -2);
            if t != ffi::LUA_TNIL && t != ffi::LUA_TBOOLEAN {
                return Err("socket.read_until: option inclusive must be a boolean".into());
            }
            v
        };
        let req = Request::Until { delim: delim.into(), inclusive, max };
        let s = match conn_arg(L) {
            Ok(s) => s,
            Err(msg) => return Ok(push_fail(L, msg)),
        };
        Ok(do_read(L, s, req))
    }
}

lua_fn! {
    /// `socket.unread(conn, data)` -> true | nil, err: `data` is read again
    /// before anything buffered.
    pub fn l_unread(L) {
        let Some(data) = (ffi::lua_type(L, 2) == ffi::LUA_TSTRING).then(|| to_bytes(L, 2)).flatten() else {
            return Err(format!("socket.unread expects a string (got {})", type_name(L, 2)).into());
        };
        let s = match conn_arg(L) {
            Ok(s) => s,
            Err(msg) => return Ok(push_fail(L, msg)),
        };
        match stream::unread(s, data) {
            Ok(()) => {
                ffi::lua_pushboolean(L, 1);
                Ok(1)
            }
            Err(msg) => Ok(push_fail(L, msg)),
        }
    }
}

/// The buffers of `socket.write`'s data argument at 2: a string (or number),
/// or an array of them. An array holding numbers is replaced at 2 by a copy
/// holding their strings, which keeps every buffer's bytes alive.
unsafe fn write_bufs(L: *mut lua_State) -> Result<Vec<uv::uv_buf_t>, Raise> {
    let buf = |b: &[u8]| uv::uv_buf_t { base: b.as_ptr() as *mut _, len: b.len() };
    match ffi::lua_type(L, 2) {
        // A number is converted to a string in place, so its bytes stay on
        // the stack (and alive) while the caller is parked.
        ffi::LUA_TSTRING | ffi::LUA_TNUMBER => return Ok(vec![buf(to_bytes(L, 2).unwrap_or_default())]),
        ffi::LUA_TTABLE => {}
        _ => return Err(format!("socket.write expects a string or an array of strings (got {})", type_name(L, 2)).into()),
    }
    let n = ffi::lua_objlen(L, 2);
    let mut numbers = false;
    for i in 1..=n {
        ffi::lua_rawgeti(L, 2, i as _);
        let t = ffi::lua_type(L, -1);
        let name = type_name(L, -1);
        ffi::lua_settop(L, -2);
        match t {
            ffi::LUA_TSTRING => {}
            ffi::LUA_TNUMBER => numbers = true,
            _ => return Err(format!("socket.write: element {i} of the array is a {name} (expected a string)").into()),
        }
    }
    if numbers {
        ffi::lua_createtable(L, n as c_int, 0);
        for i in 1..=n {
            ffi::lua_rawgeti(L, 2, i as _);
            ffi::lua_tolstring(L, -1, std::ptr::null_mut());
            ffi::lua_rawseti(L, -2, i as _);
        }
        ffi::lua_replace(L, 2);
    }
    let mut bufs = Vec::with_capacity(n);
    for i in 1..=n {
        ffi::lua_rawgeti(L, 2, i as _);
        // Anchored by the array at 2.
        bufs.push(buf(to_bytes(L, -1).unwrap_or_default()));
        ffi::lua_settop(L, -2);
    }
    Ok(bufs)
}

lua_fn! {
    /// `socket.write(conn, data)` -> nil | err (yields until the kernel has it
    /// all); `data` is a string or an array of strings (one vectored write).
    pub fn l_write(L) {
        let mut bufs = write_bufs(L)?;
        let s = match conn_arg(L) {
            Ok(s) => s,
            Err(msg) => {
                push_bytes(L, msg.as_bytes());
                return Ok(1);
            }
        };
        match stream::write(L, s, &mut bufs, 2) {
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
    /// `socket.shutdown(conn)` -> true | nil, err: ends the write side once
    /// queued writes are sent (the peer reads end of stream); reading goes on.
    pub fn l_shutdown(L) {
        let s = match conn_arg(L) {
            Ok(s) => s,
            Err(msg) => return Ok(push_fail(L, msg)),
        };
        match stream::shutdown_write(L, s) {
            Ok(()) => Ok(ffi::lua_yield(L, 0)),
            Err(msg) => Ok(push_fail(L, &msg)),
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
                (*rt).streams.set_read_size_default(n as usize);
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

/// The socket (connection or listener) at argument 1 for a time-limit
/// setter: `Err(None)` for a handle already gone (nothing to set), or the
/// error to return for a value that is not a socket (argument-error rule:
/// what a call acts on gives `nil, err`).
unsafe fn setter_arg(L: *mut lua_State) -> Result<*mut Sock, Option<&'static str>> {
    match stream::arg(L, 1) {
        Arg::Sock(s) => Ok(s),
        Arg::Dead => Err(None),
        Arg::NotSocket => Err(Some(NOT_SOCKET)),
    }
}

lua_fn! {
    /// `socket.settimeout(handle, ms | nil)`: the time limit of every later
    /// wait on the handle (read, write, accept); nil = none.
    pub fn l_settimeout(L) {
        let ms = opt_ms(L, 2, "socket.settimeout")?;
        match setter_arg(L) {
            Ok(s) => (*s).timeouts = Timeouts::new(ms, ms),
            Err(Some(msg)) => return Ok(push_fail(L, msg)),
            Err(None) => {}
        }
        Ok(0)
    }
}

lua_fn! {
    /// `socket.settimeouts(handle, connect_ms, send_ms, read_ms)` (OpenResty's
    /// order). `connect_ms` is checked but has no effect: a handle exists only
    /// once connected (`connect`'s `opts.timeout` bounds the connect).
    pub fn l_settimeouts(L) {
        opt_ms(L, 2, "socket.settimeouts")?;
        let t = Timeouts::new(opt_ms(L, 3, "socket.settimeouts")?, opt_ms(L, 4, "socket.settimeouts")?);
        match setter_arg(L) {
            Ok(s) => (*s).timeouts = t,
            Err(Some(msg)) => return Ok(push_fail(L, msg)),
            Err(None) => {}
        }
        Ok(0)
    }
}

/// The socket at argument 1 and the option named at argument 2.
unsafe fn option_args(L: *mut lua_State, what: &str) -> Result<Result<(*mut Sock, Opt), &'static str>, Raise> {
    let opt = match to_bytes(L, 2).filter(|_| ffi::lua_type(L, 2) == ffi::LUA_TSTRING) {
        Some(name) => Opt::parse(name).ok_or_else(|| {
            Raise::from(format!("{what}: unknown option '{}' (options: {})", String::from_utf8_lossy(name), sockopt::NAMES))
        })?,
        None => return Err(format!("{what} expects an option name (got {})", type_name(L, 2)).into()),
    };
    let s = match stream::arg(L, 1) {
        Arg::Sock(s) if (*s).is_closed() => return Ok(Err(CLOSED)),
        Arg::Sock(s) => s,
        Arg::Dead => return Ok(Err(CLOSED)),
        Arg::NotSocket => return Ok(Err(NOT_SOCKET)),
    };
    if !opt.applies((*s).family) {
        return Err(format!("{what}: option '{}' applies to TCP sockets only", to_bytes(L, 2).map(String::from_utf8_lossy).unwrap_or_default()).into());
    }
    Ok(Ok((s, opt)))
}

lua_fn! {
    /// `socket.setoption(handle, name, value)` -> true | nil, err
    pub fn l_setoption(L) {
        const WHAT: &str = "socket.setoption";
        let (s, opt) = match option_args(L, WHAT)? {
            Ok(x) => x,
            Err(msg) => return Ok(push_fail(L, msg)),
        };
        let v = match ffi::lua_type(L, 3) {
            ffi::LUA_TBOOLEAN => Value::Bool(ffi::lua_toboolean(L, 3) != 0),
            ffi::LUA_TNUMBER => match to_number(L, 3) {
                Some(n) if n.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&n) => Value::Int(n as u32),
                _ => return Err(format!("{WHAT}: {}", sockopt::takes(opt)).into()),
            },
            _ => return Err(format!("{WHAT}: {}", sockopt::takes(opt)).into()),
        };
        let v = sockopt::check(opt, v).map_err(|e| Raise::from(format!("{WHAT}: {e}")))?;
        match sockopt::set(s, opt, v) {
            Ok(()) => {
                ffi::lua_pushboolean(L, 1);
                Ok(1)
            }
            Err(e) => Ok(push_fail(L, &e)),
        }
    }
}

lua_fn! {
    /// `socket.getoption(handle, name)` -> value | nil, err
    pub fn l_getoption(L) {
        let (s, opt) = match option_args(L, "socket.getoption")? {
            Ok(x) => x,
            Err(msg) => return Ok(push_fail(L, msg)),
        };
        match sockopt::get(s, opt) {
            Ok(Value::Bool(b)) => ffi::lua_pushboolean(L, b as c_int),
            Ok(Value::Int(n)) => ffi::lua_pushnumber(L, n as f64),
            Err(e) => return Ok(push_fail(L, &e)),
        }
        Ok(1)
    }
}

/// A string field of the options table at `idx`, if present.
unsafe fn opt_string(L: *mut lua_State, idx: c_int, key: &CStr, what: &str) -> Result<Option<String>, Raise> {
    raw_field(L, idx, key);
    let r = match ffi::lua_type(L, -1) {
        ffi::LUA_TNIL => Ok(None),
        ffi::LUA_TSTRING => Ok(to_bytes(L, -1).map(|b| String::from_utf8_lossy(b).into_owned())),
        _ => Err(Raise::from(format!("{what}: option {} must be a string (got {})", key.to_string_lossy(), type_name(L, -1)))),
    };
    ffi::lua_settop(L, -2);
    r
}

/// A boolean field of the options table at `idx`, if present.
unsafe fn opt_bool(L: *mut lua_State, idx: c_int, key: &CStr, what: &str) -> Result<Option<bool>, Raise> {
    raw_field(L, idx, key);
    let r = match ffi::lua_type(L, -1) {
        ffi::LUA_TNIL => Ok(None),
        ffi::LUA_TBOOLEAN => Ok(Some(ffi::lua_toboolean(L, -1) != 0)),
        _ => Err(Raise::from(format!("{what}: option {} must be a boolean (got {})", key.to_string_lossy(), type_name(L, -1)))),
    };
    ffi::lua_settop(L, -2);
    r
}

/// The TLS options at `idx`: `true` (defaults) or a table.
pub unsafe fn tls_opts(L: *mut lua_State, idx: c_int, what: &str) -> Result<tls::Opts, Raise> {
    let mut o = tls::Opts::new();
    match ffi::lua_type(L, idx) {
        ffi::LUA_TBOOLEAN if ffi::lua_toboolean(L, idx) != 0 => return Ok(o),
        ffi::LUA_TTABLE => {}
        _ => return Err(format!("{what}: tls options must be true or a table (got {})", type_name(L, idx)).into()),
    }
    let idx = if idx < 0 { ffi::lua_gettop(L) + idx + 1 } else { idx };
    o.server_name = opt_string(L, idx, c"server_name", what)?;
    o.verify = opt_bool(L, idx, c"verify", what)?.unwrap_or(true);
    o.ca_file = opt_string(L, idx, c"ca_file", what)?;
    o.cert_file = opt_string(L, idx, c"cert_file", what)?;
    o.key_file = opt_string(L, idx, c"key_file", what)?;
    o.client_ca_file = opt_string(L, idx, c"client_ca_file", what)?;
    raw_field(L, idx, c"alpn");
    match ffi::lua_type(L, -1) {
        ffi::LUA_TNIL => {}
        ffi::LUA_TSTRING => o.alpn = vec![to_bytes(L, -1).unwrap_or_default().to_vec()],
        ffi::LUA_TTABLE => {
            for i in 1..=ffi::lua_objlen(L, -1) {
                ffi::lua_rawgeti(L, -1, i as _);
                let p = (ffi::lua_type(L, -1) == ffi::LUA_TSTRING).then(|| to_bytes(L, -1)).flatten().filter(|p| !p.is_empty() && p.len() < 256);
                let Some(p) = p else {
                    ffi::lua_settop(L, -3);
                    return Err(format!("{what}: option alpn must list protocol names (strings of 1 to 255 bytes)").into());
                };
                o.alpn.push(p.to_vec());
                ffi::lua_settop(L, -2);
            }
        }
        _ => {
            ffi::lua_settop(L, -2);
            return Err(format!("{what}: option alpn must be a string or an array of strings").into());
        }
    }
    ffi::lua_settop(L, -2);
    Ok(o)
}

lua_fn! {
    /// `socket._starttls(conn, opts [, timeout_ms [, host]])` -> true | nil, err
    /// (yields until the handshake is over); `socket.starttls` and TLS
    /// connects call it. `opts.server = true` makes our side the server.
    pub fn l_starttls(L) {
        const WHAT: &str = "socket.starttls";
        let o = tls_opts(L, 2, WHAT)?;
        let server = ffi::lua_type(L, 2) == ffi::LUA_TTABLE && opt_bool(L, 2, c"server", WHAT)?.unwrap_or(false);
        let timeout = opt_ms(L, 3, WHAT)?;
        let s = match conn_arg(L) {
            Ok(s) => s,
            Err(msg) => return Ok(push_fail(L, msg)),
        };
        let rt = runtime::of(L);
        let session = if server {
            (*rt).streams.tls.server(&o).and_then(tls::Session::server)
        } else {
            let name = match (&o.server_name, to_bytes(L, 4)) {
                (Some(n), _) => Ok(n.clone()),
                (None, Some(h)) => Ok(String::from_utf8_lossy(h).into_owned()),
                (None, None) => match (*s).family {
                    Family::Tcp => tcp::name(s, true).map(|a| a.ip().to_string()).map_err(strerror),
                    Family::Unix => Err("tls: a Unix socket needs opts.server_name".to_string()),
                },
            };
            name.and_then(|n| (*rt).streams.tls.client(&o).and_then(|c| tls::Session::client(c, &n)))
        };
        let session = match session {
            Ok(x) => x,
            Err(e) => return Ok(push_fail(L, &e)),
        };
        match stream::starttls(L, s, session, timeout) {
            Ok(()) => Ok(ffi::lua_yield(L, 0)),
            Err(e) => Ok(push_fail(L, &e)),
        }
    }
}

lua_fn! {
    /// `socket.tlsinfo(conn)` -> {version, cipher, alpn, server_name,
    /// peer_certificate} | nil (plain connection) | nil, err
    pub fn l_tlsinfo(L) {
        let s = match conn_arg(L) {
            Ok(s) => s,
            Err(msg) => return Ok(push_fail(L, msg)),
        };
        let Some(info) = stream::tlsinfo(s) else {
            ffi::lua_pushnil(L);
            return Ok(1);
        };
        ffi::lua_createtable(L, 0, 5);
        let set = |key: &CStr, v: Option<&[u8]>| {
            if let Some(v) = v {
                push_bytes(L, v);
                ffi::lua_setfield(L, -2, key.as_ptr());
            }
        };
        set(c"version", info.version.as_deref().map(str::as_bytes));
        set(c"cipher", info.cipher.as_deref().map(str::as_bytes));
        set(c"alpn", info.alpn.as_deref());
        set(c"server_name", info.server_name.as_deref().map(str::as_bytes));
        set(c"peer_certificate", info.peer_cert.as_deref());
        set(c"peer_subject", info.peer_subject.as_deref().map(str::as_bytes));
        ffi::lua_pushboolean(L, info.resumed as c_int);
        ffi::lua_setfield(L, -2, c"resumed".as_ptr());
        Ok(1)
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
