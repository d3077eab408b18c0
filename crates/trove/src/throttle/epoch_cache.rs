//! A bounded map of answers read from the database, each kept until a write could have
//! changed it: the shape of the token cache (`token_cache.rs`) and the repository row cache
//! (`repos/row_cache.rs`).
//!
//! Freshness rests on an epoch the database handle counts ([`trove_db::Db::listing_epoch`],
//! [`trove_db::Db::account_epoch`]): it moves after every write that can change the answers
//! kept. A reader reads the epoch *before* its query and offers the answer under that value;
//! the cache keeps it only if the epoch has not moved since (otherwise a write may have
//! raced the query), and a newer epoch seen by any reader empties the cache. An answer
//! served is therefore never older than a write whose call returned before the request read
//! the epoch. Entries also expire after a time-to-live: the bound for writes the epoch does
//! not count (another node's on a shared PostgreSQL). A zero time-to-live keeps nothing.
//!
//! Bounds: `max` entries; when full, expired entries go first, then the oldest.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Entry<V> {
    value: V,
    stored: Instant,
}

struct Inner<K, V> {
    /// The epoch the entries were read at.
    epoch: u64,
    entries: HashMap<K, Entry<V>>,
}

impl<K, V> Inner<K, V> {
    /// Empties the map when `epoch` is newer than its entries; whether they are of `epoch`.
    fn catch_up(&mut self, epoch: u64) -> bool {
        if epoch > self.epoch {
            self.entries.clear();
            self.epoch = epoch;
        }
        epoch == self.epoch
    }
}

/// The cache (see the module's comment).
pub struct EpochCache<K, V> {
    ttl: Duration,
    max: usize,
    inner: Mutex<Inner<K, V>>,
}

impl<K, V> std::fmt::Debug for EpochCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the entries: they may hold users and token names.
        f.debug_struct("EpochCache")
            .field("ttl", &self.ttl)
            .field("max", &self.max)
            .field(
                "entries",
                &self.inner.lock().map_or(0, |inner| inner.entries.len()),
            )
            .finish()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> EpochCache<K, V> {
    /// A cache of at most `max` entries living `ttl` each.
    pub fn new(ttl: Duration, max: usize) -> EpochCache<K, V> {
        EpochCache {
            ttl,
            max,
            inner: Mutex::new(Inner {
                epoch: 0,
                entries: HashMap::new(),
            }),
        }
    }

    /// Whether anything is ever kept (a non-zero time-to-live).
    pub fn is_on(&self) -> bool {
        !self.ttl.is_zero() && self.max > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        // Every operation leaves the map consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value kept for `key` at `epoch` (read just now; `None`: unknown, nothing is
    /// served) within the time-to-live at `now`, if `usable` accepts it; an entry it refuses
    /// or that expired is dropped.
    pub fn get<Q>(
        &self,
        key: &Q,
        epoch: Option<u64>,
        now: Instant,
        usable: impl FnOnce(&V) -> bool,
    ) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let epoch = epoch.filter(|_| self.is_on())?;
        let mut inner = self.lock();
        if !inner.catch_up(epoch) {
            return None;
        }
        let entry = inner.entries.get(key)?;
        if now.saturating_duration_since(entry.stored) < self.ttl && usable(&entry.value) {
            Some(entry.value.clone())
        } else {
            inner.entries.remove(key);
            None
        }
    }

    /// Keeps `value`, read from the database after the epoch was read as `epoch`; nothing
    /// is kept if the epoch has moved since (a write may have raced the read) or was unknown.
    pub fn put(&self, key: K, epoch: Option<u64>, value: V, now: Instant) {
        let Some(epoch) = epoch.filter(|_| self.is_on()) else {
            return;
        };
        let mut inner = self.lock();
        if !inner.catch_up(epoch) {
            return;
        }
        if inner.entries.len() >= self.max && !inner.entries.contains_key(&key) {
            let ttl = self.ttl;
            inner
                .entries
                .retain(|_, e| now.saturating_duration_since(e.stored) < ttl);
            if inner.entries.len() >= self.max
                && let Some(oldest) = inner
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.stored)
                    .map(|(k, _)| k.clone())
            {
                inner.entries.remove(&oldest);
            }
        }
        inner.entries.insert(key, Entry { value, stored: now });
    }

    /// How many values are kept.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a value is kept for `key`, fresh or not: a look before the epoch is read.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().entries.contains_key(key)
    }

    /// Drops every value.
    pub fn clear(&self) {
        self.lock().entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_value_lives_until_the_epoch_moves_or_the_ttl_passes() {
        let cache = EpochCache::new(Duration::from_secs(1), 8);
        let t0 = Instant::now();
        let any = |_: &u32| true;
        cache.put("a", Some(0), 1u32, t0);
        assert_eq!(cache.get(&"a", Some(0), t0, any), Some(1));
        assert_eq!(cache.get(&"b", Some(0), t0, any), None, "another key");
        assert_eq!(
            cache.get(&"a", Some(0), t0 + Duration::from_secs(1), any),
            None,
            "expired after the TTL"
        );

        cache.put("a", Some(0), 1, t0);
        assert_eq!(cache.get(&"a", Some(1), t0, any), None, "a write moved it");
        assert!(cache.is_empty(), "and emptied the cache");
        // A read that began before the write finished is not kept.
        cache.put("a", Some(0), 1, t0);
        assert!(cache.is_empty());
        // Nor one whose epoch could not be read, and nothing is served without one.
        cache.put("a", None, 1, t0);
        assert!(cache.is_empty());
        cache.put("a", Some(1), 1, t0);
        assert_eq!(cache.get(&"a", None, t0, any), None);
        assert_eq!(cache.get(&"a", Some(1), t0, any), Some(1));
    }

    #[test]
    fn a_value_refused_by_the_caller_is_dropped_and_a_zero_ttl_keeps_nothing() {
        let cache = EpochCache::new(Duration::from_secs(60), 8);
        let now = Instant::now();
        cache.put(1, Some(0), "expired", now);
        assert_eq!(cache.get(&1, Some(0), now, |_| false), None);
        assert!(cache.is_empty());

        let off = EpochCache::new(Duration::ZERO, 8);
        off.put(1, Some(0), "x", now);
        assert!(off.is_empty());
        assert!(!off.is_on());
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_oldest_first() {
        let cache = EpochCache::new(Duration::from_secs(60), 16);
        let t0 = Instant::now();
        for i in 0..26u64 {
            cache.put(i, Some(0), i, t0 + Duration::from_millis(i));
        }
        assert_eq!(cache.len(), 16);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(cache.get(&25, Some(0), later, |_| true), Some(25));
        assert_eq!(cache.get(&0, Some(0), later, |_| true), None);
    }
}
