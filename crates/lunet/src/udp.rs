//! `lunet.udp`: UDP sockets.
//!
//! A socket starts receiving when it is bound and keeps receiving until it is
//! closed, so a bound socket keeps the loop alive. A datagram that arrives
//! while a coroutine waits in `recv` goes straight from libuv's buffer into
//! that coroutine's Lua string; otherwise it is copied into the socket's
//! receive queue. The queue is bounded (by default [`DEFAULT_QUEUE`] datagrams,
//! and never more than [`QUEUE_BYTES`] of payload): when a new datagram does
//! not fit, the oldest queued ones are dropped and counted (`udp.stats`).
//!
//! Sending never waits: `uv_udp_try_send` first, and only when the kernel
//! would block is the datagram copied into a libuv send request. Closing a
//! socket with such requests in flight stops receiving at once but closes the
//! libuv handle only after the last request has completed, so datagrams sent
//! right before `close` still go out.
//!
//! Lifetime: like stream sockets, the `Udp` is heap-allocated and outlives
//! both the libuv handle (until its close callback) and the Lua userdata
//! (until `__gc`); whichever goes last frees it.

use std::collections::VecDeque;
use std::ffi::{c_int, c_void, CStr};
use std::io::Write;
use std::net::SocketAddr;
use std::ptr;

use libuv_sys2 as uv;
use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{push_bytes, push_fail, to_bytes, to_number, type_name, Raise};
use lunet_abi::lua_fn;

use crate::connect::INVALID;
use crate::dns::{self, ResolveError, SockType};
use crate::runtime::{self, strerror, Runtime};
use crate::sched::{self, Shape, Spec, WaitId};
use crate::task::opt_ms;
use crate::tcp;

/// Registry name of the UDP handles' metatable.
pub const META: &CStr = c"lunet.udp";

pub const CLOSED: &str = "udp closed";
const NOT_UDP: &str = "invalid udp handle";
const PENDING: &str = "recv already pending";

/// Datagrams a socket queues while nobody waits in `recv`, unless `bind` is
/// given another `queue` size.
pub const DEFAULT_QUEUE: usize = 1024;
/// The largest `queue` size `bind` accepts.
pub const MAX_QUEUE: usize = 1 << 20;
/// Payload bytes a socket's receive queue holds at most, whatever its size.
pub const QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// Receive buffer: sockets read with `recvmmsg`, up to 20 datagrams per
/// system call, each into its own 64 KiB slice of this buffer; a slice is
/// larger than any UDP payload (65,527 bytes over IPv6), so datagrams are
/// never truncated.
const RX_SIZE: usize = 20 * 64 * 1024;
/// The largest payloads the kernel sends (65,535 minus the IP and UDP headers).
const MAX_PAYLOAD_V4: usize = 65_507;
const MAX_PAYLOAD_V6: usize = 65_527;

/// Runtime-wide UDP state: the receive buffer shared by every socket (libuv
/// fills it and calls back before it reads the next datagram).
#[derive(Default)]
pub struct Udps {
    rx: Vec<u8>,
}

struct Datagram {
    data: Box<[u8]>,
    from: SocketAddr,
}

/// Counters reported by `udp.stats`.
#[derive(Default, Clone, Copy)]
struct Stats {
    received: u64,
    dropped: u64,
    sent: u64,
    send_errors: u64,
}

pub struct Udp {
    h: uv::uv_udp_t,
    rt: *mut Runtime,
    /// Bound to an IPv6 address (decides which address of a name `send` uses).
    v6: bool,
    /// `close` was called (the handle is closing, closed, or flushing sends).
    closed: bool,
    /// libuv has finished closing the handle.
    gone: bool,
    /// A Lua userdata points at this socket.
    ud: bool,
    queue: VecDeque<Datagram>,
    queue_max: usize,
    queue_bytes: usize,
    receiver: Option<WaitId>,
    /// Time limit of each `recv` wait (`udp.settimeout`), ms.
    timeout: Option<u64>,
    /// Send requests handed to libuv and not completed yet.
    sends: usize,
    /// Test hook: skip `try_send`, so every datagram takes the queued path.
    always_queue: bool,
    stats: Stats,
}

struct SendReq {
    req: uv::uv_udp_send_t,
    sock: *mut Udp,
    data: Box<[u8]>,
}

impl Udp {
    #[inline]
    unsafe fn handle(s: *mut Udp) -> *mut uv::uv_handle_t {
        ptr::addr_of_mut!((*s).h).cast()
    }
}

