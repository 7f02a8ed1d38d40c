//! Stream sockets (TCP and Unix): the object behind every `lunet.socket`
//! handle, its buffered reading, ordered writing and closing.
//!
//! Reading: a connection starts reading when it is created and keeps reading
//! between `read` calls (no start/stop per call, which would cost two
//! epoll_ctl calls per request). libuv reads into one receive buffer shared by
//! the runtime. A waiting reader's request (see `readbuf`) is answered straight
//! from there when the connection holds nothing older; bytes nobody has taken
//! wait in the connection's `ReadBuf`, which exists only while it holds data.
//! Past a high-water mark of buffered bytes with no reader waiting, the
//! connection stops reading until the script catches up (a waiting framed read
//! keeps it reading up to its own bound).
//!
//! Writing: `uv_try_write` first (one vectored call for an array of strings);
//! only what the kernel does not take at once is
//! queued with `uv_write` (libuv keeps queued writes in call order and refuses
//! `try_write` while any are queued, so writers never interleave).
//!
//! Lifetime: the `Sock` is heap-allocated and outlives both of its owners, the
//! libuv handle (until the close callback) and the Lua userdata (until `__gc`);
//! whichever goes last frees it.

use std::collections::{HashSet, VecDeque};
use std::ffi::{c_int, c_void, CStr, CString};
use std::ptr;

use libuv_sys2 as uv;
use lunet_abi::ffi::{self, lua_State};
use lunet_abi::handle;
use lunet_abi::lua::push_bytes;

use crate::parking;
use crate::readbuf::{self, ReadBuf, Request, Scan};
use crate::runtime::{strerror, Runtime};
use crate::sched::{self, Shape, Spec, WaitId};
use crate::tls;
use std::sync::Arc;

/// Registry name of the socket handles' metatable.
pub const META: &CStr = c"lunet.socket";

pub const DEFAULT_READ_SIZE: usize = 64 * 1024;
pub const MAX_READ_SIZE: usize = 16 * 1024 * 1024;
/// Connections accepted by libuv and queued until `accept`, per listener.
/// Beyond it the kernel's backlog holds further connections.
const ACCEPT_QUEUE: usize = 1024;

pub const CLOSED: &str = "socket closed";

/// Runtime-wide socket state.
pub struct Streams {
    /// Bytes returned by one `read` at most, and the size of libuv reads.
    pub read_size: usize,
    /// The receive buffer shared by every connection.
    rx: Vec<u8>,
    /// Connects in progress (resolving or connecting).
    pub connects: HashSet<*mut c_void>,
    /// TLS configurations built so far.
    pub tls: tls::Configs,
}

impl Streams {
    /// `socket.set_read_buffer_size`: the default read size; the receive
    /// buffer is made anew at the next read.
    pub fn set_read_size_default(&mut self, n: usize) {
        self.read_size = n;
        self.rx = Vec::new();
    }
}

impl Default for Streams {
    fn default() -> Self {
        Streams { read_size: DEFAULT_READ_SIZE, rx: Vec::new(), connects: HashSet::new(), tls: tls::Configs::default() }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Family {
    Tcp,
    Unix,
}

#[repr(C)]
pub union Handle {
    pub tcp: uv::uv_tcp_t,
    pub pipe: uv::uv_pipe_t,
}

struct Listen {
    queue: VecDeque<*mut Sock>,
    accepter: Option<WaitId>,
    /// libuv holds a connection we did not accept because the queue was full.
    held: bool,
    /// Socket file created by a Unix listener, removed when it closes.
    path: Option<CString>,
    /// TLS listeners: every accepted connection gets a server session.
    tls: Option<Arc<rustls::ServerConfig>>,
}

pub struct Sock {
    pub h: Handle,
    pub rt: *mut Runtime,
    pub family: Family,
    listen: Option<Box<Listen>>,
    /// `close` was called (the handle is closing or closed).
    closed: bool,
    /// libuv has finished closing the handle.
    gone: bool,
    /// A Lua userdata points at this socket.
    ud: bool,
    // Connection state.
    rbuf: ReadBuf,
    /// What the waiting reader asked for.
    req: Request,
    reading: bool,
    eof: bool,
    /// The write side was shut down.
    shut: bool,
    error: c_int,
    /// Per-connection read size (0: the runtime's).
    read_size: u32,
    reader: Option<WaitId>,
    writes: u32,
    /// The TLS session of a TLS connection.
    tls: Option<Box<Tls>>,
    /// Time limits (ms) of write and read (or accept) waits (`settimeouts`).
    pub timeouts: Timeouts,
    /// The parking lot holding the connection (null: none), and its key
    /// there (`parking::READY` once queued as ready).
    pub lot: *mut parking::Parking,
    pub lot_key: u32,
}

/// Time limits in ms, kept in 32 bits each (a connection's size counts):
/// `u32::MAX` is none, and limits beyond 49 days are clamped to it minus one.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    send: u32,
    read: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { send: u32::MAX, read: u32::MAX }
    }
}

fn pack_ms(ms: Option<u64>) -> u32 {
    ms.map_or(u32::MAX, |m| m.min(u32::MAX as u64 - 1) as u32)
}

fn unpack_ms(v: u32) -> Option<u64> {
    (v != u32::MAX).then_some(v as u64)
}

impl Timeouts {
    pub fn new(send: Option<u64>, read: Option<u64>) -> Timeouts {
        Timeouts { send: pack_ms(send), read: pack_ms(read) }
    }
    pub fn send(&self) -> Option<u64> {
        unpack_ms(self.send)
    }
    pub fn read(&self) -> Option<u64> {
        unpack_ms(self.read)
    }
    pub fn set_read(&mut self, ms: Option<u64>) {
        self.read = pack_ms(ms);
    }
}

