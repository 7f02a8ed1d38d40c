//! The pool job: one open, statement or close, run on libuv's thread pool
//! through the core's ABI table, its outcome pushed on the loop thread.
//!
//! Abandoned jobs. The wait for a job honours the task's deadline and
//! cancellation (the core's `queue_work_interruptible`). When it ends
//! early, the core calls [`interrupt`] on the loop thread, which must not
//! block. It marks the job abandoned (its `Waiter`), then:
//!
//! - a statement still in its connection's queue is taken out of it and
//!   completed as abandoned: it never runs, and the statements behind it
//!   move up; its own pool work returns as soon as it starts (or at once,
//!   if it was parked waiting);
//! - a statement taken from the queue but not started yet is skipped by
//!   the thread that runs it (`Statement::begin`, `run_queued`);
//! - a statement running is interrupted with `Driver::interrupt`, sent
//!   only while that statement is still marked as the connection's running
//!   one (`Shared::running`); the mark cannot move on to the next
//!   statement while the interrupt is being sent, so the only window where
//!   a later statement could be hit is the server's or library's own: the
//!   interrupt lands after the statement ended on the server but before
//!   the driver saw it end (libpq's cancel and `KILL QUERY` are then
//!   ignored by the idle session; SQLite clears its flag when the next
//!   statement starts). Blocking interrupts (a cancel request, a side
//!   connection) run as fire-and-forget pool work holding `Arc`s only,
//!   never the job; quick ones (`Driver::INTERRUPT_IS_QUICK`) run in the
//!   hook.
//!
//! Whatever happens, the job's outcome is dropped by `after(NULL, data)`
//! when its work ends: nothing leaks, nothing is resumed twice.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::Thread;

use parking_lot::Mutex;

use lunet_abi::ffi::lua_State;
use lunet_abi::lua::push_fail;
use lunet_abi::LunetAbi;

use crate::handle::{push_handle, Shared, LIVE};
use crate::values::{push_error, push_exec, push_rows, DbError, Output, Statement, StatementKind};
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
    Failed(DbError),
    /// Not run: its caller stopped waiting before it started.
    Abandoned,
}

pub(crate) struct Job<D: Driver> {
    abi: &'static LunetAbi,
    op: Op<D>,
    out: Outcome<D>,
    /// The connection a statement or close works on (a second reference,
    /// so that finding it never reads `op` while another thread runs it).
    target: Option<Arc<Shared<D>>>,
    /// Completion, shared with whichever thread runs the job.
    waiter: Arc<Waiter>,
    /// Whether the job has been put in its connection's queue. Only read
    /// and written with that queue's lock held.
    queued: bool,
    /// Unique (never 0): names the statement in its connection's running mark.
    id: u64,
}

/// Source of job ids.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How the thread that runs a job tells the pool thread that owns it.
/// Shared through an `Arc` so the runner never touches the job itself after
/// marking it done (its owner may free it from then on).
pub(crate) struct Waiter {
    /// Set (release) by whichever thread ran the job, once `out` is final.
    done: AtomicBool,
    /// The pool thread waiting for the job, once its work has started.
    thread: Mutex<Option<Thread>>,
    /// Set (SeqCst) on the loop thread when the coroutine stopped waiting
    /// for the job (timeout, cancellation): do not start it.
    abandoned: AtomicBool,
}

impl Waiter {
    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Wakes the owner, if it is waiting (and is not the calling thread).
    fn wake(&self) {
        let owner = self.thread.lock().clone();
        if let Some(t) = owner {
            if t.id() != std::thread::current().id() {
                t.unpark();
            }
        }
    }
}

