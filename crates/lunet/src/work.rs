//! Thread-pool work on behalf of drivers, through the ABI table: run a job
//! off the loop thread, then resume the waiting coroutine with the values the
//! driver's after-callback pushes on the loop thread.
//!
//! Batching. A job is not one `uv_queue_work` request of its own: it goes to
//! the runtime's run queue, and *drains* — ordinary `uv_queue_work` requests,
//! so the work still runs on libuv's pool threads — take jobs from that queue
//! one after the other until it is empty. A finished job goes to the
//! runtime's done queue, which the loop reads before every poll; the drain
//! wakes the loop (`uv_async_send`) only when the loop sleeps. So while
//! statements keep coming, a busy pool thread keeps going without sleeping,
//! and the loop resumes coroutines without being woken, instead of two
//! thread wake-ups per statement.
//!
//! The sleep protocol. The done queue's lock guards the jobs and a
//! `sleeping` flag:
//!
//! - before each poll (a prepare handle, the last phase before libuv
//!   blocks), the loop takes the finished jobs and resumes their coroutines,
//!   up to [`ROUNDS`] times while more arrive; when it finds the queue
//!   empty, it sets `sleeping` in the same critical section, and polls;
//! - a drain that posts a job clears `sleeping` in the critical section of
//!   the post, and if it was set, sends the wake-up: exactly one drain
//!   signals per sleep, and a job posted after the loop's last look always
//!   finds the flag set, so the loop never blocks on a non-empty queue;
//! - after the poll (a check handle), when woken (the async callback, which
//!   also takes the jobs) and when submitting the first job, the loop
//!   clears `sleeping`: it is awake and will look again before its next
//!   poll, so posts need not signal. A stale `sleeping` only costs a
//!   wake-up that was not needed.
//!
//! If the rounds run out with jobs still arriving, an idle handle makes the
//! next poll return at once (other events get their turn, nobody sleeps).
//!
//! Short jobs are waited for, not slept on. When jobs are short (their
//! average under [`SPIN_NS`]), the loop, before it sleeps with a drain
//! running, spins up to that long for the next post; and a drain that finds
//! the run queue empty spins up to that long for the next job before it
//! ends. A job that ends, or arrives, within a few microseconds is cheaper
//! to wait for than to be woken by: on the 2-vCPU VM, waking a sleeping
//! thread (an eventfd write, a futex wake, then the switch) costs several
//! microseconds of CPU on both sides. So one coroutine issuing statements
//! back to back keeps one drain alive and the loop awake, with no system
//! call between statements; the spins are bounded, and never happen for
//! jobs that wait on a server.
//!
//! The loop's spin is only made while it pays ([`SpinGate`]): a moving
//! average of how often it found a post decides, and below one in two the
//! loop spins only once in [`PROBE_EVERY`] chances (a probe that hits opens
//! the gate again). The job average alone is not enough: statements on one
//! connection are run by whichever drain holds it (lunet-db's flat
//! combining), so a drain whose statement another ran finishes at once and
//! pulls the average down, while completions arrive at no steady pace.
//! Measured with INSERTs from 64 coroutines on 4 connections: the loop's
//! spin then missed half the time or more, and each hit resumed a single
//! coroutine, whose next statement found no drain running and started one
//! (a futex wake of a pool thread): 4 to 6 times the drain starts, and 15%
//! more CPU per statement. The drain's spin needs no gate (without the
//! loop's it cost nothing measurable there, and it is what lets a probe of
//! the loop hit).
//!
//! How many drains: as few as the queued work needs ([`starts_wanted`]). Jobs
//! are timed; when a job is queued, and again before the loop waits for
//! events, drains are started so that the queued jobs, at the average job's
//! duration, are all taken within [`TARGET_NS`]: short SQLite statements
//! share one drain, statements that wait on a server get one each (up to the
//! pool's size). A queue where no job was taken for [`STALL_NS`] (every drain
//! stuck in a long statement) gets one more drain per waiting job; a timer
//! checks this while jobs wait. The drains are never more than the pool's
//! threads, so file requests and name lookups still get threads between
//! bursts, as when every statement was its own request.
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

use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use libuv_sys2 as uv;
use lunet_abi::ffi::lua_State;
use lunet_abi::{AfterFn, InterruptFn, WorkFn};