struct WriteReq {
    req: uv::uv_write_t,
    sock: *mut Sock,
    wait: Option<WaitId>,
    /// Registry reference to the Lua string being written: libuv reads it
    /// until the callback, even if the writer stopped waiting.
    data_ref: c_int,
    /// Or bytes of our own (TLS records), kept until the callback.
    #[allow(dead_code)]
    owned: Vec<u8>,
}

/// A TLS connection's session and the coroutine waiting for its handshake.
struct Tls {
    session: tls::Session,
    handshaker: Option<WaitId>,
}

/// `Sock::error` of a connection whose TLS session failed (the message is
/// the session's).
const ETLS: c_int = -0x7154;

impl Sock {
    /// Allocates a socket whose libuv handle the caller initialises next.
    pub fn alloc(rt: *mut Runtime, family: Family) -> *mut Sock {
        Box::into_raw(Box::new(Sock {
            // SAFETY: libuv handles are plain C structs; all-zero is their pre-init state.
            h: unsafe { std::mem::zeroed() },
            rt,
            family,
            listen: None,
            closed: false,
            gone: false,
            ud: false,
            rbuf: ReadBuf::default(),
            req: Request::Any { limit: 0 },
            reading: false,
            eof: false,
            shut: false,
            error: 0,
            read_size: 0,
            reader: None,
            writes: 0,
            tls: None,
            timeouts: Timeouts::default(),
            lot: ptr::null_mut(),
            lot_key: 0,
        }))
    }

    /// Initialises the libuv handle of a fresh socket. On failure the socket is
    /// freed and the libuv error returned.
    ///
    /// # Safety
    /// `s` must come from [`Sock::alloc`] and not be initialised yet.
    pub unsafe fn init(s: *mut Sock) -> Result<(), c_int> {
        let uv_loop = (*(*s).rt).uv;
        let rc = match (*s).family {
            Family::Tcp => uv::uv_tcp_init(uv_loop, &mut (*s).h.tcp),
            Family::Unix => uv::uv_pipe_init(uv_loop, &mut (*s).h.pipe, 0),
        };
        if rc != 0 {
            drop(Box::from_raw(s));
            return Err(rc);
        }
        (*Sock::handle(s)).data = s.cast();
        Ok(())
    }

    #[inline]
    pub unsafe fn handle(s: *mut Sock) -> *mut uv::uv_handle_t {
        ptr::addr_of_mut!((*s).h).cast()
    }

    #[inline]
    pub unsafe fn stream(s: *mut Sock) -> *mut uv::uv_stream_t {
        ptr::addr_of_mut!((*s).h).cast()
    }

