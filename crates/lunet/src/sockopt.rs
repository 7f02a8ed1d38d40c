//! Socket options: `socket.setoption` / `socket.getoption` on TCP and Unix
//! stream handles, and the options of `socket.listen`.
//!
//! Option names and the values they take are checked here (a wrong name or
//! value is a programmer error and raises); applying one is a system call
//! whose failure is a runtime failure (`nil, err`).

use std::ffi::{c_int, c_void};

use libuv_sys2 as uv;

use crate::runtime::strerror;
use crate::stream::{self, Family, Sock, MAX_READ_SIZE};

/// The options `setoption`/`getoption` know.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Opt {
    /// TCP_NODELAY (boolean).
    NoDelay,
    /// SO_KEEPALIVE with the idle time before probes (seconds, or false).
    KeepAlive,
    /// SO_SNDBUF / SO_RCVBUF in bytes (Linux reports twice what was set).
    SndBuf,
    RcvBuf,
    /// SO_LINGER (seconds, or false).
    Linger,
    /// The connection's own read size (`set_read_buffer_size` per connection).
    ReadBufferSize,
}

impl Opt {
    pub fn parse(name: &[u8]) -> Option<Opt> {
        Some(match name {
            b"nodelay" => Opt::NoDelay,
            b"keepalive" => Opt::KeepAlive,
            b"sndbuf" => Opt::SndBuf,
            b"rcvbuf" => Opt::RcvBuf,
            b"linger" => Opt::Linger,
            b"read_buffer_size" => Opt::ReadBufferSize,
            _ => return None,
        })
    }

    /// Whether the option exists for sockets of `family`.
    pub fn applies(self, family: Family) -> bool {
        family == Family::Tcp || !matches!(self, Opt::NoDelay | Opt::KeepAlive)
    }
}

pub const NAMES: &str = "nodelay, keepalive, sndbuf, rcvbuf, linger, read_buffer_size";

/// An option's value, as Lua sees it.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Value {
    Bool(bool),
    /// Seconds or bytes.
    Int(u32),
}

/// What `opt` takes, for error messages.
pub fn takes(opt: Opt) -> &'static str {
    match opt {
        Opt::NoDelay => "nodelay takes a boolean",
        Opt::KeepAlive => "keepalive takes seconds (an integer >= 1) or false",
        Opt::Linger => "linger takes seconds (an integer from 0 to 65535) or false",
        Opt::SndBuf | Opt::RcvBuf => "sndbuf and rcvbuf take a size in bytes (an integer from 1 to 2147483647)",
        Opt::ReadBufferSize => "read_buffer_size takes an integer from 1 to 16777216",
    }
}

/// Checks `v` for `opt`; the error says what the option takes.
pub fn check(opt: Opt, v: Value) -> Result<Value, &'static str> {
    let ok = match (opt, v) {
        (Opt::NoDelay, Value::Bool(_)) => true,
        (Opt::KeepAlive | Opt::Linger, Value::Bool(b)) => !b,
        (Opt::KeepAlive, Value::Int(n)) => n >= 1,
        (Opt::Linger, Value::Int(n)) => n <= 65535,
        (Opt::SndBuf | Opt::RcvBuf, Value::Int(n)) => n >= 1 && n <= i32::MAX as u32,
        (Opt::ReadBufferSize, Value::Int(n)) => n >= 1 && n as usize <= MAX_READ_SIZE,
        _ => false,
    };
    if ok {
        Ok(v)
    } else {
        Err(takes(opt))
    }
}

unsafe fn fd(s: *mut Sock) -> Result<c_int, String> {
    let mut fd: uv::uv_os_fd_t = -1;
    match uv::uv_fileno(Sock::handle(s), &mut fd) {
        0 => Ok(fd),
        rc => Err(strerror(rc)),
    }
}

unsafe fn sys(rc: c_int) -> Result<(), String> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

unsafe fn get_int(fd: c_int, level: c_int, name: c_int) -> Result<c_int, String> {
    let mut v: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    sys(libc::getsockopt(fd, level, name, (&mut v as *mut c_int).cast::<c_void>(), &mut len))?;
    Ok(v)
}

unsafe fn set_int(fd: c_int, level: c_int, name: c_int, v: c_int) -> Result<(), String> {
    let len = std::mem::size_of::<c_int>() as libc::socklen_t;
    sys(libc::setsockopt(fd, level, name, (&v as *const c_int).cast::<c_void>(), len))
}

