//! Unix-domain stream listeners (libuv pipes).

use std::ffi::{c_int, CString};

use libuv_sys2 as uv;

use crate::runtime::{strerror, Runtime};
use crate::stream::{self, Family, Sock};

/// What occupies a path we want to bind.
enum Occupant {
    Nothing,
    /// A socket file nobody accepts on: left over by a dead process.
    StaleSocket,
    /// A live socket, or a file of another kind: never touched.
    InUse,
}

/// Looks at `path` without following symlinks; probes a socket file with a
/// non-blocking connect to tell a stale one from a live one.
unsafe fn occupant(path: &CString) -> Occupant {
    let mut st: libc::stat = std::mem::zeroed();
    if libc::lstat(path.as_ptr(), &mut st) != 0 {
        return Occupant::Nothing;
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Occupant::InUse;
    }
    let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0);
    if fd < 0 {
        return Occupant::InUse;
    }
    let mut sa: libc::sockaddr_un = std::mem::zeroed();
    sa.sun_family = libc::AF_UNIX as _;
    let bytes = path.as_bytes();
    if bytes.len() >= sa.sun_path.len() {
        libc::close(fd);
        return Occupant::InUse;
    }
    for (d, b) in sa.sun_path.iter_mut().zip(bytes) {
        *d = *b as _;
    }
    let rc = libc::connect(fd, (&sa as *const libc::sockaddr_un).cast(), std::mem::size_of::<libc::sockaddr_un>() as _);
    let refused = rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECONNREFUSED);
    libc::close(fd);
    if refused {
        Occupant::StaleSocket
    } else {
        Occupant::InUse
    }
}

/// `socket.listen("unix", path)`. A stale socket file is removed first; any
/// other file at `path` is left alone and the call fails.
///
/// # Safety
/// Loop thread only.
pub unsafe fn listen(rt: *mut Runtime, path: &[u8], backlog: c_int) -> Result<*mut Sock, String> {
    let cpath = CString::new(path).map_err(|_| "invalid unix socket path".to_string())?;
    if path.is_empty() {
        return Err("invalid unix socket path".into());
    }
    match occupant(&cpath) {
        Occupant::Nothing => {}
        Occupant::StaleSocket => {
            libc::unlink(cpath.as_ptr());
        }
        Occupant::InUse => return Err(format!("failed to bind: {}", strerror(uv::uv_errno_t_UV_EADDRINUSE as c_int))),
    }
    let s = Sock::alloc(rt, Family::Unix);
    Sock::init(s).map_err(strerror)?;
    let rc = uv::uv_pipe_bind(&mut (*s).h.pipe, cpath.as_ptr());
    if rc != 0 {
        stream::close(s, false);
        return Err(format!("failed to bind: {}", strerror(rc)));
    }
    let rc = stream::listen(s, Some(cpath), backlog);
    if rc != 0 {
        stream::close(s, false);
        return Err(format!("failed to listen: {}", strerror(rc)));
    }
    Ok(s)
}

/// The path a Unix socket is bound to (empty for an unbound client end).
///
/// # Safety
/// `s` must be a live Unix socket.
pub unsafe fn sockname(s: *mut Sock) -> Result<Vec<u8>, c_int> {
    let mut buf = vec![0u8; 4096];
    let mut len = buf.len();
    let rc = uv::uv_pipe_getsockname(&(*s).h.pipe, buf.as_mut_ptr().cast(), &mut len);
    if rc != 0 {
        return Err(rc);
    }
    buf.truncate(len);
    Ok(buf)
}