impl<D: Driver> Job<D> {
    pub fn new(abi: &'static LunetAbi, op: Op<D>) -> Box<Self> {
        let target = match &op {
            Op::Query { shared, .. } | Op::Exec { shared, .. } | Op::Close(shared) => Some(shared.clone()),
            Op::Open(_) => None,
        };
        let waiter =
            Arc::new(Waiter { done: AtomicBool::new(false), thread: Mutex::new(None), abandoned: AtomicBool::new(false) });
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Box::new(Job { abi, op, out: Outcome::Pending, target, waiter, queued: false, id })
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
        Op::Open(_) => Outcome::Failed(format!("{} internal error: open queued on a connection", D::NAME).into()),
    }
}

/// Stores the outcome of the job behind `p`, marks it done and wakes its
/// owner. The job must not be touched afterwards (its owner may free it).
///
/// # Safety
/// `p` is a job popped from its connection's queue, not yet done.
unsafe fn complete<D: Driver>(p: *mut Job<D>, out: Outcome<D>) {
    let waiter = (*p).waiter.clone();
    (*p).out = out;
    waiter.done.store(true, Ordering::Release);
    waiter.wake();
}

/// Runs the job behind `p` with the connection held, catching panics, and
/// completes it. A statement is marked as the connection's running one
/// while it runs, and skipped if it was abandoned.
///
/// # Safety
/// As for [`complete`].
unsafe fn run_queued<D: Driver>(shared: &Shared<D>, conn: &mut Option<D::Conn>, p: *mut Job<D>) {
    let statement = is_statement(p);
    if statement {
        shared.running.set((*p).id);
        // After the mark (both SeqCst): either this sees the abandonment or
        // the interrupt hook sees the mark.
        let waiter: &Waiter = &(*p).waiter;
        if waiter.abandoned.load(Ordering::SeqCst) {
            shared.running.set(0);
            return complete(p, Outcome::Abandoned);
        }
    }
    let op = &mut (*p).op;
    let out = catch_unwind(AssertUnwindSafe(|| execute::<D>(conn, op)))
        .unwrap_or_else(|e| Outcome::Failed(format!("{} internal error: {}", D::NAME, panic_text(e)).into()));
    if statement {
        shared.running.set(0);
    }
    note_stats(shared, conn);
    complete(p, out);
}

/// Copies the connection's cache counters and session state where the loop
/// thread reads them, before the statements that changed them are reported
/// done.
fn note_stats<D: Driver>(shared: &Shared<D>, conn: &Option<D::Conn>) {
    if let Some(c) = conn {
        shared.stats.store(D::cache_stats(c));
        let s = D::session(c);
        shared.session.store(s.in_transaction as u8 | (s.broken as u8) << 1, Ordering::Relaxed);
    }
}

/// The statement a queued job runs, for [`Driver::batch`].
unsafe fn statement_of<'a, D: Driver>(p: *mut Job<D>) -> Option<Statement<'a>> {
    let st = match &(*p).op {
        Op::Query { sql, params, .. } => Statement::new(StatementKind::Query, sql, params),
        Op::Exec { sql, params, .. } => Statement::new(StatementKind::Exec, sql, params),
        _ => return None,
    };
    let abandoned = &(*Arc::as_ptr(&(*p).waiter)).abandoned;
    Some(match &(*p).target {
        Some(shared) => {
            let shared = &*Arc::as_ptr(shared);
            st.with_closing(&shared.closing).with_job(abandoned, &shared.running, (*p).id)
        }
        None => st,
    })
}

