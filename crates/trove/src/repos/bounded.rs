//! A map of at most a fixed number of entries, least recently added first out: what the
//! web's caches of immutable things keep (a folder's last commits by commit, a dataset
//! preview by blob), shared by threads.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

pub(crate) struct Bounded<K, V> {
    cap: usize,
    inner: Mutex<(HashMap<K, V>, VecDeque<K>)>,
}

impl<K: Hash + Eq + Clone, V: Clone> Bounded<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        Bounded {
            cap,
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        // Every operation leaves the map consistent, so a poisoned lock is still usable.
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0.get(key).cloned()
    }

    pub(crate) fn put(&self, key: K, value: V) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.0.insert(key.clone(), value).is_none() {
            inner.1.push_back(key);
        }
        while inner.1.len() > self.cap {
            if let Some(old) = inner.1.pop_front() {
                inner.0.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn the_oldest_entry_goes_first_and_a_replaced_value_keeps_its_place() {
        let map = Bounded::new(2);
        map.put("a", 1);
        map.put("b", 2);
        map.put("a", 10);
        assert_eq!((map.get(&"a"), map.get(&"b")), (Some(10), Some(2)));
        map.put("c", 3);
        assert_eq!(map.get(&"a"), None, "added first, out first");
        assert_eq!((map.get(&"b"), map.get(&"c")), (Some(2), Some(3)));
    }
}
