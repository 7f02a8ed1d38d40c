//! The pool job: one open, statement or close, run on libuv's thread pool
//! through the core's ABI table, its outcome pushed on the loop thread.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::Thread;

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::push_fail;
use lunet_abi::LunetAbi;

use crate::handle::{push_handle, Shared, LIVE};
use crate::values::{push_exec, push_rows};
use crate::{Driver, Exec, Param, Rows};

pub(crate) const CLOSED: &str = "connection is closed";

pub(crate) enum Op<D: Driver> {
    Open(Option<D::Config>),
    Query { shared: Arc<Shared<D>>, sql: Vec<u8>, params: Vec<Param> },
    Exec { shared: Arc<Shared<D>>, sql: Vec<u8>, params: Vec<Param> },
    Close(Arc<Shared<D>>),
}

enum Outcome<D: Driver> {
    Pending,
    Opened(Arc<Shared<D>>),
    Rows(Rows),
    Exec(Exec),
    Failed(String),
}

pub(crate) struct Job<D: Driver> {
    abi: &'static LunetAbi,
    op: Op<D>,
    out: Outcome<D>,
    /// Set (release) by whichever thread ran the statement, once `out` is final.
    done: AtomicBool,
    /// The pool thread waiting for this job, unparked when it is done.
    owner: Option<Thread>,
}

impl<D: Driver> Job<D> {
    pub fn new(abi: &'static LunetAbi, op: Op<D>) -> Box<Self> {
        Box::new(Job { abi, op, out: Outcome::Pending, done: AtomicBool::new(false), owner: None })
    }
}

/// Runs a statement job's operation on its connection (`None`: closed).
fn execute<D: Driver>(conn: &mut Option<D::Conn>, op: &mut Op<D>) -> Outcome<D> {
    match op {
        Op::Query { sql, params, .. } => match conn.as_mut() {
            Some(c) => D::query(c, sql, params).map_or_else(Outcome::Failed, Outcome::Rows),
            None => Outcome::Failed(CLOSED.into()),
        },
        Op::Exec { sql, params, .. } => match conn.as_mut() {
            Some(c) => D::exec(c, sql, params).map_or_else(Outcome::Failed, Outcome::Exec),
            None => Outcome::Failed(CLOSED.into()),
        },
        Op::Close(_) => {
            if let Some(c) = conn.take() {
                D::close(c);
                LIVE.fetch_sub(1, Ordering::Relaxed);
            }
            Outcome::Pending
        }
        Op::Open(_) => Outcome::Failed(format!("{} internal error: open queued on a connection", D::NAME)),
    }
}

/// Runs the job behind `p` with the connection held, catching panics, and
/// marks it done. Its owner must not be touched afterwards except through
/// the `Thread` handle taken here.
///
/// # Safety
/// `p` is a queued job not yet done; its owner waits for `done`.
unsafe fn run_queued<D: Driver>(conn: &mut Option<D::Conn>, p: *mut Job<D>) {
    let op = &mut (*p).op;
    let out = catch_unwind(AssertUnwindSafe(|| execute::<D>(conn, op)))
        .unwrap_or_else(|e| Outcome::Failed(format!("{} internal error: {}", D::NAME, panic_text(e))));
    (*p).out = out;
    let owner = (*p).owner.clone();
    (*p).done.store(true, Ordering::Release);
    if let Some(t) = owner {
        if t.id() != std::thread::current().id() {
            t.unpark();
        }
    }
}

/// Jobs a thread runs for others after its own is done, before handing the
/// connection on (bounds how long its own coroutine waits to be resumed).
const SERVE_AFTER_OWN: usize = 16;

/// Flat combining over one connection. Statements on a connection must run
/// one at a time; instead of every pool thread blocking on the connection's
/// lock in turn (a sleep and a wake-up per statement), a job is queued on the
/// connection and whichever thread holds the lock runs the queued jobs in
/// order, back to back; their owners just wait to be told they are done.
///
/// Invariant: a job is in the queue until a lock holder pops and runs it,
/// and every thread that releases the lock looks at the queue afterwards, so
/// no queued job is left without a thread that will run it.
///
/// # Safety
/// `me` is the job this pool thread owns; it stays alive until done.
unsafe fn run_serialised<D: Driver>(shared: &Shared<D>, me: *mut Job<D>) {
    (*me).owner = Some(std::thread::current());
    shared.pending.lock().push_back(JobPtr(me));
    loop {
        serve(shared, me);
        if (*me).done.load(Ordering::Acquire) {
            return;
        }
        std::thread::park(); // woken by whoever runs our job, or hands us the lock
    }
}

