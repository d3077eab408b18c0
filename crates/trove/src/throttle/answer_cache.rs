//! Whole answers to downloads given before, kept so that the same request asked again — the
//! same method, target and headers, the same credential — is answered without the router,
//! the caller's and the repository's lookups or the resolve handler (`http::driver::reuse`):
//! a small file's download is then little more than its head parsed and its bytes written.
//!
//! Only what the handler marks [`Reusable`] is kept: an answer made from facts the epochs
//! count (the caller from a token the token cache may keep, or no credential; the
//! repository's row; the revision's commit; an LFS object's facts) and from bytes the
//! resolve cache holds by the id that fixes them (`repos::resolve_cache`). A gated
//! repository's answer is not (whether the gate was passed is asked every time), nor one that
//! counts a download, nor one to a web session or a fine-grained token (read from the
//! database every time). The body is not kept here: the kept answer names the bytes, and a
//! request whose bytes the resolve cache no longer holds goes the whole way, as before.
//!
//! Freshness (see `epoch_cache.rs`): an answer is kept under the sum of the database's three
//! epochs (listing, account, storage) read before the handler's first lookup, and served only
//! while that sum has not moved — every write that could change any fact the answer rests on
//! moves one of them first — within the token cache's time-to-live (`[auth]
//! token_cache_ms`: off by default on PostgreSQL, where another node's writes are not
//! counted), and never past its token's expiry.
//!
//! Bounds: [`MAX_ENTRIES`] answers of at most [`MAX_KEY`] bytes of request and the head's
//! header lines each (a few hundred bytes); when full, all are dropped.

use super::epoch_cache::EpochCache;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use trove_db::Epochs;
use trove_types::{GitOid, Sha256Hex};

/// Answers kept at most.
pub const MAX_ENTRIES: usize = 4096;

/// The longest request key kept (method, target and the headers that matter): a request with
/// more is answered the whole way every time.
pub const MAX_KEY: usize = 2048;

/// Where a kept answer's body is: none (a `HEAD`, a `304`), or bytes `start..end` of a blob
/// or of a small LFS object the resolve cache holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeptBody {
    Empty,
    Blob {
        blob: GitOid,
        start: u64,
        end: u64,
    },
    Lfs {
        oid: Sha256Hex,
        start: u64,
        end: u64,
    },
}

/// The token an answer was given to, whose use is recorded at each reuse too and whose expiry
/// ends the answer's reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenUse {
    pub id: i64,
    pub expires_at_ms: Option<i64>,
}

/// A response extension by which a handler says its answer may be given again to the same
/// request (see the module's comment for when it may say so).
#[derive(Clone, Debug)]
pub struct Reusable {
    /// The database's epochs as read before the answer's first lookup.
    pub epochs: Epochs,
    /// The caller's token; `None` for a request without a credential.
    pub token: Option<TokenUse>,
    /// The signed-in user's name, for the access log.
    pub user: Option<Arc<str>>,
    pub body: KeptBody,
}

/// An answer as kept: what its reuse writes, and for whom.
#[derive(Debug)]
pub struct Kept {
    pub status: http::StatusCode,
    /// The header lines as they go on the wire (`name: value\r\n` each), without those made
    /// for each response (`Date`, `X-Request-Id`, `Connection`).
    pub head: Bytes,
    pub token: Option<TokenUse>,
    pub user: Option<Arc<str>>,
    pub body: KeptBody,
}

/// The cache; one per process (in [`super::AuthRuntime`]).
pub struct AnswerCache {
    kept: EpochCache<Box<[u8]>, Arc<Kept>>,
    /// Answers given again since the start (`/metrics`).
    reused: AtomicU64,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys: they hold credentials.
        f.debug_struct("AnswerCache")
            .field("entries", &self.kept.len())
            .finish()
    }
}

/// One number that moves whenever any of the three epochs does (each only grows).
fn sum(epochs: Epochs) -> u64 {
    epochs
        .listing
        .wrapping_add(epochs.account)
        .wrapping_add(epochs.storage)
}

impl AnswerCache {
    /// A cache whose answers live `ttl`; a zero `ttl` keeps nothing.
    pub fn new(ttl: Duration) -> AnswerCache {
        AnswerCache {
            kept: EpochCache::new(ttl, MAX_ENTRIES),
            reused: AtomicU64::new(0),
        }
    }

    /// Whether anything is ever kept.
    pub fn is_on(&self) -> bool {
        self.kept.is_on()
    }

