//! The bookkeeping of a parking lot for idle connections, as plain Rust (no
//! Lua, no libuv; unit-tested here). `parking.rs` is the glue.
//!
//! A server with many keep-alive connections spends most of its memory on
//! connections that wait for their next request, each holding a task (a
//! coroutine with its stack) just to wait. A lot holds such connections
//! instead: a connection *parked* in it costs an entry here, no task. When
//! its next input arrives (or it ends, or its idle time runs out) it becomes
//! *ready* and waits in the lot's ready queue until a task waiting in the
//! lot (a worker) takes it.
//!
//! - parked items carry an optional expiry; an indexed binary heap orders
//!   them, so an item that becomes ready leaves the heap at once (no stale
//!   entries pile up however many requests a connection serves);
//! - ready items are served first come, first served;
//! - waiters are served last come, first served: the task that waited least
//!   is the one whose stack is still in the cache, and the others can retire.

use std::collections::VecDeque;

const NONE: u32 = u32::MAX;

/// Makes room for one more element, growing by a quarter rather than
/// doubling: a lot holds one slot per parked connection, and with doubling
/// a lot of 5,000 connections would carry room for 8,192.
fn room<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 4).max(16));
    }
}

struct Slot<T> {
    item: Option<T>,
    expiry: u64,
    /// Position in the heap, or NONE (no expiry, or free).
    pos: u32,
}

pub struct Lot<T, W> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    /// Slot numbers of the parked items with an expiry, a min-heap by expiry.
    heap: Vec<u32>,
    parked: usize,
    ready: VecDeque<T>,
    waiters: Vec<W>,
}

impl<T, W> Default for Lot<T, W> {
    fn default() -> Self {
        Lot { slots: Vec::new(), free: Vec::new(), heap: Vec::new(), parked: 0, ready: VecDeque::new(), waiters: Vec::new() }
    }
}