/// Applies a checked value.
///
/// # Safety
/// `s` a live, open socket for which `opt.applies`.
pub unsafe fn set(s: *mut Sock, opt: Opt, v: Value) -> Result<(), String> {
    let uvr = |rc: c_int| if rc == 0 { Ok(()) } else { Err(strerror(rc)) };
    match (opt, v) {
        (Opt::NoDelay, Value::Bool(b)) => uvr(uv::uv_tcp_nodelay(&mut (*s).h.tcp, b as c_int)),
        (Opt::KeepAlive, Value::Bool(_)) => uvr(uv::uv_tcp_keepalive(&mut (*s).h.tcp, 0, 0)),
        (Opt::KeepAlive, Value::Int(n)) => uvr(uv::uv_tcp_keepalive(&mut (*s).h.tcp, 1, n)),
        (Opt::SndBuf, Value::Int(n)) => set_int(fd(s)?, libc::SOL_SOCKET, libc::SO_SNDBUF, n as c_int),
        (Opt::RcvBuf, Value::Int(n)) => set_int(fd(s)?, libc::SOL_SOCKET, libc::SO_RCVBUF, n as c_int),
        (Opt::Linger, v) => {
            let l = match v {
                Value::Int(n) => libc::linger { l_onoff: 1, l_linger: n as c_int },
                Value::Bool(_) => libc::linger { l_onoff: 0, l_linger: 0 },
            };
            let len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
            sys(libc::setsockopt(fd(s)?, libc::SOL_SOCKET, libc::SO_LINGER, (&l as *const libc::linger).cast(), len))
        }
        (Opt::ReadBufferSize, Value::Int(n)) => {
            stream::set_read_size(s, n);
            Ok(())
        }
        _ => unreachable!("value checked by sockopt::check"),
    }
}

/// Reads an option's current value.
///
/// # Safety
/// `s` a live, open socket for which `opt.applies`.
pub unsafe fn get(s: *mut Sock, opt: Opt) -> Result<Value, String> {
    let int = |v: c_int| Value::Int(v.max(0) as u32);
    Ok(match opt {
        Opt::NoDelay => Value::Bool(get_int(fd(s)?, libc::IPPROTO_TCP, libc::TCP_NODELAY)? != 0),
        Opt::KeepAlive => {
            let fd = fd(s)?;
            if get_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE)? == 0 {
                Value::Bool(false)
            } else {
                int(get_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)?)
            }
        }
        Opt::SndBuf => int(get_int(fd(s)?, libc::SOL_SOCKET, libc::SO_SNDBUF)?),
        Opt::RcvBuf => int(get_int(fd(s)?, libc::SOL_SOCKET, libc::SO_RCVBUF)?),
        Opt::Linger => {
            let mut l = libc::linger { l_onoff: 0, l_linger: 0 };
            let mut len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
            sys(libc::getsockopt(fd(s)?, libc::SOL_SOCKET, libc::SO_LINGER, (&mut l as *mut libc::linger).cast(), &mut len))?;
            if l.l_onoff == 0 {
                Value::Bool(false)
            } else {
                int(l.l_linger)
            }
        }
        Opt::ReadBufferSize => Value::Int(stream::read_size(s) as u32),
    })
}

/// Options of `socket.listen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenOpts {
    pub backlog: c_int,
    pub reuseport: bool,
    pub ipv6only: bool,
}

/// The kernel's default is capped by net.core.somaxconn; libuv's examples
/// and nginx use 511.
pub const BACKLOG: c_int = 511;

impl Default for ListenOpts {
    fn default() -> Self {
        ListenOpts { backlog: BACKLOG, reuseport: false, ipv6only: false }
    }
}

impl ListenOpts {
    /// libuv's `uv_tcp_bind` flags.
    pub fn bind_flags(&self) -> u32 {
        let mut f = 0;
        if self.ipv6only {
            f |= uv::uv_tcp_flags_UV_TCP_IPV6ONLY;
        }
        if self.reuseport {
            f |= uv::uv_tcp_flags_UV_TCP_REUSEPORT;
        }
        f as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Opt::parse(b"nodelay"), Some(Opt::NoDelay));
        assert_eq!(Opt::parse(b"read_buffer_size"), Some(Opt::ReadBufferSize));
        assert_eq!(Opt::parse(b"NODELAY"), None);
        assert_eq!(Opt::parse(b""), None);
        assert!(!Opt::NoDelay.applies(Family::Unix));
        assert!(Opt::SndBuf.applies(Family::Unix));
    }

    #[test]
    fn values() {
        assert!(check(Opt::NoDelay, Value::Int(1)).is_err());
        assert!(check(Opt::KeepAlive, Value::Int(0)).is_err());
        assert!(check(Opt::KeepAlive, Value::Bool(true)).is_err());
        assert!(check(Opt::KeepAlive, Value::Bool(false)).is_ok());
        assert!(check(Opt::Linger, Value::Int(0)).is_ok());
        assert!(check(Opt::Linger, Value::Int(70000)).is_err());
        assert!(check(Opt::SndBuf, Value::Int(0)).is_err());
        assert!(check(Opt::ReadBufferSize, Value::Int(16 * 1024 * 1024 + 1)).is_err());
        assert!(check(Opt::ReadBufferSize, Value::Int(1)).is_ok());
    }

    #[test]
    fn bind_flags() {
        assert_eq!(ListenOpts::default().bind_flags(), 0);
        let o = ListenOpts { reuseport: true, ipv6only: true, ..Default::default() };
        assert_eq!(o.bind_flags(), (uv::uv_tcp_flags_UV_TCP_REUSEPORT | uv::uv_tcp_flags_UV_TCP_IPV6ONLY) as u32);
    }
}
