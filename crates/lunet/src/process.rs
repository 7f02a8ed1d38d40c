//! `lunet.process`: child processes on libuv process handles — spawn, wait
//! for the exit, wait for readiness, send signals. Built for the supervisor
//! of `lunet-run --workers` (`supervisor.lua`), usable by any script.
//!
//! Children are known by pid. Each child has a libuv process handle until it
//! exits (the handle keeps the loop alive, as any running work does); its
//! exit status stays recorded until a `process.wait` has collected it.
//!
//! Readiness: `spawn(..., {ready = true})` gives the child the write end of
//! a pipe as its file descriptor 3 (and `LUNET_READY_FD=3` in its
//! environment). The child writes a byte there once it is ready (a lunet
//! worker does so when `lunet.run()` starts); `process.ready(pid)` waits for
//! that byte. The parent watches the read end with a libuv poll handle (not
//! a libuv pipe: every pipe handle of the runtime is a socket of `stream`).

use std::collections::HashMap;
use std::ffi::{c_int, c_void, CString};
use std::ptr;

use libuv_sys2 as uv;
use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{push_fail, raw_field, to_bytes, to_number, type_name, Raise};
use lunet_abi::lua_fn;

use crate::runtime::{self, strerror, Runtime};
use crate::sched::{self, Shape, Spec, WaitId};
use crate::signal;
use crate::task::opt_ms;

/// Where the child finds the readiness pipe.
pub const READY_FD: c_int = 3;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ready {
    /// Not asked for at spawn.
    NotWatched,
    Pending,
    Yes,
    /// The child closed the pipe (or exited) without writing.
    No,
}

struct Child {
    /// Null once the process has exited (the handle is then closed).
    handle: *mut uv::uv_process_t,
    /// Exit status and terminating signal (0 = none), once exited.
    exit: Option<(i64, c_int)>,
    waiters: Vec<WaitId>,
    ready: Ready,
    ready_waiters: Vec<WaitId>,
    /// The readiness watch while it runs.
    watch: *mut ReadyWatch,
}

/// Per-runtime state of `lunet.process`.
#[derive(Default)]
pub struct Procs {
    children: HashMap<c_int, Child>,
}

impl Procs {
    /// Children started and not yet exited.
    pub fn running(&self) -> usize {
        self.children.values().filter(|c| c.exit.is_none()).count()
    }
}

/// The readiness watch: a poll handle on the read end of the pipe.
#[repr(C)]
struct ReadyWatch {
    poll: uv::uv_poll_t,
    rt: *mut Runtime,
    pid: c_int,
    fd: c_int,
}

/// A signal name for `process.kill`: the names `signal.wait` knows, and KILL.
fn kill_signal(name: &[u8]) -> Option<c_int> {
    let bare = name.strip_prefix(b"SIG").unwrap_or(name);
    if bare == b"KILL" {
        return Some(libc::SIGKILL);
    }
    signal::lookup(bare)
}

/// The environment of a child: ours, with `extra` (name, value) set over it.
fn child_env(extra: &[(Vec<u8>, Vec<u8>)]) -> Vec<CString> {
    use std::os::unix::ffi::OsStrExt;
    let mut out: Vec<CString> = Vec::new();
    for (k, v) in std::env::vars_os() {
        let k = k.as_bytes();
        if extra.iter().any(|(n, _)| n.as_slice() == k) {
            continue;
        }
        let mut kv = k.to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        if let Ok(c) = CString::new(kv) {
            out.push(c);
        }
    }
    for (k, v) in extra {
        let mut kv = k.clone();
        kv.push(b'=');
        kv.extend_from_slice(v);
        if let Ok(c) = CString::new(kv) {
            out.push(c);
        }
    }
    out
}

/// A string argument (no NUL bytes) for `spawn`.
unsafe fn c_string(L: *mut lua_State, idx: c_int, what: &str) -> Result<CString, Raise> {
    if ffi::lua_type(L, idx) != ffi::LUA_TSTRING {
        return Err(format!("process.spawn: {what} must be a string (got {})", type_name(L, idx)).into());
    }
    CString::new(to_bytes(L, idx).unwrap_or_default()).map_err(|_| Raise::from(format!("process.spawn: {what} contains a NUL byte")))
}

