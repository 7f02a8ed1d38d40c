//! `lunet.sleep`: one libuv timer for the whole runtime, armed for the earliest
//! deadline of a heap of sleepers, and one idle handle for `sleep(0)`.
//!
//! Per-sleep libuv timers would cost an init/start/close (and a loop iteration
//! for the close callback) per call. Here a sleep is a heap push, and a
//! `sleep(0)` is a vector push served by the idle handle on the next loop
//! iteration, after which the loop polls without blocking.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use libuv_sys2 as uv;
use lunet_abi::ffi;
use lunet_abi::lua::{to_number, type_name};
use lunet_abi::lua_fn;

use crate::runtime::{self, Runtime};
use crate::sched::{self, Waiter};

/// Longest sleep accepted, in ms (about 285 years); larger values are clamped.
const MAX_MS: u64 = 1 << 53;

struct Sleeper {
    deadline: u64,
    seq: u64,
    waiter: Waiter,
}

impl PartialEq for Sleeper {
    fn eq(&self, o: &Self) -> bool {
        (self.deadline, self.seq) == (o.deadline, o.seq)
    }
}
impl Eq for Sleeper {}
impl PartialOrd for Sleeper {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Sleeper {
    // Reversed: BinaryHeap is a max-heap and we want the earliest deadline
    // (then the earliest call) on top.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.deadline, o.seq).cmp(&(self.deadline, self.seq))
    }
}

pub struct Timers {
    timer: *mut uv::uv_timer_t,
    idle: *mut uv::uv_idle_t,
    heap: BinaryHeap<Sleeper>,
    seq: u64,
    /// Deadline the libuv timer is armed for, if it is.
    armed: Option<u64>,
    /// `sleep(0)` callers waiting for the next loop iteration.
    ready: Vec<Waiter>,
    /// Spare buffer swapped with `ready` while it is being served.
    spare: Vec<Waiter>,
}

impl Timers {
    pub fn new() -> Timers {
        Timers {
            timer: std::ptr::null_mut(),
            idle: std::ptr::null_mut(),
            heap: BinaryHeap::new(),
            seq: 0,
            armed: None,
            ready: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Creates the libuv handles (inactive until something sleeps).
    ///
    /// # Safety
    /// `rt` must be a fully constructed runtime whose loop is initialised.
    pub unsafe fn init(rt: *mut Runtime) {
        let t = &mut (*rt).timers;
        t.timer = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_timer_t>()));
        t.idle = Box::into_raw(Box::new(std::mem::zeroed::<uv::uv_idle_t>()));
        uv::uv_timer_init((*rt).uv, t.timer);
        uv::uv_idle_init((*rt).uv, t.idle);
        (*t.timer).data = rt.cast();
        (*t.idle).data = rt.cast();
    }

    /// Releases every sleeper without resuming it, and stops the handles.
    ///
    /// # Safety
    /// Shutdown only, on the loop thread.
    pub unsafe fn shutdown(rt: *mut Runtime) {
        let t = &mut (*rt).timers;
        uv::uv_timer_stop(t.timer);
        uv::uv_idle_stop(t.idle);
        let (heap, ready) = (std::mem::take(&mut t.heap), std::mem::take(&mut t.ready));
        for s in heap {
            s.waiter.cancel(rt);
        }
        for w in ready {
            w.cancel(rt);
        }
    }

    unsafe fn add(&mut self, uv_loop: *mut uv::uv_loop_t, ms: u64, w: Waiter) {
        if ms == 0 {
            if self.ready.is_empty() {
                uv::uv_idle_start(self.idle, Some(on_idle));
            }
            self.ready.push(w);
            return;
        }
        let deadline = uv::uv_now(uv_loop).saturating_add(ms);
        self.seq += 1;
        self.heap.push(Sleeper { deadline, seq: self.seq, waiter: w });
        if self.armed.is_none_or(|a| deadline < a) {
            self.arm(uv_loop, deadline);
        }
    }

    unsafe fn arm(&mut self, uv_loop: *mut uv::uv_loop_t, deadline: u64) {
        let now = uv::uv_now(uv_loop);
        uv::uv_timer_start(self.timer, Some(on_timer), deadline.saturating_sub(now), 0);
        self.armed = Some(deadline);
    }
}

lua_fn! {
    /// `lunet.sleep(ms)`: yields for `ms` milliseconds (fractions truncated).
    pub fn l_sleep(L) {
        let ms = match to_number(L, 1) {
            Some(ms) if ms >= 0.0 => ms,
            Some(_) => return Err("lunet.sleep duration must be >= 0".into()),
            None => return Err(format!("lunet.sleep expects a number of milliseconds (got {})", type_name(L, 1)).into()),
        };
        let rt = runtime::of(L);
        let ms = if ms.is_nan() { return Err("lunet.sleep duration must be >= 0".into()) } else { (ms as u64).min(MAX_MS) };
        let w = Waiter::park(rt, L);
        (*rt).timers.add((*rt).uv, ms, w);
        Ok(ffi::lua_yield(L, 0))
    }
}

unsafe extern "C" fn on_timer(h: *mut uv::uv_timer_t) {
    let rt = (*h).data as *mut Runtime;
    let now = uv::uv_now((*rt).uv);
    (*rt).timers.armed = None;
    // Take the due sleepers first: resuming them may add new ones.
    let mut due = Vec::new();
    while let Some(top) = (*rt).timers.heap.peek() {
        if top.deadline > now {
            break;
        }
        due.push((*rt).timers.heap.pop().unwrap().waiter);
    }
    for w in due {
        sched::wake(rt, w, |_| 0);
    }
    let t = &mut (*rt).timers;
    match t.heap.peek().map(|s| s.deadline) {
        Some(next) if t.armed.is_none_or(|a| next < a) => t.arm((*rt).uv, next),
        Some(_) => {}
        None => {
            if t.armed.is_none() {
                uv::uv_timer_stop(t.timer);
            }
        }
    }
}

unsafe extern "C" fn on_idle(h: *mut uv::uv_idle_t) {
    let rt = (*h).data as *mut Runtime;
    let t = &mut (*rt).timers;
    // Serve the callers queued before this iteration; new sleep(0) calls made
    // while resuming them go to the (now empty) `ready` for the next iteration.
    let mut batch = std::mem::replace(&mut t.ready, std::mem::take(&mut t.spare));
    for w in batch.drain(..) {
        sched::wake(rt, w, |_| 0);
    }
    let t = &mut (*rt).timers;
    t.spare = batch;
    if t.ready.is_empty() {
        uv::uv_idle_stop(t.idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_pops_earliest_deadline_then_call_order() {
        let mut heap = BinaryHeap::new();
        for (deadline, seq) in [(30, 1), (10, 2), (20, 3), (10, 4), (5, 5)] {
            heap.push(Sleeper { deadline, seq, waiter: Waiter::dummy() });
        }
        let order: Vec<(u64, u64)> = std::iter::from_fn(|| heap.pop().map(|s| (s.deadline, s.seq))).collect();
        assert_eq!(order, vec![(5, 5), (10, 2), (10, 4), (20, 3), (30, 1)]);
    }
}
