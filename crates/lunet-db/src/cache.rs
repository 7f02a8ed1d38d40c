//! The prepared-statement cache every driver keeps per connection: a map
//! from a key (the SQL text, and for Postgres the declared parameter types)
//! to the driver's prepared statement, bounded by a capacity with
//! least-recently-used eviction, counting its hits, misses and evictions.
//!
//! Pure data: the driver prepares on a miss, inserts, and frees what
//! [`StatementCache::insert`] evicts (a server-side `DEALLOCATE`,
//! `mysql_stmt_close`, or just a drop). Recency is a per-use tick; finding
//! the least recent entry scans the map, which only happens on a miss with
//! the cache full — next to the prepare that follows, a scan of a few dozen
//! entries costs nothing.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a statement cache, as `conn:stats()` and `pool:stats()`
/// report them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Statements cached now.
    pub size: u64,
    pub capacity: u64,
    /// Lookups that found a prepared statement.
    pub hits: u64,
    /// Lookups that did not (the statement was then prepared).
    pub misses: u64,
    /// Statements dropped to make room.
    pub evictions: u64,
}

struct Entry<V> {
    value: V,
    used: u64,
}

/// A bounded map with least-recently-used eviction and counters.
pub struct StatementCache<K, V> {
    map: HashMap<K, Entry<V>>,
    capacity: usize,
    tick: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
}

impl<K: Hash + Eq, V> StatementCache<K, V> {
    /// A cache holding at most `capacity` statements (0 caches nothing).
    pub fn new(capacity: usize) -> Self {
        StatementCache { map: HashMap::new(), capacity, tick: 0, hits: 0, misses: 0, evictions: 0 }
    }

    /// Looks `key` up, counting a hit or a miss, and marks it used.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.tick += 1;
        match self.map.get_mut(key) {
            Some(e) => {
                self.hits += 1;
                e.used = self.tick;
                Some(&mut e.value)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Looks `key` up without counting or marking it (a driver checking
    /// what it could pipeline).
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|e| &e.value)
    }

    /// [`StatementCache::peek`] for changing the value.
    pub fn peek_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_mut(key).map(|e| &mut e.value)
    }

    /// Whether a new entry would evict one.
    pub fn is_full(&self) -> bool {
        self.map.len() >= self.capacity
    }

    /// Takes out the least recently used entry (to make room before a
    /// prepare that needs the slot, e.g. a server-side statement name).
    pub fn evict(&mut self) -> Option<(K, V)>
    where
        K: Clone,
    {
        let oldest = self.map.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone())?;
        self.evictions += 1;
        self.map.remove(&oldest).map(|e| (oldest, e.value))
    }

    /// Caches `value` under `key` as the most recently used, replacing any
    /// entry with that key. Returns what had to go: the replaced value, or
    /// the least recently used entry when the cache was full. With capacity
    /// 0 the value itself is given back.
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)>
    where
        K: Clone,
    {
        if self.capacity == 0 {
            return Some((key, value));
        }
        self.tick += 1;
        if let Some(e) = self.map.get_mut(&key) {
            let old = std::mem::replace(&mut e.value, value);
            e.used = self.tick;
            return Some((key, old));
        }
        let evicted = if self.map.len() >= self.capacity { self.evict() } else { None };
        self.map.insert(key, Entry { value, used: self.tick });
        evicted
    }

    /// Takes `key` out (a statement that went stale).
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(key).map(|e| e.value)
    }

    /// Empties the cache, handing back every statement (to free them).
    pub fn drain(&mut self) -> Vec<V> {
        self.map.drain().map(|(_, e)| e.value).collect()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            size: self.map.len() as u64,
            capacity: self.capacity as u64,
            hits: self.hits,
            misses: self.misses,
            evictions: self.evictions,
        }
    }
}