// ---------------------------------------------------------------- binding

/// `udp.bind(host, port)`: resolves `host` (the loopback rule applies, as for
/// TCP listeners), binds and starts receiving.
///
/// # Safety
/// Loop thread only.
pub unsafe fn bind(rt: *mut Runtime, host: &[u8], port: u16, queue_max: usize) -> Result<*mut Udp, String> {
    let addr = tcp::local_addr(rt, host, port, SockType::Datagram)?;
    let s = Box::into_raw(Box::new(Udp {
        // SAFETY: libuv handles are plain C structs; all-zero is their pre-init state.
        h: std::mem::zeroed(),
        rt,
        v6: addr.is_ipv6(),
        closed: false,
        gone: false,
        ud: false,
        queue: VecDeque::new(),
        queue_max,
        queue_bytes: 0,
        receiver: None,
        timeout: None,
        sends: 0,
        always_queue: false,
        stats: Stats::default(),
    }));
    let rc = uv::uv_udp_init_ex((*rt).uv, &mut (*s).h, uv::uv_udp_flags_UV_UDP_RECVMMSG as _);
    if rc != 0 {
        drop(Box::from_raw(s));
        return Err(strerror(rc));
    }
    (*s).h.data = s.cast();
    let (raw, _) = dns::to_raw(&addr);
    let rc = uv::uv_udp_bind(&mut (*s).h, (&raw as *const libc::sockaddr_storage).cast(), 0);
    if rc != 0 {
        close(s, false);
        return Err(format!("failed to bind: {}", strerror(rc)));
    }
    let rc = uv::uv_udp_recv_start(&mut (*s).h, Some(on_alloc), Some(on_recv));
    if rc != 0 {
        close(s, false);
        return Err(strerror(rc));
    }
    Ok(s)
}

/// The address a socket is bound to.
///
/// # Safety
/// `s` must be a live, open socket.
pub unsafe fn sockname(s: *mut Udp) -> Result<SocketAddr, c_int> {
    let mut ss: libc::sockaddr_storage = std::mem::zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as c_int;
    let p: *mut libc::sockaddr_storage = &mut ss;
    let rc = uv::uv_udp_getsockname(&(*s).h, p.cast(), &mut len);
    if rc != 0 {
        return Err(rc);
    }
    dns::from_raw(p.cast()).ok_or(uv::uv_errno_t_UV_EAFNOSUPPORT as c_int)
}

// ---------------------------------------------------------------- receiving

unsafe extern "C" fn on_alloc(h: *mut uv::uv_handle_t, _suggested: usize, buf: *mut uv::uv_buf_t) {
    let u = &mut (*(*((*h).data as *mut Udp)).rt).udp;
    if u.rx.len() != RX_SIZE {
        u.rx = vec![0; RX_SIZE];
    }
    (*buf).base = u.rx.as_mut_ptr().cast();
    (*buf).len = u.rx.len();
}

unsafe extern "C" fn on_recv(
    h: *mut uv::uv_udp_t,
    nread: isize,
    buf: *const uv::uv_buf_t,
    addr: *const uv::sockaddr,
    _flags: std::ffi::c_uint,
) {
    let s = (*h).data as *mut Udp;
    let rt = (*s).rt;
    if (*s).closed || (*rt).closing {
        return;
    }
    if nread < 0 {
        // Errors on an unconnected socket are transient (the next datagram
        // may well arrive); only a waiting receiver hears about them.
        if let Some(id) = (*s).receiver.take() {
            let msg = strerror(nread as c_int);
            sched::complete(rt, id, |co| push_fail3(co, &msg));
        }
        return;
    }
    // No address: nothing was read (libuv's "would block"), or the end of a
    // recvmmsg batch (the buffer is ours to keep). With one, a zero length is
    // an empty datagram.
    if addr.is_null() {
        return;
    }
    let Some(from) = dns::from_raw(addr.cast()) else { return };
    let data = std::slice::from_raw_parts((*buf).base as *const u8, nread as usize);
    (*s).stats.received += 1;
    let mut delivered = false;
    if let Some(id) = (*s).receiver.take() {
        sched::complete(rt, id, |co| {
            delivered = true;
            push_bytes(co, data);
            push_addr(co, &from) + 1
        });
    }
    if !delivered && !(*s).closed {
        enqueue(&mut *s, data, from);
    }
}