/// Spawn options read from Lua.
struct SpawnOpts {
    env: Vec<(Vec<u8>, Vec<u8>)>,
    detached: bool,
    ready: bool,
}

unsafe fn spawn_opts(L: *mut lua_State, idx: c_int) -> Result<SpawnOpts, Raise> {
    let mut o = SpawnOpts { env: Vec::new(), detached: false, ready: false };
    match ffi::lua_type(L, idx) {
        ffi::LUA_TNONE | ffi::LUA_TNIL => return Ok(o),
        ffi::LUA_TTABLE => {}
        _ => return Err(format!("process.spawn expects an options table (got {})", type_name(L, idx)).into()),
    }
    for (key, slot) in [(c"detached", &mut o.detached), (c"ready", &mut o.ready)] {
        raw_field(L, idx, key);
        let t = ffi::lua_type(L, -1);
        *slot = ffi::lua_toboolean(L, -1) != 0;
        ffi::lua_settop(L, -2);
        if t != ffi::LUA_TNIL && t != ffi::LUA_TBOOLEAN {
            return Err(format!("process.spawn: option {} must be a boolean", key.to_string_lossy()).into());
        }
    }
    raw_field(L, idx, c"env");
    match ffi::lua_type(L, -1) {
        ffi::LUA_TNIL => {}
        ffi::LUA_TTABLE => {
            ffi::lua_pushnil(L);
            while ffi::lua_next(L, -2) != 0 {
                if ffi::lua_type(L, -2) != ffi::LUA_TSTRING || ffi::lua_type(L, -1) != ffi::LUA_TSTRING {
                    return Err("process.spawn: option env maps names to strings".into());
                }
                let k = to_bytes(L, -2).unwrap_or_default().to_vec();
                if k.is_empty() || k.contains(&b'=') || k.contains(&0) {
                    return Err("process.spawn: invalid environment variable name".into());
                }
                o.env.push((k, to_bytes(L, -1).unwrap_or_default().to_vec()));
                ffi::lua_settop(L, -2);
            }
        }
        _ => return Err("process.spawn: option env must be a table".into()),
    }
    ffi::lua_settop(L, -2);
    Ok(o)
}