/// Takes the connection if it is free and runs queued jobs (see
/// [`run_serialised`]). Returns when the lock is taken by someone else, the
/// queue is empty, or our own job is done and we have served our share.
unsafe fn serve<D: Driver>(shared: &Shared<D>, me: *mut Job<D>) {
    let mut extra = 0usize;
    loop {
        let Some(mut conn) = shared.conn.try_lock() else { return };
        loop {
            if (*me).done.load(Ordering::Relaxed) {
                if extra >= SERVE_AFTER_OWN {
                    break;
                }
                extra += 1;
            }
            let next = shared.pending.lock().pop_front();
            let Some(JobPtr(p)) = next else { break };
            run_queued::<D>(&mut conn, p);
        }
        drop(conn);
        // Someone may have queued a job after our last look and found the lock taken.
        let head_owner = {
            let q = shared.pending.lock();
            match q.front() {
                None => return,
                Some(JobPtr(p)) => (**p).owner.clone(),
            }
        };
        if (*me).done.load(Ordering::Relaxed) {
            // Hand over: the head's owner serves from here on.
            if let Some(t) = head_owner {
                t.unpark();
            }
            return;
        }
    }
}

/// A queued job, sent between pool threads.
pub(crate) struct JobPtr<D: Driver>(*mut Job<D>);

// SAFETY: the job is only touched by the thread holding the connection (to
// run it) and, through `done`, by its owner, which waits for it.
unsafe impl<D: Driver> Send for JobPtr<D> {}

/// Wakes the owner of the first queued job, after the connection's lock was
/// taken and released outside [`serve`] (closing without the pool), so the
/// queue does not stall.
pub(crate) fn kick<D: Driver>(shared: &Shared<D>) {
    let owner = shared.pending.lock().front().and_then(|p| unsafe { (*p.0).owner.clone() });
    if let Some(t) = owner {
        t.unpark();
    }
}

/// Runs on a pool thread.
unsafe fn run<D: Driver>(job: *mut Job<D>) {
    let shared = match &(*job).op {
        Op::Query { shared, .. } | Op::Exec { shared, .. } | Op::Close(shared) => Some(shared.clone()),
        Op::Open(_) => None,
    };
    if let Some(shared) = shared {
        // From here on another thread may run this job: no references into it.
        return run_serialised(&shared, job);
    }
    let out = match &mut (*job).op {
        Op::Open(config) => match config.take().map(D::connect) {
            Some(Ok((conn, info))) => Outcome::Opened(Shared::new(conn, info)),
            Some(Err(e)) => Outcome::Failed(e),
            None => Outcome::Failed(format!("{} internal error: open ran twice", D::NAME)),
        },
        _ => Outcome::Failed(format!("{} internal error: unexpected job", D::NAME)),
    };
    (*job).out = out;
}

/// Queues `job`; `co` (if not null) is resumed with its outcome, and the
/// caller must then `return lua_yield(co, 0)`. Gives the job back if the core
/// refused it (the runtime is shutting down).
///
/// # Safety
/// Loop thread; with a non-null `co`, the running coroutine, checked yieldable.
pub(crate) unsafe fn submit<D: Driver>(co: *mut lua_State, job: Box<Job<D>>) -> Result<(), Box<Job<D>>> {
    let abi = job.abi;
    let data = Box::into_raw(job);
    let rc = (abi.queue_work)(abi.ctx, co, data.cast(), work::<D>, after::<D>);
    if rc != 0 {
        return Err(Box::from_raw(data));
    }
    Ok(())
}

/// Closes `shared` without blocking the loop: as fire-and-forget pool work
/// (queued behind any statement running on it). If the core refuses work
/// (shutdown), closes at once when the connection is idle, else on a thread
/// of its own.
///
/// # Safety
/// Loop thread.
pub(crate) unsafe fn close_in_background<D: Driver>(abi: &'static LunetAbi, shared: Arc<Shared<D>>) {
    let Err(job) = submit(std::ptr::null_mut(), Job::new(abi, Op::Close(shared))) else { return };
    let Op::Close(shared) = job.op else { return };
    if !shared.try_close_now() {
        let _ = std::thread::Builder::new()
            .name(format!("lunet-{}-close", D::NAME))
            .spawn(move || shared.close_now());
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// `WorkFn`: on a pool thread. Must not unwind.
unsafe extern "C" fn work<D: Driver>(data: *mut c_void) {
    let job = data as *mut Job<D>;
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| run(job))) {
        (*job).out = Outcome::Failed(format!("{} internal error: {}", D::NAME, panic_text(p)));
    }
}