/// Runs several queued statements through [`Driver::batch`] and completes
/// each with its own outcome.
///
/// # Safety
/// As for [`complete`], for every job in `jobs`.
unsafe fn run_batch<D: Driver>(shared: &Shared<D>, conn: &mut Option<D::Conn>, jobs: &[*mut Job<D>]) {
    let stmts: Option<Vec<Statement<'_>>> = jobs.iter().map(|&p| statement_of(p)).collect();
    let (Some(c), Some(mut stmts)) = (conn.as_mut(), stmts) else {
        for &p in jobs {
            run_queued(shared, conn, p);
        }
        return;
    };
    let why = catch_unwind(AssertUnwindSafe(|| D::batch(c, &mut stmts)))
        .err()
        .map(|e| format!("{} internal error: {}", D::NAME, panic_text(e)));
    shared.running.set(0);
    let outs: Vec<Outcome<D>> = stmts
        .into_iter()
        .map(|s| match s.outcome {
            Some(Ok(Output::Rows(rows))) => Outcome::Rows(rows),
            Some(Ok(Output::Exec(e))) => Outcome::Exec(e),
            Some(Err(e)) => Outcome::Failed(e),
            None if s.abandoned() => Outcome::Abandoned,
            None if why.is_none() && s.closing() => Outcome::Failed(CLOSED.into()),
            None => Outcome::Failed(
                why.clone().unwrap_or_else(|| format!("{} internal error: statement was not run", D::NAME)).into(),
            ),
        })
        .collect();
    note_stats(shared, conn);
    for (&p, out) in jobs.iter().zip(outs) {
        complete(p, out);
    }
}

/// Jobs a thread runs for others after its own is done, before handing the
/// connection on (bounds how long its own coroutine waits to be resumed).
const SERVE_AFTER_OWN: usize = 16;

/// Most statements handed to one [`Driver::batch`] call.
const MAX_BATCH: usize = 32;

/// Flat combining over one connection. Statements on a connection must run
/// one at a time; instead of every pool thread blocking on the connection's
/// lock in turn (a sleep and a wake-up per statement), a job is queued on the
/// connection — when it is submitted, before a pool thread even picks it up
/// — and whichever thread holds the lock runs the queued jobs in order,
/// several at a time through [`Driver::batch`] (which a driver may
/// pipeline). A job that was run before its own pool work started finds
/// itself done and returns at once.
///
/// Invariant: a job is in the queue until a lock holder pops and runs it,
/// its own pool work does not return before it is done, and every thread
/// that releases the lock looks at the queue afterwards, so no queued job is
/// left without a thread that will run it.
///
/// # Safety
/// `me` is the job this pool thread owns; it stays alive until done.
unsafe fn run_serialised<D: Driver>(shared: &Shared<D>, me: *mut Job<D>) {
    let mine = (*me).waiter.clone();
    *mine.thread.lock() = Some(std::thread::current());
    enqueue(shared, me);
    loop {
        if mine.is_done() {
            return;
        }
        serve(shared, &mine);
        if mine.is_done() {
            return;
        }
        std::thread::park(); // woken by whoever runs our job, or hands us the lock
    }
}

/// Puts `p` in its connection's queue unless it already is (or was). Called
/// by `submit` on the loop thread and by the job's own pool work, whichever
/// comes first.
///
/// # Safety
/// `p` is a live job of `shared`, not yet freed.
unsafe fn enqueue<D: Driver>(shared: &Shared<D>, p: *mut Job<D>) {
    let mut q = shared.pending.lock();
    if !(*p).queued {
        (*p).queued = true;
        q.push_back(JobPtr(p));
    }
}

/// Whether a queued job is a statement (not a close).
fn is_statement<D: Driver>(p: *mut Job<D>) -> bool {
    unsafe { matches!((*p).op, Op::Query { .. } | Op::Exec { .. }) }
}

/// Pops the next jobs to run: up to `max` statements in queue order, or a
/// single job of another kind (a close).
fn take_batch<D: Driver>(shared: &Shared<D>, max: usize) -> Vec<*mut Job<D>> {
    let mut q = shared.pending.lock();
    let mut out = Vec::new();
    while out.len() < max {
        let Some(JobPtr(p)) = q.front() else { break };
        let statement = is_statement(*p);
        if !statement && !out.is_empty() {
            break;
        }
        if let Some(JobPtr(p)) = q.pop_front() {
            out.push(p);
        }
        if !statement {
            break;
        }
    }
    out
}