lua_fn! {
    /// `process.spawn(file, args [, opts])` -> pid | nil, err. `file` is
    /// looked up on PATH; `args` (an array of strings) follow it in argv.
    /// opts: `env` (names to values, set over the inherited environment),
    /// `detached` (own session: terminal signals reach only this process),
    /// `ready` (readiness pipe on the child's fd 3, see `process.ready`).
    pub fn l_spawn(L) {
        let rt = runtime::of(L);
        let file = c_string(L, 1, "file")?;
        if ffi::lua_type(L, 2) != ffi::LUA_TTABLE {
            return Err(format!("process.spawn expects an array of arguments (got {})", type_name(L, 2)).into());
        }
        let mut argv = vec![file.clone()];
        let n = ffi::lua_objlen(L, 2);
        for i in 1..=n {
            ffi::lua_rawgeti(L, 2, i as _);
            let a = c_string(L, -1, &format!("argument {i}"));
            ffi::lua_settop(L, -2);
            argv.push(a?);
        }
        let mut o = spawn_opts(L, 3)?;
        let mut fds = [-1 as c_int; 2];
        if o.ready {
            if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                return Ok(push_fail(L, &std::io::Error::last_os_error().to_string()));
            }
            o.env.push((b"LUNET_READY_FD".to_vec(), READY_FD.to_string().into_bytes()));
        }
        let env = child_env(&o.env);
        let mut argp: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr() as *mut _).collect();
        argp.push(ptr::null_mut());
        let mut envp: Vec<*mut libc::c_char> = env.iter().map(|a| a.as_ptr() as *mut _).collect();
        envp.push(ptr::null_mut());
        let mut stdio: Vec<uv::uv_stdio_container_t> = (0..if o.ready { 4 } else { 3 })
            .map(|fd| {
                let mut c: uv::uv_stdio_container_t = std::mem::zeroed();
                c.flags = uv::uv_stdio_flags_UV_INHERIT_FD;
                c.data.fd = if fd == READY_FD { fds[1] } else { fd };
                c
            })
            .collect();
        let mut opts: uv::uv_process_options_t = std::mem::zeroed();
        opts.exit_cb = Some(on_exit);
        opts.file = file.as_ptr();
        opts.args = argp.as_mut_ptr();
        opts.env = envp.as_mut_ptr();
        opts.stdio_count = stdio.len() as c_int;
        opts.stdio = stdio.as_mut_ptr();
        if o.detached {
            opts.flags |= uv::uv_process_flags_UV_PROCESS_DETACHED;
        }
        let h = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_process_t>()));
        (*h).data = rt.cast();
        let rc = uv::uv_spawn((*rt).uv, h, &opts);
        if o.ready {
            libc::close(fds[1]);
        }
        if rc != 0 {
            if o.ready {
                libc::close(fds[0]);
            }
            // libuv initialised the handle before failing: it must be closed.
            uv::uv_close(h.cast(), Some(free_process));
            return Ok(push_fail(L, &strerror(rc)));
        }
        let pid = (*h).pid;
        let mut child = Child { handle: h, exit: None, waiters: Vec::new(), ready: Ready::NotWatched, ready_waiters: Vec::new(), watch: ptr::null_mut() };
        if o.ready {
            match watch_ready(rt, pid, fds[0]) {
                Ok(w) => {
                    child.ready = Ready::Pending;
                    child.watch = w;
                }
                Err(_) => child.ready = Ready::No,
            }
        }
        (*rt).procs.children.insert(pid, child);
        ffi::lua_pushnumber(L, pid as f64);
        Ok(1)
    }
}

unsafe extern "C" fn free_process(h: *mut uv::uv_handle_t) {
    drop(Box::from_raw(h as *mut uv::uv_process_t));
}

unsafe fn watch_ready(rt: *mut Runtime, pid: c_int, fd: c_int) -> Result<*mut ReadyWatch, c_int> {
    let w = Box::into_raw(Box::new(ReadyWatch { poll: std::mem::zeroed(), rt, pid, fd }));
    let rc = uv::uv_poll_init((*rt).uv, &mut (*w).poll, fd);
    if rc != 0 {
        libc::close(fd);
        drop(Box::from_raw(w));
        return Err(rc);
    }
    (*w).poll.data = w.cast();
    // The watch alone does not keep the loop alive: the process handle does.
    uv::uv_unref(ptr::addr_of_mut!((*w).poll).cast());
    uv::uv_poll_start(&mut (*w).poll, uv::uv_poll_event_UV_READABLE as c_int, Some(on_ready));
    Ok(w)
}

/// Reads the readiness byte without blocking: `None` while nothing came yet.
unsafe fn read_ready(fd: c_int) -> Option<Ready> {
    let mut byte = 0u8;
    let n = libc::read(fd, (&mut byte as *mut u8).cast(), 1);
    if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
        return None;
    }
    Some(if n == 1 { Ready::Yes } else { Ready::No })
}

unsafe extern "C" fn on_ready(p: *mut uv::uv_poll_t, status: c_int, _events: c_int) {
    let w = (*p).data as *mut ReadyWatch;
    let r = if status == 0 { read_ready((*w).fd) } else { Some(Ready::No) };
    if let Some(r) = r {
        end_watch(w, r);
    }
}

/// Ends the readiness watch with its outcome.
unsafe fn end_watch(w: *mut ReadyWatch, r: Ready) {
    let rt = (*w).rt;
    uv::uv_poll_stop(&mut (*w).poll);
    libc::close((*w).fd);
    uv::uv_close(ptr::addr_of_mut!((*w).poll).cast(), Some(free_watch));
    if let Some(c) = (*rt).procs.children.get_mut(&(*w).pid) {
        c.watch = ptr::null_mut();
    }
    set_ready(rt, (*w).pid, r);
}