impl<T, W: PartialEq> Lot<T, W> {
    /// Parks `item` until [`Lot::unpark`] or its `expiry`; returns its key.
    pub fn park(&mut self, item: T, expiry: Option<u64>) -> u32 {
        let key = match self.free.pop() {
            Some(k) => k,
            None => {
                room(&mut self.slots);
                self.slots.push(Slot { item: None, expiry: 0, pos: NONE });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[key as usize];
        s.item = Some(item);
        s.pos = NONE;
        self.parked += 1;
        if let Some(e) = expiry {
            s.expiry = e;
            let at = self.heap.len();
            room(&mut self.heap);
            self.heap.push(key);
            self.slots[key as usize].pos = at as u32;
            self.sift_up(at);
        }
        key
    }

    /// Takes the item parked under `key` out of the lot (None if the key is
    /// not in use).
    pub fn unpark(&mut self, key: u32) -> Option<T> {
        let s = self.slots.get_mut(key as usize)?;
        let item = s.item.take()?;
        let pos = std::mem::replace(&mut s.pos, NONE);
        if pos != NONE {
            self.heap_remove(pos as usize);
        }
        room(&mut self.free);
        self.free.push(key);
        self.parked -= 1;
        Some(item)
    }

    /// The earliest expiry of a parked item.
    pub fn next_expiry(&self) -> Option<u64> {
        self.heap.first().map(|&k| self.slots[k as usize].expiry)
    }

    /// Takes out one parked item whose expiry is at or before `now`.
    pub fn pop_expired(&mut self, now: u64) -> Option<T> {
        let &k = self.heap.first()?;
        if self.slots[k as usize].expiry > now {
            return None;
        }
        self.unpark(k)
    }

    pub fn parked(&self) -> usize {
        self.parked
    }

    /// Queues a ready item.
    pub fn queue_ready(&mut self, item: T) {
        self.ready.push_back(item);
    }

    /// Takes the waiter that started waiting last.
    pub fn pop_waiter(&mut self) -> Option<W> {
        self.waiters.pop()
    }

    /// The ready item queued longest, left in the queue.
    pub fn first_ready(&self) -> Option<&T> {
        self.ready.front()
    }

    /// Takes the ready item queued longest.
    pub fn take_ready(&mut self) -> Option<T> {
        self.ready.pop_front()
    }

    /// Takes `item` out of the ready queue (None if it is not there).
    pub fn remove_ready(&mut self, pred: impl Fn(&T) -> bool) -> Option<T> {
        let i = self.ready.iter().position(pred)?;
        self.ready.remove(i)
    }

    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    pub fn add_waiter(&mut self, w: W) {
        self.waiters.push(w);
    }

    /// A waiter that stopped waiting (timeout, cancellation).
    pub fn remove_waiter(&mut self, w: &W) -> bool {
        match self.waiters.iter().rposition(|x| x == w) {
            Some(i) => {
                self.waiters.remove(i);
                true
            }
            None => false,
        }
    }

    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Empties the lot: the parked items, the ready ones, the waiters.
    pub fn drain(&mut self) -> (Vec<T>, Vec<T>, Vec<W>) {
        let parked: Vec<T> = self.slots.iter_mut().filter_map(|s| s.item.take()).collect();
        self.slots.clear();
        self.free.clear();
        self.heap.clear();
        self.parked = 0;
        let ready = self.ready.drain(..).collect();
        let waiters = std::mem::take(&mut self.waiters);
        (parked, ready, waiters)
    }

    // ------------------------------------------------------------ heap

    fn key_at(&self, i: usize) -> u64 {
        self.slots[self.heap[i] as usize].expiry
    }

    fn set(&mut self, i: usize, k: u32) {
        self.heap[i] = k;
        self.slots[k as usize].pos = i as u32;
    }

    fn sift_up(&mut self, mut i: usize) {
        let k = self.heap[i];
        let e = self.slots[k as usize].expiry;
        while i > 0 {
            let p = (i - 1) / 2;
            if self.key_at(p) <= e {
                break;
            }
            let pk = self.heap[p];
            self.set(i, pk);
            i = p;
        }
        self.set(i, k);
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        let k = self.heap[i];
        let e = self.slots[k as usize].expiry;
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let c = if l + 1 < n && self.key_at(l + 1) < self.key_at(l) { l + 1 } else { l };
            if self.key_at(c) >= e {
                break;
            }
            let ck = self.heap[c];
            self.set(i, ck);
            i = c;
        }
        self.set(i, k);
    }

    fn heap_remove(&mut self, i: usize) {
        let last = self.heap.pop().expect("heap position in range");
        if i == self.heap.len() {
            return;
        }
        self.set(i, last);
        if i > 0 && self.key_at((i - 1) / 2) > self.key_at(i) {
            self.sift_up(i);
        } else {
            self.sift_down(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type L = Lot<u32, u32>;

    fn check_heap(l: &L) {
        for i in 1..l.heap.len() {
            assert!(l.key_at((i - 1) / 2) <= l.key_at(i), "heap order broken at {i}");
        }
        for (i, &k) in l.heap.iter().enumerate() {
            assert_eq!(l.slots[k as usize].pos as usize, i, "position of slot {k}");
        }
    }

    #[test]
    fn expired_items_leave_in_expiry_order() {
        let mut l = L::default();
        for (item, e) in [(1, 50), (2, 10), (3, 30), (4, 20), (5, 40)] {
            l.park(item, Some(e));
            check_heap(&l);
        }
        assert_eq!(l.next_expiry(), Some(10));
        assert_eq!(l.pop_expired(9), None);
        let mut out = Vec::new();
        while let Some(i) = l.pop_expired(35) {
            out.push(i);
            check_heap(&l);
        }
        assert_eq!(out, vec![2, 4, 3]);
        assert_eq!(l.parked(), 2);
        assert_eq!(l.next_expiry(), Some(40));
    }

    #[test]
    fn unparking_from_the_middle_keeps_the_heap_whole() {
        let mut l = L::default();
        let mut keys = Vec::new();
        // A deterministic shuffle of expiries.
        for i in 0..200u32 {
            keys.push((i, l.park(i, Some(((i * 7919) % 211) as u64))));
        }
        check_heap(&l);
        for &(i, k) in keys.iter().filter(|(i, _)| i % 3 == 0) {
            assert_eq!(l.unpark(k), Some(i));
            check_heap(&l);
        }
        assert_eq!(l.unpark(keys[0].1), None, "a key is used once");
        let mut last = 0;
        let mut n = 0;
        while let Some(i) = l.pop_expired(u64::MAX) {
            let e = ((i * 7919) % 211) as u64;
            assert!(e >= last && i % 3 != 0);
            last = e;
            n += 1;
        }
        assert_eq!(n, 200 - 67);
        assert_eq!(l.parked(), 0);
    }

    #[test]
    fn keys_are_reused_and_items_without_expiry_never_expire() {
        let mut l = L::default();
        let a = l.park(1, None);
        let b = l.park(2, Some(5));
        assert_eq!(l.pop_expired(100), Some(2));
        assert_eq!(l.pop_expired(u64::MAX), None);
        let c = l.park(3, None);
        assert_eq!(c, b, "the freed slot is used again");
        assert_eq!(l.unpark(a), Some(1));
        assert_eq!(l.unpark(c), Some(3));
        assert_eq!(l.parked(), 0);
        assert!(l.slots.len() <= 2, "no slot per park: {}", l.slots.len());
    }

    #[test]
    fn many_park_unpark_cycles_use_constant_space() {
        let mut l = L::default();
        let mut keys: Vec<u32> = (0..10).map(|i| l.park(i, Some(1000 + i as u64))).collect();
        for round in 0..10_000u64 {
            let i = (round % 10) as usize;
            let item = l.unpark(keys[i]).unwrap();
            keys[i] = l.park(item, Some(2000 + round));
        }
        check_heap(&l);
        assert_eq!(l.slots.len(), 10);
        assert_eq!(l.heap.len(), 10);
    }

    #[test]
    fn ready_items_queue_in_order_and_waiters_stack() {
        let mut l = L::default();
        l.queue_ready(1);
        l.queue_ready(2);
        l.queue_ready(3);
        assert_eq!(l.ready_len(), 3);
        assert_eq!(l.remove_ready(|&x| x == 2), Some(2));
        assert_eq!(l.remove_ready(|&x| x == 2), None);
        assert_eq!(l.first_ready(), Some(&1));
        assert_eq!(l.take_ready(), Some(1));
        assert_eq!(l.take_ready(), Some(3));
        assert_eq!(l.take_ready(), None);
        l.add_waiter(10);
        l.add_waiter(11);
        l.add_waiter(12);
        assert!(l.remove_waiter(&11));
        assert!(!l.remove_waiter(&11));
        assert_eq!(l.waiting(), 2);
        assert_eq!(l.pop_waiter(), Some(12), "the latest waiter first");
        assert_eq!(l.pop_waiter(), Some(10));
        assert_eq!(l.pop_waiter(), None);
    }

    #[test]
    fn drain_empties_everything() {
        let mut l = L::default();
        l.park(1, Some(3));
        l.park(2, None);
        l.queue_ready(3);
        l.add_waiter(9);
        let (mut p, r, w) = l.drain();
        p.sort();
        assert_eq!((p, r, w), (vec![1, 2], vec![3], vec![9]));
        assert_eq!((l.parked(), l.ready_len(), l.waiting(), l.next_expiry()), (0, 0, 0, None));
    }
}
