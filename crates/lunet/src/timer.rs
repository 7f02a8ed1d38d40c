//! Time: `lunet.sleep`, `lunet.now`, `lunet.hrtime`. A sleep is a wait in the
//! scheduler's registry whose deadline is its normal end (one deadline heap
//! and one libuv timer serve every sleep and every timeout); `sleep(0)` goes
//! on the ready list served on the next loop iteration.

use lunet_abi::ffi;
use lunet_abi::lua::{to_number, type_name};
use lunet_abi::lua_fn;

use crate::runtime;
use crate::sched;
use crate::waits::millis;

lua_fn! {
    /// `lunet.sleep(ms)`: yields for `ms` milliseconds (fractions truncated).
    pub fn l_sleep(L) {
        let ms = match to_number(L, 1) {
            Some(ms) if ms.is_nan() || ms < 0.0 => return Err("lunet.sleep duration must be >= 0".into()),
            // (Huge and infinite sleeps are clamped, as they always were.)
            Some(ms) => millis(ms).unwrap_or(crate::waits::MAX_MS),
            None => return Err(format!("lunet.sleep expects a number of milliseconds (got {})", type_name(L, 1)).into()),
        };
        sched::park_sleep(runtime::of(L), L, ms);
        Ok(ffi::lua_yield(L, 0))
    }
}

lua_fn! {
    /// `lunet.now()` -> the loop's monotonic clock in ms (cached per iteration).
    pub fn l_now(L) {
        ffi::lua_pushnumber(L, libuv_sys2::uv_now((*runtime::of(L)).uv) as f64);
        Ok(1)
    }
}

lua_fn! {
    /// `lunet.hrtime()` -> a monotonic clock in ns (not cached).
    pub fn l_hrtime(L) {
        ffi::lua_pushnumber(L, libuv_sys2::uv_hrtime() as f64);
        Ok(1)
    }
}

lua_fn! {
    /// `lunet.getpid()` -> the process id.
    pub fn l_getpid(L) {
        ffi::lua_pushnumber(L, libc::getpid() as f64);
        Ok(1)
    }
}