use crate::runtime::Runtime;
use crate::sched::{self, Shape, Spec, WaitId};

/// One driver job: `work(data)` on a pool thread, then `after` on the loop.
struct Job {
    wait: Option<WaitId>,
    data: *mut c_void,
    work: WorkFn,
    after: AfterFn,
    interrupt: Option<InterruptFn>,
}

/// A job in one of the runtime's queues, moved between threads.
struct JobPtr(*mut Job);

// SAFETY: a job is owned by exactly one place at a time: the run queue, the
// drain that popped it (until it is in the done queue), the done queue, then
// the loop thread, which frees it after `after`. The loop thread also reads
// its `wait`/`interrupt`/`data` fields while it is queued or running (the
// unhook), which the drains never write.
unsafe impl Send for JobPtr {}

/// Wanted time for the queued jobs to be taken by the drains that exist:
/// more drains are started when the queue holds more work than that (by the
/// average job's duration), one per job at most.
const TARGET_NS: u64 = 50_000;
/// A queue that has had jobs waiting and no job taken for this long has
/// every drain stuck (statements waiting on a server, a connection busy):
/// one more drain is started per waiting job.
const STALL_NS: u64 = 1_000_000;
/// Assumed duration of a job before any was measured.
const FIRST_AVG_NS: u64 = 50_000;

/// The runtime's job queues, shared with the drains on the pool threads.
struct Queues {
    run: Mutex<RunQueue>,
    done: Mutex<DoneQueue>,
    /// Woken (coalesced by libuv) when a job lands in an empty done queue.
    wake: *mut uv::uv_async_t,
    /// Moving average of a job's duration, in nanoseconds.
    avg_ns: AtomicU64,
    /// Most drains at once: the thread pool's size.
    max_drains: usize,
    /// Bumped by a drain after it posted a job: what a spinning loop
    /// watches (see [`spin_for_done`]).
    posts: AtomicU64,
    /// Bumped when a job is queued: what a lingering drain watches.
    submits: AtomicU64,
    /// Whether the loop's spin for a post has been paying off.
    loop_gate: SpinGate,
}

/// Fixed-point one for [`SpinGate`]'s hit rate.
const RATE_ONE: u32 = 1 << 10;
/// A spin is made while the recent hit rate is at least this.
const RATE_MIN: u32 = RATE_ONE / 2;
/// Below [`RATE_MIN`], one chance in this many still spins, to notice when
/// spins would pay again.
const PROBE_EVERY: u32 = 64;

/// Spin only when it pays: the loop's spin for a post is gated by the
/// moving average of its hits (the post came within the spin). Below half,
/// only one chance in [`PROBE_EVERY`] spins; a probe that hits opens the
/// gate again at once, so that the spins that follow are measured (a spin
/// can only hit while a drain lingers for the next job, which it stops
/// doing once the loop sleeps: waiting for several probe hits in a row
/// could keep both sides sleeping for good).
struct SpinGate {
    /// Moving average of hits (1/8 weight per spin), out of [`RATE_ONE`].
    rate: AtomicU32,
    /// Chances passed up while the rate was low; every [`PROBE_EVERY`]th spins.
    skipped: AtomicU32,
}

impl SpinGate {
    fn new() -> SpinGate {
        SpinGate { rate: AtomicU32::new(RATE_ONE), skipped: AtomicU32::new(0) }
    }

    /// Whether this chance to spin should be taken (then [`Self::record`]
    /// its outcome).
    fn open(&self) -> bool {
        self.rate.load(Ordering::Relaxed) >= RATE_MIN
            || self.skipped.fetch_add(1, Ordering::Relaxed) % PROBE_EVERY == PROBE_EVERY - 1
    }

    /// Records whether a spin found what it waited for.
    fn record(&self, hit: bool) {
        let r = self.rate.load(Ordering::Relaxed);
        let next = match hit {
            true if r < RATE_MIN => RATE_ONE,
            true => r - r / 8 + RATE_ONE / 8,
            false => r - r / 8,
        };
        self.rate.store(next, Ordering::Relaxed);
    }
}

// SAFETY: `wake` is only used through uv_async_send, which is thread-safe;
// everything else is behind a mutex or atomic.
unsafe impl Sync for Queues {}
unsafe impl Send for Queues {}

