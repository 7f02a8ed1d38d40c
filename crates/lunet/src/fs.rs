//! `lunet.fs`: files through libuv's file-system requests (`uv_fs_*` with a
//! callback), which run on the thread pool while the calling coroutine waits.
//!
//! Every request is a heap-allocated [`Req`] that libuv owns from submission
//! until its callback; the runtime keeps the set of requests in flight so that
//! shutdown can release their waiters.
//!
//! File descriptors are plain integers, as in the API, but only descriptors
//! returned by `fs.open` (and not yet closed) are accepted by `read`, `write`
//! and `close`. Anything else gets `"bad file descriptor"`. This keeps a script
//! from reading, writing or closing descriptors it does not own, above all
//! libuv's own (its epoll, eventfd and signal pipe: closing or writing one of
//! those makes libuv abort). It also lets `close` wait for the reads and writes
//! still running on that descriptor, so that a late read never lands on a
//! different file that reused the number.

use std::collections::{HashMap, HashSet};
use std::ffi::{c_int, CString};

use libuv_sys2 as uv;
use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{push_bytes, push_fail, to_bytes, to_number, type_name, Raise};
use lunet_abi::lua_fn;

use crate::runtime::{self, strerror, Runtime};
use crate::sched::{self, Shape, Spec, WaitId};

/// Largest buffer one `fs.read` allocates (16 MiB). A larger request reads at
/// most this many bytes, like any short read; callers loop until `""`.
pub const MAX_READ: usize = 16 << 20;

/// Mode bits of files created by `fs.open` (before the umask).
const CREATE_MODE: c_int = 0o644;

enum Op {
    Open,
    Read { buf: Vec<u8> },
    /// `done` counts the bytes written so far; short writes are resubmitted.
    Write { data: Vec<u8>, done: usize },
    Close,
    Stat,
    Scandir,
}

struct Req {
    fs: uv::uv_fs_t,
    rt: *mut Runtime,
    waiter: Option<WaitId>,
    fd: c_int,
    op: Op,
}

/// A descriptor opened by `fs.open`.
#[derive(Default)]
struct FdState {
    /// Reads and writes in flight on it.
    busy: u32,
    /// `fs.close` was called: no new reads or writes.
    closing: bool,
    /// A close waiting for `busy` to drop to 0 (not yet handed to libuv).
    deferred_close: Option<*mut Req>,
}

/// Per-runtime state of `lunet.fs`.
#[derive(Default)]
pub struct Fs {
    /// Requests with a waiter: submitted to libuv, or a deferred close.
    in_flight: HashSet<*mut Req>,
    fds: HashMap<c_int, FdState>,
}

impl Fs {
    /// Releases the coroutines waiting on unfinished requests. Requests already
    /// on the thread pool cannot be stopped; their memory stays valid, and if
    /// the loop ever runs them to completion they are freed without resuming
    /// anything. Deferred closes, which libuv never saw, are freed here.
    ///
    /// # Safety
    /// Shutdown only, on the loop thread.
    pub unsafe fn shutdown(rt: *mut Runtime) {
        let fs = &mut (*rt).fs;
        let mut deferred = Vec::new();
        for st in fs.fds.values_mut() {
            if let Some(r) = st.deferred_close.take() {
                deferred.push(r);
            }
        }
        for r in &deferred {
            if fs.in_flight.remove(r) {
                crate::work::pool_done();
            }
        }
        let reqs: Vec<*mut Req> = fs.in_flight.iter().copied().collect();
        for req in reqs {
            if let Some(id) = (*req).waiter.take() {
                sched::forget(rt, id);
            }
        }
        for r in deferred {
            let mut r = Box::from_raw(r);
            if let Some(id) = r.waiter.take() {
                sched::forget(rt, id);
            }
        }
    }
}

