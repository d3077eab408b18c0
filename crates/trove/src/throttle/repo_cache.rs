//! Repository rows found by name, kept so that a request for a repository's files does not
//! read its row (one SQLite read transaction, the larger part of a small download's own
//! work) every time.
//!
//! Keyed by the repository's type and its name as asked, ASCII case folded (lookups ignore
//! it). Only rows found under the very name asked are kept: a name that is missing or that a
//! repository moved away from always reaches the database.
//!
//! Freshness (see `epoch_cache.rs`): the epoch is the sum of the database's listing
//! epoch (repositories created, deleted, moved, re-set — private, gated, discussions,
//! inference — or pushed to: every write of a `repos` row moves it) and its account epoch
//! (users and memberships: a deleted owner is a row changed by the database itself). On
//! SQLite both count every process's writes, so a repository made private by the admin CLI
//! is private for the very next request; on PostgreSQL another node's writes are seen
//! within the time-to-live, which is the token cache's (`[auth] token_cache_ms`, off there by
//! default).

use super::epoch_cache::EpochCache;
use std::time::{Duration, Instant};
#[cfg(doc)]
use trove_db::Db;
use trove_db::{Epochs, Repo};
use trove_types::{RepoId, RepoType};

/// Rows kept at most (a few hundred bytes each).
pub const MAX_ENTRIES: usize = 4096;

type Key = (RepoType, String, String);

fn key(repo_type: RepoType, id: &RepoId) -> Key {
    (
        repo_type,
        id.namespace.as_str().to_ascii_lowercase(),
        id.name.as_str().to_ascii_lowercase(),
    )
}

/// The cache; one per process (in [`super::AuthRuntime`]).
#[derive(Debug)]
pub struct RepoRowCache(EpochCache<Key, Repo>);

impl RepoRowCache {
    /// A cache whose rows live `ttl`; a zero `ttl` keeps nothing.
    pub fn new(ttl: Duration) -> RepoRowCache {
        RepoRowCache(EpochCache::new(ttl, MAX_ENTRIES))
    }

    /// The epoch of this cache in `epochs` ([`Db::epochs`], read before looking a row up;
    /// `None`: unknown, use no cache).
    pub fn epoch(epochs: Option<Epochs>) -> Option<u64> {
        epochs.map(|epochs| epochs.listing.wrapping_add(epochs.account))
    }

    /// The row of `repo_type` `id` kept at `epoch` within the time-to-live.
    pub fn get(
        &self,
        repo_type: RepoType,
        id: &RepoId,
        epoch: Option<u64>,
        now: Instant,
    ) -> Option<Repo> {
        if !self.0.is_on() {
            return None;
        }
        self.0.get(&key(repo_type, id), epoch, now, |_| true)
    }

    /// Keeps `row`, found under `id` after the epoch was read as `epoch`.
    pub fn put(
        &self,
        repo_type: RepoType,
        id: &RepoId,
        epoch: Option<u64>,
        row: Repo,
        now: Instant,
    ) {
        if !self.0.is_on() {
            return;
        }
        self.0.put(key(repo_type, id), epoch, row, now);
    }

    /// How many rows are kept (tests).
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
    use trove_db::Gating;
    use trove_types::RepoName;

    fn row(id: i64) -> Repo {
        Repo {
            id,
            repo_type: RepoType::Model,
            namespace: "Alice".into(),
            name: "Bert".into(),
            private: false,
            owner_user_id: Some(1),
            created_at_ms: 0,
            updated_at_ms: 0,
            gated: Gating::Off,
            discussions_disabled: false,
            inference_disabled: false,
        }
    }

    fn id(ns: &str, name: &str) -> RepoId {
        RepoId::new(
            RepoName::parse_namespace(ns).expect("namespace"),
            RepoName::parse(name).expect("name"),
        )
    }

    #[test]
    fn a_row_is_found_under_any_case_of_its_name_and_its_type_only() {
        let cache = RepoRowCache::new(Duration::from_secs(60));
        let now = Instant::now();
        cache.put(RepoType::Model, &id("Alice", "Bert"), Some(3), row(7), now);
        let found = cache.get(RepoType::Model, &id("alice", "BERT"), Some(3), now);
        assert_eq!(found.map(|r| r.id), Some(7));
        assert!(
            cache
                .get(RepoType::Dataset, &id("alice", "bert"), Some(3), now)
                .is_none()
        );
        assert!(
            cache
                .get(RepoType::Model, &id("alice", "bert"), Some(4), now)
                .is_none(),
            "a write moved the epoch"
        );
        let off = RepoRowCache::new(Duration::ZERO);
        off.put(RepoType::Model, &id("alice", "bert"), Some(3), row(7), now);
        assert!(off.is_empty());
    }
}
