//! The queue logic of the coordination primitives (channels, semaphores,
//! wait groups), as plain Rust: who gets the next value or permit, who is
//! woken, in what order. No Lua, no libuv: unit-tested here. The glue in
//! `primitives.rs` parks coroutines in the scheduler and wakes the waiters
//! these types name.
//!
//! `W` names a parked waiter (a scheduler `WaitId` in the glue), `V` a value
//! (a registry reference in the glue). Every queue is FIFO: waiters are
//! served in the order they started waiting, and a waiter that leaves early
//! (timeout, cancellation) is taken out of its queue without disturbing the
//! order of the others.

use std::collections::VecDeque;

/// Removes `w` from `q`; whether it was there.
fn remove<W: PartialEq>(q: &mut VecDeque<W>, w: &W) -> bool {
    match q.iter().position(|x| x == w) {
        Some(i) => {
            q.remove(i);
            true
        }
        None => false,
    }
}

/// What [`Channel::send`] did with a value.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent<W, V> {
    /// Given to the receiver that waited longest: wake it with the value.
    Handed(W, V),
    /// Stored in the buffer.
    Buffered,
    /// The channel is closed: the value is handed back.
    Closed(V),
    /// Nobody can take it now: the sender must wait ([`Channel::park_sender`]).
    Full(V),
}

/// What [`Channel::recv`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Recvd<W, V> {
    /// A value; and the sender whose value moved into the buffer (or was
    /// taken directly, with no buffer) and must be woken as done.
    Value(V, Option<W>),
    /// Closed and drained.
    Closed,
    /// Nothing to take: the receiver must wait ([`Channel::park_receiver`]).
    Empty,
}

/// A channel of capacity `cap` (0: rendezvous, a send completes only when a
/// receiver takes the value).
///
/// Invariants: receivers wait only while the buffer is empty and no sender
/// waits; senders wait only while the buffer is full and no receiver waits.
/// Values leave in the order they were sent (buffer first, then the waiting
/// senders' values, in the senders' order).
#[derive(Debug)]
pub struct Channel<W, V, X = W> {
    cap: usize,
    buf: VecDeque<V>,
    receivers: VecDeque<W>,
    senders: VecDeque<(W, V)>,
    /// Waiters of `wait_any`: woken (all) when the channel becomes ready.
    watchers: Vec<X>,
    closed: bool,
}