/// Takes the connection if it is free and runs queued jobs (see
/// [`run_serialised`]). Returns when the lock is taken by someone else, the
/// queue is empty, or our own job is done and we have served our share.
unsafe fn serve<D: Driver>(shared: &Shared<D>, mine: &Waiter) {
    let mut extra = 0usize;
    loop {
        let Some(mut conn) = shared.conn.try_lock() else { return };
        loop {
            let own_done = mine.done.load(Ordering::Relaxed);
            let max = if own_done { SERVE_AFTER_OWN.saturating_sub(extra).min(MAX_BATCH) } else { MAX_BATCH };
            if max == 0 {
                break;
            }
            let jobs = take_batch(shared, max);
            if shared.closing.load(Ordering::Acquire) && !jobs.is_empty() && is_statement(jobs[0]) {
                // Queued before the close, not started: they see the close.
                for &p in &jobs {
                    complete(p, Outcome::Failed(CLOSED.into()));
                }
            } else {
                match jobs.len() {
                    0 => break,
                    1 => run_queued::<D>(shared, &mut conn, jobs[0]),
                    _ => run_batch::<D>(shared, &mut conn, &jobs),
                }
            }
            if own_done {
                extra += jobs.len();
            }
        }
        drop(conn);
        // Someone may have queued a job after our last look and found the lock taken.
        let head = {
            let q = shared.pending.lock();
            match q.front() {
                None => return,
                Some(JobPtr(p)) => (**p).waiter.clone(),
            }
        };
        if mine.done.load(Ordering::Relaxed) {
            // Hand over: the head's owner serves from here on (or, if its
            // work has not started yet, will when it does).
            head.wake();
            return;
        }
    }
}

/// A queued job, sent between threads.
pub(crate) struct JobPtr<D: Driver>(*mut Job<D>);

// SAFETY: the job is only touched by the thread holding the connection (to
// run it) and, through its `Waiter`, by its owner, which waits for it.
unsafe impl<D: Driver> Send for JobPtr<D> {}

/// Wakes the owner of the first queued job, after the connection's lock was
/// taken and released outside [`serve`] (closing without the pool), so the
/// queue does not stall.
pub(crate) fn kick<D: Driver>(shared: &Shared<D>) {
    let head = shared.pending.lock().front().map(|p| unsafe { (*p.0).waiter.clone() });
    if let Some(w) = head {
        w.wake();
    }
}

/// Runs on a pool thread.
unsafe fn run<D: Driver>(job: *mut Job<D>) {
    if let Some(shared) = (*job).target.clone() {
        let running = shared.running.current();
        if matches!((*job).op, Op::Close(_)) && running != 0 {
            // A statement is running: ask the server to stop it rather than
            // wait for it (the closing flag keeps the queued ones from starting).
            let _ = catch_unwind(AssertUnwindSafe(|| {
                shared.running.while_running(running, || D::interrupt(&shared.info))
            }));
        }
        // From here on another thread may run this job: no references into it.
        return run_serialised(&shared, job);
    }
    let out = match &mut (*job).op {
        Op::Open(config) => match config.take().map(D::connect) {
            Some(Ok((conn, info))) => Outcome::Opened(Shared::new(conn, info)),
            Some(Err(e)) => Outcome::Failed(e),
            None => Outcome::Failed(format!("{} internal error: open ran twice", D::NAME).into()),
        },
        _ => Outcome::Failed(format!("{} internal error: unexpected job", D::NAME).into()),
    };
    (*job).out = out;
}

