//! A bounded, short-lived cache of what a token resolves to — its owner, the owner's
//! memberships and the token's limits — so that a signed-in request does not look the token
//! up and list the memberships (two queries) every time.
//!
//! Keyed by the token's SHA-256 (the secret itself is never kept). Only tokens that were
//! found are kept: an unknown or revoked token always reaches the database, and fails there.
//! Fine-grained tokens are not kept either: their scopes name repositories, which move and
//! go away under writes this cache does not follow.
//!
//! Freshness: every write on this node that can change a resolution — a token revoked, a
//! user disabled or renamed, a membership granted, changed or withdrawn — moves the
//! database handle's account epoch ([`trove_db::Db::account_epoch`]) after it has committed,
//! and an epoch the cache has not seen empties it. A request reads the epoch before it
//! queries and keeps its resolution only if the epoch has not moved since. So on this node
//! such a write takes effect for the very next request. What the epoch does not see — the
//! same writes made by another node on a shared PostgreSQL, or by an admin command run in
//! another process — takes effect once the entry expires, after the configured TTL
//! (`[auth] token_cache_ms`; [`crate::config::DEFAULT_TOKEN_CACHE_MS`], off, by default, so
//! that `trove token revoke` holds for the next request; an operator turns it on for
//! signed-in request rates). A token's own expiry time is checked on every hit.
//!
//! Bounds: [`MAX_ENTRIES`] entries; when full, expired entries go first, then the oldest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use trove_db::{Membership, Token, TokenRole, User};

/// Entries kept at most (a few hundred bytes each).
pub const MAX_ENTRIES: usize = 4096;

/// A resolved token: everything a request's `Caller` is made of.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub token: Token,
    pub user: User,
    pub orgs: Vec<Membership>,
}

struct Entry {
    resolved: Resolved,
    stored: Instant,
}

#[derive(Default)]
struct Inner {
    /// The account epoch the entries were resolved at.
    epoch: u64,
    entries: HashMap<Vec<u8>, Entry>,
}

impl Inner {
    /// Empties the cache when `epoch` is newer than its entries; whether they are of `epoch`.
    fn catch_up(&mut self, epoch: u64) -> bool {
        if epoch > self.epoch {
            self.entries.clear();
            self.epoch = epoch;
        }
        epoch == self.epoch
    }
}

/// The cache; one per process (in [`super::AuthRuntime`]).
pub struct TokenCache {
    ttl: Duration,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the entries: they hold users and token names.
        f.debug_struct("TokenCache")
            .field("ttl", &self.ttl)
            .field("entries", &self.len())
            .finish()
    }
}

