//! A bounded, short-lived cache of rendered listing pages (`/api/models`, `/api/datasets`,
//! `/api/spaces`), as the Hub caches its own listings.
//!
//! An answer is a function of the query, of which repositories the caller may see, and of
//! the database; so an entry is keyed by the normalized [`ListQuery`] *with its
//! [`Visibility`]* (derived from the caller on every request, after the token has been
//! checked: a revoked token never reaches the cache, and a membership change changes the
//! key) and by how items are rendered. Two callers share an entry only when they may see
//! exactly the same repositories.
//!
//! Freshness: every write on this node that can change an answer moves the database
//! handle's listing epoch ([`trove_db::Db::listing_epoch`]) once it has committed, and an
//! epoch the cache has not seen empties it. A request reads the epoch before it queries and
//! stores its answer only if the epoch has not moved since, so no answer older than a
//! completed write is kept. What the epoch does not see — download counts (they change on
//! every designated file fetched), writes by another node on the same PostgreSQL or by an
//! admin command — shows once the entry expires, after the configured TTL
//! (`[database] listing_cache_ms`, 2 s by default; 0 turns the cache off).
//!
//! Bounds: [`MAX_ENTRIES`] entries and [`MAX_BYTES`] of bodies; a body above
//! [`MAX_ENTRY_BYTES`] is not kept. When full, expired entries go first, then the oldest.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use trove_db::{Cursor, ListQuery};

/// Entries kept at most.
pub const MAX_ENTRIES: usize = 1024;
/// Bytes of bodies kept at most.
pub const MAX_BYTES: usize = 32 << 20;
/// The largest body kept (a page of 1,000 summaries is about 400 KiB).
pub const MAX_ENTRY_BYTES: usize = 2 << 20;

/// What an answer depends on: the normalized query with the caller's visibility, and how
/// its items are rendered (`view`, chosen by the caller of the cache).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListingKey {
    query: ListQuery,
    view: String,
}

impl ListingKey {
    /// The key of `query` (its visibility already the caller's) rendered as `view`.
    /// Facets and search terms are ANDed, so their order and repetitions do not matter; the
    /// query is normalized so that those spellings share one entry.
    pub fn new(query: &ListQuery, view: String) -> ListingKey {
        ListingKey {
            query: normalized(query),
            view,
        }
    }
}

/// `query` with its facets and search terms sorted and deduplicated (the same answer).
pub fn normalized(query: &ListQuery) -> ListQuery {
    let mut query = query.clone();
    for list in [&mut query.tags, &mut query.search] {
        list.sort();
        list.dedup();
    }
    query
}

/// A rendered page: the JSON body and where the next page starts.
#[derive(Clone, Debug)]
pub struct CachedPage {
    pub body: Bytes,
    pub next: Option<Cursor>,
}

struct Entry {
    page: CachedPage,
    stored: Instant,
}

#[derive(Default)]
struct Inner {
    /// The listing epoch the entries were computed at.
    epoch: u64,
    entries: HashMap<ListingKey, Entry>,
    bytes: usize,
}

impl Inner {
    /// Empties the cache when `epoch` is newer than its entries; whether they are of `epoch`.
    fn catch_up(&mut self, epoch: u64) -> bool {
        if epoch > self.epoch {
            self.entries.clear();
            self.bytes = 0;
            self.epoch = epoch;
        }
        epoch == self.epoch
    }

    fn remove(&mut self, key: &ListingKey) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= old.page.body.len();
        }
    }
}

/// The cache; one per process (see [`crate::context::Context`]).
pub struct ListingCache {
    ttl: Duration,
    inner: Mutex<Inner>,
}

impl ListingCache {
    /// A cache whose entries live `ttl`; a zero `ttl` keeps nothing.
    pub fn new(ttl: Duration) -> ListingCache {
        ListingCache {
            ttl,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves maps that are still consistent enough to
        // clear: start over rather than fail every listing.
        self.inner.lock().unwrap_or_else(|poisoned| {
            let mut inner = poisoned.into_inner();
            inner.entries.clear();
            inner.bytes = 0;
            inner
        })
    }

    /// The page stored for `key`, if it was computed at `epoch` (read just now) and has not
    /// expired.
    pub fn get(&self, key: &ListingKey, epoch: u64) -> Option<CachedPage> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut inner = self.lock();
        if !inner.catch_up(epoch) {
            return None;
        }
        let entry = inner.entries.get(key)?;
        if entry.stored.elapsed() < self.ttl {
            return Some(entry.page.clone());
        }
        inner.remove(key);
        None
    }

