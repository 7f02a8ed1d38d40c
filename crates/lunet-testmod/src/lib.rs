//! `lunet_testmod`: a test-only module built like a database driver (a separate
//! cdylib that does not link libuv) to exercise the core's ABI from specs:
//! work on the thread pool, resuming the caller with pushed values, work with
//! no coroutine to resume, and the ABI version check.

#![allow(non_snake_case)]

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{core_abi, guard, push_fail, to_number};
use lunet_abi::{lua_fn, LunetAbi};

static FIRED: AtomicUsize = AtomicUsize::new(0);
/// Jobs currently inside `barrier_work`.
static INSIDE: AtomicUsize = AtomicUsize::new(0);

struct Sum {
    n: u64,
    delay_ms: u64,
    result: u64,
    worker: Option<std::thread::ThreadId>,
}

unsafe extern "C" fn sum_work(data: *mut c_void) {
    let job = &mut *(data as *mut Sum);
    std::thread::sleep(Duration::from_millis(job.delay_ms));
    job.result = (1..=job.n).sum();
    job.worker = Some(std::thread::current().id());
}

/// A barrier job: `n` = how many must be inside at once, `delay_ms` = how long
/// to wait for that; `result` = 1 if they were.
unsafe extern "C" fn barrier_work(data: *mut c_void) {
    let job = &mut *(data as *mut Sum);
    INSIDE.fetch_add(1, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_millis(job.delay_ms);
    while INSIDE.load(Ordering::SeqCst) < job.n as usize && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    job.result = (INSIDE.load(Ordering::SeqCst) >= job.n as usize) as u64;
    // Stay inside a little longer so late arrivals also see the full count.
    std::thread::sleep(Duration::from_millis(50));
    INSIDE.fetch_sub(1, Ordering::SeqCst);
    job.worker = Some(std::thread::current().id());
}

unsafe extern "C-unwind" fn sum_after(co: *mut lua_State, data: *mut c_void) -> c_int {
    let job = Box::from_raw(data as *mut Sum);
    if co.is_null() {
        FIRED.fetch_add(1, Ordering::Relaxed);
        return 0;
    }
    ffi::lua_pushnumber(co, job.result as f64);
    ffi::lua_pushboolean(co, (job.worker != Some(std::thread::current().id())) as c_int);
    2
}

unsafe fn abi_of(L: *mut lua_State) -> &'static LunetAbi {
    &*(ffi::lua_touserdata(L, ffi::lua_upvalueindex(1)) as *const LunetAbi)
}

unsafe fn new_sum(L: *mut lua_State) -> *mut c_void {
    let n = to_number(L, 1).unwrap_or(0.0) as u64;
    let delay_ms = to_number(L, 2).unwrap_or(0.0) as u64;
    Box::into_raw(Box::new(Sum { n, delay_ms, result: 0, worker: None })).cast()
}

lua_fn! {
    /// `sum(n, delay_ms)` -> sum of 1..n, ran_on_another_thread (yields)
    fn l_sum(L) {
        let abi = abi_of(L);
        let data = new_sum(L);
        let rc = (abi.queue_work)(abi.ctx, L, data, sum_work, sum_after);
        if rc != 0 {
            drop(Box::from_raw(data as *mut Sum));
            return Ok(push_fail(L, "queue_work failed"));
        }
        Ok(ffi::lua_yield(L, 0))
    }
}

lua_fn! {
    /// `barrier(n, wait_ms)` -> 1 if n jobs were running at the same time (yields)
    fn l_barrier(L) {
        let abi = abi_of(L);
        let data = new_sum(L);
        if (abi.queue_work)(abi.ctx, L, data, barrier_work, sum_after) != 0 {
            drop(Box::from_raw(data as *mut Sum));
            return Ok(push_fail(L, "queue_work failed"));
        }
        Ok(ffi::lua_yield(L, 0))
    }
}

lua_fn! {
    /// `fire(n, delay_ms)`: queues work with no coroutine to resume.
    fn l_fire(L) {
        let abi = abi_of(L);
        let data = new_sum(L);
        let rc = (abi.queue_work)(abi.ctx, std::ptr::null_mut(), data, sum_work, sum_after);
        if rc != 0 {
            drop(Box::from_raw(data as *mut Sum));
        }
        ffi::lua_pushboolean(L, (rc == 0) as c_int);
        Ok(1)
    }
}

lua_fn! {
    /// `fired()` -> how many `fire` jobs have completed.
    fn l_fired(L) {
        ffi::lua_pushnumber(L, FIRED.load(Ordering::Relaxed) as f64);
        Ok(1)
    }
}

lua_fn! {
    #[no_mangle]
    pub fn luaopen_lunet_testmod(L) {
        let abi = core_abi(L)?;
        ffi::lua_createtable(L, 0, 5);
        for (name, f, yields) in [(c"sum", l_sum as ffi::lua_CFunction, true), (c"fire", l_fire, false), (c"fired", l_fired, false), (c"barrier", l_barrier, true)] {
            ffi::lua_pushlightuserdata(L, abi as *const LunetAbi as *mut c_void);
            ffi::lua_pushcclosure(L, f, 1);
            if yields {
                guard(L, &format!("testmod.{}", name.to_str().unwrap()))?;
            }
            ffi::lua_setfield(L, -2, name.as_ptr());
        }
        Ok(1)
    }
}