unsafe extern "C" fn free_watch(h: *mut uv::uv_handle_t) {
    drop(Box::from_raw((*h).data as *mut ReadyWatch));
}

unsafe fn set_ready(rt: *mut Runtime, pid: c_int, r: Ready) {
    let Some(c) = (*rt).procs.children.get_mut(&pid) else { return };
    c.ready = r;
    for id in std::mem::take(&mut c.ready_waiters) {
        answer_ready(rt, id, r);
    }
}

unsafe fn answer_ready(rt: *mut Runtime, id: WaitId, r: Ready) {
    if r == Ready::Yes {
        sched::complete(rt, id, |co| {
            ffi::lua_pushboolean(co, 1);
            1
        });
    } else {
        sched::complete(rt, id, |co| push_fail(co, "exited before ready"));
    }
}

unsafe extern "C" fn on_exit(h: *mut uv::uv_process_t, status: i64, signum: c_int) {
    let rt = (*h).data as *mut Runtime;
    let pid = (*h).pid;
    uv::uv_close(h.cast(), Some(free_process));
    let Some(c) = (*rt).procs.children.get_mut(&pid) else { return };
    c.handle = ptr::null_mut();
    c.exit = Some((status, signum));
    let waiters = std::mem::take(&mut c.waiters);
    // Everything the child wrote is in the pipe by now: readiness is
    // settled before the exit is handed over (which may drop the entry).
    if !c.watch.is_null() {
        let w = c.watch;
        end_watch(w, read_ready((*w).fd).unwrap_or(Ready::No));
    }
    if waiters.is_empty() {
        return; // kept for the next wait
    }
    // Collected by these waits: gone before they resume (and maybe wait again).
    let entry = (*rt).procs.children.remove(&pid);
    let mut delivered = false;
    for id in waiters {
        sched::complete(rt, id, |co| {
            delivered = true;
            push_exit(co, status, signum)
        });
    }
    if let (false, Some(c)) = (delivered, entry) {
        // Every wait was ending already (a timeout): keep the exit.
        (*rt).procs.children.entry(pid).or_insert(c);
    }
}

unsafe fn push_exit(L: *mut lua_State, status: i64, signum: c_int) -> c_int {
    ffi::lua_pushnumber(L, status as f64);
    ffi::lua_pushnumber(L, signum as f64);
    2
}

/// The pid at argument 1.
unsafe fn pid_arg(L: *mut lua_State, what: &str) -> Result<c_int, Raise> {
    match to_number(L, 1) {
        Some(n) if ffi::lua_type(L, 1) == ffi::LUA_TNUMBER && n.fract() == 0.0 && n >= 1.0 && n <= i32::MAX as f64 => Ok(n as c_int),
        _ => Err(format!("{what} expects a process id (got {})", type_name(L, 1)).into()),
    }
}

const NO_CHILD: &str = "no such child process";

lua_fn! {
    /// `process.wait(pid [, ms])` -> status, signal (0 = none) | nil, err.
    /// The first wait to see the exit collects it: later ones get
    /// `nil, "no such child process"`.
    pub fn l_wait(L) {
        let rt = runtime::of(L);
        let pid = pid_arg(L, "process.wait")?;
        let ms = opt_ms(L, 2, "process.wait")?;
        let Some(c) = (*rt).procs.children.get_mut(&pid) else {
            return Ok(push_fail(L, NO_CHILD));
        };
        if let Some((status, signum)) = c.exit {
            (*rt).procs.children.remove(&pid);
            return Ok(push_exit(L, status, signum));
        }
        let id = sched::park(rt, L, Spec::new(Shape::Two).timeout(ms).unhook(unhook_wait, pid as usize as *mut c_void));
        if let Some(c) = (*rt).procs.children.get_mut(&pid) {
            c.waiters.push(id);
        }
        Ok(ffi::lua_yield(L, 0))
    }
}

