//! Thread-pool work (`uv_queue_work`) on behalf of drivers, through the ABI
//! table: run a job off the loop thread, then resume the waiting coroutine
//! with the values the driver's after-callback pushes on the loop thread.

use std::collections::HashSet;
use std::ffi::{c_int, c_void};

use libuv_sys2 as uv;
use lunet_abi::ffi::lua_State;
use lunet_abi::{AfterFn, WorkFn};

use crate::runtime::Runtime;
use crate::sched::{self, Waiter};

struct Job {
    req: uv::uv_work_t,
    rt: *mut Runtime,
    waiter: Option<Waiter>,
    data: *mut c_void,
    work: WorkFn,
    after: AfterFn,
}

/// Jobs handed to the pool and not yet finished.
#[derive(Default)]
pub struct Work {
    in_flight: HashSet<*mut Job>,
}

impl Work {
    /// Releases the coroutines waiting on unfinished jobs. The jobs themselves
    /// cannot be stopped; if the process lives on, their results are dropped.
    ///
    /// # Safety
    /// Shutdown only, on the loop thread.
    pub unsafe fn shutdown(rt: *mut Runtime) {
        let jobs: Vec<*mut Job> = (*rt).work.in_flight.iter().copied().collect();
        for job in jobs {
            if let Some(w) = (*job).waiter.take() {
                w.cancel(rt);
            }
        }
    }
}

/// `LunetAbi::queue_work`; see its documentation.
pub unsafe extern "C" fn abi_queue_work(
    ctx: *mut c_void,
    co: *mut lua_State,
    data: *mut c_void,
    work: WorkFn,
    after: AfterFn,
) -> c_int {
    let rt = ctx as *mut Runtime;
    if (*rt).closing {
        return uv::uv_errno_t_UV_ECANCELED as c_int;
    }
    let job = Box::into_raw(Box::new(Job {
        req: std::mem::zeroed(),
        rt,
        waiter: None,
        data,
        work,
        after,
    }));
    (*job).req.data = job.cast();
    let rc = uv::uv_queue_work((*rt).uv, &mut (*job).req, Some(on_work), Some(on_after));
    if rc != 0 {
        drop(Box::from_raw(job));
        return rc;
    }
    if !co.is_null() {
        (*job).waiter = Some(Waiter::park(rt, co));
    }
    (*rt).work.in_flight.insert(job);
    0
}

unsafe extern "C" fn on_work(req: *mut uv::uv_work_t) {
    let job = (*req).data as *mut Job;
    ((*job).work)((*job).data);
}

unsafe extern "C" fn on_after(req: *mut uv::uv_work_t, _status: c_int) {
    let job = Box::from_raw((*req).data as *mut Job);
    let rt = job.rt;
    (*rt).work.in_flight.remove(&((*req).data as *mut Job));
    match job.waiter {
        Some(w) if !(*rt).closing => {
            let (after, data) = (job.after, job.data);
            let mut delivered = false;
            sched::wake(rt, w, |co| {
                delivered = true;
                after(co, data)
            });
            if !delivered {
                // The coroutine is no longer waiting: still let the driver free `data`.
                after(std::ptr::null_mut(), data);
            }
        }
        other => {
            (job.after)(std::ptr::null_mut(), job.data);
            if let Some(w) = other {
                w.cancel(rt);
            }
        }
    }
}