struct RunQueue {
    jobs: VecDeque<JobPtr>,
    /// Drains started and not finished (running, or waiting for a pool thread).
    drains: usize,
    /// When a job was last taken from the queue, or the queue last became
    /// non-empty (monotonic ns): the stall check's reference.
    progress_at: u64,
}

struct DoneQueue {
    jobs: Vec<JobPtr>,
    /// The loop found the queue empty before its poll and may now block in
    /// it: the next job posted must wake it (see the module doc).
    sleeping: bool,
    /// Set at shutdown: nobody processes the queue any more.
    closed: bool,
}

impl DoneQueue {
    fn new() -> DoneQueue {
        DoneQueue { jobs: Vec::new(), sleeping: false, closed: false }
    }

    /// A drain posts a finished job. Returns whether it must wake the loop
    /// (`uv_async_send`): only when the loop is asleep, and only once per
    /// sleep. At shutdown the job is refused (dropped).
    fn post(&mut self, job: JobPtr) -> bool {
        if self.closed {
            return false;
        }
        self.jobs.push(job);
        std::mem::take(&mut self.sleeping)
    }

    /// The loop, before its poll: swaps the finished jobs into `into` (empty
    /// on entry). When there are none it is going to sleep: from now on a
    /// posted job wakes it. Returns whether it took any.
    fn collect_or_sleep(&mut self, into: &mut Vec<JobPtr>) -> bool {
        if self.jobs.is_empty() {
            self.sleeping = true;
            return false;
        }
        std::mem::swap(into, &mut self.jobs);
        true
    }

    /// The loop is awake (it polled, or was woken): it reads the queue
    /// again before its next poll, so posts need not wake it.
    fn awake(&mut self) {
        self.sleeping = false;
    }
}

/// The runtime's part: its queues and the loop-thread handles that serve them.
pub struct Pool {
    queues: *const Queues,
    wake: *mut uv::uv_async_t,
    /// Before each poll: finished jobs, then drains to start.
    before_poll: *mut uv::uv_prepare_t,
    /// After each poll: the loop is awake.
    after_poll: *mut uv::uv_check_t,
    /// Started when `before_poll` left finished jobs behind: the next poll
    /// does not block.
    no_block: *mut uv::uv_idle_t,
    timer: *mut uv::uv_timer_t,
    /// Jobs submitted whose `after` has not run yet.
    in_flight: usize,
    /// The done queue's previous buffer, reused.
    spare: Vec<JobPtr>,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            queues: std::ptr::null(),
            wake: std::ptr::null_mut(),
            before_poll: std::ptr::null_mut(),
            after_poll: std::ptr::null_mut(),
            no_block: std::ptr::null_mut(),
            timer: std::ptr::null_mut(),
            in_flight: 0,
            spare: Vec::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A drain never panics while holding a lock (jobs run outside it).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Monotonic time in nanoseconds.
fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The thread pool's size as libuv will read it (lunet sets the variable
/// before the pool starts, see `runtime::default_pool_size`).
fn pool_size() -> usize {
    std::env::var("UV_THREADPOOL_SIZE").ok().and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(4).clamp(1, 1024)
}

/// Creates the runtime's queues and handles.
///
/// # Safety
/// Loop thread, once per runtime, after the loop exists.
pub unsafe fn init(rt: *mut Runtime) {
    let p = &mut (*rt).pool;
    p.wake = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_async_t>()));
    p.before_poll = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_prepare_t>()));
    p.after_poll = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_check_t>()));
    p.no_block = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_idle_t>()));
    p.timer = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_timer_t>()));
    uv::uv_async_init((*rt).uv, p.wake, Some(on_done));
    uv::uv_prepare_init((*rt).uv, p.before_poll);
    uv::uv_check_init((*rt).uv, p.after_poll);
    uv::uv_idle_init((*rt).uv, p.no_block);
    uv::uv_timer_init((*rt).uv, p.timer);
    for h in [p.wake.cast::<uv::uv_handle_t>(), p.before_poll.cast(), p.after_poll.cast(), p.no_block.cast(), p.timer.cast()] {
        (*h).data = rt.cast();
        uv::uv_unref(h);
    }
    p.queues = Box::into_raw(Box::new(Queues {
        run: Mutex::new(RunQueue { jobs: VecDeque::new(), drains: 0, progress_at: 0 }),
        done: Mutex::new(DoneQueue::new()),
        wake: p.wake,
        avg_ns: AtomicU64::new(FIRST_AVG_NS),
        max_drains: pool_size(),
        posts: AtomicU64::new(0),
        submits: AtomicU64::new(0),
        loop_gate: SpinGate::new(),
    }));
}