/// Appends a datagram to the receive queue, dropping the oldest ones while
/// the queue is full (by count or by bytes).
fn enqueue(s: &mut Udp, data: &[u8], from: SocketAddr) {
    while !s.queue.is_empty() && (s.queue.len() >= s.queue_max || s.queue_bytes + data.len() > QUEUE_BYTES) {
        let old = s.queue.pop_front().unwrap();
        s.queue_bytes -= old.data.len();
        s.stats.dropped += 1;
    }
    s.queue_bytes += data.len();
    s.queue.push_back(Datagram { data: data.into(), from });
}

/// Pushes `host, port` (the host without brackets). Returns 2.
unsafe fn push_addr(L: *mut lua_State, a: &SocketAddr) -> c_int {
    let mut text = [0u8; 64];
    let mut cur = std::io::Cursor::new(&mut text[..]);
    let _ = write!(cur, "{}", a.ip());
    let n = cur.position() as usize;
    push_bytes(L, &text[..n]);
    ffi::lua_pushnumber(L, a.port() as f64);
    2
}

/// Pushes `nil, nil, msg`: `recv`'s and `getsockname`'s failure shape.
unsafe fn push_fail3(L: *mut lua_State, msg: &str) -> c_int {
    ffi::lua_pushnil(L);
    push_fail(L, msg) + 1
}

/// `udp.recv` on an open socket: the oldest queued datagram at once, or park
/// the caller (returns `None`: it must yield).
///
/// # Safety
/// `L` is the running coroutine; `s` a live, open socket.
unsafe fn recv(L: *mut lua_State, s: *mut Udp) -> Option<c_int> {
    let sk = &mut *s;
    if let Some(d) = sk.queue.pop_front() {
        sk.queue_bytes -= d.data.len();
        push_bytes(L, &d.data);
        return Some(push_addr(L, &d.from) + 1);
    }
    if sk.receiver.is_some() {
        return Some(push_fail3(L, PENDING));
    }
    let spec = Spec::new(Shape::Three).timeout(sk.timeout).unhook(unhook_receiver, s.cast());
    (*s).receiver = Some(sched::park((*s).rt, L, spec));
    None
}

unsafe fn unhook_receiver(_rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    let s = ctx as *mut Udp;
    if (*s).receiver == Some(id) {
        (*s).receiver = None;
    }
}

// ---------------------------------------------------------------- sending

/// Sends one datagram without waiting; queues it with libuv if the kernel
/// would block.
///
/// # Safety
/// `s` must be a live, open socket.
unsafe fn send(s: *mut Udp, to: &SocketAddr, data: &[u8]) -> Result<(), String> {
    let max = if to.is_ipv6() { MAX_PAYLOAD_V6 } else { MAX_PAYLOAD_V4 };
    if data.len() > max {
        let fam = if to.is_ipv6() { "IPv6" } else { "IPv4" };
        return Err(format!("datagram too large: {} bytes (at most {max} over {fam})", data.len()));
    }
    let (raw, _) = dns::to_raw(to);
    let sa: *const uv::sockaddr = (&raw as *const libc::sockaddr_storage).cast();
    if !(*s).always_queue {
        let buf = uv::uv_buf_t { base: data.as_ptr() as *mut _, len: data.len() };
        let rc = uv::uv_udp_try_send(&mut (*s).h, &buf, 1, sa);
        if rc >= 0 {
            (*s).stats.sent += 1;
            return Ok(());
        }
        if rc != uv::uv_errno_t_UV_EAGAIN as c_int {
            return Err(strerror(rc));
        }
    }
    let sr = Box::into_raw(Box::new(SendReq { req: std::mem::zeroed(), sock: s, data: data.into() }));
    (*sr).req.data = sr.cast();
    let buf = uv::uv_buf_t { base: (*sr).data.as_mut_ptr().cast(), len: data.len() };
    let rc = uv::uv_udp_send(&mut (*sr).req, &mut (*s).h, &buf, 1, sa, Some(on_send));
    if rc != 0 {
        drop(Box::from_raw(sr));
        return Err(strerror(rc));
    }
    (*s).sends += 1;
    (*s).stats.sent += 1;
    Ok(())
}

