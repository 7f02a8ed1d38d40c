//! The plain-Rust data structures under the scheduler: a slab of waits whose
//! ids carry a generation (so a completion for a wait that already ended is
//! recognised and ignored), and an indexed min-heap of deadlines keyed by slab
//! slot (so a timeout is armed and disarmed in O(log n) with no allocation and
//! no libuv timer per wait). No Lua, no libuv: unit-tested here.

/// Names one wait for as long as it lasts. A stale id (the wait ended, the
/// slot was reused) never matches again: generations only grow.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct WaitId {
    idx: u32,
    gen: u32,
}

impl WaitId {
    pub fn slot(self) -> u32 {
        self.idx
    }

    /// The id as one number (for the ABI's wait tokens): the bits of the
    /// generation and the slot, inverted so that it is never 0 (that would
    /// take slot `u32::MAX`, and four billion waits at once).
    pub fn to_bits(self) -> u64 {
        !((self.gen as u64) << 32 | self.idx as u64)
    }

    /// The id [`WaitId::to_bits`] gave (`None` for 0).
    pub fn from_bits(bits: u64) -> Option<WaitId> {
        if bits == 0 {
            return None;
        }
        let v = !bits;
        Some(WaitId { idx: v as u32, gen: (v >> 32) as u32 })
    }
}

struct Slot<T> {
    gen: u32,
    val: Option<T>,
}

/// Values addressed by [`WaitId`]; freed slots are reused, with a new generation.
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { slots: Vec::new(), free: Vec::new(), len: 0 }
    }
}

impl<T> Slab<T> {
    pub fn insert(&mut self, val: T) -> WaitId {
        self.len += 1;
        if let Some(idx) = self.free.pop() {
            let s = &mut self.slots[idx as usize];
            s.val = Some(val);
            return WaitId { idx, gen: s.gen };
        }
        let idx = self.slots.len() as u32;
        self.slots.push(Slot { gen: 0, val: Some(val) });
        WaitId { idx, gen: 0 }
    }

    pub fn get(&self, id: WaitId) -> Option<&T> {
        self.slots.get(id.idx as usize).filter(|s| s.gen == id.gen).and_then(|s| s.val.as_ref())
    }

    pub fn get_mut(&mut self, id: WaitId) -> Option<&mut T> {
        self.slots.get_mut(id.idx as usize).filter(|s| s.gen == id.gen).and_then(|s| s.val.as_mut())
    }

    /// Ends the wait: its id goes stale.
    pub fn remove(&mut self, id: WaitId) -> Option<T> {
        let s = self.slots.get_mut(id.idx as usize).filter(|s| s.gen == id.gen)?;
        let val = s.val.take()?;
        s.gen = s.gen.wrapping_add(1);
        self.free.push(id.idx);
        self.len -= 1;
        Some(val)
    }

    /// The live id in slot `idx`, if any.
    pub fn id_at(&self, idx: u32) -> Option<WaitId> {
        self.slots.get(idx as usize).filter(|s| s.val.is_some()).map(|s| WaitId { idx, gen: s.gen })
    }

    pub fn ids(&self) -> Vec<WaitId> {
        (0..self.slots.len() as u32).filter_map(|i| self.id_at(i)).collect()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

const NONE: u32 = u32::MAX;

/// A min-heap of `(deadline, arrival order)` keyed by slab slot, with removal
/// by key. Equal deadlines come out in the order they were pushed.
#[derive(Default)]
pub struct DeadlineHeap {
    heap: Vec<(u64, u64, u32)>,
    /// Position in `heap` of each key, or `NONE`.
    pos: Vec<u32>,
    seq: u64,
}

impl DeadlineHeap {
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn contains(&self, key: u32) -> bool {
        self.pos.get(key as usize).is_some_and(|&p| p != NONE)
    }

    /// Adds `key` with `deadline` (replacing an earlier entry of the same key).
    pub fn push(&mut self, key: u32, deadline: u64) {
        self.remove(key);
        if self.pos.len() <= key as usize {
            self.pos.resize(key as usize + 1, NONE);
        }
        self.seq += 1;
        let i = self.heap.len();
        self.heap.push((deadline, self.seq, key));
        self.pos[key as usize] = i as u32;
        self.up(i);
    }

    pub fn remove(&mut self, key: u32) -> bool {
        let Some(&p) = self.pos.get(key as usize) else { return false };
        if p == NONE {
            return false;
        }
        let i = p as usize;
        let last = self.heap.len() - 1;
        self.swap(i, last);
        self.heap.pop();
        self.pos[key as usize] = NONE;
        if i < self.heap.len() {
            self.down(i);
            self.up(i);
        }
        true
    }

    /// The earliest `(deadline, key)`.
    pub fn peek(&self) -> Option<(u64, u32)> {
        self.heap.first().map(|&(d, _, k)| (d, k))
    }

    /// Removes and returns the earliest key whose deadline is `<= now`.
    pub fn pop_due(&mut self, now: u64) -> Option<u32> {
        let (d, k) = self.peek()?;
        if d > now {
            return None;
        }
        self.remove(k);
        Some(k)
    }

    fn less(&self, a: usize, b: usize) -> bool {
        let (x, y) = (&self.heap[a], &self.heap[b]);
        (x.0, x.1) < (y.0, y.1)
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].2 as usize] = a as u32;
        self.pos[self.heap[b].2 as usize] = b as u32;
    }