    pub fn is_listener(&self) -> bool {
        self.listen.is_some()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

// ---------------------------------------------------------------- userdata

/// Pushes a new userdata for `s` (which must not have one yet).
///
/// # Safety
/// `L` must be valid with free stack slots; the metatable must exist.
pub unsafe fn push(L: *mut lua_State, s: *mut Sock) {
    handle::push(L, META, s.cast());
    (*s).ud = true;
}

/// Fills a handle made by `handle::push_slot` with `s`.
///
/// # Safety
/// `slot` from `handle::push_slot(L, META)`, still on the stack; `s` has no handle.
pub unsafe fn fill(slot: *mut *mut c_void, s: *mut Sock) {
    *slot = s.cast();
    (*s).ud = true;
}

/// What a handle argument turned out to be.
pub enum Arg {
    Sock(*mut Sock),
    /// A socket handle whose object is gone (cannot normally happen: the
    /// pointer is cleared only by `__gc`).
    Dead,
    NotSocket,
}

/// Checks that the value at `idx` is a socket handle. Never raises.
///
/// # Safety
/// `L` must be valid with free stack slots.
pub unsafe fn arg(L: *mut lua_State, idx: c_int) -> Arg {
    match handle::get(L, idx, META) {
        None => Arg::NotSocket,
        Some(p) if p.is_null() => Arg::Dead,
        Some(p) => Arg::Sock(p.cast()),
    }
}

/// `__gc`: closes a handle the script dropped without closing, and frees the
/// socket if libuv is already done with it. Never resumes anyone: a handle
/// with a waiting coroutine is reachable, so this runs only at state close.
///
/// # Safety
/// Finaliser of a socket userdata only.
pub unsafe fn gc(L: *mut lua_State) {
    // (Checked: a finaliser can be called by hand with any value.)
    let Some(p) = handle::take(L, 1, META) else { return };
    let s = p as *mut Sock;
    (*s).ud = false;
    if !(*s).closed {
        close(s, false);
    } else if (*s).gone {
        drop(Box::from_raw(s));
    }
}

/// `tostring(handle)`.
pub unsafe fn describe(s: Option<*mut Sock>) -> String {
    let Some(s) = s else { return "socket (closed)".into() };
    let fam = match (*s).family {
        Family::Tcp => "tcp",
        Family::Unix => "unix",
    };
    let role = if (*s).is_listener() { "listener" } else { "connection" };
    if (*s).closed {
        format!("{fam} {role} (closed)")
    } else {
        format!("{fam} {role}: {s:p}")
    }
}

// ---------------------------------------------------------------- reading

/// Starts reading on a new connection, which then does not keep the loop
/// alive unless someone waits on it.
///
/// # Safety
/// `s` must be a connected, initialised socket.
pub unsafe fn begin(s: *mut Sock) -> c_int {
    if (*s).family == Family::Tcp {
        uv::uv_tcp_nodelay(&mut (*s).h.tcp, 1);
    }
    uv::uv_unref(Sock::handle(s));
    let rc = uv::uv_read_start(Sock::stream(s), Some(on_alloc), Some(on_read));
    (*s).reading = rc == 0;
    rc
}

fn high_water(read_size: usize) -> usize {
    (4 * read_size).max(256 * 1024)
}

/// The most bytes one plain `read` returns on `s`, and half the size of the
/// reads libuv makes for it.
#[inline]
pub unsafe fn read_size(s: *mut Sock) -> usize {
    match (*s).read_size {
        0 => (*(*s).rt).streams.read_size,
        n => n as usize,
    }
}

/// libuv reads again whenever a read fills the buffer it was given, and that
/// second read usually finds nothing (EAGAIN). So libuv gets twice the read
/// size; bytes beyond what the reader takes wait in the connection's buffer.
unsafe extern "C" fn on_alloc(h: *mut uv::uv_handle_t, _suggested: usize, buf: *mut uv::uv_buf_t) {
    let s = (*h).data as *mut Sock;
    let want = 2 * read_size(s);
    let st = &mut (*(*s).rt).streams;
    // Only ever grown here (a connection with a larger read size of its own
    // must not make the buffer flip sizes, and reallocate, read after read);
    // `set_read_size_default` starts it afresh.
    if st.rx.len() < want {
        st.rx = vec![0; want];
    }
    (*buf).base = st.rx.as_mut_ptr().cast();
    (*buf).len = want;
}

unsafe extern "C" fn on_read(stream: *mut uv::uv_stream_t, nread: isize, _buf: *const uv::uv_buf_t) {
    let s = (*stream).data as *mut Sock;
    let rt = (*s).rt;
    if nread == 0 {
        return;
    }
    if nread > 0 {
        (*rt).counters.bytes_in += nread as u64;
        // (The receive buffer is only replaced by the next on_alloc.)
        let data: &[u8] = std::slice::from_raw_parts((*rt).streams.rx.as_ptr(), nread as usize);
        if (*s).tls.is_some() {
            tls_input(s, Some(data));
            return;
        }
        let Some(id) = (*s).reader else {
            buffer(s, data);
            if !(*s).lot.is_null() {
                parking::input(s); // ready in its lot
            }
            return;
        };
        if (*s).rbuf.is_empty() {
            // The common case: answered straight from the receive buffer.
            if let Scan::Ready { len, consume } = readbuf::scan(data, &(*s).req, 0, false) {
                take_reader(s);
                let mut taken = false;
                sched::complete(rt, id, |co| {
                    push_bytes(co, &data[..len]);
                    // Before the reader runs: it may read again at once.
                    (*s).rbuf.extend(&data[consume..]);
                    taken = true;
                    1
                });
                if !taken {
                    // The wait was already ending (timeout, cancel): keep it all.
                    (*s).rbuf.extend(data);
                }
                return;
            }
        }
        (*s).rbuf.reserve_for(&(*s).req, MAX_READ_SIZE);
        (*s).rbuf.extend(data);
        serve_reader(s);
        return;
    }
    // End of stream or an error: both sticky. libuv has stopped reading.
    let code = nread as c_int;
    uv::uv_read_stop(stream);
    (*s).reading = false;
    if code == uv::uv_errno_t_UV_EOF as c_int {
        (*s).eof = true;
        if (*s).tls.is_some() {
            tls_input(s, None);
            return;
        }
    } else {
        (*s).error = code;
        end_handshake(s);
    }
    serve_reader(s);
}

/// Keeps bytes nobody waits for; past the high-water mark the connection
/// stops reading until they are taken.
///
/// # Safety
/// `s` a live, open connection.
pub unsafe fn buffer(s: *mut Sock, data: &[u8]) {
    let sk = &mut *s;
    sk.rbuf.extend(data);
    if sk.reading && sk.rbuf.len() >= high_water(read_size(s)) {
        uv::uv_read_stop(Sock::stream(s));
        sk.reading = false;
    }
}

/// Whether something waits to be read: buffered bytes, the end, an error.
///
/// # Safety
/// `s` a live connection.
pub unsafe fn has_news(s: *mut Sock) -> bool {
    !(*s).rbuf.is_empty() || (*s).eof || (*s).error != 0
}

/// Whether a read waits on `s`.
///
/// # Safety
/// `s` a live connection.
pub unsafe fn has_reader(s: *mut Sock) -> bool {
    (*s).reader.is_some()
}

/// What a connection that a parking lot hands out has: `data, nil` (all
/// that is buffered), or `nil, "timeout" | "closed" | err`.
///
/// # Safety
/// `L` valid with free slots; `s` a live connection.
pub unsafe fn push_parked_input(L: *mut lua_State, s: *mut Sock, timed_out: bool) {
    if !(*s).rbuf.is_empty() {
        push_bytes(L, (*s).rbuf.bytes());
        (*s).rbuf.clear();
        resume_reading(s);
        ffi::lua_pushnil(L);
        return;
    }
    ffi::lua_pushnil(L);
    let msg = if timed_out {
        sched::TIMEOUT.to_string()
    } else if (*s).error != 0 {
        error_text(s)
    } else {
        PEER_CLOSED.to_string()
    };
    push_bytes(L, msg.as_bytes());
}

/// Answers the waiting reader from the buffer if its request can be answered
/// now (bytes, too long, or the end of the stream); a connection in a
/// parking lot becomes ready there instead.
unsafe fn serve_reader(s: *mut Sock) {
    let Some(id) = (*s).reader else {
        if !(*s).lot.is_null() && has_news(s) {
            parking::input(s);
        }
        return;
    };
    let rt = (*s).rt;
    let sk = &mut *s;
    match sk.rbuf.scan(&sk.req, sk.eof && sk.error == 0) {
        Scan::Ready { len, consume } => {
            take_reader(s);
            sched::complete(rt, id, |co| {
                push_bytes(co, &(*s).rbuf.bytes()[..len]);
                (*s).rbuf.consume(consume);
                1
            });
        }
        Scan::TooLong => {
            take_reader(s);
            sched::complete(rt, id, |co| push_framed_fail(co, s, TOO_LONG));
        }
        Scan::More { .. } if sk.eof || sk.error != 0 => {
            take_reader(s);
            sched::complete(rt, id, |co| push_read_end(co, s));
        }
        Scan::More { .. } => {}
    }
}

unsafe fn take_reader(s: *mut Sock) -> WaitId {
    uv::uv_unref(Sock::handle(s));
    (*s).reader.take().unwrap()
}

/// A read that timed out or was cancelled: the connection stops keeping the
/// loop alive for it; bytes that arrive later wait in the buffer. A framed
/// read's timeout returns what has arrived so far (which stays buffered).
unsafe fn unhook_reader(rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    let s = ctx as *mut Sock;
    if (*s).reader == Some(id) {
        take_reader(s);
        if (*s).req.framed() {
            sched::attach_partial(rt, id, partial(s).to_vec());
        }
    }
}

pub const TOO_LONG: &str = "too long";
/// A read on a connection that waits in a parking lot.
pub const PARKED: &str = "the connection is parked";
/// The peer ended the stream in the middle of a framed read.
pub const PEER_CLOSED: &str = "closed";

/// The bytes a failed framed read returns: what is buffered, at most the
/// request's bound.
unsafe fn partial<'a>(s: *mut Sock) -> &'a [u8] {
    let b = (*s).rbuf.bytes();
    match (*s).req.bound() {
        Some(m) if m < b.len() => &b[..m],
        _ => b,
    }
}

/// `nil, msg, partial`.
unsafe fn push_framed_fail(L: *mut lua_State, s: *mut Sock, msg: &str) -> c_int {
    ffi::lua_pushnil(L);
    push_bytes(L, msg.as_bytes());
    push_bytes(L, partial(s));
    3
}

/// The end of the stream (or its error) for the request of `s`: a plain
/// read gets `nil, nil` at end of stream and `nil, err` on an error (C
/// lunet's values); a framed read gets `nil, "closed" | err, partial`.
unsafe fn push_read_end(L: *mut lua_State, s: *mut Sock) -> c_int {
    let code = (*s).error;
    if (*s).req.framed() {
        let msg = if code == 0 { PEER_CLOSED.to_string() } else { error_text(s) };
        return push_framed_fail(L, s, &msg);
    }
    ffi::lua_pushnil(L);
    if code == 0 {
        ffi::lua_pushnil(L);
    } else {
        push_bytes(L, error_text(s).as_bytes());
    }
    2
}

/// The text of the connection's sticky error.
unsafe fn error_text(s: *mut Sock) -> String {
    match (&(*s).tls, (*s).error) {
        (Some(t), ETLS) => t.session.error.clone().unwrap_or_else(|| "tls: failed".into()),
        (_, code) => strerror(code),
    }
}

/// What `socket.read` does with a connection: returns immediately with
/// buffered data, end of stream or an error, or parks the caller.
pub enum ReadNow {
    Done(c_int),
    Wait,
}

/// # Safety
/// `L` is the running coroutine; `s` a live, open connection.
pub unsafe fn read(L: *mut lua_State, s: *mut Sock, req: Request) -> ReadNow {
    let sk = &mut *s;
    if sk.reader.is_some() {
        return ReadNow::Done(lunet_abi::lua::push_fail(L, "another read already in progress"));
    }
    if !sk.lot.is_null() {
        return ReadNow::Done(lunet_abi::lua::push_fail(L, PARKED));
    }
    let ended = sk.eof || sk.error != 0;
    sk.rbuf.restart();
    sk.req = req;
    if !sk.rbuf.is_empty() || ended || sk.req == Request::Exactly(0) {
        match sk.rbuf.scan(&sk.req, sk.eof && sk.error == 0) {
            Scan::Ready { len, consume } => {
                // Pushed before it is consumed: a push that raises loses nothing.
                push_bytes(L, &(*s).rbuf.bytes()[..len]);
                (*s).rbuf.consume(consume);
                resume_reading(s);
                return ReadNow::Done(1);
            }
            Scan::TooLong => return ReadNow::Done(push_framed_fail(L, s, TOO_LONG)),
            Scan::More { .. } if ended => return ReadNow::Done(push_read_end(L, s)),
            Scan::More { .. } => {}
        }
    }
    let sk = &mut *s;
    if !sk.reading {
        let rc = uv::uv_read_start(Sock::stream(s), Some(on_alloc), Some(on_read));
        if rc != 0 {
            return ReadNow::Done(lunet_abi::lua::push_fail(L, &strerror(rc)));
        }
        sk.reading = true;
    }
    let spec = Spec::new(Shape::Two).timeout(sk.timeouts.read()).unhook(unhook_reader, s.cast());
    uv::uv_ref(Sock::handle(s));
    (*s).reader = Some(sched::park((*s).rt, L, spec));
    ReadNow::Wait
}

/// Reading stopped at the high-water mark goes on once the script caught up.
unsafe fn resume_reading(s: *mut Sock) {
    let sk = &mut *s;
    if !sk.reading && !sk.eof && sk.error == 0 && sk.rbuf.len() < high_water(read_size(s)) {
        sk.reading = uv::uv_read_start(Sock::stream(s), Some(on_alloc), Some(on_read)) == 0;
    }
}

/// `socket.unread`: puts `data` back in front of the buffered bytes. Refused
/// (`Err`) while a read waits on the connection.
///
/// # Safety
/// `s` a live, open connection.
pub unsafe fn unread(s: *mut Sock, data: &[u8]) -> Result<(), &'static str> {
    if (*s).reader.is_some() {
        return Err("another read already in progress");
    }
    if !(*s).lot.is_null() {
        return Err(PARKED);
    }
    (*s).rbuf.unread(data);
    Ok(())
}

/// Sets the per-connection read size (0 = the runtime's default).
///
/// # Safety
/// `s` a live socket.
pub unsafe fn set_read_size(s: *mut Sock, n: u32) {
    (*s).read_size = n;
}

// ---------------------------------------------------------------- writing

/// What `socket.write` does: done at once (all bytes taken by the kernel, or
/// an error message), or the rest is queued and the caller must yield.
pub enum WriteNow {
    Done(Option<String>),
    Wait,
}

pub const SHUT: &str = "socket shut down";

/// Writes `bufs` in order, as one vectored write.
///
/// # Safety
/// `L` is the running coroutine and the Lua value at `anchor_idx` on its
/// stack keeps the bytes of `bufs` alive (it is referenced while libuv
/// writes them); `s` a live, open connection.
pub unsafe fn write(L: *mut lua_State, s: *mut Sock, bufs: &mut [uv::uv_buf_t], anchor_idx: c_int) -> WriteNow {
    if (*s).shut {
        return WriteNow::Done(Some(SHUT.to_string()));
    }
    if let Some(t) = (*s).tls.as_mut() {
        let mut out = Vec::new();
        let plain: Vec<&[u8]> = bufs.iter().map(|b| std::slice::from_raw_parts(b.base as *const u8, b.len)).collect();
        if let Err(e) = t.session.encrypt(&plain, &mut out) {
            return WriteNow::Done(Some(e));
        }
        // (Before the handshake ends rustls keeps the plaintext and sends it
        // once it can; the write is then done as far as the script goes.)
        let mut one = [uv::uv_buf_t { base: out.as_mut_ptr().cast(), len: out.len() }];
        return send(Some(L), s, &mut one, Keep::Owned(out));
    }
    send(Some(L), s, bufs, Keep::Lua(anchor_idx))
}

/// What keeps the bytes of a queued write alive.
enum Keep {
    /// The Lua value at this index of the writer's stack.
    Lua(c_int),
    Owned(Vec<u8>),
}

/// Sends `bufs` after every queued write: at once if the kernel takes them,
/// else queued. With `L` the caller waits for a queued write; without, it
/// goes out in the background.
unsafe fn send(L: Option<*mut lua_State>, s: *mut Sock, bufs: &mut [uv::uv_buf_t], keep: Keep) -> WriteNow {
    let total: usize = bufs.iter().map(|b| b.len).sum();
    if total == 0 {
        return WriteNow::Done(None);
    }
    (*(*s).rt).counters.bytes_out += total as u64;
    let mut first = 0;
    if (*s).writes == 0 {
        let n = uv::uv_try_write(Sock::stream(s), bufs.as_ptr(), bufs.len() as u32);
        if n >= 0 && n as usize == total {
            return WriteNow::Done(None);
        }
        if n >= 0 {
            first = advance(bufs, n as usize);
        } else if n != uv::uv_errno_t_UV_EAGAIN as c_int {
            return WriteNow::Done(Some(strerror(n)));
        }
    }
    let rest = &bufs[first..];
    let (data_ref, owned) = match keep {
        Keep::Lua(idx) => {
            let L = L.expect("a Lua anchor comes with its coroutine");
            ffi::lua_pushvalue(L, idx);
            (ffi::luaL_ref(L, ffi::LUA_REGISTRYINDEX), Vec::new())
        }
        // (Moving the Vec into the request keeps its heap bytes in place.)
        Keep::Owned(v) => (ffi::LUA_NOREF, v),
    };
    let wr = Box::into_raw(Box::new(WriteReq { req: std::mem::zeroed(), sock: s, wait: None, data_ref, owned }));
    (*wr).req.data = wr.cast();
    let rc = uv::uv_write(&mut (*wr).req, Sock::stream(s), rest.as_ptr(), rest.len() as u32, Some(on_write));
    if rc != 0 {
        let wr = Box::from_raw(wr);
        ffi::luaL_unref((*(*s).rt).aux, ffi::LUA_REGISTRYINDEX, wr.data_ref);
        return WriteNow::Done(Some(strerror(rc)));
    }
    (*s).writes += 1;
    let Some(L) = L else { return WriteNow::Done(None) };
    let spec = Spec::new(Shape::One).timeout((*s).timeouts.send()).unhook(unhook_writer, wr.cast());
    (*wr).wait = Some(sched::park((*s).rt, L, spec));
    WriteNow::Wait
}

/// Skips the first `n` bytes of `bufs`: returns the index of the first
/// buffer with bytes left, which is trimmed to them.
fn advance(bufs: &mut [uv::uv_buf_t], mut n: usize) -> usize {
    for (i, b) in bufs.iter_mut().enumerate() {
        if n < b.len {
            // SAFETY: n < len, inside the same buffer.
            b.base = unsafe { b.base.add(n) };
            b.len -= n;
            return i;
        }
        n -= b.len;
    }
    bufs.len()
}

/// A write that timed out or was cancelled goes on without its writer.
unsafe fn unhook_writer(_rt: *mut Runtime, ctx: *mut c_void, _id: WaitId) {
    (*(ctx as *mut WriteReq)).wait = None;
}

/// What a write or shutdown request that ended with `status` reports: none,
/// `"socket closed"` (cancelled by our close), or the system's error.
unsafe fn request_error(s: *mut Sock, status: c_int) -> Option<String> {
    if status == 0 {
        None
    } else if status == uv::uv_errno_t_UV_ECANCELED as c_int || (*s).closed {
        Some(CLOSED.to_string())
    } else {
        Some(strerror(status))
    }
}

unsafe extern "C" fn on_write(req: *mut uv::uv_write_t, status: c_int) {
    let wr = Box::from_raw((*req).data as *mut WriteReq);
    let s = wr.sock; // still allocated: write callbacks run before the close callback
    let rt = (*s).rt;
    (*s).writes -= 1;
    ffi::luaL_unref((*rt).aux, ffi::LUA_REGISTRYINDEX, wr.data_ref);
    let Some(id) = wr.wait else { return };
    let msg = request_error(s, status);
    sched::complete(rt, id, |co| {
        match &msg {
            None => ffi::lua_pushnil(co),
            Some(m) => push_bytes(co, m.as_bytes()),
        }
        1
    });
}

// ---------------------------------------------------------------- half-close

struct ShutdownReq {
    req: uv::uv_shutdown_t,
    sock: *mut Sock,
    wait: Option<WaitId>,
}

/// `socket.shutdown`: ends the write side once queued writes are sent; the
/// caller waits for that. `Err` is an immediate failure.
///
/// # Safety
/// `L` is the running coroutine; `s` a live, open connection.
pub unsafe fn shutdown_write(L: *mut lua_State, s: *mut Sock) -> Result<(), String> {
    if (*s).shut {
        return Err(SHUT.to_string());
    }
    if let Some(t) = (*s).tls.as_mut() {
        let mut out = Vec::new();
        t.session.close_notify(&mut out);
        let mut one = [uv::uv_buf_t { base: out.as_mut_ptr().cast(), len: out.len() }];
        if let WriteNow::Done(Some(e)) = send(None, s, &mut one, Keep::Owned(out)) {
            return Err(e);
        }
    }
    let sr = Box::into_raw(Box::new(ShutdownReq { req: std::mem::zeroed(), sock: s, wait: None }));
    (*sr).req.data = sr.cast();
    let rc = uv::uv_shutdown(&mut (*sr).req, Sock::stream(s), Some(on_shutdown));
    if rc != 0 {
        drop(Box::from_raw(sr));
        return Err(strerror(rc));
    }
    (*s).shut = true;
    let spec = Spec::new(Shape::Two).timeout((*s).timeouts.send()).unhook(unhook_shutdown, sr.cast());
    (*sr).wait = Some(sched::park((*s).rt, L, spec));
    Ok(())
}

unsafe fn unhook_shutdown(_rt: *mut Runtime, ctx: *mut c_void, _id: WaitId) {
    (*(ctx as *mut ShutdownReq)).wait = None;
}

unsafe extern "C" fn on_shutdown(req: *mut uv::uv_shutdown_t, status: c_int) {
    let sr = Box::from_raw((*req).data as *mut ShutdownReq);
    let s = sr.sock;
    let Some(id) = sr.wait else { return };
    let msg = request_error(s, status);
    sched::complete((*s).rt, id, |co| match &msg {
        None => {
            ffi::lua_pushboolean(co, 1);
            1
        }
        Some(m) => lunet_abi::lua::push_fail(co, m),
    });
}

// ---------------------------------------------------------------- TLS

/// Feeds ciphertext that arrived (`None`: the peer ended the stream) to the
/// connection's session: plaintext goes to the read buffer, records rustls
/// has to send go out in the background, a finished or failed handshake
/// wakes its waiter, and the reader is served.
unsafe fn tls_input(s: *mut Sock, input: Option<&[u8]>) {
    let rbuf: *mut ReadBuf = &mut (*s).rbuf;
    let req: *const Request = &(*s).req;
    let waiting = (*s).reader.is_some();
    let t = (*s).tls.as_mut().unwrap();
    let fed = t.session.feed(input, &mut |plain| {
        if waiting {
            (*rbuf).reserve_for(&*req, MAX_READ_SIZE);
        }
        (*rbuf).extend(plain);
    });
    let failed = t.session.error.is_some();
    if !fed.out.is_empty() {
        let mut out = fed.out;
        let mut one = [uv::uv_buf_t { base: out.as_mut_ptr().cast(), len: out.len() }];
        send(None, s, &mut one, Keep::Owned(out));
    }
    if failed && (*s).error == 0 {
        (*s).error = ETLS;
        if (*s).reading {
            uv::uv_read_stop(Sock::stream(s));
            (*s).reading = false;
        }
    }
    if fed.handshake_done || failed || input.is_none() {
        end_handshake(s);
    }
    if (*s).reader.is_none() {
        if (*s).reading && (*s).rbuf.len() >= high_water(read_size(s)) {
            uv::uv_read_stop(Sock::stream(s));
            (*s).reading = false;
        }
        if !(*s).lot.is_null() && has_news(s) {
            parking::input(s);
        }
        return;
    }
    serve_reader(s);
}

/// Wakes the coroutine waiting for the handshake, if it is over: `true`, or
/// `nil, err` when the session or the connection failed.
unsafe fn end_handshake(s: *mut Sock) {
    let Some(t) = (*s).tls.as_mut() else { return };
    if t.session.handshaking() && (*s).error == 0 && !(*s).eof {
        return;
    }
    let Some(id) = t.handshaker.take() else { return };
    uv::uv_unref(Sock::handle(s));
    let err = match (*s).error {
        0 if !t.session.handshaking() => None,
        0 => Some("tls: the peer closed the connection during the handshake".to_string()),
        _ => Some(error_text(s)),
    };
    sched::complete((*s).rt, id, |co| match &err {
        None => {
            ffi::lua_pushboolean(co, 1);
            1
        }
        Some(e) => lunet_abi::lua::push_fail(co, e),
    });
}

unsafe fn unhook_handshaker(_rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    let s = ctx as *mut Sock;
    if let Some(t) = (*s).tls.as_mut() {
        if t.handshaker == Some(id) {
            t.handshaker = None;
            uv::uv_unref(Sock::handle(s));
        }
    }
}

/// Whether `s` speaks TLS.
pub unsafe fn is_tls(s: *mut Sock) -> bool {
    (*s).tls.is_some()
}

/// `socket.starttls`: makes `s` a TLS connection with `session` and parks
/// the caller until the handshake is over (`timeout` in ms, or the
/// connection's read limit). Bytes already buffered are the peer's first
/// records. `Err` is an immediate failure.
///
/// # Safety
/// `L` is the running coroutine; `s` a live, open connection.
pub unsafe fn starttls(L: *mut lua_State, s: *mut Sock, session: tls::Session, timeout: Option<u64>) -> Result<(), String> {
    if (*s).tls.is_some() {
        return Err("tls: the connection already speaks TLS".into());
    }
    if (*s).reader.is_some() {
        return Err("another read already in progress".into());
    }
    if !(*s).lot.is_null() {
        return Err(PARKED.into());
    }
    if (*s).shut {
        return Err(SHUT.into());
    }
    if (*s).error != 0 {
        return Err(error_text(s));
    }
    (*s).tls = Some(Box::new(Tls { session, handshaker: None }));
    let early = std::mem::take(&mut (*s).rbuf);
    let mut hello = Vec::new();
    (*s).tls.as_mut().unwrap().session.take_output(&mut hello);
    if !hello.is_empty() {
        let mut one = [uv::uv_buf_t { base: hello.as_mut_ptr().cast(), len: hello.len() }];
        if let WriteNow::Done(Some(e)) = send(None, s, &mut one, Keep::Owned(hello)) {
            return Err(e);
        }
    }
    // What already arrived is fed before the caller parks: a failure it
    // causes is returned now (nothing may resume the caller from inside
    // this call).
    if !early.is_empty() {
        tls_input(s, Some(early.bytes()));
    }
    if (*s).eof && (*s).error == 0 {
        tls_input(s, None);
    }
    if (*s).error != 0 {
        return Err(error_text(s));
    }
    if !(*s).reading {
        (*s).reading = uv::uv_read_start(Sock::stream(s), Some(on_alloc), Some(on_read)) == 0;
    }
    let spec = Spec::new(Shape::Two).timeout(timeout.or((*s).timeouts.read())).unhook(unhook_handshaker, s.cast());
    let id = sched::park((*s).rt, L, spec);
    uv::uv_ref(Sock::handle(s));
    (*s).tls.as_mut().unwrap().handshaker = Some(id);
    Ok(())
}

/// `socket.tlsinfo`: what the session negotiated (None for a plain socket).
///
/// # Safety
/// `s` a live socket.
pub unsafe fn tlsinfo(s: *mut Sock) -> Option<tls::Info> {
    (*s).tls.as_ref().map(|t| t.session.info())
}

/// Sends close_notify (best effort, never waiting) before a close.
unsafe fn tls_goodbye(s: *mut Sock) {
    let Some(t) = (*s).tls.as_mut() else { return };
    if (*s).writes > 0 || (*s).shut || (*s).error != 0 {
        return;
    }
    let mut out = Vec::new();
    t.session.close_notify(&mut out);
    if !out.is_empty() {
        let buf = uv::uv_buf_t { base: out.as_mut_ptr().cast(), len: out.len() };
        uv::uv_try_write(Sock::stream(s), &buf, 1);
    }
}

// ---------------------------------------------------------------- listening

/// Makes `s` (bound, initialised) a listener.
///
/// # Safety
/// `s` must be a bound socket without a listener state.
pub unsafe fn listen(s: *mut Sock, path: Option<CString>, backlog: c_int) -> c_int {
    (*s).listen = Some(Box::new(Listen { queue: VecDeque::new(), accepter: None, held: false, path, tls: None }));
    uv::uv_listen(Sock::stream(s), backlog, Some(on_connection))
}

/// Makes `s` (a listener) a TLS listener.
///
/// # Safety
/// `s` a live listener.
pub unsafe fn set_listener_tls(s: *mut Sock, cfg: Arc<rustls::ServerConfig>) {
    if let Some(l) = (*s).listen.as_mut() {
        l.tls = Some(cfg);
    }
}

unsafe extern "C" fn on_connection(server: *mut uv::uv_stream_t, status: c_int) {
    let s = (*server).data as *mut Sock;
    if status != 0 || (*s).closed {
        return;
    }
    let l = (*s).listen.as_mut().unwrap();
    if l.queue.len() >= ACCEPT_QUEUE && l.accepter.is_none() {
        l.held = true; // libuv pauses the listener until we accept this one
        return;
    }
    accept_one(s);
}

/// Accepts the connection libuv holds for `s` and hands it to the waiting
/// accepter or queues it.
unsafe fn accept_one(s: *mut Sock) {
    let rt = (*s).rt;
    let c = Sock::alloc(rt, (*s).family);
    if Sock::init(c).is_err() {
        return;
    }
    if uv::uv_accept(Sock::stream(s), Sock::stream(c)) != 0 {
        close(c, false);
        return;
    }
    if let Some(cfg) = (*s).listen.as_ref().unwrap().tls.clone() {
        match tls::Session::server(cfg) {
            Ok(session) => (*c).tls = Some(Box::new(Tls { session, handshaker: None })),
            Err(_) => {
                close(c, false);
                return;
            }
        }
    }
    begin(c);
    let l = (*s).listen.as_mut().unwrap();
    match l.accepter.take() {
        Some(id) => {
            let mut taken = false;
            sched::complete(rt, id, |co| {
                push(co, c);
                taken = true; // (not if the push raised)
                1
            });
            if !taken {
                // The accepter's wait was already ending, or handing over the
                // handle failed (it got that error instead): the connection
                // belongs to nobody.
                close(c, false);
            }
        }
        None => l.queue.push_back(c),
    }
}

/// `socket.accept` on a live listener: a queued connection at once, or park.
///
/// # Safety
/// `L` is the running coroutine; `s` a live, open listener.
pub unsafe fn accept(L: *mut lua_State, s: *mut Sock) -> Option<c_int> {
    let l = (*s).listen.as_mut().unwrap();
    if !l.queue.is_empty() {
        // The handle first: its allocation may raise, and the connection
        // must then stay queued for the next accept rather than be lost.
        let slot = handle::push_slot(L, META);
        let l = (*s).listen.as_mut().unwrap();
        let c = l.queue.pop_front().unwrap();
        fill(slot, c);
        if l.held {
            l.held = false;
            accept_one(s);
        }
        return Some(1);
    }
    if l.accepter.is_some() {
        return Some(lunet_abi::lua::push_fail(L, "another accept already in progress"));
    }
    let spec = Spec::new(Shape::Two).timeout((*s).timeouts.read()).unhook(unhook_accepter, s.cast());
    let id = sched::park((*s).rt, L, spec);
    (*s).listen.as_mut().unwrap().accepter = Some(id);
    None
}

unsafe fn unhook_accepter(_rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    let s = ctx as *mut Sock;
    if let Some(l) = (*s).listen.as_mut() {
        if l.accepter == Some(id) {
            l.accepter = None;
        }
    }
}

// ---------------------------------------------------------------- closing

/// Closes `s` (idempotent). Waiting readers and accepters get
/// `"socket closed"` / `"listener closed"` (on the next loop iteration if
/// `wake`, otherwise their waits are released); queued writers get `"socket closed"` from
/// libuv's cancelled write callbacks; queued unaccepted connections are closed.
///
/// # Safety
/// `s` must be a live socket.
pub unsafe fn close(s: *mut Sock, wake: bool) {
    if (*s).closed {
        return;
    }
    let rt = (*s).rt;
    (*s).closed = true;
    let mut woken: Vec<(WaitId, &'static str)> = Vec::new();
    if let Some(l) = (*s).listen.as_mut() {
        for c in std::mem::take(&mut l.queue) {
            close(c, false);
        }
        if let Some(id) = l.accepter.take() {
            woken.push((id, "listener closed"));
        }
        if let Some(p) = l.path.take() {
            libc::unlink(p.as_ptr());
        }
    }
    if let Some(id) = (*s).reader.take() {
        woken.push((id, CLOSED));
    }
    if !(*s).lot.is_null() {
        parking::forget(s);
    }
    tls_goodbye(s);
    if let Some(id) = (*s).tls.as_mut().and_then(|t| t.handshaker.take()) {
        woken.push((id, CLOSED));
    }
    (*s).rbuf.clear();
    uv::uv_close(Sock::handle(s), Some(on_close));
    for (id, msg) in woken {
        if wake {
            sched::fail_later(rt, id, msg);
        } else {
            sched::forget(rt, id);
        }
    }
}

unsafe extern "C" fn on_close(h: *mut uv::uv_handle_t) {
    let s = (*h).data as *mut Sock;
    (*s).gone = true;
    if !(*s).ud {
        drop(Box::from_raw(s));
    }
}

/// Shutdown: closes every socket, releasing (not resuming) its waiters.
///
/// # Safety
/// Runtime shutdown only.
pub unsafe fn shutdown(rt: *mut Runtime) {
    uv::uv_walk((*rt).uv, Some(close_walked), ptr::null_mut());
}

unsafe extern "C" fn close_walked(h: *mut uv::uv_handle_t, _: *mut c_void) {
    let t = uv::uv_handle_get_type(h);
    if (t == uv::uv_handle_type_UV_TCP || t == uv::uv_handle_type_UV_NAMED_PIPE) && uv::uv_is_closing(h) == 0 {
        close((*h).data as *mut Sock, false);
    }
}

#[cfg(test)]
mod tests {
    /// What a connection costs us (reported in bench/RESULTS.md).
    #[test]
    fn sock_size() {
        let n = std::mem::size_of::<super::Sock>();
        eprintln!("Sock {n} bytes, of which the libuv handle {}", std::mem::size_of::<super::Handle>());
        assert!(n <= 416, "Sock grew to {n} bytes");
    }
}
