//! A bounded, short-lived cache of what a token resolves to — its owner, the owner's
//! memberships and the token's limits — so that a signed-in request does not look the token
//! up and list the memberships (two queries) every time.
//!
//! Keyed by the token's SHA-256 (the secret itself is never kept). Only tokens that were
//! found are kept: an unknown or revoked token always reaches the database, and fails there.
//! Fine-grained tokens are not kept either: their scopes name repositories, which move and
//! go away under writes this cache does not follow.
//!
//! Freshness (see `epoch_cache.rs`): every write that can change a resolution — a token
//! revoked, a user disabled or renamed, a membership granted, changed or withdrawn — moves
//! the database's account epoch ([`trove_db::Db::account_epoch`]) after it has committed,
//! and an epoch the cache has not seen empties it. On a SQLite database that epoch counts
//! the writes of every process on the file (the admin CLI's `trove token revoke` included),
//! so such a write takes effect for the very next request, and the cache is on by default
//! ([`crate::config::AuthConfig::token_cache_ttl`]). On PostgreSQL it counts this node's
//! writes only: another node's take effect once the entry expires, after `[auth]
//! token_cache_ms`, which is off (0) there unless the operator sets it. A token's own expiry
//! time is checked on every hit.
//!
//! Bounds: [`MAX_ENTRIES`] entries; when full, expired entries go first, then the oldest.

use super::epoch_cache::EpochCache;
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

/// The cache; one per process (in [`super::AuthRuntime`]).
#[derive(Debug)]
pub struct TokenCache(EpochCache<Vec<u8>, Resolved>);

impl TokenCache {
    /// A cache whose entries live `ttl`; a zero `ttl` keeps nothing.
    pub fn new(ttl: Duration) -> TokenCache {
        TokenCache(EpochCache::new(ttl, MAX_ENTRIES))
    }

    /// The resolution of the token with hash `token_hash`, if one was kept at `epoch` (the
    /// current account epoch; `None`: unknown), within the TTL, and the token has not
    /// expired at `now_ms`.
    pub fn get(
        &self,
        token_hash: &[u8],
        epoch: Option<u64>,
        now: Instant,
        now_ms: i64,
    ) -> Option<Resolved> {
        self.0.get(token_hash, epoch, now, |resolved| {
            resolved
                .token
                .expires_at_ms
                .is_none_or(|expires| expires > now_ms)
        })
    }

    /// Keeps `resolved`, found in the database after the account epoch was read as `epoch`;
    /// nothing is kept if the epoch has moved since (a write may have raced the lookup), or
    /// for a fine-grained token.
    pub fn put(&self, token_hash: &[u8], epoch: Option<u64>, resolved: Resolved, now: Instant) {
        if resolved.token.role == TokenRole::FineGrained {
            return;
        }
        self.0.put(token_hash.to_vec(), epoch, resolved, now);
    }

    /// How many resolutions are kept (tests).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
        cache.put(b"h1", Some(0), resolved(1, TokenRole::Read, None), t0);
        assert_eq!(
            cache.get(b"h1", Some(0), t0, 0).map(|r| r.token.id),
            Some(1)
        );
        assert!(cache.get(b"h2", Some(0), t0, 0).is_none(), "another token");
        assert!(
            cache
                .get(b"h1", Some(0), t0 + Duration::from_secs(1), 0)
                .is_none(),
            "expired after the TTL"
        );

        cache.put(b"h1", Some(0), resolved(1, TokenRole::Read, None), t0);
        assert!(
            cache.get(b"h1", Some(1), t0, 0).is_none(),
            "a write moved the epoch"
        );
        assert!(cache.is_empty(), "and emptied the cache");
        // A lookup that began before the write finished must not be kept.
        cache.put(b"h1", Some(0), resolved(1, TokenRole::Read, None), t0);
        assert!(cache.is_empty());
    }

    #[test]
    fn expired_fine_grained_and_disabled_entries_are_not_served() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let now = Instant::now();
        cache.put(
            b"exp",
            Some(0),
            resolved(1, TokenRole::Write, Some(1_000)),
            now,
        );
        assert!(cache.get(b"exp", Some(0), now, 999).is_some());
        assert!(
            cache.get(b"exp", Some(0), now, 1_000).is_none(),
            "token expired"
        );
        cache.put(
            b"fg",
            Some(0),
            resolved(2, TokenRole::FineGrained, None),
            now,
        );
        assert!(
            cache.get(b"fg", Some(0), now, 0).is_none(),
            "fine-grained not kept"
        );

        let off = TokenCache::new(Duration::ZERO);
        off.put(b"h", Some(0), resolved(3, TokenRole::Read, None), now);
        assert!(
            off.get(b"h", Some(0), now, 0).is_none(),
            "a zero TTL keeps nothing"
        );
    }
}