impl<W: PartialEq + Copy, V, X: PartialEq> Channel<W, V, X> {
    pub fn new(cap: usize) -> Self {
        Channel { cap, buf: VecDeque::new(), receivers: VecDeque::new(), senders: VecDeque::new(), watchers: Vec::new(), closed: false }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Buffered values (parked senders' values are not counted).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether a `recv` would complete at once (a value, or closed).
    pub fn ready(&self) -> bool {
        !self.buf.is_empty() || !self.senders.is_empty() || self.closed
    }

    /// Whether anybody is parked on the channel (the glue keeps the channel
    /// alive while so).
    pub fn has_waiters(&self) -> bool {
        !self.receivers.is_empty() || !self.senders.is_empty() || !self.watchers.is_empty()
    }

    pub fn send(&mut self, v: V) -> Sent<W, V> {
        if self.closed {
            return Sent::Closed(v);
        }
        if let Some(r) = self.receivers.pop_front() {
            return Sent::Handed(r, v);
        }
        if self.buf.len() < self.cap {
            self.buf.push_back(v);
            return Sent::Buffered;
        }
        Sent::Full(v)
    }

    /// Queues a sender that got [`Sent::Full`] with its value.
    pub fn park_sender(&mut self, w: W, v: V) {
        debug_assert!(!self.closed && self.receivers.is_empty());
        self.senders.push_back((w, v));
    }

    pub fn recv(&mut self) -> Recvd<W, V> {
        if let Some(v) = self.buf.pop_front() {
            // Room in the buffer: the longest-waiting sender's value moves in.
            let woken = self.senders.pop_front().map(|(s, sv)| {
                self.buf.push_back(sv);
                s
            });
            return Recvd::Value(v, woken);
        }
        if let Some((s, sv)) = self.senders.pop_front() {
            return Recvd::Value(sv, Some(s));
        }
        if self.closed {
            return Recvd::Closed;
        }
        Recvd::Empty
    }

    /// Queues a receiver that got [`Recvd::Empty`].
    pub fn park_receiver(&mut self, w: W) {
        debug_assert!(self.buf.is_empty() && self.senders.is_empty() && !self.closed);
        self.receivers.push_back(w);
    }

    /// Closes the channel. Returns `None` if it was closed already; else the
    /// waiting receivers (to fail with "closed") and the waiting senders with
    /// their values (not delivered: to fail with "closed"). Buffered values
    /// stay receivable.
    #[allow(clippy::type_complexity)]
    pub fn close(&mut self) -> Option<(Vec<W>, Vec<(W, V)>)> {
        if self.closed {
            return None;
        }
        self.closed = true;
        Some((self.receivers.drain(..).collect(), self.senders.drain(..).collect()))
    }

    /// Takes a receiver out of the queue (its wait ended early).
    pub fn cancel_receiver(&mut self, w: W) -> bool {
        remove(&mut self.receivers, &w)
    }

    /// Takes a sender out of the queue (its wait ended early) and hands its
    /// value back: it was not delivered.
    pub fn cancel_sender(&mut self, w: W) -> Option<V> {
        let i = self.senders.iter().position(|(s, _)| *s == w)?;
        self.senders.remove(i).map(|(_, v)| v)
    }

    /// Registers a `wait_any` waiter (only while the channel is not ready).
    pub fn watch(&mut self, w: X) {
        self.watchers.push(w);
    }

    pub fn unwatch(&mut self, w: X) -> bool {
        match self.watchers.iter().position(|x| *x == w) {
            Some(i) => {
                self.watchers.remove(i);
                true
            }
            None => false,
        }
    }

    /// The `wait_any` waiters to wake, in the order they came, if the
    /// channel is ready (called after each change that can make it so).
    pub fn take_watchers(&mut self) -> Vec<X> {
        if self.ready() {
            std::mem::take(&mut self.watchers)
        } else {
            Vec::new()
        }
    }

    /// Everything still held (values in the buffer and of parked senders),
    /// for releasing when the channel is freed.
    pub fn drain_values(&mut self) -> Vec<V> {
        let mut out: Vec<V> = self.buf.drain(..).collect();
        out.extend(self.senders.drain(..).map(|(_, v)| v));
        out
    }
}

/// `Semaphore::release` with no permit held.
#[derive(Debug, PartialEq, Eq)]
pub struct NotHeld;

/// `WaitGroup::add` that would take the counter below zero.
#[derive(Debug, PartialEq, Eq)]
pub struct BelowZero;

/// A counting semaphore with `n` permits. A permit released while tasks
/// wait goes straight to the one that waited longest (nobody can overtake
/// a waiter). Releasing more permits than are held is an error.
#[derive(Debug)]
pub struct Semaphore<W> {
    free: usize,
    held: usize,
    waiters: VecDeque<W>,
}

impl<W: PartialEq + Copy> Semaphore<W> {
    pub fn new(n: usize) -> Self {
        Semaphore { free: n, held: 0, waiters: VecDeque::new() }
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.free
    }

    /// Takes a permit if one is free (and nobody waits before).
    pub fn try_acquire(&mut self) -> bool {
        if self.free > 0 && self.waiters.is_empty() {
            self.free -= 1;
            self.held += 1;
            true
        } else {
            false
        }
    }

    pub fn park(&mut self, w: W) {
        self.waiters.push_back(w);
    }

    pub fn cancel(&mut self, w: W) -> bool {
        remove(&mut self.waiters, &w)
    }

    /// Gives a permit back: `Err` if none is held; `Ok(Some(w))` if it went
    /// to the waiter `w` (wake it: it holds the permit now).
    pub fn release(&mut self) -> Result<Option<W>, NotHeld> {
        if self.held == 0 {
            return Err(NotHeld);
        }
        if let Some(w) = self.waiters.pop_front() {
            return Ok(Some(w));
        }
        self.held -= 1;
        self.free += 1;
        Ok(None)
    }

    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }
}

/// A wait group: a counter that tasks wait to see reach zero.
#[derive(Debug)]
pub struct WaitGroup<W> {
    count: u64,
    waiters: VecDeque<W>,
}

impl<W> Default for WaitGroup<W> {
    fn default() -> Self {
        WaitGroup { count: 0, waiters: VecDeque::new() }
    }
}

impl<W: PartialEq + Copy> WaitGroup<W> {
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds `n` (may be negative). `Err` (and no change) if the counter
    /// would go below zero; else the waiters to wake if it reached zero.
    pub fn add(&mut self, n: i64) -> Result<Vec<W>, BelowZero> {
        let next = if n >= 0 { self.count.checked_add(n as u64) } else { self.count.checked_sub(n.unsigned_abs()) };
        let Some(next) = next else { return Err(BelowZero) };
        self.count = next;
        if next == 0 {
            Ok(self.waiters.drain(..).collect())
        } else {
            Ok(Vec::new())
        }
    }