/// At shutdown: completions that arrive from now on are dropped (the
/// handles are being closed; nobody is resumed any more).
///
/// # Safety
/// Loop thread.
pub unsafe fn shutdown(rt: *mut Runtime) {
    let q = (*rt).pool.queues;
    if !q.is_null() {
        lock(&(*q).done).closed = true;
    }
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

/// Requests on the thread pool not yet finished (for `lunet.stats`).
pub fn pool_pending() -> usize {
    POOL_BUSY.load(Ordering::Relaxed)
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
    if (*rt).closing || (*rt).pool.queues.is_null() {
        return uv::uv_errno_t_UV_ECANCELED as c_int;
    }
    let job = Box::into_raw(Box::new(Job { wait: None, data, work, after, interrupt }));
    let queues = &*(*rt).pool.queues;
    {
        let mut q = lock(&queues.run);
        if q.jobs.is_empty() {
            q.progress_at = now_ns();
        }
        q.jobs.push_back(JobPtr(job));
        queues.submits.fetch_add(1, Ordering::Release);
        let n = starts_wanted(queues, &q, 0);
        q.drains += n;
        drop(q);
        if n > 0 && start_drains(rt, n) == 0 && drains_gone(queues) {
            // No drain could be started and none runs: take the job back.
            let mut q = lock(&queues.run);
            if let Some(i) = q.jobs.iter().position(|p| p.0 == job) {
                q.jobs.remove(i);
                drop(Box::from_raw(job));
                return uv::uv_errno_t_UV_EAGAIN as c_int;
            }
        }
    }
    pool_begin();
    let p = &mut (*rt).pool;
    p.in_flight += 1;
    if p.in_flight == 1 {
        // Submitting runs on the loop thread: it is awake.
        lock(&queues.done).awake();
        uv::uv_ref(p.wake.cast());
        uv::uv_prepare_start(p.before_poll, Some(on_before_poll));
        uv::uv_check_start(p.after_poll, Some(on_after_poll));
    }
    if !co.is_null() {
        (*job).wait = Some(sched::park(rt, co, Spec::new(Shape::Two).unhook(unhook, job.cast())));
    }
    0
}

fn drains_gone(queues: &Queues) -> bool {
    lock(&queues.run).drains == 0
}

/// How many drains to start for the queue `q` (its lock held): one if there
/// is work and no drain; enough that the queued work, at the average job's
/// duration, is taken within [`TARGET_NS`]; one per waiting job when the
/// queue has stalled. Never more than the pool has threads.
fn starts_wanted(queues: &Queues, q: &RunQueue, now: u64) -> usize {
    let len = q.jobs.len();
    if len == 0 || q.drains >= queues.max_drains {
        return 0;
    }
    let avg = queues.avg_ns.load(Ordering::Relaxed).max(1);
    let need = ((len as u64).saturating_mul(avg).div_ceil(TARGET_NS) as usize).clamp(1, len);
    let mut n = need.saturating_sub(q.drains);
    if now != 0 && now.saturating_sub(q.progress_at) >= STALL_NS {
        n = n.max(len);
    }
    n.min(queues.max_drains - q.drains)
}

/// Starts `n` drains (already counted in `drains`); returns how many
/// started (the others are uncounted again).
unsafe fn start_drains(rt: *mut Runtime, n: usize) -> usize {
    let queues = (*rt).pool.queues;
    let mut started = 0;
    for _ in 0..n {
        let req = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_work_t>()));
        (*req).data = queues as *mut c_void;
        if uv::uv_queue_work((*rt).uv, req, Some(on_drain), Some(on_drain_end)) == 0 {
            started += 1;
        } else {
            drop(Box::from_raw(req));
        }
    }
    if started < n {
        lock(&(*queues).run).drains -= n - started;
    }
    started
}

