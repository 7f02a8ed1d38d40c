//! Outgoing connections (libuv connect requests), TCP and Unix.
//!
//! A TCP connect resolves the host (a literal directly, a name on the thread
//! pool) and tries every address in order with a fresh handle each; a failed
//! attempt's handle is closed (and freed by its close callback), so refused
//! connects leak neither descriptors nor memory.

use std::ffi::{c_int, c_void, CString};
use std::net::SocketAddr;

use libuv_sys2 as uv;
use lunet_abi::ffi::lua_State;
use lunet_abi::lua::push_fail;

use crate::dns::{self, ResolveError, SockType};
use crate::runtime::{strerror, Runtime};
use crate::sched::{self, Shape, Spec, WaitId};
use crate::stream::{self, Family, Sock};

pub const INVALID: &str = "invalid host or port";

struct Connect {
    rt: *mut Runtime,
    wait: Option<WaitId>,
    gai: uv::uv_getaddrinfo_t,
    req: uv::uv_connect_t,
    addrs: Vec<SocketAddr>,
    port: u16,
    next: usize,
    /// The attempt in progress.
    sock: *mut Sock,
    last_error: c_int,
}

impl Connect {
    fn new(rt: *mut Runtime, port: u16) -> *mut Connect {
        Box::into_raw(Box::new(Connect {
            rt,
            wait: None,
            // SAFETY: plain C request structs; all-zero before use.
            gai: unsafe { std::mem::zeroed() },
            req: unsafe { std::mem::zeroed() },
            addrs: Vec::new(),
            port,
            next: 0,
            sock: std::ptr::null_mut(),
            last_error: uv::uv_errno_t_UV_ECONNREFUSED as c_int,
        }))
    }
}

/// Result of starting a connect: an immediate failure (values pushed), or the
/// caller must yield.
pub enum Start {
    Failed(c_int),
    Wait,
}

/// `socket.connect(host, port)` for TCP.
///
/// # Safety
/// `L` is the running coroutine (yieldability already checked).
pub unsafe fn tcp(L: *mut lua_State, rt: *mut Runtime, host: &[u8], port: u16, timeout: Option<u64>) -> Start {
    let c = Connect::new(rt, port);
    if let Some(ip) = std::str::from_utf8(host).ok().and_then(dns::parse_ip) {
        (*c).addrs.push(SocketAddr::new(ip, port));
        if let Err(rc) = attempt(c) {
            drop(Box::from_raw(c));
            return Start::Failed(push_fail(L, &strerror(rc)));
        }
    } else {
        (*c).gai.data = c.cast();
        match dns::resolve_async((*rt).uv, &mut (*c).gai, host, SockType::Stream, Some(on_resolved)) {
            Ok(()) => crate::work::pool_begin(), // a name lookup on the pool
            Err(e) => {
                drop(Box::from_raw(c));
                let msg = match e {
                    ResolveError::Invalid => INVALID.to_string(),
                    ResolveError::Code(rc) => strerror(rc),
                };
                return Start::Failed(push_fail(L, &msg));
            }
        }
    }
    park(L, c, timeout);
    Start::Wait
}

/// `socket.connect(path)` for a Unix socket.
///
/// # Safety
/// `L` is the running coroutine (yieldability already checked).
pub unsafe fn unix(L: *mut lua_State, rt: *mut Runtime, path: &[u8], timeout: Option<u64>) -> Start {
    let Ok(cpath) = CString::new(path) else {
        return Start::Failed(push_fail(L, "invalid unix socket path"));
    };
    let c = Connect::new(rt, 0);
    let s = Sock::alloc(rt, Family::Unix);
    if let Err(rc) = Sock::init(s) {
        drop(Box::from_raw(c));
        return Start::Failed(push_fail(L, &strerror(rc)));
    }
    (*c).sock = s;
    (*c).req.data = c.cast();
    let rc = uv::uv_pipe_connect2(&mut (*c).req, &mut (*s).h.pipe, cpath.as_ptr(), path.len(), 0, Some(on_connected));
    if rc != 0 {
        stream::close(s, false);
        drop(Box::from_raw(c));
        return Start::Failed(push_fail(L, &strerror(rc)));
    }
    park(L, c, timeout);
    Start::Wait
}

unsafe fn park(L: *mut lua_State, c: *mut Connect, timeout: Option<u64>) {
    let spec = Spec::new(Shape::Two).timeout(timeout).unhook(unhook, c.cast());
    (*c).wait = Some(sched::park((*c).rt, L, spec));
    (*(*c).rt).streams.connects.insert(c.cast());
}

