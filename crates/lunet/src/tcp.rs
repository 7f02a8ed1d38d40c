//! TCP listeners: resolve, apply the loopback rule, bind, listen.

use std::ffi::c_int;
use std::net::SocketAddr;

use libuv_sys2 as uv;

use crate::dns::{self, ResolveError, SockType};
use crate::runtime::{strerror, Runtime};
use crate::sockopt::ListenOpts;
use crate::stream::{self, Family, Sock};

/// Resolves `host` for a listener or UDP socket and applies the loopback rule.
///
/// # Safety
/// Loop thread only.
pub unsafe fn local_addr(rt: *mut Runtime, host: &[u8], port: u16, ty: SockType) -> Result<SocketAddr, String> {
    let addrs = match dns::resolve_now((*rt).uv, host, port, ty) {
        Ok(a) => a,
        Err(ResolveError::Invalid) => return Err(crate::connect::INVALID.into()),
        Err(ResolveError::Code(rc)) => return Err(strerror(rc)),
    };
    if !(*rt).skip_loopback_restriction && !addrs.iter().all(|a| dns::is_loopback(&a.ip())) {
        return Err(dns::LOOPBACK_ONLY.into());
    }
    Ok(addrs[0])
}

/// `socket.listen("tcp", host, port, opts)`.
///
/// # Safety
/// Loop thread only.
pub unsafe fn listen(rt: *mut Runtime, host: &[u8], port: u16, opts: &ListenOpts) -> Result<*mut Sock, String> {
    let addr = local_addr(rt, host, port, SockType::Stream)?;
    // Worker mode: every worker (and the next generation) binds the port.
    let opts = &ListenOpts { reuseport: opts.reuseport || (*rt).worker.supervised, ..*opts };
    let s = Sock::alloc(rt, Family::Tcp);
    Sock::init(s).map_err(strerror)?;
    let (raw, _) = dns::to_raw(&addr);
    let rc = uv::uv_tcp_bind(&mut (*s).h.tcp, (&raw as *const libc::sockaddr_storage).cast(), opts.bind_flags());
    if rc != 0 {
        stream::close(s, false);
        return Err(format!("failed to bind: {}", strerror(rc)));
    }
    let rc = stream::listen(s, None, opts.backlog);
    if rc != 0 {
        stream::close(s, false);
        return Err(format!("failed to listen: {}", strerror(rc)));
    }
    Ok(s)
}

/// The local or peer address of a TCP handle.
///
/// # Safety
/// `s` must be a live TCP socket.
pub unsafe fn name(s: *mut Sock, peer: bool) -> Result<SocketAddr, c_int> {
    let mut ss: libc::sockaddr_storage = std::mem::zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as c_int;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast();
    let rc = if peer {
        uv::uv_tcp_getpeername(&(*s).h.tcp, p, &mut len)
    } else {
        uv::uv_tcp_getsockname(&(*s).h.tcp, p, &mut len)
    };
    if rc != 0 {
        return Err(rc);
    }
    dns::from_raw(p as *const libc::sockaddr).ok_or(uv::uv_errno_t_UV_EAFNOSUPPORT as c_int)
}