/// Runs on a pool thread: takes jobs from the run queue until it is empty,
/// posting each finished job to the done queue (the loop is woken only if
/// it sleeps). When jobs are short, it lingers up to [`SPIN_NS`] for the
/// next one before it ends.
unsafe extern "C" fn on_drain(req: *mut uv::uv_work_t) {
    let queues = &*((*req).data as *const Queues);
    let mut q = lock(&queues.run);
    let mut lingered = false;
    loop {
        let Some(JobPtr(job)) = q.jobs.pop_front() else {
            if !lingered && queues.avg_ns.load(Ordering::Relaxed) <= SPIN_NS {
                // (Read under the lock: a job queued after it bumps it.)
                let seen = queues.submits.load(Ordering::Acquire);
                drop(q);
                spin_until_changed(&queues.submits, seen);
                lingered = true;
                q = lock(&queues.run);
                continue;
            }
            q.drains -= 1;
            return;
        };
        lingered = false;
        let t0 = now_ns();
        q.progress_at = t0;
        drop(q);
        ((*job).work)((*job).data);
        let took = now_ns().saturating_sub(t0);
        let avg = queues.avg_ns.load(Ordering::Relaxed);
        queues.avg_ns.store(avg - avg / 8 + took / 8, Ordering::Relaxed);
        let wake = lock(&queues.done).post(JobPtr(job));
        queues.posts.fetch_add(1, Ordering::Release);
        if wake {
            uv::uv_async_send(queues.wake);
        }
        q = lock(&queues.run);
    }
}

unsafe extern "C" fn on_drain_end(req: *mut uv::uv_work_t, _status: c_int) {
    drop(Box::from_raw(req));
}

/// Most rounds of finished jobs the loop takes before one poll (more
/// arrive while it resumes their coroutines); then it polls without
/// blocking and goes on in the next iteration.
const ROUNDS: usize = 8;

/// Before the loop waits for events: finishes the jobs in the done queue
/// (or marks the loop asleep), then starts drains for queued work that none
/// will take soon (see [`starts_wanted`]); while jobs wait, checks again
/// after a millisecond even if nothing else happens.
unsafe extern "C" fn on_before_poll(h: *mut uv::uv_prepare_t) {
    let rt = (*h).data as *mut Runtime;
    let mut left = true;
    for _ in 0..ROUNDS {
        if take_done(rt, false) || spin_for_done(rt) {
            continue;
        }
        if !take_done(rt, true) {
            left = false;
            break;
        }
    }
    if left {
        uv::uv_idle_start((*rt).pool.no_block, Some(on_no_block));
    }
    if (*rt).pool.in_flight > 0 {
        evaluate(rt);
    }
}

/// Jobs this short (on average) are waited for by spinning, up to this
/// long: by the loop before it sleeps, by a drain before it ends (see the
/// module doc).
const SPIN_NS: u64 = 5_000;

/// Before the loop sleeps: when a drain runs and jobs are short, waits up
/// to [`SPIN_NS`] for a drain to post a job, without sleeping. Returns
/// whether one did.
unsafe fn spin_for_done(rt: *mut Runtime) -> bool {
    let queues = &*(*rt).pool.queues;
    let seen = queues.posts.load(Ordering::Acquire);
    if queues.avg_ns.load(Ordering::Relaxed) > SPIN_NS || lock(&queues.run).drains == 0 || !queues.loop_gate.open() {
        return false;
    }
    let r = spin_until_changed(&queues.posts, seen);
    queues.loop_gate.record(r);
    r
}

/// Spins until `counter` is no longer `seen`, for up to [`SPIN_NS`];
/// returns whether it changed.
fn spin_until_changed(counter: &AtomicU64, seen: u64) -> bool {
    let until = now_ns() + SPIN_NS;
    loop {
        for _ in 0..32 {
            std::hint::spin_loop();
            if counter.load(Ordering::Acquire) != seen {
                return true;
            }
        }
        if now_ns() >= until {
            return false;
        }
        // The thread waited for may share this CPU: let it run.
        unsafe { libc::sched_yield() };
    }
}

unsafe extern "C" fn on_no_block(h: *mut uv::uv_idle_t) {
    uv::uv_idle_stop(h);
}

/// After the poll: the loop is awake until its next `on_before_poll`.
unsafe extern "C" fn on_after_poll(h: *mut uv::uv_check_t) {
    let rt = (*h).data as *mut Runtime;
    lock(&(*(*rt).pool.queues).done).awake();
}

unsafe extern "C" fn on_stall_timer(h: *mut uv::uv_timer_t) {
    evaluate((*h).data as *mut Runtime);
}