/// The result of a request, taken out of it before it is freed.
enum Outcome {
    Fd(c_int),
    Data(Vec<u8>),
    Count(usize),
    Closed,
    Stat(uv::uv_stat_t),
    Dir(Vec<(Vec<u8>, &'static str)>),
    /// `nil, err`, or just `err` (for close) when the flag is set.
    Fail(c_int, bool),
}

unsafe fn new_req(rt: *mut Runtime, fd: c_int, op: Op) -> *mut Req {
    let req = Box::into_raw(Box::new(Req { fs: std::mem::zeroed(), rt, waiter: None, fd, op }));
    (*req).fs.data = req.cast();
    req
}

/// Ends an entry point after a submission: on success parks the caller and
/// yields; on failure frees the request and returns `nil, err` (`err` alone for
/// close).
unsafe fn finish_submit(L: *mut lua_State, rt: *mut Runtime, req: *mut Req, rc: c_int) -> c_int {
    if rc < 0 {
        let one = matches!((*req).op, Op::Close);
        drop(Box::from_raw(req));
        return fail(L, rc, one);
    }
    park(L, rt, req)
}

/// A wait that ended early: the request goes on (a close still closes, an
/// open's descriptor is closed when it arrives) and nobody is resumed.
unsafe fn unhook(_rt: *mut Runtime, ctx: *mut std::ffi::c_void, _id: WaitId) {
    (*(ctx as *mut Req)).waiter = None;
}

unsafe fn park(L: *mut lua_State, rt: *mut Runtime, req: *mut Req) -> c_int {
    // A close reports with one value, every other call with two.
    let shape = if matches!((*req).op, Op::Close) { Shape::One } else { Shape::Two };
    (*req).waiter = Some(sched::park(rt, L, Spec::new(shape).unhook(unhook, req.cast())));
    (*rt).fs.in_flight.insert(req);
    crate::work::pool_begin(); // (os.exit does not wait for it)
    ffi::lua_yield(L, 0)
}

unsafe fn fail(L: *mut lua_State, code: c_int, one_value: bool) -> c_int {
    if one_value {
        push_bytes(L, strerror(code).as_bytes());
        1
    } else {
        push_fail(L, &strerror(code))
    }
}

const EBADF: c_int = uv::uv_errno_t_UV_EBADF as c_int;

/// A wrong parameter (how to act: a length, the data, the mode's type) is a
/// programmer error and raises. What a call acts on (a path, a descriptor)
/// keeps C lunet's `nil, "fs.<fn> requires ..."` instead: it is often the
/// unchecked result of an earlier call (README: "Argument errors").
unsafe fn bad_arg(L: *mut lua_State, idx: c_int, name: &str, expected: &str) -> Raise {
    format!("bad argument #{idx} to 'fs.{name}' ({expected} expected, got {})", type_name(L, idx)).into()
}

/// The path argument at `idx`, or the `fs.<fn> requires ...` message.
unsafe fn path_arg(L: *mut lua_State, idx: c_int, name: &str) -> Result<CString, String> {
    let b = to_bytes(L, idx).ok_or_else(|| format!("fs.{name} requires path"))?;
    CString::new(b).map_err(|_| format!("fs.{name} requires a path without NUL bytes"))
}

/// The descriptor argument at `idx`: `Err` if it is not a number at all,
/// `Ok(None)` if it is a number that cannot be a descriptor we opened.
unsafe fn fd_arg(L: *mut lua_State, idx: c_int) -> Result<Option<c_int>, ()> {
    let n = to_number(L, idx).ok_or(())?;
    if n.fract() == 0.0 && (0.0..=c_int::MAX as f64).contains(&n) {
        Ok(Some(n as c_int))
    } else {
        Ok(None)
    }
}

/// `Some(flags)` for a valid `fs.open` mode: `r w a x`, optionally followed by
/// `+`; a `b` anywhere after the letter is accepted and ignored.
fn mode_flags(mode: &[u8]) -> Option<c_int> {
    let (&first, rest) = mode.split_first()?;
    let (mut plus, mut b) = (false, false);
    for &c in rest {
        match c {
            b'+' if !plus => plus = true,
            b'b' if !b => b = true,
            _ => return None,
        }
    }
    let access = if plus { uv::UV_FS_O_RDWR } else if first == b'r' { uv::UV_FS_O_RDONLY } else { uv::UV_FS_O_WRONLY };
    let extra = match first {
        b'r' => 0,
        b'w' => uv::UV_FS_O_CREAT | uv::UV_FS_O_TRUNC,
        b'a' => uv::UV_FS_O_CREAT | uv::UV_FS_O_APPEND,
        b'x' => uv::UV_FS_O_CREAT | uv::UV_FS_O_EXCL,
        _ => return None,
    };
    Some((access | extra) as c_int)
}

lua_fn! {
    /// `fs.open(path, mode)` -> `fd` | `nil, err`
    pub fn l_open(L) {
        let rt = runtime::of(L);
        if ffi::lua_type(L, 2) != ffi::LUA_TSTRING {
            return Err(bad_arg(L, 2, "open", "string"));
        }
        let (Some(_), Some(mode)) = (to_bytes(L, 1), to_bytes(L, 2)) else {
            return Ok(push_fail(L, "fs.open requires path and mode"));
        };
        let Some(flags) = mode_flags(mode) else {
            return Ok(push_fail(L, "fs.open invalid mode"));
        };
        let path = match path_arg(L, 1, "open") {
            Ok(p) => p,
            Err(msg) => return Ok(push_fail(L, &msg)),
        };
        let req = new_req(rt, -1, Op::Open);
        let rc = uv::uv_fs_open((*rt).uv, &mut (*req).fs, path.as_ptr(), flags, CREATE_MODE, Some(on_done));
        Ok(finish_submit(L, rt, req, rc))
    }
}

/// Checks that `fd` is open for I/O and counts one more operation on it.
unsafe fn begin_io(rt: *mut Runtime, fd: Option<c_int>) -> Option<c_int> {
    let fd = fd?;
    let st = (*rt).fs.fds.get_mut(&fd).filter(|st| !st.closing)?;
    st.busy += 1;
    Some(fd)
}

/// Ends one read or write on `fd`; hands a waiting close to libuv once the
/// last one is done.
unsafe fn end_io(rt: *mut Runtime, fd: c_int) {
    let Some(st) = (*rt).fs.fds.get_mut(&fd) else { return };
    st.busy = st.busy.saturating_sub(1);
    if st.busy > 0 {
        return;
    }
    if let Some(req) = st.deferred_close.take() {
        if (*rt).closing {
            return; // shutdown frees it
        }
        let rc = submit_close(rt, req);
        if rc < 0 {
            // Cannot happen for a valid request; report it from the loop anyway.
            (*req).fs.result = rc as isize;
            on_done(&mut (*req).fs);
        }
    }
}

lua_fn! {
    /// `fs.read(fd, n)` -> `data` (`""` at end of file) | `nil, err`
    pub fn l_read(L) {
        let rt = runtime::of(L);
        let Some(n) = to_number(L, 2) else {
            return Err(bad_arg(L, 2, "read", "number"));
        };
        if n.is_nan() || n < 0.0 {
            return Err("bad argument #2 to 'fs.read' (length must be >= 0)".into());
        }
        let Ok(fd) = fd_arg(L, 1) else {
            return Ok(push_fail(L, "fs.read requires fd and length"));
        };
        let Some(fd) = begin_io(rt, fd) else {
            return Ok(fail(L, EBADF, false));
        };
        let len = if n >= MAX_READ as f64 { MAX_READ } else { n as usize };
        let req = new_req(rt, fd, Op::Read { buf: Vec::with_capacity(len) });
        let rc = submit_read(rt, req);
        if rc < 0 {
            end_io(rt, fd);
        }
        Ok(finish_submit(L, rt, req, rc))
    }
}

unsafe fn submit_read(rt: *mut Runtime, req: *mut Req) -> c_int {
    let Op::Read { buf } = &mut (*req).op else { unreachable!() };
    let b = uv::uv_buf_t { base: buf.as_mut_ptr().cast(), len: buf.capacity() };
    uv::uv_fs_read((*rt).uv, &mut (*req).fs, (*req).fd, &b, 1, -1, Some(on_done))
}

lua_fn! {
    /// `fs.write(fd, data)` -> `bytes_written` | `nil, err`
    pub fn l_write(L) {
        let rt = runtime::of(L);
        let Some(data) = to_bytes(L, 2) else {
            return Err(bad_arg(L, 2, "write", "string"));
        };
        let Ok(fd) = fd_arg(L, 1) else {
            return Ok(push_fail(L, "fs.write requires fd and data"));
        };
        let Some(fd) = begin_io(rt, fd) else {
            return Ok(fail(L, EBADF, false));
        };
        // A copy: the string is not referenced by anything while the coroutine
        // waits, and the thread pool must never read memory Lua may free.
        let req = new_req(rt, fd, Op::Write { data: data.to_vec(), done: 0 });
        let rc = submit_write(rt, req);
        if rc < 0 {
            end_io(rt, fd);
        }
        Ok(finish_submit(L, rt, req, rc))
    }
}

/// Writes what is left of the request's data at the current position.
unsafe fn submit_write(rt: *mut Runtime, req: *mut Req) -> c_int {
    let Op::Write { data, done } = &mut (*req).op else { unreachable!() };
    let rest = &mut data[*done..];
    let b = uv::uv_buf_t { base: rest.as_mut_ptr().cast(), len: rest.len() };
    uv::uv_fs_write((*rt).uv, &mut (*req).fs, (*req).fd, &b, 1, -1, Some(on_done))
}

lua_fn! {
    /// `fs.close(fd)` -> `nil` | `err`
    pub fn l_close(L) {
        let rt = runtime::of(L);
        let Ok(fd) = fd_arg(L, 1) else {
            push_bytes(L, b"fs.close requires 1 integer fd");
            return Ok(1);
        };
        let Some(st) = fd.and_then(|fd| (*rt).fs.fds.get_mut(&fd)).filter(|st| !st.closing) else {
            return Ok(fail(L, EBADF, true));
        };
        st.closing = true;
        let fd = fd.unwrap_or(-1);
        let req = new_req(rt, fd, Op::Close);
        if st.busy > 0 {
            st.deferred_close = Some(req);
            return Ok(park(L, rt, req));
        }
        let rc = submit_close(rt, req);
        if rc < 0 {
            (*rt).fs.fds.remove(&fd);
        }
        Ok(finish_submit(L, rt, req, rc))
    }
}

unsafe fn submit_close(rt: *mut Runtime, req: *mut Req) -> c_int {
    uv::uv_fs_close((*rt).uv, &mut (*req).fs, (*req).fd, Some(on_done))
}

lua_fn! {
    /// `fs.stat(path)` -> table | `nil, err`
    pub fn l_stat(L) {
        let rt = runtime::of(L);
        let path = match path_arg(L, 1, "stat") {
            Ok(p) => p,
            Err(msg) => return Ok(push_fail(L, &msg)),
        };
        let req = new_req(rt, -1, Op::Stat);
        let rc = uv::uv_fs_stat((*rt).uv, &mut (*req).fs, path.as_ptr(), Some(on_done));
        Ok(finish_submit(L, rt, req, rc))
    }
}

lua_fn! {
    /// `fs.scandir(path)` -> array of `{name=, type=}` sorted by name | `nil, err`
    pub fn l_scandir(L) {
        let rt = runtime::of(L);
        let path = match path_arg(L, 1, "scandir") {
            Ok(p) => p,
            Err(msg) => return Ok(push_fail(L, &msg)),
        };
        let req = new_req(rt, -1, Op::Scandir);
        let rc = uv::uv_fs_scandir((*rt).uv, &mut (*req).fs, path.as_ptr(), 0, Some(on_done));
        Ok(finish_submit(L, rt, req, rc))
    }
}

fn dirent_type(t: uv::uv_dirent_type_t) -> &'static str {
    match t {
        uv::uv_dirent_type_t_UV_DIRENT_FILE => "file",
        uv::uv_dirent_type_t_UV_DIRENT_DIR => "dir",
        uv::uv_dirent_type_t_UV_DIRENT_LINK => "link",
        uv::uv_dirent_type_t_UV_DIRENT_FIFO => "fifo",
        uv::uv_dirent_type_t_UV_DIRENT_SOCKET => "socket",
        uv::uv_dirent_type_t_UV_DIRENT_CHAR => "char",
        uv::uv_dirent_type_t_UV_DIRENT_BLOCK => "block",
        _ => "unknown",
    }
}

fn mode_type(mode: u64) -> &'static str {
    match mode & 0o170000 {
        0o100000 => "file",
        0o040000 => "dir",
        0o120000 => "link",
        0o010000 => "fifo",
        0o140000 => "socket",
        0o020000 => "char",
        0o060000 => "block",
        _ => "unknown",
    }
}