unsafe extern "C" fn on_send(req: *mut uv::uv_udp_send_t, status: c_int) {
    let sr = Box::from_raw((*req).data as *mut SendReq);
    let s = sr.sock; // still allocated: send callbacks run before the close callback
    drop(sr);
    (*s).sends -= 1;
    if status != 0 && status != uv::uv_errno_t_UV_ECANCELED as c_int {
        (*s).stats.send_errors += 1;
    }
    // A close that waited for the queued sends to go out.
    if (*s).closed && (*s).sends == 0 && uv::uv_is_closing(Udp::handle(s)) == 0 {
        uv::uv_close(Udp::handle(s), Some(on_close));
    }
}

// ---------------------------------------------------------------- closing

/// Closes `s` (idempotent): stops receiving, drops the receive queue, and
/// gives a waiting receiver `nil, nil, "udp closed"` (on the next loop iteration if `wake`,
/// otherwise its wait is released). The libuv handle is closed now, or by the
/// last queued send's callback.
///
/// # Safety
/// `s` must be a live socket.
pub unsafe fn close(s: *mut Udp, wake: bool) {
    if (*s).closed {
        return;
    }
    let rt = (*s).rt;
    (*s).closed = true;
    uv::uv_udp_recv_stop(&mut (*s).h);
    (*s).queue = VecDeque::new();
    (*s).queue_bytes = 0;
    if (*s).sends == 0 {
        uv::uv_close(Udp::handle(s), Some(on_close));
    }
    if let Some(id) = (*s).receiver.take() {
        if wake {
            sched::fail_later(rt, id, CLOSED);
        } else {
            sched::forget(rt, id);
        }
    }
}

unsafe extern "C" fn on_close(h: *mut uv::uv_handle_t) {
    let s = (*h).data as *mut Udp;
    (*s).gone = true;
    if !(*s).ud {
        drop(Box::from_raw(s));
    }
}

/// Shutdown: closes every UDP socket at once, releasing (not resuming) its
/// receiver; queued sends are cancelled.
///
/// # Safety
/// Runtime shutdown only.
pub unsafe fn shutdown(rt: *mut Runtime) {
    uv::uv_walk((*rt).uv, Some(close_walked), ptr::null_mut());
}

unsafe extern "C" fn close_walked(h: *mut uv::uv_handle_t, _: *mut c_void) {
    if uv::uv_handle_get_type(h) == uv::uv_handle_type_UV_UDP && uv::uv_is_closing(h) == 0 {
        close((*h).data as *mut Udp, false);
        if uv::uv_is_closing(h) == 0 {
            uv::uv_close(h, Some(on_close));
        }
    }
}

// ---------------------------------------------------------------- userdata

unsafe fn fill(slot: *mut *mut c_void, s: *mut Udp) {
    *slot = s.cast();
    (*s).ud = true;
}

/// What a handle argument turned out to be.
enum Arg {
    Udp(*mut Udp),
    /// A UDP handle whose object is gone (only after `__gc`).
    Dead,
    NotUdp,
}

/// Checks that the value at `idx` is a UDP handle. Never raises.
unsafe fn arg(L: *mut lua_State, idx: c_int) -> Arg {
    match lunet_abi::handle::get(L, idx, META) {
        None => Arg::NotUdp,
        Some(p) if p.is_null() => Arg::Dead,
        Some(p) => Arg::Udp(p.cast()),
    }
}

/// The open socket at argument 1, or the error to return for it.
unsafe fn open_arg(L: *mut lua_State) -> Result<*mut Udp, &'static str> {
    match arg(L, 1) {
        Arg::Udp(s) if (*s).closed => Err(CLOSED),
        Arg::Udp(s) => Ok(s),
        Arg::Dead => Err(CLOSED),
        Arg::NotUdp => Err(NOT_UDP),
    }
}

// ---------------------------------------------------------------- Lua API

/// The `queue` option of `udp.bind`'s options table at `idx` (absent: the default).
unsafe fn queue_option(L: *mut lua_State, idx: c_int) -> Result<usize, Raise> {
    match ffi::lua_type(L, idx) {
        ffi::LUA_TNONE | ffi::LUA_TNIL => return Ok(DEFAULT_QUEUE),
        ffi::LUA_TTABLE => {}
        _ => return Err(format!("udp.bind expects an options table (got {})", type_name(L, idx)).into()),
    }
    ffi::lua_pushliteral(L, c"queue");
    ffi::lua_rawget(L, idx);
    let v = if ffi::lua_type(L, -1) == ffi::LUA_TNIL { Some(DEFAULT_QUEUE as f64) } else { to_number(L, -1) };
    ffi::lua_settop(L, -2);
    match v {
        Some(n) if n.fract() == 0.0 && n >= 1.0 && n <= MAX_QUEUE as f64 => Ok(n as usize),
        _ => Err(format!("udp.bind option queue must be an integer from 1 to {MAX_QUEUE}").into()),
    }
}