unsafe fn evaluate(rt: *mut Runtime) {
    let p = &mut (*rt).pool;
    let queues = &*p.queues;
    let mut q = lock(&queues.run);
    if q.jobs.is_empty() {
        return;
    }
    let n = starts_wanted(queues, &q, now_ns());
    q.drains += n;
    let waiting = q.jobs.len() > n;
    drop(q);
    if n > 0 {
        start_drains(rt, n);
    }
    if waiting && uv::uv_is_active(p.timer.cast()) == 0 {
        uv::uv_timer_start(p.timer, Some(on_stall_timer), 1, 0);
    }
}

/// Loop thread, woken by a drain: hands every finished job to its driver.
unsafe extern "C" fn on_done(h: *mut uv::uv_async_t) {
    take_done((*h).data as *mut Runtime, false);
}

/// Hands every job in the done queue to its driver; returns whether there
/// were any. With `sleep`, called last before the poll: when there are
/// none, the loop is marked asleep (the next post wakes it); otherwise the
/// loop is marked awake.
unsafe fn take_done(rt: *mut Runtime, sleep: bool) -> bool {
    let p = &mut (*rt).pool;
    let mut batch = std::mem::take(&mut p.spare);
    let took = {
        let mut d = lock(&(*p.queues).done);
        if sleep {
            d.collect_or_sleep(&mut batch)
        } else {
            d.awake();
            std::mem::swap(&mut batch, &mut d.jobs);
            !batch.is_empty()
        }
    };
    for JobPtr(job) in batch.drain(..) {
        finish(rt, job);
    }
    (*rt).pool.spare = batch;
    took
}

