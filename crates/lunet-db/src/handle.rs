//! Connection handles: the state shared between a Lua handle and the pool
//! jobs working on it, and the full userdata that carries it in Lua.

use std::collections::VecDeque;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use lunet_abi::ffi::lua_State;
use parking_lot::Mutex;

use crate::cache::SharedStats;
use crate::job::{kick, JobPtr};
use crate::Driver;

/// Open connections of this driver (each driver has its own copy of this
/// crate, so of this counter). Exposed to tests as `_connections()`.
pub(crate) static LIVE: AtomicUsize = AtomicUsize::new(0);

/// One connection, shared by its Lua handle and the jobs queued on it.
/// The mutex serialises statements; `None` means closed. `pending` holds the
/// jobs waiting for the connection, run in order by the lock holder.
pub(crate) struct Shared<D: Driver> {
    pub conn: Mutex<Option<D::Conn>>,
    pub pending: Mutex<VecDeque<JobPtr<D>>>,
    pub info: D::Info,
    /// Set by `close` (or the finaliser): statements still queued then
    /// fail with "connection is closed" instead of running.
    pub closing: AtomicBool,
    /// The statement the connection is running right now (see [`Running`]).
    pub running: Running,
    /// Its statement cache's counters, as of its last statement.
    pub stats: SharedStats,
    /// Its session state as of its last statement: bit 0 in a transaction,
    /// bit 1 broken.
    pub session: AtomicU8,
}

/// Which statement a connection is running, so that an interrupt meant for
/// one statement is only ever sent while that statement is still the one
/// running.
///
/// The id is a job's id (never 0), set by the thread holding the connection
/// right before it starts a statement (for a pipeline: before it waits for
/// that statement's results) and reset to 0 when it is done. Every change
/// takes `lock`; an interrupt takes it too and holds it while it is sent
/// ([`Running::while_running`]), so the mark cannot move on to the next
/// statement until the interrupt has reached the library or the server.
pub(crate) struct Running {
    id: AtomicU64,
    lock: Mutex<()>,
}

impl Running {
    fn new() -> Running {
        Running { id: AtomicU64::new(0), lock: Mutex::new(()) }
    }

    /// Marks `id` (0: none) as the statement running now. Waits while an
    /// interrupt for the previous one is being sent.
    pub fn set(&self, id: u64) {
        let _g = self.lock.lock();
        self.id.store(id, Ordering::SeqCst);
    }

    /// The statement marked as running (0: none; a hint: it may change at once).
    pub fn current(&self) -> u64 {
        self.id.load(Ordering::SeqCst)
    }

    /// Whether `id` is marked as running (a hint: it may change at once).
    pub fn is(&self, id: u64) -> bool {
        self.id.load(Ordering::SeqCst) == id
    }

    /// Runs `f` if `id` is the statement running, keeping the mark from
    /// moving until `f` returns.
    pub fn while_running(&self, id: u64, f: impl FnOnce()) {
        let _g = self.lock.lock();
        if self.is(id) {
            f();
        }
    }
}

impl<D: Driver> Shared<D> {
    pub fn new(conn: D::Conn, info: D::Info) -> Arc<Self> {
        LIVE.fetch_add(1, Ordering::Relaxed);
        Arc::new(Shared {
            conn: Mutex::new(Some(conn)),
            pending: Mutex::new(VecDeque::new()),
            info,
            closing: AtomicBool::new(false),
            running: Running::new(),
            stats: SharedStats::default(),
            session: AtomicU8::new(0),
        })
    }

    /// Closes the connection if it is still open. Blocks while a statement
    /// runs on it: only for a thread of its own (shutdown path).
    pub fn close_now(&self) {
        let conn = self.conn.lock().take();
        kick(self);
        if let Some(c) = conn {
            D::close(c);
            LIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Closes the connection if nobody is using it right now; returns false
    /// (and does nothing) if a statement holds the lock.
    pub fn try_close_now(&self) -> bool {
        let Some(mut guard) = self.conn.try_lock() else { return false };
        let conn = guard.take();
        drop(guard);
        kick(self);
        if let Some(c) = conn {
            D::close(c);
            LIVE.fetch_sub(1, Ordering::Relaxed);
        }
        true
    }
}

impl<D: Driver> Drop for Shared<D> {
    /// Safety net: every path closes through `close_now`/`try_close_now`
    /// first, so this only runs for a connection nobody closed.
    fn drop(&mut self) {
        if let Some(c) = self.conn.get_mut().take() {
            D::close(c);
            LIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The block of a connection userdata. Only touched on the loop thread.
#[repr(C)]
pub(crate) struct Handle<D: Driver> {
    /// From `Arc::into_raw`; null once the finaliser has released it.
    shared: *const Shared<D>,
    /// Set by `close` (and the finaliser): later calls fail at once.
    pub closed: bool,
}

impl<D: Driver> Handle<D> {
    /// The shared state (a new reference), or None after finalisation.
    pub unsafe fn shared(&self) -> Option<Arc<Shared<D>>> {
        if self.shared.is_null() {
            return None;
        }
        Arc::increment_strong_count(self.shared);
        Some(Arc::from_raw(self.shared))
    }

    /// A borrowed view of the shared state (for `escape`).
    pub unsafe fn shared_ref(&self) -> Option<&Shared<D>> {
        self.shared.as_ref()
    }

    /// Drops the handle's reference (finaliser).
    pub unsafe fn release(&mut self) {
        if !self.shared.is_null() {
            drop(Arc::from_raw(self.shared));
            self.shared = std::ptr::null();
        }
    }
}

/// Pushes a new handle for `shared` with the driver's metatable.
///
/// # Safety
/// Loop thread, a few free stack slots; the metatable must exist.
pub(crate) unsafe fn push_handle<D: Driver>(L: *mut lua_State, shared: Arc<Shared<D>>) {
    let h = lunet_abi::handle::push_block(L, D::METATABLE, std::mem::size_of::<Handle<D>>()) as *mut Handle<D>;
    h.write(Handle { shared: Arc::into_raw(shared), closed: false });
}

/// The handle at `idx`, if the value there is a connection of driver `D`.
///
/// # Safety
/// Loop thread, two free stack slots, `idx` a valid index.
pub(crate) unsafe fn to_handle<'a, D: Driver>(L: *mut lua_State, idx: c_int) -> Option<&'a mut Handle<D>> {
    (lunet_abi::handle::block(L, idx, D::METATABLE) as *mut Handle<D>).as_mut()
}