/// Queues `job`; `co` (if not null) is resumed with its outcome, and the
/// caller must then `return lua_yield(co, 0)`. Gives the job back if the core
/// refused it (the runtime is shutting down).
///
/// A statement or close is also put in its connection's queue right away,
/// so a thread already working on that connection can run it (several at a
/// time) before a pool thread picks up this job's own work.
///
/// # Safety
/// Loop thread; with a non-null `co`, the running coroutine, checked yieldable.
pub(crate) unsafe fn submit<D: Driver>(co: *mut lua_State, job: Box<Job<D>>) -> Result<(), Box<Job<D>>> {
    let abi = job.abi;
    let target = job.target.clone();
    let data = Box::into_raw(job);
    let rc = (abi.queue_work_interruptible)(abi.ctx, co, data.cast(), work::<D>, after::<D>, Some(interrupt::<D>));
    if rc != 0 {
        return Err(Box::from_raw(data));
    }
    // The job cannot be freed before this returns: that happens in `after`,
    // on this (the loop) thread.
    if let Some(shared) = target {
        enqueue(&shared, data);
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

/// `InterruptFn`: on the loop thread, when the coroutine waiting for the
/// job behind `data` stopped waiting before the job finished (see the
/// module's documentation). Must not block; the job is alive (`after` has
/// not run yet) and may be running on another thread: only its immutable
/// fields (`target`, `waiter`, `id`, `abi`) are read, and it is completed
/// here only while it is still in its connection's queue (nobody runs it).
unsafe extern "C" fn interrupt<D: Driver>(data: *mut c_void) {
    let job = data as *mut Job<D>;
    let waiter = (*job).waiter.clone();
    waiter.abandoned.store(true, Ordering::SeqCst);
    // An open has nothing to interrupt: `after` closes a connection nobody takes.
    let Some(shared) = (*job).target.clone() else { return };
    let id = (*job).id;
    let in_queue = {
        let mut q = shared.pending.lock();
        match q.iter().position(|p| p.0 == job) {
            Some(i) => {
                q.remove(i);
                true
            }
            None => false,
        }
    };
    if in_queue {
        complete(job, Outcome::Abandoned);
        // It may have been the head the last lock holder handed over to.
        kick(&shared);
        return;
    }
    // Taken by a thread: if not started, it sees `abandoned` and skips it.
    if waiter.is_done() || !shared.running.is(id) {
        return;
    }
    if D::INTERRUPT_IS_QUICK {
        let _ = catch_unwind(AssertUnwindSafe(|| shared.running.while_running(id, || D::interrupt(&shared.info))));
        return;
    }
    let abi = (*job).abi;
    let order = Box::into_raw(Box::new(Interrupt { shared, id }));
    let rc = (abi.queue_work)(abi.ctx, std::ptr::null_mut(), order.cast(), interrupt_work::<D>, interrupt_after::<D>);
    if rc != 0 {
        // Shutting down: the connections are closed (and interrupted) anyway.
        drop(Box::from_raw(order));
    }
}

/// An interrupt sent from a pool thread: holds the connection, never the job.
struct Interrupt<D: Driver> {
    shared: Arc<Shared<D>>,
    id: u64,
}

/// `WorkFn` of an [`Interrupt`]: interrupts statement `id` if it still runs.
unsafe extern "C" fn interrupt_work<D: Driver>(data: *mut c_void) {
    let order = &*(data as *const Interrupt<D>);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        order.shared.running.while_running(order.id, || D::interrupt(&order.shared.info))
    }));
}

/// `AfterFn` of an [`Interrupt`] (never with a coroutine): frees it.
unsafe extern "C-unwind" fn interrupt_after<D: Driver>(_: *mut lua_State, data: *mut c_void) -> c_int {
    drop(Box::from_raw(data as *mut Interrupt<D>));
    0
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
        (*job).out = Outcome::Failed(format!("{} internal error: {}", D::NAME, panic_text(p)).into());
    }
}