/// The job's results go to its coroutine, or are dropped by its driver.
unsafe fn finish(rt: *mut Runtime, job: *mut Job) {
    pool_done();
    exit_guard_again();
    let p = &mut (*rt).pool;
    p.in_flight -= 1;
    if p.in_flight == 0 {
        uv::uv_unref(p.wake.cast());
        uv::uv_prepare_stop(p.before_poll);
        uv::uv_check_stop(p.after_poll);
        uv::uv_timer_stop(p.timer);
    }
    let job = Box::from_raw(job);
    let (after, data) = (job.after, job.data);
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

unsafe fn unhook(_rt: *mut Runtime, ctx: *mut c_void, _id: WaitId) {
    let job = ctx as *mut Job;
    (*job).wait = None;
    if let Some(f) = (*job).interrupt {
        f((*job).data);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_wakes_the_loop_only_once_it_sleeps_and_once_per_sleep() {
        let job = || JobPtr(std::ptr::null_mut());
        let mut d = DoneQueue::new();
        let mut got = Vec::new();
        // Awake (not looked yet): posts do not signal.
        assert!(!d.post(job()));
        assert!(!d.post(job()));
        // The loop's look before its poll takes them and stays awake.
        assert!(d.collect_or_sleep(&mut got));
        assert_eq!(got.len(), 2);
        got.clear();
        // Its next look finds nothing: it sleeps; the first post signals,
        // the next ones not (the loop is being woken).
        assert!(!d.collect_or_sleep(&mut got));
        assert!(d.post(job()));
        assert!(!d.post(job()));
        // Woken, it takes both and looks again before the next poll.
        d.awake();
        assert!(d.collect_or_sleep(&mut got));
        assert_eq!(got.len(), 2);
        got.clear();
        assert!(!d.collect_or_sleep(&mut got));
        // Woken by something else (after its poll): awake again, no signal.
        d.awake();
        assert!(!d.post(job()));
        // A look that finds jobs never sets the flag, even after a sleep.
        assert!(d.collect_or_sleep(&mut got));
        assert!(!d.post(job()));
        // Closed at shutdown: refused, never a signal.
        got.clear();
        assert!(d.collect_or_sleep(&mut got));
        assert!(!d.collect_or_sleep(&mut got));
        d.closed = true;
        assert!(!d.post(job()));
        assert!(d.jobs.is_empty());
    }

    #[test]
    fn a_job_posted_after_the_last_look_is_never_missed() {
        // Two threads: a drain posting jobs, a loop that looks, sleeps
        // (waits for the signal) and counts; every job must be seen.
        use std::sync::mpsc;
        const N: usize = 20_000;
        let d = std::sync::Arc::new(Mutex::new(DoneQueue::new()));
        let (tx, rx) = mpsc::channel::<()>();
        let drain = {
            let d = d.clone();
            std::thread::spawn(move || {
                for _ in 0..N {
                    if lock(&d).post(JobPtr(std::ptr::null_mut())) {
                        tx.send(()).unwrap();
                    }
                }
            })
        };
        let mut seen = 0;
        let mut got = Vec::new();
        while seen < N {
            if lock(&d).collect_or_sleep(&mut got) {
                seen += got.len();
                got.clear();
            } else {
                // The poll: blocks until signalled (a lost signal hangs here).
                rx.recv_timeout(std::time::Duration::from_secs(10)).expect("a posted job never woke the loop");
                lock(&d).awake();
            }
        }
        drain.join().unwrap();
        assert_eq!(seen, N);
    }

    fn queues(max: usize, avg_ns: u64) -> Queues {
        Queues {
            run: Mutex::new(RunQueue { jobs: VecDeque::new(), drains: 0, progress_at: 0 }),
            done: Mutex::new(DoneQueue::new()),
            wake: std::ptr::null_mut(),
            avg_ns: AtomicU64::new(avg_ns),
            max_drains: max,
            posts: AtomicU64::new(0),
            submits: AtomicU64::new(0),
            loop_gate: SpinGate::new(),
        }
    }

    #[test]
    fn spins_stop_when_they_mostly_miss_and_resume_when_probes_hit() {
        let g = SpinGate::new();
        // Open at first; hits keep it open, and one miss among hits too.
        assert!(g.open());
        for _ in 0..20 {
            g.record(true);
        }
        g.record(false);
        assert!(g.open());
        // Mostly misses (one hit in four, from open): it closes.
        let mut spins = 0;
        while g.open() {
            g.record(spins % 4 == 3);
            spins += 1;
            assert!(spins < 40, "mostly misses never closed the gate");
        }
        // Closed, one chance in PROBE_EVERY still spins (a probe).
        let open = (0..PROBE_EVERY * 4).filter(|_| g.open()).count();
        assert_eq!(open, 4);
        // A probe that misses keeps it closed; one that hits reopens it.
        g.record(false);
        assert!(!(0..PROBE_EVERY - 1).all(|_| g.open()));
        g.record(true);
        assert!((0..PROBE_EVERY).all(|_| g.open()));
    }

    fn queue(len: usize, drains: usize, progress_at: u64) -> RunQueue {
        let jobs = (0..len).map(|_| JobPtr(std::ptr::null_mut())).collect();
        RunQueue { jobs, drains, progress_at }
    }

    #[test]
    fn short_jobs_share_one_drain_long_ones_get_one_each() {
        // 3 us jobs: sixteen queued are taken within the target by one drain.
        let short = queues(16, 3_000);
        assert_eq!(starts_wanted(&short, &queue(0, 0, 0), 0), 0);
        assert_eq!(starts_wanted(&short, &queue(1, 0, 0), 0), 1);
        assert_eq!(starts_wanted(&short, &queue(16, 0, 0), 0), 1);
        assert_eq!(starts_wanted(&short, &queue(16, 1, 0), 0), 0);
        assert_eq!(starts_wanted(&short, &queue(40, 1, 0), 0), 2);
        // 60 us jobs (a server round trip): one drain per queued job.
        let long = queues(16, 60_000);
        assert_eq!(starts_wanted(&long, &queue(5, 0, 0), 0), 5);
        assert_eq!(starts_wanted(&long, &queue(5, 3, 0), 0), 2);
        // Never more than the pool has threads.
        assert_eq!(starts_wanted(&long, &queue(40, 10, 0), 0), 6);
        assert_eq!(starts_wanted(&long, &queue(40, 16, 0), 0), 0);
    }

    #[test]
    fn a_stalled_queue_gets_a_drain_per_waiting_job() {
        let short = queues(8, 3_000);
        let t = 10 * STALL_NS;
        // Progress within the stall time: the average decides.
        assert_eq!(starts_wanted(&short, &queue(4, 2, t - STALL_NS / 2), t), 0);
        // No job taken for the stall time: every drain is stuck.
        assert_eq!(starts_wanted(&short, &queue(4, 2, t - STALL_NS), t), 4);
        assert_eq!(starts_wanted(&short, &queue(9, 2, t - STALL_NS), t), 6);
    }
}