/// Called by libuv on the loop thread when a request is done.
unsafe extern "C" fn on_done(fs: *mut uv::uv_fs_t) {
    let req = (*fs).data as *mut Req;
    let rt = (*req).rt;
    let mut result = (*fs).result;

    // A short write: write the rest before answering.
    if let Op::Write { data, done } = &mut (*req).op {
        if result > 0 {
            *done += result as usize;
            if *done < data.len() && !(*rt).closing {
                uv::uv_fs_req_cleanup(fs);
                let rc = submit_write(rt, req);
                if rc == 0 {
                    return;
                }
                result = rc as isize;
            }
        }
    }

    let outcome = if result < 0 {
        Outcome::Fail(result as c_int, matches!((*req).op, Op::Close))
    } else {
        match &mut (*req).op {
            Op::Open => Outcome::Fd(result as c_int),
            Op::Read { buf } => {
                buf.set_len((result as usize).min(buf.capacity()));
                Outcome::Data(std::mem::take(buf))
            }
            Op::Write { done, .. } => Outcome::Count(*done),
            Op::Close => Outcome::Closed,
            Op::Stat => Outcome::Stat((*fs).statbuf),
            Op::Scandir => {
                let mut list = Vec::new();
                let mut ent: uv::uv_dirent_t = std::mem::zeroed();
                while uv::uv_fs_scandir_next(fs, &mut ent) == 0 {
                    if ent.name.is_null() {
                        continue;
                    }
                    let name = std::ffi::CStr::from_ptr(ent.name).to_bytes().to_vec();
                    list.push((name, dirent_type(ent.type_)));
                }
                list.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                Outcome::Dir(list)
            }
        }
    };
    uv::uv_fs_req_cleanup(fs);

    let mut req = Box::from_raw(req);
    if (*rt).fs.in_flight.remove(&(&mut *req as *mut Req)) {
        crate::work::pool_done();
    }
    let (fd, waiter) = (req.fd, req.waiter.take());
    let op = std::mem::replace(&mut req.op, Op::Close);
    drop(req);

    match op {
        Op::Read { .. } | Op::Write { .. } => end_io(rt, fd),
        Op::Close => {
            // Linux releases the descriptor even when close(2) reports an error.
            let fds = &mut (*rt).fs.fds;
            if fds.get(&fd).is_some_and(|st| st.closing) {
                fds.remove(&fd);
            }
        }
        Op::Open => {
            if let Outcome::Fd(new_fd) = outcome {
                (*rt).fs.fds.insert(new_fd, FdState::default());
            }
        }
        _ => {}
    }

    let opened = if let Outcome::Fd(fd) = outcome { Some(fd) } else { None };
    let mut delivered = false;
    if let Some(id) = waiter {
        sched::complete(rt, id, |co| {
            let n = push_outcome(co, outcome);
            delivered = true; // (not if the push raised: the fd is closed below)
            n
        });
    }
    if let (Some(fd), false) = (opened, delivered) {
        // Nobody will ever see this descriptor: do not leak it.
        (*rt).fs.fds.remove(&fd);
        libc::close(fd);
    }
}