    /// Whether `wait` must park (the counter is not zero).
    pub fn must_wait(&self) -> bool {
        self.count > 0
    }

    pub fn park(&mut self, w: W) {
        self.waiters.push_back(w);
    }

    pub fn cancel(&mut self, w: W) -> bool {
        remove(&mut self.waiters, &w)
    }

    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Ch = Channel<u32, &'static str>;

    #[test]
    fn buffered_channel_keeps_order_and_blocks_when_full() {
        let mut c = Ch::new(2);
        assert_eq!(c.recv(), Recvd::Empty);
        assert_eq!(c.send("a"), Sent::Buffered);
        assert_eq!(c.send("b"), Sent::Buffered);
        assert_eq!(c.len(), 2);
        assert_eq!(c.send("c"), Sent::Full("c"));
        c.park_sender(7, "c");
        assert_eq!(c.send("d"), Sent::Full("d"));
        c.park_sender(8, "d");
        // Each recv frees a slot: the longest-waiting sender's value moves in.
        assert_eq!(c.recv(), Recvd::Value("a", Some(7)));
        assert_eq!(c.recv(), Recvd::Value("b", Some(8)));
        assert_eq!(c.recv(), Recvd::Value("c", None));
        assert_eq!(c.recv(), Recvd::Value("d", None));
        assert_eq!(c.recv(), Recvd::Empty);
    }

    #[test]
    fn rendezvous_hands_values_to_waiting_receivers_in_order() {
        let mut c = Ch::new(0);
        assert_eq!(c.send("x"), Sent::Full("x"));
        c.recv(); // nothing there
        c.park_receiver(1);
        c.park_receiver(2);
        assert!(!c.ready());
        assert_eq!(c.send("x"), Sent::Handed(1, "x"));
        assert_eq!(c.send("y"), Sent::Handed(2, "y"));
        assert_eq!(c.send("z"), Sent::Full("z"));
        c.park_sender(3, "z");
        assert!(c.ready());
        assert_eq!(c.len(), 0, "a parked sender's value is not buffered");
        assert_eq!(c.recv(), Recvd::Value("z", Some(3)));
    }

    #[test]
    fn close_fails_waiters_and_leaves_buffered_values() {
        let mut c = Ch::new(1);
        assert_eq!(c.send("a"), Sent::Buffered);
        c.park_sender(5, "b");
        let (r, s) = c.close().unwrap();
        assert!(r.is_empty());
        assert_eq!(s, vec![(5, "b")]);
        assert!(c.close().is_none(), "closing twice is a no-op");
        assert_eq!(c.send("c"), Sent::Closed("c"));
        assert_eq!(c.recv(), Recvd::Value("a", None));
        assert_eq!(c.recv(), Recvd::Closed);

        let mut c = Ch::new(0);
        c.park_receiver(1);
        c.park_receiver(2);
        let (r, s) = c.close().unwrap();
        assert_eq!(r, vec![1, 2]);
        assert!(s.is_empty());
    }

    #[test]
    fn leaving_early_keeps_values_and_order() {
        let mut c = Ch::new(0);
        c.park_sender(1, "a");
        c.park_sender(2, "b");
        c.park_sender(3, "c");
        assert_eq!(c.cancel_sender(2), Some("b"), "the value goes back to the sender");
        assert_eq!(c.cancel_sender(2), None);
        assert_eq!(c.recv(), Recvd::Value("a", Some(1)));
        assert_eq!(c.recv(), Recvd::Value("c", Some(3)));
        assert_eq!(c.recv(), Recvd::Empty);

        c.park_receiver(4);
        c.park_receiver(5);
        assert!(c.cancel_receiver(4));
        assert!(!c.cancel_receiver(4));
        assert_eq!(c.send("d"), Sent::Handed(5, "d"));
        assert!(!c.has_waiters());
    }

    #[test]
    fn watchers_are_taken_only_when_ready() {
        let mut c = Ch::new(1);
        c.watch(1);
        c.watch(2);
        assert!(c.take_watchers().is_empty());
        assert!(c.unwatch(1));
        assert!(!c.unwatch(1));
        assert_eq!(c.send("a"), Sent::Buffered);
        assert_eq!(c.take_watchers(), vec![2]);
        assert!(c.take_watchers().is_empty());
        let mut c = Ch::new(0);
        c.watch(3);
        c.close();
        assert_eq!(c.take_watchers(), vec![3]);
    }