/// `AfterFn`: on the loop thread. Pushes the outcome for `co` (if any) and
/// frees the job. Must not unwind.
unsafe extern "C" fn after<D: Driver>(co: *mut lua_State, data: *mut c_void) -> c_int {
    let mut job = Box::from_raw(data as *mut Job<D>);
    let out = std::mem::replace(&mut job.out, Outcome::Pending);
    if co.is_null() {
        // Nobody to hand a new connection to: close it.
        if let Outcome::Opened(shared) = out {
            close_in_background(job.abi, shared);
        }
        return 0;
    }
    let top = ffi::lua_gettop(co);
    let pushed = catch_unwind(AssertUnwindSafe(|| match &out {
        Outcome::Opened(shared) => {
            push_handle::<D>(co, shared.clone());
            1
        }
        Outcome::Rows(rows) => {
            push_rows(co, rows);
            1
        }
        Outcome::Exec(e) => {
            push_exec(co, e);
            1
        }
        Outcome::Failed(msg) => push_fail(co, msg),
        Outcome::Pending => push_fail(co, &format!("{} internal error: job did not run", D::NAME)),
    }));
    match pushed {
        Ok(n) => n,
        Err(p) => {
            ffi::lua_settop(co, top);
            push_fail(co, &format!("{} internal error: {}", D::NAME, panic_text(p)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A driver whose "connection" checks that it is never used by two
    /// threads at once and counts the statements it ran.
    struct Mock;

    struct MockConn {
        inside: Arc<AtomicBool>,
        ran: Arc<AtomicUsize>,
    }

    impl Driver for Mock {
        const NAME: &'static str = "mock";
        const METATABLE: &'static std::ffi::CStr = c"lunet.mock.connection";
        type Config = ();
        type Conn = MockConn;
        type Info = ();

        unsafe fn config(_: *mut lua_State, _: c_int) -> Result<(), lunet_abi::lua::Raise> {
            Ok(())
        }

        fn connect(_: ()) -> Result<(MockConn, ()), String> {
            unreachable!()
        }

        fn query(conn: &mut MockConn, sql: &[u8], _: &[Param]) -> Result<Rows, String> {
            assert!(!conn.inside.swap(true, Ordering::SeqCst), "two statements ran at once");
            if sql == b"panic" {
                conn.inside.store(false, Ordering::SeqCst);
                panic!("deliberate");
            }
            std::hint::spin_loop();
            conn.ran.fetch_add(1, Ordering::SeqCst);
            conn.inside.store(false, Ordering::SeqCst);
            Ok(Rows::default())
        }

        fn exec(_: &mut MockConn, _: &[u8], _: &[Param]) -> Result<Exec, String> {
            Ok(Exec::default())
        }
    }

    unsafe extern "C" fn no_queue(_: *mut c_void, _: *mut lua_State, _: *mut c_void, _: lunet_abi::WorkFn, _: lunet_abi::AfterFn) -> c_int {
        -1
    }
    unsafe extern "C" fn no_loop(_: *mut c_void) -> *mut c_void {
        std::ptr::null_mut()
    }
    /// A table whose `queue_work` refuses everything (the tests call `work` directly).
    fn abi() -> &'static LunetAbi {
        Box::leak(Box::new(LunetAbi {
            version: lunet_abi::ABI_VERSION,
            size: std::mem::size_of::<LunetAbi>() as u32,
            ctx: std::ptr::null_mut(),
            queue_work: no_queue,
            uv_loop: no_loop,
        }))
    }

    fn outcome(job: &Job<Mock>) -> Result<(), String> {
        match &job.out {
            Outcome::Rows(_) => Ok(()),
            Outcome::Failed(e) => Err(e.clone()),
            _ => Err("no outcome".into()),
        }
    }

    #[test]
    fn statements_on_one_connection_never_overlap_and_all_finish() {
        let ran = Arc::new(AtomicUsize::new(0));
        let shared = Shared::<Mock>::new(MockConn { inside: Arc::new(AtomicBool::new(false)), ran: ran.clone() }, ());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let shared = shared.clone();
                let abi = abi() as *const LunetAbi as usize;
                std::thread::spawn(move || {
                    let abi = unsafe { &*(abi as *const LunetAbi) };
                    let mut failures = 0;
                    for i in 0..2000 {
                        let sql = if (t + i) % 500 == 0 { b"panic".to_vec() } else { b"ok".to_vec() };
                        let job = Job::<Mock>::new(abi, Op::Query { shared: shared.clone(), sql, params: vec![] });
                        let p = Box::into_raw(job);
                        unsafe { work::<Mock>(p.cast()) };
                        let job = unsafe { Box::from_raw(p) };
                        assert!(job.done.load(Ordering::Acquire));
                        if let Err(e) = outcome(&job) {
                            assert!(e.contains("internal error: deliberate"), "{e}");
                            failures += 1;
                        }
                    }
                    failures
                })
            })
            .collect();
        let failures: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(failures, 32);
        assert_eq!(ran.load(Ordering::SeqCst), 8 * 2000 - 32);
        assert!(shared.pending.lock().is_empty());
    }

    #[test]
    fn statements_after_a_close_report_the_closed_connection() {
        let shared = Shared::<Mock>::new(
            MockConn { inside: Arc::new(AtomicBool::new(false)), ran: Arc::new(AtomicUsize::new(0)) },
            (),
        );
        let abi = abi();
        let run = |op: Op<Mock>| {
            let p = Box::into_raw(Job::<Mock>::new(abi, op));
            unsafe { work::<Mock>(p.cast()) };
            unsafe { Box::from_raw(p) }
        };
        run(Op::Close(shared.clone()));
        assert!(shared.conn.lock().is_none());
        let job = run(Op::Query { shared: shared.clone(), sql: b"ok".to_vec(), params: vec![] });
        assert_eq!(outcome(&job), Err(CLOSED.to_string()));
        run(Op::Close(shared.clone())); // twice is harmless
        assert!(shared.conn.lock().is_none() && shared.pending.lock().is_empty());
    }
}
