//! Addresses and name resolution (libuv's getaddrinfo request).
//!
//! Literals (`127.0.0.1`, `::1`, `[::1]`) never touch the resolver. Names are
//! resolved on libuv's thread pool when the caller can wait (`socket.connect`)
//! and synchronously where the API does not yield (`socket.listen`,
//! `udp.bind`, `udp.send`), which for the local names such calls use
//! (`localhost`) is a lookup in /etc/hosts.

use std::ffi::{c_int, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libuv_sys2 as uv;

/// The socket type asked of the resolver.
#[derive(Clone, Copy)]
pub enum SockType {
    Stream,
    Datagram,
}

/// Parses an IP literal; IPv6 may be written in brackets.
pub fn parse_ip(host: &str) -> Option<IpAddr> {
    let h = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    h.parse().ok()
}

/// Whether binding `ip` is allowed without the launcher's loopback flag:
/// 127.0.0.0/8, ::1, and IPv4-mapped loopback.
pub fn is_loopback(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// The message every loopback-restricted call returns.
pub const LOOPBACK_ONLY: &str =
    "binding to non-loopback addresses requires --dangerously-skip-loopback-restriction flag";

/// Converts a port argument: an integer in 0..=65535.
pub fn port(n: Option<f64>) -> Option<u16> {
    let n = n?;
    (n.fract() == 0.0 && (0.0..=65535.0).contains(&n)).then_some(n as u16)
}

/// `sockaddr_storage` and its length for libuv calls.
pub fn to_raw(a: &SocketAddr) -> (libc::sockaddr_storage, c_int) {
    // SAFETY: all-zero is a valid sockaddr_storage; the casts stay within it.
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        match a {
            SocketAddr::V4(v4) => {
                let sin = &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in);
                sin.sin_family = libc::AF_INET as _;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                (ss, std::mem::size_of::<libc::sockaddr_in>() as c_int)
            }
            SocketAddr::V6(v6) => {
                let sin6 = &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6);
                sin6.sin6_family = libc::AF_INET6 as _;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                sin6.sin6_flowinfo = v6.flowinfo();
                sin6.sin6_scope_id = v6.scope_id();
                (ss, std::mem::size_of::<libc::sockaddr_in6>() as c_int)
            }
        }
    }
}

/// Reads an IPv4/IPv6 socket address written by the kernel or the resolver.
///
/// # Safety
/// `p` must point to a valid sockaddr of its family's size.
pub unsafe fn from_raw(p: *const libc::sockaddr) -> Option<SocketAddr> {
    match (*p).sa_family as c_int {
        libc::AF_INET => {
            let sin = &*(p as *const libc::sockaddr_in);
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            let sin6 = &*(p as *const libc::sockaddr_in6);
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The resolver hints for `ty`.
fn hints(ty: SockType) -> uv::addrinfo {
    // SAFETY: all-zero is a valid addrinfo (null pointers, no flags).
    let mut h: uv::addrinfo = unsafe { std::mem::zeroed() };
    h.ai_family = libc::AF_UNSPEC;
    h.ai_socktype = match ty {
        SockType::Stream => libc::SOCK_STREAM,
        SockType::Datagram => libc::SOCK_DGRAM,
    };
    h
}

/// Copies the addresses out of a resolver result (in its order, without
/// duplicates) and frees it.
///
/// # Safety
/// `list` must be a result of uv_getaddrinfo (or null).
pub unsafe fn collect(list: *mut uv::addrinfo, port: u16) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    let mut p = list;
    while !p.is_null() {
        if let Some(mut a) = from_raw((*p).ai_addr as *const libc::sockaddr) {
            a.set_port(port);
            if !out.contains(&a) {
                out.push(a);
            }
        }
        p = (*p).ai_next;
    }
    if !list.is_null() {
        uv::uv_freeaddrinfo(list);
    }
    out
}

/// Why a host could not be turned into addresses.
pub enum ResolveError {
    /// Empty host or a NUL byte in it.
    Invalid,
    /// A libuv/resolver error code.
    Code(c_int),
}

fn host_cstring(host: &[u8]) -> Result<CString, ResolveError> {
    if host.is_empty() {
        return Err(ResolveError::Invalid);
    }
    CString::new(host).map_err(|_| ResolveError::Invalid)
}

/// Resolves `host` on the loop thread, blocking (see the module notes).
///
/// # Safety
/// `uv_loop` must be the runtime's loop, on the loop thread.
pub unsafe fn resolve_now(
    uv_loop: *mut uv::uv_loop_t,
    host: &[u8],
    port: u16,
    ty: SockType,
) -> Result<Vec<SocketAddr>, ResolveError> {
    if let Some(ip) = std::str::from_utf8(host).ok().and_then(parse_ip) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let node = host_cstring(host)?;
    let mut req: uv::uv_getaddrinfo_t = std::mem::zeroed();
    let h = hints(ty);
    let rc = uv::uv_getaddrinfo(uv_loop, &mut req, None, node.as_ptr(), std::ptr::null(), &h);
    if rc != 0 {
        return Err(ResolveError::Code(rc));
    }
    let addrs = collect(req.addrinfo, port);
    if addrs.is_empty() {
        return Err(ResolveError::Code(uv::uv_errno_t_UV_EAI_NONAME as c_int));
    }
    Ok(addrs)
}

/// Starts resolving `host` on the thread pool; `cb` receives the request.
/// Returns an error if the request could not be started.
///
/// # Safety
/// `req` must stay valid until `cb` runs.
pub unsafe fn resolve_async(
    uv_loop: *mut uv::uv_loop_t,
    req: *mut uv::uv_getaddrinfo_t,
    host: &[u8],
    ty: SockType,
    cb: uv::uv_getaddrinfo_cb,
) -> Result<(), ResolveError> {
    let node = host_cstring(host)?;
    let h = hints(ty);
    match uv::uv_getaddrinfo(uv_loop, req, cb, node.as_ptr(), std::ptr::null(), &h) {
        0 => Ok(()),
        rc => Err(ResolveError::Code(rc)),
    }
}

/// `"ip:port"`, IPv6 as `"[addr]:port"`.
pub fn format(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_loopback() {
        assert_eq!(parse_ip("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip("127.0.0.9"), Some("127.0.0.9".parse().unwrap()));
        assert_eq!(parse_ip("localhost"), None);
        for yes in ["127.0.0.1", "127.255.0.3", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(&yes.parse().unwrap()), "{yes}");
        }
        for no in ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "::ffff:10.0.0.1", "192.168.1.1"] {
            assert!(!is_loopback(&no.parse().unwrap()), "{no}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(port(Some(0.0)), Some(0));
        assert_eq!(port(Some(65535.0)), Some(65535));
        assert_eq!(port(Some(65536.0)), None);
        assert_eq!(port(Some(-1.0)), None);
        assert_eq!(port(Some(80.5)), None);
        assert_eq!(port(Some(f64::NAN)), None);
        assert_eq!(port(None), None);
    }

    #[test]
    fn raw_round_trip() {
        for s in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%3]:1"] {
            let a: SocketAddr = s.parse().unwrap();
            let (ss, _) = to_raw(&a);
            let b = unsafe { from_raw(&ss as *const _ as *const libc::sockaddr) }.unwrap();
            assert_eq!(a, b);
        }
        assert_eq!(format(&"[::1]:80".parse().unwrap()), "[::1]:80");
        assert_eq!(format(&"1.2.3.4:5".parse().unwrap()), "1.2.3.4:5");
    }
}