    /// Stores `page` for `key` if it was computed from a query that started at `epoch` and
    /// no write has completed since.
    pub fn put(&self, key: ListingKey, epoch: u64, page: CachedPage) {
        let size = page.body.len();
        if self.ttl.is_zero() || size > MAX_ENTRY_BYTES {
            return;
        }
        let mut inner = self.lock();
        if !inner.catch_up(epoch) {
            return;
        }
        inner.remove(&key);
        if inner.entries.len() >= MAX_ENTRIES || inner.bytes + size > MAX_BYTES {
            let ttl = self.ttl;
            inner.entries.retain(|_, e| e.stored.elapsed() < ttl);
            inner.bytes = inner.entries.values().map(|e| e.page.body.len()).sum();
        }
        while inner.entries.len() >= MAX_ENTRIES || inner.bytes + size > MAX_BYTES {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.stored)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => inner.remove(&k),
                None => break,
            }
        }
        inner.bytes += size;
        inner.entries.insert(
            key,
            Entry {
                page,
                stored: Instant::now(),
            },
        );
    }

    /// Entries and body bytes held now (for tests and diagnostics).
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_db::{SortKey, Visibility};
    use trove_types::RepoType;

    fn query(tags: &[&str], visibility: Visibility) -> ListQuery {
        ListQuery {
            repo_type: RepoType::Model,
            gated: None,
            visibility,
            author: None,
            search: Vec::new(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            params_min: None,
            params_max: None,
            only_ids: None,
            sort: SortKey::Likes,
            ascending: false,
            after: None,
            limit: 20,
            documents: false,
        }
    }

    fn page(body: &'static str) -> CachedPage {
        CachedPage {
            body: Bytes::from_static(body.as_bytes()),
            next: None,
        }
    }

    #[test]
    fn facet_order_and_repetition_share_an_entry() {
        let a = ListingKey::new(&query(&["ja", "medical"], Visibility::Public), "s".into());
        let b = ListingKey::new(
            &query(&["medical", "ja", "medical"], Visibility::Public),
            "s".into(),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn viewers_who_see_different_repositories_never_share_an_entry() {
        let cache = ListingCache::new(Duration::from_secs(60));
        let mine = ListingKey::new(
            &query(&["ja"], Visibility::public_and_namespace("acme")),
            "s".into(),
        );
        cache.put(mine.clone(), 0, page("[\"acme/secret\"]"));
        let anonymous = ListingKey::new(&query(&["ja"], Visibility::Public), "s".into());
        let other = ListingKey::new(
            &query(&["ja"], Visibility::public_and_namespace("bo")),
            "s".into(),
        );
        assert!(cache.get(&anonymous, 0).is_none());
        assert!(cache.get(&other, 0).is_none());
        assert!(cache.get(&mine, 0).is_some());
        let other_view = ListingKey::new(
            &query(&["ja"], Visibility::public_and_namespace("acme")),
            "full".into(),
        );
        assert!(cache.get(&other_view, 0).is_none());
    }

    #[test]
    fn a_newer_epoch_empties_the_cache_and_an_older_answer_is_dropped() {
        let cache = ListingCache::new(Duration::from_secs(60));
        let key = ListingKey::new(&query(&[], Visibility::Public), "s".into());
        cache.put(key.clone(), 3, page("[1]"));
        assert!(cache.get(&key, 3).is_some());
        assert!(cache.get(&key, 4).is_none(), "a write completed since");
        assert_eq!(cache.usage(), (0, 0));
        // An answer whose query started before that write is not kept.
        cache.put(key.clone(), 3, page("[1]"));
        assert!(cache.get(&key, 4).is_none());
        cache.put(key.clone(), 4, page("[2]"));
        assert_eq!(
            cache.get(&key, 4).map(|p| p.body),
            Some(Bytes::from_static(b"[2]"))
        );
    }

    #[test]
    fn entries_expire_and_a_zero_ttl_keeps_nothing() {
        let cache = ListingCache::new(Duration::from_millis(20));
        let key = ListingKey::new(&query(&[], Visibility::Public), "s".into());
        cache.put(key.clone(), 0, page("[]"));
        assert!(cache.get(&key, 0).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get(&key, 0).is_none());
        let off = ListingCache::new(Duration::ZERO);
        off.put(key.clone(), 0, page("[]"));
        assert!(off.get(&key, 0).is_none());
        assert_eq!(off.usage(), (0, 0));
    }

    #[test]
    fn entries_and_bytes_stay_bounded() {
        let cache = ListingCache::new(Duration::from_secs(60));
        for i in 0..MAX_ENTRIES + 10 {
            let mut q = query(&[], Visibility::Public);
            q.limit = i as u32 + 1;
            cache.put(ListingKey::new(&q, "s".into()), 0, page("[]"));
        }
        assert_eq!(cache.usage().0, MAX_ENTRIES);
        let big = CachedPage {
            body: Bytes::from(vec![b' '; MAX_ENTRY_BYTES]),
            next: None,
        };
        for i in 0..(MAX_BYTES / MAX_ENTRY_BYTES) + 4 {
            let mut q = query(&["big"], Visibility::Public);
            q.limit = i as u32 + 1;
            cache.put(ListingKey::new(&q, "s".into()), 0, big.clone());
        }
        let (entries, bytes) = cache.usage();
        assert!(bytes <= MAX_BYTES, "{bytes}");
        assert!(entries <= MAX_ENTRIES);
        let too_big = CachedPage {
            body: Bytes::from(vec![b' '; MAX_ENTRY_BYTES + 1]),
            next: None,
        };
        let key = ListingKey::new(&query(&["huge"], Visibility::Public), "s".into());
        cache.put(key.clone(), 0, too_big);
        assert!(cache.get(&key, 0).is_none());
    }
}
