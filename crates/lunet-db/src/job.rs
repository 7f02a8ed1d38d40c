//! The pool job: one open, statement or close, run on libuv's thread pool
//! through the core's ABI table, its outcome pushed on the loop thread.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::push_fail;
use lunet_abi::LunetAbi;

use crate::handle::{push_handle, Shared};
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
}

impl<D: Driver> Job<D> {
    pub fn new(abi: &'static LunetAbi, op: Op<D>) -> Box<Self> {
        Box::new(Job { abi, op, out: Outcome::Pending })
    }

    /// Runs on a pool thread.
    fn run(&mut self) {
        self.out = match &mut self.op {
            Op::Open(config) => match config.take().map(D::connect) {
                Some(Ok((conn, info))) => Outcome::Opened(Shared::new(conn, info)),
                Some(Err(e)) => Outcome::Failed(e),
                None => Outcome::Failed(format!("{} internal error: open ran twice", D::NAME)),
            },
            Op::Query { shared, sql, params } => match shared.conn.lock().as_mut() {
                Some(conn) => D::query(conn, sql, params).map_or_else(Outcome::Failed, Outcome::Rows),
                None => Outcome::Failed(CLOSED.into()),
            },
            Op::Exec { shared, sql, params } => match shared.conn.lock().as_mut() {
                Some(conn) => D::exec(conn, sql, params).map_or_else(Outcome::Failed, Outcome::Exec),
                None => Outcome::Failed(CLOSED.into()),
            },
            Op::Close(shared) => {
                shared.close_now();
                Outcome::Pending
            }
        };
    }
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
    let job = &mut *(data as *mut Job<D>);
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| job.run())) {
        job.out = Outcome::Failed(format!("{} internal error: {}", D::NAME, panic_text(p)));
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