    #[test]
    fn drain_values_returns_buffer_and_parked_values() {
        let mut c = Ch::new(1);
        c.send("a");
        c.park_sender(1, "b");
        assert_eq!(c.drain_values(), vec!["a", "b"]);
        assert_eq!(c.len(), 0);
    }

    /// Random operations against a simple model: no value is lost or
    /// duplicated, and values come out in the order they went in.
    #[test]
    fn channel_never_loses_or_duplicates_values() {
        let mut x: u64 = 99;
        for cap in [0usize, 1, 3] {
            let mut c: Channel<u32, u32> = Channel::new(cap);
            let (mut next_val, mut next_waiter) = (0u32, 0u32);
            let mut out = Vec::new();
            let mut dropped = Vec::new();
            let mut parked_receivers: Vec<u32> = Vec::new();
            let mut parked_senders: Vec<u32> = Vec::new();
            for _ in 0..5000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match x % 5 {
                    0 | 1 => {
                        let v = next_val;
                        next_val += 1;
                        match c.send(v) {
                            Sent::Handed(r, v) => {
                                parked_receivers.retain(|&p| p != r);
                                out.push(v);
                            }
                            Sent::Buffered => {}
                            Sent::Full(v) => {
                                next_waiter += 1;
                                c.park_sender(next_waiter, v);
                                parked_senders.push(next_waiter);
                            }
                            Sent::Closed(_) => unreachable!(),
                        }
                    }
                    2 | 3 => match c.recv() {
                        Recvd::Value(v, s) => {
                            if let Some(s) = s {
                                parked_senders.retain(|&p| p != s);
                            }
                            out.push(v);
                        }
                        Recvd::Empty => {
                            next_waiter += 1;
                            c.park_receiver(next_waiter);
                            parked_receivers.push(next_waiter);
                        }
                        Recvd::Closed => unreachable!(),
                    },
                    _ => {
                        // Someone leaves early.
                        if let Some(s) = parked_senders.pop() {
                            dropped.push(c.cancel_sender(s).unwrap());
                        } else if let Some(r) = parked_receivers.pop() {
                            assert!(c.cancel_receiver(r));
                        }
                    }
                }
                assert!(c.len() <= cap);
            }
            out.extend(c.drain_values());
            out.extend(dropped);
            out.sort_unstable();
            assert_eq!(out, (0..next_val).collect::<Vec<_>>(), "cap {cap}");
        }
    }

    #[test]
    fn semaphore_hands_permits_in_fifo_order_and_refuses_extra_releases() {
        let mut s = Semaphore::new(1);
        assert_eq!(s.release(), Err(NotHeld), "nothing held");
        assert!(s.try_acquire());
        assert!(!s.try_acquire());
        s.park(1);
        s.park(2);
        s.park(3);
        assert!(s.cancel(2));
        assert_eq!(s.release(), Ok(Some(1)));
        assert_eq!(s.release(), Ok(Some(3)));
        assert_eq!(s.available(), 0);
        assert_eq!(s.release(), Ok(None));
        assert_eq!(s.available(), 1);
        assert_eq!(s.release(), Err(NotHeld));
        assert_eq!(s.available(), 1);
    }

    #[test]
    fn semaphore_waiters_are_not_overtaken() {
        let mut s = Semaphore::new(1);
        assert!(s.try_acquire());
        s.park(1);
        // A release hands the permit to the waiter; a newcomer cannot take it.
        assert_eq!(s.release(), Ok(Some(1)));
        assert!(!s.try_acquire());
    }

    #[test]
    fn waitgroup_wakes_everyone_at_zero_and_refuses_negative_counts() {
        let mut g = WaitGroup::default();
        assert!(!g.must_wait());
        assert_eq!(g.add(-1), Err(BelowZero));
        assert_eq!(g.add(2), Ok(vec![]));
        g.park(1);
        g.park(2);
        g.park(3);
        assert!(g.cancel(2));
        assert_eq!(g.add(-1), Ok(vec![]));
        assert_eq!(g.add(-2), Err(BelowZero));
        assert_eq!(g.count(), 1);
        assert_eq!(g.add(-1), Ok(vec![1, 3]));
        assert!(!g.has_waiters());
        assert_eq!(g.add(i64::MIN), Err(BelowZero));
    }
}
