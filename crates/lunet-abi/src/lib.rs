//! The C ABI between the lunet core (`lunet.so`) and separately built modules
//! (the database drivers).
//!
//! Only the core links libuv. Every other cdylib gets its own private copy of
//! every Rust crate, statics included, so runtime state cannot be shared through
//! Rust. Instead the core stores a pointer to a [`LunetAbi`] table in the Lua
//! registry under [`REGISTRY_KEY`]; a driver fetches it with [`fetch`] and calls
//! through it. Everything in this crate is `#[repr(C)]`, a constant, or a
//! stateless helper, so it is safe to compile into several cdylibs at once.

#![allow(non_snake_case)] // `L` is the Lua state, as everywhere in the Lua C API.

use std::ffi::{c_int, c_void, CStr};

pub use mlua::ffi;
use mlua::ffi::lua_State;

pub mod handle;
pub mod lua;

/// Bumped on any incompatible change to [`LunetAbi`].
pub const ABI_VERSION: u32 = 1;

/// Registry field holding a light userdata that points at the core's [`LunetAbi`].
pub const REGISTRY_KEY: &CStr = c"lunet.abi";

/// Runs on a libuv thread-pool thread. Must not touch Lua, must not unwind.
pub type WorkFn = unsafe extern "C" fn(data: *mut c_void);

/// Runs on the loop thread after the work finished.
///
/// `co` is the coroutine to resume, or null when there is nothing to resume
/// (fire-and-forget work, or the runtime is shutting down); `data` is the
/// pointer given to `queue_work`. With a non-null `co`, the function pushes the
/// values the coroutine should receive and returns how many it pushed. It owns
/// `data` from here on (free it). It raises no Lua errors of its own.
/// (Its pushes run inside a protected call: an allocation may raise, so it is
/// a `C-unwind` function that keeps no state a Lua error could leave broken.)
pub type AfterFn = unsafe extern "C-unwind" fn(co: *mut lua_State, data: *mut c_void) -> c_int;

/// Runs on the loop thread when the coroutine waiting for a job stops
/// waiting before the job finished (its wait timed out or was cancelled):
/// the driver should make the running work return soon (interrupt the
/// statement). `after` is still called, with a null `co`, once the work ends.
pub type InterruptFn = unsafe extern "C" fn(data: *mut c_void);

/// The table the core publishes. Fields are only ever appended; `size` lets a
/// reader check that the fields it knows about are present.
#[repr(C)]
pub struct LunetAbi {
    pub version: u32,
    /// `size_of::<LunetAbi>()` as compiled into the core.
    pub size: u32,
    /// Opaque runtime pointer; pass it back as the first argument of every call.
    pub ctx: *mut c_void,
    /// Queues `work(data)` on libuv's thread pool. When it finishes, `after`
    /// runs on the loop thread; if `co` was non-null, the core then resumes `co`
    /// with the values `after` pushed (on a stack it is given). With a non-null `co` the caller must
    /// `return lua_yield(co, 0)` right after a successful call (and must have
    /// checked that `co` can yield). Returns 0, or a negative libuv error code,
    /// in which case nothing was queued and `data` still belongs to the caller.
    pub queue_work:
        unsafe extern "C" fn(ctx: *mut c_void, co: *mut lua_State, data: *mut c_void, work: WorkFn, after: AfterFn)
            -> c_int,
    /// The core's `uv_loop_t *` (for diagnostics; drivers do not link libuv).
    pub uv_loop: unsafe extern "C" fn(ctx: *mut c_void) -> *mut c_void,
    /// `queue_work` with an interrupt hook: the wait for the job honours the
    /// task's deadline and cancellation like every lunet wait, and `interrupt`
    /// (if given) is called when the wait ends early.
    pub queue_work_interruptible: unsafe extern "C" fn(
        ctx: *mut c_void,
        co: *mut lua_State,
        data: *mut c_void,
        work: WorkFn,
        after: AfterFn,
        interrupt: Option<InterruptFn>,
    ) -> c_int,
    /// Parks the running coroutine `co` in a plain scheduler wait: the
    /// caller must `return lua_yield(co, 0)` right after a call that
    /// returned a token (and must have checked that `co` can yield). The
    /// wait ends when [`LunetAbi::wake`] is called with the token (`co` is
    /// resumed with no values, on a later loop iteration), after
    /// `timeout_ms` if it is not negative (`nil, "timeout"`), at the task's
    /// deadline (likewise) or when the task is cancelled (the cancellation
    /// is raised at the wait). Returns the token (never 0), or 0 when the
    /// runtime is shutting down (nothing was parked; do not yield).
    pub wait: unsafe extern "C" fn(ctx: *mut c_void, co: *mut lua_State, timeout_ms: i64) -> u64,
    /// Ends the wait `token` so that its coroutine is resumed (on a later
    /// loop iteration, never inside this call; callable from Lua code).
    /// Returns 1 if it will be resumed, 0 if that wait had already ended
    /// (timed out, cancelled, woken) or never existed.
    pub wake: unsafe extern "C" fn(ctx: *mut c_void, token: u64) -> c_int,
}