impl TokenCache {
    /// A cache whose entries live `ttl`; a zero `ttl` keeps nothing.
    pub fn new(ttl: Duration) -> TokenCache {
        TokenCache {
            ttl,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every operation leaves the map consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The resolution of the token with hash `token_hash`, if one was kept at `epoch` (the
    /// current account epoch), within the TTL, and the token has not expired at `now_ms`.
    pub fn get(
        &self,
        token_hash: &[u8],
        epoch: u64,
        now: Instant,
        now_ms: i64,
    ) -> Option<Resolved> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut inner = self.lock();
        if !inner.catch_up(epoch) {
            return None;
        }
        let entry = inner.entries.get(token_hash)?;
        let fresh = now.saturating_duration_since(entry.stored) < self.ttl
            && entry
                .resolved
                .token
                .expires_at_ms
                .is_none_or(|expires| expires > now_ms);
        if fresh {
            Some(entry.resolved.clone())
        } else {
            inner.entries.remove(token_hash);
            None
        }
    }

    /// Keeps `resolved`, found in the database after the account epoch was read as `epoch`;
    /// nothing is kept if the epoch has moved since (a write may have raced the lookup), or
    /// for a fine-grained token.
    pub fn put(&self, token_hash: &[u8], epoch: u64, resolved: Resolved, now: Instant) {
        if self.ttl.is_zero() || resolved.token.role == TokenRole::FineGrained {
            return;
        }
        let mut inner = self.lock();
        if !inner.catch_up(epoch) {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES && !inner.entries.contains_key(token_hash) {
            let ttl = self.ttl;
            inner
                .entries
                .retain(|_, e| now.saturating_duration_since(e.stored) < ttl);
            if inner.entries.len() >= MAX_ENTRIES
                && let Some(oldest) = inner
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.stored)
                    .map(|(k, _)| k.clone())
            {
                inner.entries.remove(&oldest);
            }
        }
        inner.entries.insert(
            token_hash.to_vec(),
            Entry {
                resolved,
                stored: now,
            },
        );
    }

    /// How many resolutions are kept (tests).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(id: i64, role: TokenRole, expires_at_ms: Option<i64>) -> Resolved {
        Resolved {
            token: Token {
                id,
                user_id: 1,
                name: format!("t{id}"),
                role,
                created_at_ms: 0,
                last_used_at_ms: None,
                expires_at_ms,
                scopes: Vec::new(),
            },
            user: User {
                id: 1,
                name: "alice".into(),
                email: None,
                is_admin: false,
                disabled: false,
                created_at_ms: 0,
                fullname: None,
            },
            orgs: Vec::new(),
        }
    }

    #[test]
    fn a_kept_resolution_lives_until_the_epoch_moves_or_the_ttl_passes() {
        let cache = TokenCache::new(Duration::from_secs(1));
        let t0 = Instant::now();
        cache.put(b"h1", 0, resolved(1, TokenRole::Read, None), t0);
        assert_eq!(cache.get(b"h1", 0, t0, 0).map(|r| r.token.id), Some(1));
        assert!(cache.get(b"h2", 0, t0, 0).is_none(), "another token");
        assert!(
            cache
                .get(b"h1", 0, t0 + Duration::from_secs(1), 0)
                .is_none(),
            "expired after the TTL"
        );

        cache.put(b"h1", 0, resolved(1, TokenRole::Read, None), t0);
        assert!(
            cache.get(b"h1", 1, t0, 0).is_none(),
            "a write moved the epoch"
        );
        assert!(cache.is_empty(), "and emptied the cache");
        // A lookup that began before the write finished must not be kept.
        cache.put(b"h1", 0, resolved(1, TokenRole::Read, None), t0);
        assert!(cache.is_empty());
    }

    #[test]
    fn expired_fine_grained_and_disabled_entries_are_not_served() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let now = Instant::now();
        cache.put(b"exp", 0, resolved(1, TokenRole::Write, Some(1_000)), now);
        assert!(cache.get(b"exp", 0, now, 999).is_some());
        assert!(cache.get(b"exp", 0, now, 1_000).is_none(), "token expired");
        cache.put(b"fg", 0, resolved(2, TokenRole::FineGrained, None), now);
        assert!(
            cache.get(b"fg", 0, now, 0).is_none(),
            "fine-grained not kept"
        );

        let off = TokenCache::new(Duration::ZERO);
        off.put(b"h", 0, resolved(3, TokenRole::Read, None), now);
        assert!(
            off.get(b"h", 0, now, 0).is_none(),
            "a zero TTL keeps nothing"
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(MAX_ENTRIES as i64 + 10) {
            let at = t0 + Duration::from_millis(i as u64);
            cache.put(&i.to_be_bytes(), 0, resolved(i, TokenRole::Read, None), at);
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        let last = MAX_ENTRIES as i64 + 9;
        let later = t0 + Duration::from_secs(1);
        assert!(
            cache.get(&last.to_be_bytes(), 0, later, 0).is_some(),
            "newest kept"
        );
        assert!(
            cache.get(&0i64.to_be_bytes(), 0, later, 0).is_none(),
            "oldest gone"
        );
    }
}