    /// The answer kept for request `key` if the epochs (`epochs()`, read only when an answer
    /// is kept for `key`; `None`, unknown, serves nothing) have not moved since it was made,
    /// it is within the time-to-live at `now`, and its token has not expired at `now_ms`.
    pub fn get(
        &self,
        key: &[u8],
        epochs: impl FnOnce() -> Option<Epochs>,
        now: Instant,
        now_ms: i64,
    ) -> Option<Arc<Kept>> {
        if !self.kept.contains(key) {
            return None;
        }
        self.kept.get(key, epochs().map(sum), now, |kept| {
            kept.token
                .and_then(|t| t.expires_at_ms)
                .is_none_or(|expires| expires > now_ms)
        })
    }

    /// Keeps the answer `kept` for request `key`, made under `epochs` (read before its first
    /// lookup); nothing is kept for a key over [`MAX_KEY`] bytes, or if a newer epoch has been
    /// seen since. A full cache is emptied first: requests made each unlike the last (a
    /// header that changes every time) cost one sweep per [`MAX_ENTRIES`] answers, not a
    /// search for the oldest at each.
    pub fn put(&self, key: Box<[u8]>, epochs: Epochs, kept: Kept, now: Instant) {
        if key.len() + kept.head.len() > MAX_KEY {
            return;
        }
        if self.kept.len() >= MAX_ENTRIES {
            self.kept.clear();
        }
        self.kept.put(key, Some(sum(epochs)), Arc::new(kept), now);
    }

    /// Counts one answer given again.
    pub fn note_reused(&self) {
        self.reused.fetch_add(1, Ordering::Relaxed);
    }

    /// How many answers were given again since the start.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(listing: u64, account: u64, storage: u64) -> Epochs {
        Epochs {
            listing,
            account,
            storage,
        }
    }

    fn kept(token: Option<TokenUse>) -> Kept {
        Kept {
            status: http::StatusCode::OK,
            head: Bytes::from_static(b"etag: \"x\"\r\n"),
            token,
            user: None,
            body: KeptBody::Empty,
        }
    }

    #[test]
    fn an_answer_is_served_until_any_epoch_moves() {
        let cache = AnswerCache::new(Duration::from_secs(60));
        let now = Instant::now();
        let at = epochs(3, 5, 7);
        cache.put(b"GET /a".to_vec().into(), at, kept(None), now);
        assert!(cache.get(b"GET /a", || Some(at), now, 0).is_some());
        assert!(cache.get(b"GET /b", || Some(at), now, 0).is_none());
        assert!(cache.get(b"GET /a", || None, now, 0).is_none());
        for moved in [epochs(4, 5, 7), epochs(3, 6, 7), epochs(3, 5, 8)] {
            let cache = AnswerCache::new(Duration::from_secs(60));
            cache.put(b"GET /a".to_vec().into(), at, kept(None), now);
            assert!(cache.get(b"GET /a", || Some(moved), now, 0).is_none());
            // Gone for good: the epoch does not come back.
            assert!(cache.is_empty());
        }
    }

    #[test]
    fn an_answer_made_before_a_newer_epoch_was_seen_is_not_kept() {
        let cache = AnswerCache::new(Duration::from_secs(60));
        let now = Instant::now();
        let (old, new) = (epochs(1, 1, 1), epochs(1, 1, 2));
        cache.put(b"GET /a".to_vec().into(), old, kept(None), now);
        assert!(cache.get(b"GET /a", || Some(new), now, 0).is_none());
        cache.put(b"GET /b".to_vec().into(), old, kept(None), now);
        assert!(cache.is_empty());
        // Without an answer for the key, the epochs are not even read.
        assert!(cache.get(b"GET /b", || panic!("read"), now, 0).is_none());
    }

    #[test]
    fn a_token_s_answer_ends_with_the_token() {
        let cache = AnswerCache::new(Duration::from_secs(60));
        let now = Instant::now();
        let at = epochs(1, 1, 1);
        let token = TokenUse {
            id: 9,
            expires_at_ms: Some(1_000),
        };
        cache.put(b"GET /a".to_vec().into(), at, kept(Some(token)), now);
        assert!(cache.get(b"GET /a", || Some(at), now, 999).is_some());
        assert!(cache.get(b"GET /a", || Some(at), now, 1_000).is_none());
    }

    #[test]
    fn nothing_is_kept_without_a_time_to_live_or_past_the_bounds() {
        let off = AnswerCache::new(Duration::ZERO);
        let now = Instant::now();
        let at = epochs(1, 1, 1);
        off.put(b"GET /a".to_vec().into(), at, kept(None), now);
        assert!(!off.is_on() && off.is_empty());

        let cache = AnswerCache::new(Duration::from_secs(60));
        let long = vec![b'a'; MAX_KEY].into_boxed_slice();
        cache.put(long, at, kept(None), now);
        assert!(cache.is_empty());
        for i in 0..MAX_ENTRIES + 10 {
            cache.put(format!("GET /{i}").into_bytes().into(), at, kept(None), now);
        }
        assert_eq!(cache.len(), 10);
    }
}