/// Why a driver could not reach the core.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchError {
    Missing,
    Version { found: u32 },
    /// The core's table is older (shorter) than the one this driver knows.
    Size { found: u32 },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Missing => write!(f, "the lunet core module is not loaded (require(\"lunet\") failed or is missing)"),
            FetchError::Version { found } => write!(
                f,
                "lunet core ABI version {found} does not match the version {ABI_VERSION} this driver was built for; \
                 install matching versions of lunet and the driver"
            ),
            FetchError::Size { found } => write!(
                f,
                "the lunet core is older than this driver (its ABI table has {found} bytes, the driver needs {}); \
                 install matching versions of lunet and the driver",
                std::mem::size_of::<LunetAbi>()
            ),
        }
    }
}

/// Reads the core's table from the registry of `L`.
///
/// # Safety
/// `L` must be a valid Lua state with two free stack slots.
pub unsafe fn fetch(L: *mut lua_State) -> Result<&'static LunetAbi, FetchError> {
    lua::raw_field(L, ffi::LUA_REGISTRYINDEX, REGISTRY_KEY);
    let p = ffi::lua_touserdata(L, -1) as *const LunetAbi;
    ffi::lua_settop(L, -2);
    if p.is_null() {
        return Err(FetchError::Missing);
    }
    let abi = &*p;
    if abi.version != ABI_VERSION {
        return Err(FetchError::Version { found: abi.version });
    }
    if (abi.size as usize) < std::mem::size_of::<LunetAbi>() {
        return Err(FetchError::Size { found: abi.size });
    }
    Ok(abi)
}

/// Lua source of the yieldability guard every yielding entry point goes
/// through. Loading it yields a function `guard(name, raw)` that returns a Lua
/// function which raises `<name> must be called from coroutine` on the main
/// thread, `<name> called in non-yieldable context` where a yield is impossible,
/// and otherwise calls `raw` (a C function that may `lua_yield`) and returns
/// its results.
///
/// The call is deliberately not a tail call: the guard's frame stays on the
/// stack while `raw` waits, so that a cancellation, raised at the first
/// instruction the coroutine runs after its wait, is raised inside the guard,
/// that is inside whatever `pcall` wrapped the waiting call, in any form
/// (`pcall(lunet.sleep, ms)`, `pcall(function() return conn:read() end)`).
/// It costs a vararg call per wait (about 100 VM instructions).
///
/// The check has to happen in Lua: the LuaJIT C API offers no portable way to
/// ask whether the calling coroutine can yield, and registering a wait before a
/// failed yield would later resume a coroutine that is not waiting.
pub const GUARD_LUA: &str = r#"
local isyieldable, running, error = coroutine.isyieldable, coroutine.running, error
local function pass(...) return ... end
return function(name, raw)
  local outside = name .. " must be called from coroutine"
  local blocked = name .. " called in non-yieldable context"
  return function(...)
    if not isyieldable() then
      if running() == nil then error(outside, 2) end
      error(blocked, 2)
    end
    return pass(raw(...))
  end
end
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_layout_is_stable() {
        // Drivers compiled against this crate read the table by offset.
        let ptr = std::mem::size_of::<usize>();
        assert_eq!(std::mem::size_of::<LunetAbi>(), 8 + 6 * ptr);
        assert_eq!(std::mem::offset_of!(LunetAbi, queue_work_interruptible), 8 + 3 * ptr);
        assert_eq!(std::mem::offset_of!(LunetAbi, ctx), 8);
    }

    #[test]
    fn fetch_error_messages_name_the_problem() {
        assert!(FetchError::Missing.to_string().contains("not loaded"));
        let v = FetchError::Version { found: 99 }.to_string();
        assert!(v.contains("99") && v.contains(&ABI_VERSION.to_string()));
        let s = FetchError::Size { found: 40 }.to_string();
        assert!(s.contains("older") && s.contains("40"), "{s}");
    }
}