/// The connect's wait ended early: stop the lookup or the attempt; their
/// callbacks then find no wait and free the request.
unsafe fn unhook(_rt: *mut Runtime, ctx: *mut c_void, _id: WaitId) {
    let c = ctx as *mut Connect;
    (*c).wait = None;
    if (*c).sock.is_null() {
        uv::uv_cancel(std::ptr::addr_of_mut!((*c).gai).cast());
    } else {
        stream::close((*c).sock, false);
    }
}

/// Starts connecting to the next address. Err = the attempt could not start.
unsafe fn attempt(c: *mut Connect) -> Result<(), c_int> {
    let c_ref = &mut *c;
    let addr = c_ref.addrs[c_ref.next];
    (*c).next += 1;
    let s = Sock::alloc((*c).rt, Family::Tcp);
    Sock::init(s)?;
    (*c).sock = s;
    (*c).req.data = c.cast();
    let (raw, _) = dns::to_raw(&addr);
    let rc = uv::uv_tcp_connect(&mut (*c).req, &mut (*s).h.tcp, (&raw as *const libc::sockaddr_storage).cast(), Some(on_connected));
    if rc != 0 {
        stream::close(s, false);
        (*c).sock = std::ptr::null_mut();
        return Err(rc);
    }
    Ok(())
}

/// Tries the remaining addresses; finishes with the last error when none is left.
unsafe fn try_next(c: *mut Connect) {
    while (*c).next < (*c).addrs.len() {
        match attempt(c) {
            Ok(()) => return,
            Err(rc) => (*c).last_error = rc,
        }
    }
    finish(c, Err((*c).last_error));
}

unsafe extern "C" fn on_resolved(req: *mut uv::uv_getaddrinfo_t, status: c_int, res: *mut uv::addrinfo) {
    crate::work::pool_done();
    let c = (*req).data as *mut Connect;
    let addrs = dns::collect(res, (*c).port);
    if status != 0 || addrs.is_empty() || (*c).wait.is_none() {
        let code = if status != 0 { status } else { uv::uv_errno_t_UV_EAI_NONAME as c_int };
        return finish(c, Err(code));
    }
    (*c).addrs = addrs;
    try_next(c);
}

unsafe extern "C" fn on_connected(req: *mut uv::uv_connect_t, status: c_int) {
    let c = (*req).data as *mut Connect;
    let s = (*c).sock;
    if status == 0 && (*c).wait.is_some() && !(*s).is_closed() {
        (*c).sock = std::ptr::null_mut();
        let rc = stream::begin(s);
        if rc != 0 {
            stream::close(s, false);
            return finish(c, Err(rc));
        }
        return finish(c, Ok(s));
    }
    // Failed (or abandoned at shutdown): this attempt's handle is done.
    stream::close(s, false);
    (*c).sock = std::ptr::null_mut();
    if status != 0 {
        (*c).last_error = status;
    }
    if (*c).wait.is_none() {
        return finish(c, Err((*c).last_error));
    }
    try_next(c);
}

unsafe fn finish(c: *mut Connect, result: Result<*mut Sock, c_int>) {
    let c = Box::from_raw(c);
    let rt = c.rt;
    (*rt).streams.connects.remove(&(Box::as_ref(&c) as *const Connect as *mut c_void));
    match (c.wait, result) {
        (Some(id), Ok(s)) => {
            let mut taken = false;
            sched::complete(rt, id, |co| {
                stream::push(co, s);
                taken = true; // (not if the push raised)
                1
            });
            if !taken {
                stream::close(s, false);
            }
        }
        (Some(id), Err(rc)) => {
            sched::complete(rt, id, |co| push_fail(co, &strerror(rc)));
        }
        (None, Ok(s)) => stream::close(s, false),
        (None, Err(_)) => {}
    }
}

/// Shutdown: releases the coroutines waiting for a connect. The requests end
/// by themselves (their handles are closed by the stream shutdown).
///
/// # Safety
/// Runtime shutdown only.
pub unsafe fn shutdown(rt: *mut Runtime) {
    let pending: Vec<*mut c_void> = (*rt).streams.connects.iter().copied().collect();
    for p in pending {
        let c = p as *mut Connect;
        if let Some(id) = (*c).wait.take() {
            sched::forget(rt, id);
        }
        if (*c).sock.is_null() {
            // Still resolving: nothing will run its callback; forget it.
            (*rt).streams.connects.remove(&p);
        }
    }
}