    fn up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.less(i, parent) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < self.heap.len() && self.less(l, m) {
                m = l;
            }
            if r < self.heap.len() && self.less(r, m) {
                m = r;
            }
            if m == i {
                break;
            }
            self.swap(i, m);
            i = m;
        }
    }
}

/// The longest time limit, in ms: 2^53 (about 285 years).
pub const MAX_MS: u64 = 1 << 53;

/// Converts a Lua time argument in milliseconds to whole milliseconds:
/// `Err` for negative, NaN, infinite and huge (beyond [`MAX_MS`]) values.
pub fn millis(ms: f64) -> Result<u64, &'static str> {
    if ms.is_nan() || ms < 0.0 {
        return Err("must be a number >= 0");
    }
    if ms.is_infinite() {
        return Err("must be finite");
    }
    if ms > MAX_MS as f64 {
        return Err("must be at most 2^53 ms (about 285 years)");
    }
    Ok(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_the_trip_through_a_token() {
        let mut slab: Slab<u8> = Slab::default();
        let a = slab.insert(1);
        slab.remove(a);
        let b = slab.insert(2); // same slot, next generation
        for id in [a, b] {
            let bits = id.to_bits();
            assert_ne!(bits, 0);
            assert_eq!(WaitId::from_bits(bits), Some(id));
        }
        assert_ne!(a.to_bits(), b.to_bits());
        assert_eq!(WaitId::from_bits(0), None);
        let big = WaitId { idx: 123_456, gen: u32::MAX };
        assert_eq!(WaitId::from_bits(big.to_bits()), Some(big));
    }

    #[test]
    fn stale_ids_never_match() {
        let mut s = Slab::default();
        let a = s.insert("a");
        assert_eq!(s.remove(a), Some("a"));
        let b = s.insert("b");
        assert_eq!(a.slot(), b.slot(), "slot reused");
        assert_eq!(s.get(a), None);
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.len(), 1);
        assert_eq!(s.ids(), vec![b]);
        assert_eq!(s.id_at(b.slot()), Some(b));
    }

    #[test]
    fn heap_orders_by_deadline_then_arrival_and_removes_by_key() {
        let mut h = DeadlineHeap::default();
        for (key, d) in [(0, 30), (1, 10), (2, 20), (3, 10), (4, 5), (5, 40)] {
            h.push(key, d);
        }
        assert!(h.remove(2));
        assert!(!h.remove(2));
        assert!(!h.contains(2));
        h.push(5, 1); // re-push replaces
        assert_eq!(h.len(), 5);
        let mut order = vec![];
        while let Some(k) = h.pop_due(u64::MAX) {
            order.push(k);
        }
        assert_eq!(order, vec![5, 4, 1, 3, 0]);
        assert!(h.is_empty());
    }

    #[test]
    fn pop_due_stops_at_now() {
        let mut h = DeadlineHeap::default();
        h.push(7, 100);
        h.push(8, 50);
        assert_eq!(h.pop_due(49), None);
        assert_eq!(h.pop_due(50), Some(8));
        assert_eq!(h.pop_due(99), None);
        assert_eq!(h.peek(), Some((100, 7)));
    }

    #[test]
    fn heap_stays_consistent_under_random_pushes_and_removals() {
        let mut h = DeadlineHeap::default();
        let mut model: std::collections::BTreeMap<u32, u64> = Default::default();
        let mut x: u64 = 12345;
        for _ in 0..20000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (x % 64) as u32;
            if x % 3 == 0 {
                assert_eq!(h.remove(key), model.remove(&key).is_some());
            } else {
                let d = (x >> 8) % 1000;
                h.push(key, d);
                model.insert(key, d);
            }
            let min = model.values().min().copied();
            assert_eq!(h.peek().map(|p| p.0), min);
        }
    }

    #[test]
    fn millis_rejects_bad_times() {
        assert!(millis(-1.0).is_err());
        assert!(millis(f64::NAN).is_err());
        assert!(millis(f64::INFINITY).is_err());
        assert_eq!(millis(1.9), Ok(1));
        assert_eq!(millis(MAX_MS as f64), Ok(MAX_MS));
        assert!(millis(1e300).is_err());
    }
}