unsafe fn set_num(L: *mut lua_State, key: &std::ffi::CStr, v: f64) {
    ffi::lua_pushnumber(L, v);
    ffi::lua_setfield(L, -2, key.as_ptr());
}

unsafe fn set_str(L: *mut lua_State, key: &std::ffi::CStr, v: &str) {
    push_bytes(L, v.as_bytes());
    ffi::lua_setfield(L, -2, key.as_ptr());
}

fn seconds(t: uv::uv_timespec_t) -> f64 {
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

unsafe fn push_outcome(co: *mut lua_State, out: Outcome) -> c_int {
    match out {
        Outcome::Fd(fd) => {
            ffi::lua_pushinteger(co, fd as ffi::lua_Integer);
            1
        }
        Outcome::Data(buf) => {
            push_bytes(co, &buf);
            1
        }
        Outcome::Count(n) => {
            ffi::lua_pushnumber(co, n as f64);
            1
        }
        Outcome::Closed => {
            ffi::lua_pushnil(co);
            1
        }
        Outcome::Stat(s) => {
            ffi::lua_createtable(co, 0, 14);
            for (k, v) in [
                (c"size", s.st_size),
                (c"mode", s.st_mode),
                (c"uid", s.st_uid),
                (c"gid", s.st_gid),
                (c"nlink", s.st_nlink),
                (c"ino", s.st_ino),
                (c"dev", s.st_dev),
                (c"rdev", s.st_rdev),
                (c"blksize", s.st_blksize),
                (c"blocks", s.st_blocks),
            ] {
                set_num(co, k, v as f64);
            }
            set_num(co, c"atime", seconds(s.st_atim));
            set_num(co, c"mtime", seconds(s.st_mtim));
            set_num(co, c"ctime", seconds(s.st_ctim));
            set_str(co, c"type", mode_type(s.st_mode));
            1
        }
        Outcome::Dir(list) => {
            ffi::lua_createtable(co, list.len().min(c_int::MAX as usize) as c_int, 0);
            for (i, (name, ty)) in list.iter().enumerate() {
                ffi::lua_createtable(co, 0, 2);
                push_bytes(co, name);
                ffi::lua_setfield(co, -2, c"name".as_ptr());
                set_str(co, c"type", ty);
                ffi::lua_rawseti(co, -2, (i + 1) as ffi::lua_Integer);
            }
            1
        }
        Outcome::Fail(code, one_value) => fail(co, code, one_value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let (r, w, rw) = (uv::UV_FS_O_RDONLY, uv::UV_FS_O_WRONLY, uv::UV_FS_O_RDWR);
        let (c, t, a, x) = (uv::UV_FS_O_CREAT, uv::UV_FS_O_TRUNC, uv::UV_FS_O_APPEND, uv::UV_FS_O_EXCL);
        let cases: &[(&str, u32)] = &[
            ("r", r),
            ("rb", r),
            ("r+", rw),
            ("r+b", rw),
            ("rb+", rw),
            ("w", w | c | t),
            ("w+", rw | c | t),
            ("a", w | c | a),
            ("a+", rw | c | a),
            ("ab", w | c | a),
            ("x", w | c | x),
            ("x+", rw | c | x),
        ];
        for &(m, want) in cases {
            assert_eq!(mode_flags(m.as_bytes()), Some(want as c_int), "mode {m}");
        }
        for bad in ["", "b", "q", "rw", "r++", "rbb", "+r", "R", "r\0", "w+x"] {
            assert_eq!(mode_flags(bad.as_bytes()), None, "mode {bad:?}");
        }
    }

    #[test]
    fn file_types() {
        assert_eq!(mode_type(0o100644), "file");
        assert_eq!(mode_type(0o040755), "dir");
        assert_eq!(mode_type(0o120777), "link");
        assert_eq!(mode_type(0o010600), "fifo");
        assert_eq!(mode_type(0o140755), "socket");
        assert_eq!(mode_type(0o020666), "char");
        assert_eq!(mode_type(0o060660), "block");
        assert_eq!(mode_type(0), "unknown");
    }
}