lua_fn! {
    /// `udp.bind(host, port [, {queue = n}])` -> handle | nil, err
    pub fn l_bind(L) {
        let rt = runtime::of(L);
        let queue_max = queue_option(L, 3)?;
        let (Some(_), Some(port)) = (to_bytes(L, 1), dns::port(to_number(L, 2))) else {
            return Ok(push_fail(L, INVALID));
        };
        // The handle first: its allocation may raise, and a socket bound
        // before it would belong to nobody.
        let top = ffi::lua_gettop(L);
        let slot = lunet_abi::handle::push_slot(L, META);
        let host = to_bytes(L, 1).unwrap_or_default();
        match bind(rt, host, port, queue_max) {
            Ok(s) => {
                fill(slot, s);
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
    /// `udp.send(handle, host, port, data)` -> true | nil, err (never waits)
    pub fn l_send(L) {
        if !matches!(ffi::lua_type(L, 4), ffi::LUA_TSTRING | ffi::LUA_TNUMBER) {
            return Err(format!("udp.send expects a string to send (got {})", type_name(L, 4)).into());
        }
        let s = match open_arg(L) {
            Ok(s) => s,
            Err(msg) => return Ok(push_fail(L, msg)),
        };
        let (Some(host), Some(port)) = (to_bytes(L, 2), dns::port(to_number(L, 3))) else {
            return Ok(push_fail(L, INVALID));
        };
        if port == 0 {
            return Ok(push_fail(L, INVALID));
        }
        let to = match std::str::from_utf8(host).ok().and_then(dns::parse_ip) {
            Some(ip) => SocketAddr::new(ip, port), // the common case, without allocating
            None => match dns::resolve_now((*(*s).rt).uv, host, port, SockType::Datagram) {
                // A name may resolve to both families: use one the socket can reach.
                Ok(addrs) => *addrs.iter().find(|a| a.is_ipv6() == (*s).v6).unwrap_or(&addrs[0]),
                Err(ResolveError::Invalid) => return Ok(push_fail(L, INVALID)),
                Err(ResolveError::Code(rc)) => return Ok(push_fail(L, &strerror(rc))),
            },
        };
        let data = to_bytes(L, 4).unwrap_or_default();
        match send(s, &to, data) {
            Ok(()) => {
                ffi::lua_pushboolean(L, 1);
                Ok(1)
            }
            Err(msg) => Ok(push_fail(L, &msg)),
        }
    }
}

lua_fn! {
    /// `udp.recv(handle)` -> data, host, port | nil, nil, err (yields until a datagram)
    pub fn l_recv(L) {
        let s = match open_arg(L) {
            Ok(s) => s,
            Err(msg) => return Ok(push_fail3(L, msg)),
        };
        match recv(L, s) {
            Some(n) => Ok(n),
            None => Ok(ffi::lua_yield(L, 0)),
        }
    }
}

lua_fn! {
    /// `udp.settimeout(handle, ms | nil)`: the time limit of each later `recv`.
    pub fn l_settimeout(L) {
        let ms = opt_ms(L, 2, "udp.settimeout")?;
        match arg(L, 1) {
            Arg::Udp(s) => (*s).timeout = ms,
            Arg::Dead => {}
            // (Argument-error rule: what a call acts on gives nil, err.)
            Arg::NotUdp => return Ok(push_fail(L, NOT_UDP)),
        }
        Ok(0)
    }
}

lua_fn! {
    /// `udp.close(handle)` -> true (idempotent; wakes a waiting receiver)
    pub fn l_close(L) {
        match arg(L, 1) {
            Arg::Udp(s) => close(s, true),
            Arg::Dead => {}
            Arg::NotUdp => return Ok(push_fail(L, NOT_UDP)),
        }
        ffi::lua_pushboolean(L, 1);
        Ok(1)
    }
}

lua_fn! {
    /// `udp.getsockname(handle)` -> host, port | nil, nil, err
    pub fn l_getsockname(L) {
        let s = match open_arg(L) {
            Ok(s) => s,
            Err(msg) => return Ok(push_fail3(L, msg)),
        };
        match sockname(s) {
            Ok(a) => Ok(push_addr(L, &a)),
            Err(rc) => Ok(push_fail3(L, &strerror(rc))),
        }
    }
}

lua_fn! {
    /// `udp.stats(handle)` -> `{received, dropped, queued, queue_size, sent,
    /// send_queued, send_errors}` (also on a closed handle) | nil, err
    pub fn l_stats(L) {
        let s = match arg(L, 1) {
            Arg::Udp(s) => s,
            Arg::Dead => return Ok(push_fail(L, CLOSED)),
            Arg::NotUdp => return Ok(push_fail(L, NOT_UDP)),
        };
        let sk = &*s;
        ffi::lua_createtable(L, 0, 7);
        for (k, v) in [
            (c"received", sk.stats.received),
            (c"dropped", sk.stats.dropped),
            (c"queued", sk.queue.len() as u64),
            (c"queue_size", sk.queue_max as u64),
            (c"sent", sk.stats.sent),
            (c"send_queued", sk.sends as u64),
            (c"send_errors", sk.stats.send_errors),
        ] {
            ffi::lua_pushnumber(L, v as f64);
            ffi::lua_setfield(L, -2, k.as_ptr());
        }
        Ok(1)
    }
}

lua_fn! {
    /// `udp._always_queue(handle, on)`: test hook; with `on`, `send` skips
    /// `try_send` and hands every datagram to libuv's send queue.
    pub fn l_always_queue(L) {
        if let Arg::Udp(s) = arg(L, 1) {
            (*s).always_queue = ffi::lua_toboolean(L, 2) != 0;
        }
        Ok(0)
    }
}

lua_fn! {
    fn l_gc(L) {
        // (Checked: a finaliser can be called by hand with any value.)
        let Some(p) = lunet_abi::handle::take(L, 1, META) else { return Ok(0) };
        let s = p as *mut Udp;
        (*s).ud = false;
        if !(*s).closed {
            close(s, false);
        } else if (*s).gone {
            drop(Box::from_raw(s));
        }
        Ok(0)
    }
}

lua_fn! {
    fn l_tostring(L) {
        let text = match arg(L, 1) {
            Arg::Udp(s) if !(*s).closed => format!("udp socket: {s:p}"),
            _ => "udp socket (closed)".to_string(),
        };
        push_bytes(L, text.as_bytes());
        Ok(1)
    }
}

/// Creates (or refreshes) the handles' metatable; its `__index` is the module
/// table on top of the stack, so every function is also a method.
///
/// # Safety
/// `L` must be valid with the module table on top.
pub unsafe fn set_metatable(L: *mut lua_State, rt: *mut Runtime) {
    lunet_abi::handle::set_metatable(L, rt.cast(), META, l_gc, l_tostring);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(queue_max: usize) -> Udp {
        Udp {
            // SAFETY: never handed to libuv in these tests.
            h: unsafe { std::mem::zeroed() },
            rt: ptr::null_mut(),
            v6: false,
            closed: false,
            gone: false,
            ud: false,
            queue: VecDeque::new(),
            queue_max,
            queue_bytes: 0,
            receiver: None,
            timeout: None,
            sends: 0,
            always_queue: false,
            stats: Stats::default(),
        }
    }

    #[test]
    fn queue_drops_oldest_by_count() {
        let mut s = sock(3);
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for i in 0..10u8 {
            enqueue(&mut s, &[i], from);
        }
        assert_eq!(s.stats.dropped, 7);
        let left: Vec<u8> = s.queue.iter().map(|d| d.data[0]).collect();
        assert_eq!(left, vec![7, 8, 9]);
        assert_eq!(s.queue_bytes, 3);
    }

    #[test]
    fn queue_drops_oldest_by_bytes() {
        let mut s = sock(MAX_QUEUE);
        let from: SocketAddr = "[::1]:9".parse().unwrap();
        let big = vec![0u8; 60_000];
        let fit = QUEUE_BYTES / big.len();
        for _ in 0..fit + 5 {
            enqueue(&mut s, &big, from);
        }
        assert_eq!(s.queue.len(), fit);
        assert_eq!(s.stats.dropped, 5);
        assert!(s.queue_bytes <= QUEUE_BYTES);
        enqueue(&mut s, b"", from); // an empty datagram always fits
        assert_eq!(s.queue.len(), fit + 1);
    }
}
