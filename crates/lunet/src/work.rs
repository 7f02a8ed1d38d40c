//! Thread-pool work (`uv_queue_work`) on behalf of drivers, through the ABI
//! table: run a job off the loop thread, then resume the waiting coroutine
//! with the values the driver's after-callback pushes on the loop thread.
//!
//! The wait for a job is a scheduler wait like any other: it honours the
//! task's deadline and cancellation. When it ends early the driver's
//! interrupt hook is called; the job itself cannot be taken back from the
//! pool, so when it finishes its results are handed to `after` with no
//! coroutine (the driver frees them) and nobody is resumed.
//!
//! Exit: libuv joins its pool threads when the process exits, so a statement
//! still running would hold `os.exit()` until it ends (forever, for a server
//! that never answers). While any pool work is in flight (driver jobs, file
//! requests, the name lookups of connects), an `on_exit` handler flushes
//! stdio and ends the process at once with its exit status: the running work
//! is abandoned (a database server sees the connection drop).
//!
//! Exit handlers run in the reverse order of their registration, and a
//! library the work itself initialises (OpenSSL, under libpq or MariaDB's
//! client) registers its own cleanup later than lunet did, which then frees
//! what the running work uses. So `os.exit` itself is wrapped (`core.lua`):
//! with pool work in flight it ends the process at once, before any exit
//! handler; and the handler is registered once more after the first pool job
//! completes, so that it runs before the cleanups registered by then.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use libuv_sys2 as uv;
use lunet_abi::ffi::lua_State;
use lunet_abi::{AfterFn, InterruptFn, WorkFn};

use crate::runtime::Runtime;
use crate::sched::{self, Shape, Spec, WaitId};

struct Job {
    req: uv::uv_work_t,
    rt: *mut Runtime,
    wait: Option<WaitId>,
    data: *mut c_void,
    work: WorkFn,
    after: AfterFn,
    interrupt: Option<InterruptFn>,
}

/// Requests on libuv's thread pool (jobs, fs requests, name lookups) not yet
/// finished, in the whole process.
static POOL_BUSY: AtomicUsize = AtomicUsize::new(0);

/// Counts a request handed to the thread pool; pair with [`pool_done`].
pub fn pool_begin() {
    POOL_BUSY.fetch_add(1, Ordering::Relaxed);
}

pub fn pool_done() {
    POOL_BUSY.fetch_sub(1, Ordering::Relaxed);
}

/// Installs the exit handler once per process.
pub fn exit_guard() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        on_exit(on_process_exit, std::ptr::null_mut());
    });
}

/// Installs the exit handler again after the first pool job (see above).
fn exit_guard_again() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        on_exit(on_process_exit, std::ptr::null_mut());
    });
}

/// Whether pool work is in flight (for `os.exit`'s wrapper).
pub fn pool_busy() -> bool {
    POOL_BUSY.load(Ordering::Relaxed) > 0
}

/// Flushes stdio and ends the process now, running no exit handler.
pub fn exit_now(status: c_int) -> ! {
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(status)
    }
}

extern "C" {
    fn on_exit(f: unsafe extern "C" fn(c_int, *mut c_void), arg: *mut c_void) -> c_int;
}

unsafe extern "C" fn on_process_exit(status: c_int, _: *mut c_void) {
    if pool_busy() {
        exit_now(status);
    }
}

/// `LunetAbi::queue_work`; see its documentation.
pub unsafe extern "C" fn abi_queue_work(ctx: *mut c_void, co: *mut lua_State, data: *mut c_void, work: WorkFn, after: AfterFn) -> c_int {
    abi_queue_work_interruptible(ctx, co, data, work, after, None)
}

/// `LunetAbi::queue_work_interruptible`; see its documentation.
pub unsafe extern "C" fn abi_queue_work_interruptible(
    ctx: *mut c_void,
    co: *mut lua_State,
    data: *mut c_void,
    work: WorkFn,
    after: AfterFn,
    interrupt: Option<InterruptFn>,
) -> c_int {
    let rt = ctx as *mut Runtime;
    if (*rt).closing {
        return uv::uv_errno_t_UV_ECANCELED as c_int;
    }
    let job = Box::into_raw(Box::new(Job { req: std::mem::zeroed(), rt, wait: None, data, work, after, interrupt }));
    (*job).req.data = job.cast();
    let rc = uv::uv_queue_work((*rt).uv, &mut (*job).req, Some(on_work), Some(on_after));
    if rc != 0 {
        drop(Box::from_raw(job));
        return rc;
    }
    pool_begin();
    if !co.is_null() {
        (*job).wait = Some(sched::park(rt, co, Spec::new(Shape::Two).unhook(unhook, job.cast())));
    }
    0
}

unsafe fn unhook(_rt: *mut Runtime, ctx: *mut c_void, _id: WaitId) {
    let job = ctx as *mut Job;
    (*job).wait = None;
    if let Some(f) = (*job).interrupt {
        f((*job).data);
    }
}

unsafe extern "C" fn on_work(req: *mut uv::uv_work_t) {
    let job = (*req).data as *mut Job;
    ((*job).work)((*job).data);
}

unsafe extern "C" fn on_after(req: *mut uv::uv_work_t, _status: c_int) {
    pool_done();
    exit_guard_again();
    let job = Box::from_raw((*req).data as *mut Job);
    let (rt, after, data) = (job.rt, job.after, job.data);
    let mut delivered = false;
    if let Some(id) = job.wait {
        sched::complete(rt, id, |co| {
            delivered = true;
            after(co, data)
        });
    }
    if !delivered {
        // Nobody receives the results: still let the driver free `data`.
        after(std::ptr::null_mut(), data);
    }
}

/// `LunetAbi::wait`; see its documentation.
pub unsafe extern "C" fn abi_wait(ctx: *mut c_void, co: *mut lua_State, timeout_ms: i64) -> u64 {
    let rt = ctx as *mut Runtime;
    if (*rt).closing {
        return 0;
    }
    let timeout = u64::try_from(timeout_ms).ok();
    sched::park(rt, co, Spec::new(Shape::Two).timeout(timeout)).to_bits()
}

/// `LunetAbi::wake`; see its documentation.
pub unsafe extern "C" fn abi_wake(ctx: *mut c_void, token: u64) -> c_int {
    match WaitId::from_bits(token) {
        Some(id) => sched::wake_plain_later(ctx as *mut Runtime, id) as c_int,
        None => 0,
    }
}
