//! What a download's revision names (`main` → its commit), kept so that a download of a
//! file read before reads no ref from the repository's folder — with the resolve cache
//! (`repos::resolve_cache`, files by commit and path), such a download touches no git file.
//!
//! Keyed by the repository's id, its row's creation time (a repository made again under a
//! used id is another one) and the revision as asked. Only revisions resolved through the
//! refs or naming a whole commit id are kept; an abbreviated id is not (a new object with
//! the same prefix can make it ambiguous without moving a ref).
//!
//! Freshness (see `epoch_cache.rs`): the epoch is the database's listing epoch, which moves
//! after every ref move the server makes (`repos::write_git`: the commit API, branches,
//! tags, pull request refs, merges, super-squash; a push through receive-pack once git has
//! exited, before the push is answered; a duplicate's copied history; a folder put back) and
//! every repository created, deleted or moved. On SQLite it counts every process's writes;
//! on PostgreSQL another node's ref moves are seen within the time-to-live, the token
//! cache's (`[auth] token_cache_ms`, off there by default). A ref moved by hand in the
//! folder (`git update-ref` run by an operator) is seen within the time-to-live too, and
//! so is a folder removed or replaced by hand, unless a download needs to read from it
//! first (a file not in the resolve cache), which finds it as before (`trove_git::KeptRepos`).

use super::epoch_cache::EpochCache;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};
use trove_db::Epochs;
use trove_types::GitOid;

/// Revisions kept at most (under a hundred bytes each).
pub const MAX_ENTRIES: usize = 8192;

/// Repository id, row creation time, and the hash of the revision (its text is in the
/// value and compared at each lookup, so that a lookup needs no copy of it).
type Key = (i64, i64, u64);

/// The cache; one per process (in [`super::AuthRuntime`]).
#[derive(Debug)]
pub struct RevisionCache {
    kept: EpochCache<Key, (Box<str>, GitOid)>,
    /// Keyed with a random key per process, so that nobody can aim revisions at one slot.
    hasher: std::collections::hash_map::RandomState,
}

impl RevisionCache {
    /// A cache whose answers live `ttl`; a zero `ttl` keeps nothing.
    pub fn new(ttl: Duration) -> RevisionCache {
        RevisionCache {
            kept: EpochCache::new(ttl, MAX_ENTRIES),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn key(&self, repo_id: i64, generation: i64, revision: &str) -> Key {
        (repo_id, generation, self.hasher.hash_one(revision))
    }

    /// The commit `revision` named in repository `repo_id` (of row creation time
    /// `generation`) when it was last resolved, if no ref moved since `epochs` — read
    /// ([`trove_db::Db::epochs`]) before this call — and within the time-to-live.
    pub fn get(
        &self,
        repo_id: i64,
        generation: i64,
        revision: &str,
        epochs: Option<Epochs>,
    ) -> Option<GitOid> {
        if !self.kept.is_on() {
            return None;
        }
        let key = self.key(repo_id, generation, revision);
        self.kept
            .get(&key, epoch(epochs), Instant::now(), |(kept, _)| {
                **kept == *revision
            })
            .map(|(_, commit)| commit)
    }

    /// Keeps `commit` as what `revision` names, resolved from the refs after `epochs` were
    /// read; an abbreviated commit id is not kept.
    pub fn put(
        &self,
        repo_id: i64,
        generation: i64,
        revision: &str,
        epochs: Option<Epochs>,
        commit: &GitOid,
    ) {
        if !self.kept.is_on() || !is_kept(revision) {
            return;
        }
        let key = self.key(repo_id, generation, revision);
        self.kept.put(
            key,
            epoch(epochs),
            (revision.into(), commit.clone()),
            Instant::now(),
        );
    }

    /// How many revisions are kept (tests).
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

fn epoch(epochs: Option<Epochs>) -> Option<u64> {
    epochs.map(|epochs| epochs.listing)
}

/// Whether what `revision` resolves to is decided by refs alone: a whole commit id, or a
/// name that cannot be an abbreviated one (see `trove_git::GitRepo::resolve_revision`).
fn is_kept(revision: &str) -> bool {
    let could_be_short_id = (trove_git::MIN_SHORT_ID..40).contains(&revision.len())
        && revision
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    !could_be_short_id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> GitOid {
        GitOid::parse(&format!("{n:02x}").repeat(20)).expect("40 hex digits")
    }

    fn epochs(listing: u64) -> Option<Epochs> {
        Some(Epochs {
            listing,
            account: 0,
            storage: 0,
        })
    }

    #[test]
    fn a_revision_is_kept_per_repository_and_generation_until_a_ref_moves() {
        let cache = RevisionCache::new(Duration::from_secs(60));
        cache.put(1, 10, "main", epochs(5), &oid(1));
        assert_eq!(cache.get(1, 10, "main", epochs(5)), Some(oid(1)));
        assert_eq!(cache.get(1, 10, "dev", epochs(5)), None, "another revision");
        assert_eq!(
            cache.get(2, 10, "main", epochs(5)),
            None,
            "another repository"
        );
        assert_eq!(
            cache.get(1, 11, "main", epochs(5)),
            None,
            "a repository made anew"
        );
        assert_eq!(cache.get(1, 10, "main", None), None, "epochs unknown");
        // A ref moved (the epoch with it): gone, and an answer read before is not kept.
        assert_eq!(cache.get(1, 10, "main", epochs(6)), None);
        cache.put(1, 10, "main", epochs(5), &oid(1));
        assert!(cache.is_empty(), "an answer older than the move is refused");
    }

    #[test]
    fn abbreviated_ids_are_never_kept_whole_ids_and_names_are() {
        let cache = RevisionCache::new(Duration::from_secs(60));
        let whole = oid(7).to_string();
        for revision in [
            "abc1234",
            &whole[..39],
            "main",
            "refs/pr/1",
            "v1.0",
            &whole,
            "abc12",
        ] {
            cache.put(1, 1, revision, epochs(1), &oid(7));
        }
        assert_eq!(cache.get(1, 1, "abc1234", epochs(1)), None);
        assert_eq!(cache.get(1, 1, &whole[..39], epochs(1)), None);
        for kept in ["main", "refs/pr/1", "v1.0", &whole, "abc12"] {
            assert_eq!(cache.get(1, 1, kept, epochs(1)), Some(oid(7)), "{kept}");
        }
    }

    #[test]
    fn a_zero_time_to_live_keeps_nothing() {
        let cache = RevisionCache::new(Duration::ZERO);
        cache.put(1, 1, "main", epochs(1), &oid(1));
        assert_eq!(cache.get(1, 1, "main", epochs(1)), None);
        assert!(cache.is_empty());
    }
}
