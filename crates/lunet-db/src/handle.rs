//! Connection handles: the state shared between a Lua handle and the pool
//! jobs working on it, and the full userdata that carries it in Lua.

use std::collections::VecDeque;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::raw_field;
use parking_lot::Mutex;

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
}

impl<D: Driver> Shared<D> {
    pub fn new(conn: D::Conn, info: D::Info) -> Arc<Self> {
        LIVE.fetch_add(1, Ordering::Relaxed);
        Arc::new(Shared {
            conn: Mutex::new(Some(conn)),
            pending: Mutex::new(VecDeque::new()),
            info,
            closing: AtomicBool::new(false),
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
    let h = ffi::lua_newuserdata(L, std::mem::size_of::<Handle<D>>()) as *mut Handle<D>;
    h.write(Handle { shared: Arc::into_raw(shared), closed: false });
    raw_field(L, ffi::LUA_REGISTRYINDEX, D::METATABLE);
    ffi::lua_setmetatable(L, -2);
}

/// The handle at `idx`, if the value there is a connection of driver `D`.
///
/// # Safety
/// Loop thread, two free stack slots, `idx` a valid index.
pub(crate) unsafe fn to_handle<'a, D: Driver>(L: *mut lua_State, idx: c_int) -> Option<&'a mut Handle<D>> {
    let p = ffi::lua_touserdata(L, idx) as *mut Handle<D>;
    if p.is_null() || ffi::lua_type(L, idx) != ffi::LUA_TUSERDATA || ffi::lua_getmetatable(L, idx) == 0 {
        return None;
    }
    raw_field(L, ffi::LUA_REGISTRYINDEX, D::METATABLE);
    let same = ffi::lua_rawequal(L, -1, -2) != 0;
    ffi::lua_settop(L, -3);
    if same {
        Some(&mut *p)
    } else {
        None
    }
}