/// A connection's cache counters, copied by the thread running statements
/// and read on the loop thread without the connection's lock.
#[derive(Default)]
pub(crate) struct SharedStats {
    size: AtomicU64,
    capacity: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl SharedStats {
    pub fn store(&self, s: CacheStats) {
        self.size.store(s.size, Ordering::Relaxed);
        self.capacity.store(s.capacity, Ordering::Relaxed);
        self.hits.store(s.hits, Ordering::Relaxed);
        self.misses.store(s.misses, Ordering::Relaxed);
        self.evictions.store(s.evictions, Ordering::Relaxed);
    }

    pub fn load(&self) -> CacheStats {
        CacheStats {
            size: self.size.load(Ordering::Relaxed),
            capacity: self.capacity.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_and_misses_are_counted_and_peek_counts_nothing() {
        let mut c: StatementCache<Vec<u8>, u32> = StatementCache::new(4);
        assert!(c.get(b"a".as_slice()).is_none());
        assert_eq!(c.insert(b"a".to_vec(), 1), None);
        assert_eq!(c.get(b"a".as_slice()), Some(&mut 1));
        assert_eq!(c.peek(b"a".as_slice()), Some(&1));
        assert_eq!(c.peek(b"b".as_slice()), None);
        assert_eq!(c.stats(), CacheStats { size: 1, capacity: 4, hits: 1, misses: 1, evictions: 0 });
    }

    #[test]
    fn the_least_recently_used_entry_is_evicted() {
        let mut c: StatementCache<u32, &str> = StatementCache::new(3);
        c.insert(1, "one");
        c.insert(2, "two");
        c.insert(3, "three");
        c.get(&1); // 2 is now the oldest
        assert_eq!(c.insert(4, "four"), Some((2, "two")));
        assert!(c.peek(&2).is_none() && c.peek(&1).is_some());
        c.get(&3);
        c.get(&1);
        assert_eq!(c.insert(5, "five"), Some((4, "four")));
        assert_eq!(c.len(), 3);
        assert_eq!(c.stats().evictions, 2);
    }

    #[test]
    fn replacing_a_key_gives_the_old_value_back_without_evicting() {
        let mut c: StatementCache<u32, u32> = StatementCache::new(2);
        c.insert(1, 10);
        c.insert(2, 20);
        assert_eq!(c.insert(1, 11), Some((1, 10)));
        assert_eq!(c.len(), 2);
        assert_eq!(c.stats().evictions, 0);
        // 1 was refreshed by the replacement: 2 goes next.
        assert_eq!(c.insert(3, 30), Some((2, 20)));
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let mut c: StatementCache<u32, u32> = StatementCache::new(0);
        assert!(c.is_full());
        assert_eq!(c.insert(1, 10), Some((1, 10)));
        assert!(c.is_empty());
        assert!(c.evict().is_none());
    }

    #[test]
    fn remove_evict_and_drain_empty_it() {
        let mut c: StatementCache<u32, u32> = StatementCache::new(8);
        for i in 0..5 {
            c.insert(i, i * 10);
        }
        assert_eq!(c.remove(&3), Some(30));
        assert_eq!(c.remove(&3), None);
        assert_eq!(c.evict(), Some((0, 0)));
        let mut rest = c.drain();
        rest.sort();
        assert_eq!(rest, vec![10, 20, 40]);
        assert!(c.is_empty());
        // Counters survive a drain (they describe the connection's life).
        assert_eq!(c.stats().evictions, 1);
    }

    #[test]
    fn a_long_run_stays_within_its_bound() {
        let mut c: StatementCache<u64, u64> = StatementCache::new(16);
        let mut evicted = 0;
        for i in 0..10_000u64 {
            let k = (i * 7919) % 40;
            if c.get(&k).is_none() && c.insert(k, i).is_some() {
                evicted += 1;
            }
            assert!(c.len() <= 16);
        }
        let s = c.stats();
        assert_eq!(s.hits + s.misses, 10_000);
        assert_eq!(s.evictions, evicted);
        assert_eq!(s.size, 16);
    }
}