unsafe fn unhook_wait(rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    if let Some(c) = (*rt).procs.children.get_mut(&(ctx as usize as c_int)) {
        c.waiters.retain(|&j| j != id);
    }
}

lua_fn! {
    /// `process.ready(pid [, ms])` -> true | nil, err: waits until the child
    /// writes to its readiness pipe (`spawn`'s `ready` option).
    pub fn l_ready(L) {
        let rt = runtime::of(L);
        let pid = pid_arg(L, "process.ready")?;
        let ms = opt_ms(L, 2, "process.ready")?;
        let Some(c) = (*rt).procs.children.get_mut(&pid) else {
            return Ok(push_fail(L, NO_CHILD));
        };
        match c.ready {
            Ready::NotWatched => Ok(push_fail(L, "spawned without the ready option")),
            Ready::Yes => {
                ffi::lua_pushboolean(L, 1);
                Ok(1)
            }
            Ready::No => Ok(push_fail(L, "exited before ready")),
            Ready::Pending => {
                let id = sched::park(rt, L, Spec::new(Shape::Two).timeout(ms).unhook(unhook_ready, pid as usize as *mut c_void));
                if let Some(c) = (*rt).procs.children.get_mut(&pid) {
                    c.ready_waiters.push(id);
                }
                Ok(ffi::lua_yield(L, 0))
            }
        }
    }
}

unsafe fn unhook_ready(rt: *mut Runtime, ctx: *mut c_void, id: WaitId) {
    if let Some(c) = (*rt).procs.children.get_mut(&(ctx as usize as c_int)) {
        c.ready_waiters.retain(|&j| j != id);
    }
}

lua_fn! {
    /// `process.kill(pid, signal)` -> true | nil, err (children of this
    /// runtime only; `signal` a name such as "TERM", "HUP" or "KILL").
    pub fn l_kill(L) {
        let rt = runtime::of(L);
        let pid = pid_arg(L, "process.kill")?;
        let Some(signum) = (ffi::lua_type(L, 2) == ffi::LUA_TSTRING).then(|| to_bytes(L, 2)).flatten().and_then(kill_signal) else {
            return Err(format!("process.kill: unknown signal (got {})", type_name(L, 2)).into());
        };
        let Some(c) = (*rt).procs.children.get(&pid) else {
            return Ok(push_fail(L, NO_CHILD));
        };
        if c.handle.is_null() {
            return Ok(push_fail(L, "process exited"));
        }
        match uv::uv_process_kill(c.handle, signum) {
            0 => {
                ffi::lua_pushboolean(L, 1);
                Ok(1)
            }
            rc => Ok(push_fail(L, &strerror(rc))),
        }
    }
}

lua_fn! {
    /// `process.cpus()` -> the number of CPUs this process may use.
    pub fn l_cpus(L) {
        ffi::lua_pushnumber(L, uv::uv_available_parallelism() as f64);
        Ok(1)
    }
}

lua_fn! {
    /// `process.pid()` -> this process's id.
    pub fn l_pid(L) {
        ffi::lua_pushnumber(L, libc::getpid() as f64);
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(kill_signal(b"KILL"), Some(libc::SIGKILL));
        assert_eq!(kill_signal(b"SIGKILL"), Some(libc::SIGKILL));
        assert_eq!(kill_signal(b"TERM"), Some(libc::SIGTERM));
        assert_eq!(kill_signal(b"kill"), None);
        assert_eq!(kill_signal(b"CHLD"), None);
    }

    #[test]
    fn env_overrides() {
        let env = child_env(&[(b"LUNET_TEST_X".to_vec(), b"1".to_vec()), (b"PATH".to_vec(), b"/x".to_vec())]);
        let s: Vec<_> = env.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        assert!(s.contains(&"LUNET_TEST_X=1".to_string()));
        assert_eq!(s.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert!(s.contains(&"PATH=/x".to_string()));
    }
}