/// `AfterFn`: on the loop thread. Pushes the outcome for `co` (if any) and
/// frees the job.
unsafe extern "C-unwind" fn after<D: Driver>(co: *mut lua_State, data: *mut c_void) -> c_int {
    let mut job = Box::from_raw(data as *mut Job<D>);
    let out = std::mem::replace(&mut job.out, Outcome::Pending);
    if co.is_null() {
        // Nobody to hand a new connection to: close it.
        if let Outcome::Opened(shared) = out {
            close_in_background(job.abi, shared);
        }
        return 0;
    }
    // Runs inside the core's protected call: an allocation that raises (a
    // finaliser's error) unwinds from here, dropping `job` and `out`.
    match &out {
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
        Outcome::Failed(e) => push_error(co, e),
        // The core never resumes a wait that ended (it passes no coroutine).
        Outcome::Abandoned => push_fail(co, &format!("{} internal error: abandoned statement resumed", D::NAME)),
        Outcome::Pending => push_fail(co, &format!("{} internal error: job did not run", D::NAME)),
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

        fn connect(_: ()) -> Result<(MockConn, ()), DbError> {
            unreachable!()
        }

        fn query(conn: &mut MockConn, sql: &[u8], _: &[Param]) -> Result<Rows, DbError> {
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

        fn exec(_: &mut MockConn, _: &[u8], _: &[Param]) -> Result<Exec, DbError> {
            Ok(Exec::default())
        }

        /// The default, plus a record of the largest batch seen.
        fn batch(conn: &mut MockConn, batch: &mut [Statement<'_>]) {
            LARGEST_BATCH.fetch_max(batch.len(), Ordering::SeqCst);
            for s in batch.iter_mut() {
                if !s.begin() {
                    continue;
                }
                let run = catch_unwind(AssertUnwindSafe(|| s.run_alone::<Mock>(conn)));
                s.outcome = Some(run.unwrap_or_else(|e| Err(format!("mock internal error: {}", panic_text(e)).into())));
            }
        }
    }

    static LARGEST_BATCH: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn no_queue(_: *mut c_void, _: *mut lua_State, _: *mut c_void, _: lunet_abi::WorkFn, _: lunet_abi::AfterFn) -> c_int {
        -1
    }
    unsafe extern "C" fn no_queue_int(
        _: *mut c_void,
        _: *mut lua_State,
        _: *mut c_void,
        _: lunet_abi::WorkFn,
        _: lunet_abi::AfterFn,
        _: Option<lunet_abi::InterruptFn>,
    ) -> c_int {
        -1
    }
    unsafe extern "C" fn no_wait(_: *mut c_void, _: *mut lua_State, _: i64) -> u64 {
        0
    }
    unsafe extern "C" fn no_wake(_: *mut c_void, _: u64) -> c_int {
        0
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
            queue_work_interruptible: no_queue_int,
            wait: no_wait,
            wake: no_wake,
        }))
    }

    fn outcome(job: &Job<Mock>) -> Result<(), String> {
        match &job.out {
            Outcome::Rows(_) => Ok(()),
            Outcome::Failed(e) => Err(e.message.clone()),
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
                        assert!(job.waiter.is_done());
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
    fn jobs_queued_at_submit_are_run_in_batches_by_the_thread_holding_the_connection() {
        let ran = Arc::new(AtomicUsize::new(0));
        let shared = Shared::<Mock>::new(MockConn { inside: Arc::new(AtomicBool::new(false)), ran: ran.clone() }, ());
        let abi = abi();
        // As `submit` does: every job is in the connection's queue before any pool work starts.
        let jobs: Vec<usize> = (0..60)
            .map(|_| {
                let p = Box::into_raw(Job::<Mock>::new(abi, Op::Query { shared: shared.clone(), sql: b"ok".to_vec(), params: vec![] }));
                unsafe { enqueue(&shared, p) };
                p as usize
            })
            .collect();
        // The first job's work runs its own and others, several at a time.
        unsafe { work::<Mock>(jobs[0] as *mut c_void) };
        assert!(LARGEST_BATCH.load(Ordering::SeqCst) > 1);
        let done_early = jobs.iter().filter(|&&p| unsafe { (*(p as *mut Job<Mock>)).waiter.is_done() }).count();
        assert!(done_early > 1 && done_early < 60, "{done_early}");
        // The others' work, started later from several threads, finishes the rest;
        // the ones already done return at once.
        let threads: Vec<_> = jobs[1..]
            .chunks(13)
            .map(|chunk| {
                let chunk = chunk.to_vec();
                std::thread::spawn(move || {
                    for p in chunk {
                        unsafe { work::<Mock>(p as *mut c_void) };
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for p in jobs {
            let job = unsafe { Box::from_raw(p as *mut Job<Mock>) };
            assert!(job.waiter.is_done());
            assert_eq!(outcome(&job), Ok(()));
        }
        assert_eq!(ran.load(Ordering::SeqCst), 60);
        assert!(shared.pending.lock().is_empty());
    }

    #[test]
    fn statements_queued_before_a_close_see_it_instead_of_running() {
        let ran = Arc::new(AtomicUsize::new(0));
        let shared = Shared::<Mock>::new(MockConn { inside: Arc::new(AtomicBool::new(false)), ran: ran.clone() }, ());
        let abi = abi();
        let jobs: Vec<*mut Job<Mock>> = (0..3)
            .map(|_| {
                let p = Box::into_raw(Job::<Mock>::new(abi, Op::Query { shared: shared.clone(), sql: b"ok".to_vec(), params: vec![] }));
                unsafe { enqueue(&shared, p) };
                p
            })
            .collect();
        shared.closing.store(true, Ordering::Release);
        for &p in &jobs {
            unsafe { work::<Mock>(p.cast()) };
        }
        for p in jobs {
            let job = unsafe { Box::from_raw(p) };
            assert_eq!(outcome(&job), Err(CLOSED.to_string()));
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0);
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

    #[test]
    fn abandoned_statements_never_run_and_the_queue_moves_on() {
        let ran = Arc::new(AtomicUsize::new(0));
        let shared = Shared::<Mock>::new(MockConn { inside: Arc::new(AtomicBool::new(false)), ran: ran.clone() }, ());
        let abi = abi();
        let jobs: Vec<*mut Job<Mock>> = (0..5)
            .map(|_| {
                let p = Box::into_raw(Job::<Mock>::new(abi, Op::Query { shared: shared.clone(), sql: b"ok".to_vec(), params: vec![] }));
                unsafe { enqueue(&shared, p) };
                p
            })
            .collect();
        // The hook, as the core calls it when a queued statement's wait ends:
        // out of the queue at once, done, never run.
        unsafe { interrupt::<Mock>(jobs[1].cast()) };
        assert!(unsafe { (*jobs[1]).waiter.is_done() });
        assert_eq!(shared.pending.lock().len(), 4);
        // Abandoned after a runner took it (flag only): skipped when its turn
        // comes in the batch (2). Job 4, marked after job 0's work served the
        // queue, has already run: its outcome stands.
        unsafe {
            let w: &Waiter = &(*jobs[2]).waiter;
            w.abandoned.store(true, Ordering::SeqCst);
        }
        unsafe { work::<Mock>(jobs[0].cast()) };
        unsafe {
            let w: &Waiter = &(*jobs[4]).waiter;
            w.abandoned.store(true, Ordering::SeqCst);
        }
        for &p in &jobs[1..] {
            unsafe { work::<Mock>(p.cast()) };
        }
        let abandoned: Vec<bool> = jobs
            .into_iter()
            .map(|p| {
                let job = unsafe { Box::from_raw(p) };
                assert!(job.waiter.is_done());
                matches!(job.out, Outcome::Abandoned)
            })
            .collect();
        assert_eq!(abandoned[1..3], [true, true]);
        assert!(!abandoned[0]);
        assert_eq!(ran.load(Ordering::SeqCst), 5 - abandoned.iter().filter(|&&a| a).count());
        assert!(ran.load(Ordering::SeqCst) >= 2);
        assert!(shared.pending.lock().is_empty());
        assert!(shared.running.is(0));
    }
}
