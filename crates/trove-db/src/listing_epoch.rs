//! A counter of the writes on this handle that can change what a listing answers
//! (repositories created, deleted, moved or re-set, their index rows, their likes), so that a
//! cache of listing answers in front of [`Db::list_repos`] can tell a stale entry from a
//! fresh one without asking the database.
//!
//! Every such write method holds a [`Changing`] guard for its whole run; the counter moves
//! when the guard is dropped, that is after the write has committed (or failed). A reader
//! that takes [`Db::listing_epoch`] *before* its query and stores the answer under that value
//! can therefore never keep an answer older than a write whose call has returned.
//!
//! The same counter moves when a repository's refs move ([`Db::moving_refs`], held by the
//! server around every ref write, which happens in git, outside the database), so that a
//! cache of what a revision names is kept under it too.
//!
//! Download counts ([`Db::count_download`]) do not move it: they change on every designated
//! file fetched, and a cache may show them a little late (the Hub's are late too).
//!
//! Other processes: on a SQLite file, every process that opens it (the server, the admin CLI
//! run beside it) moves the counters of a file next to the database as well
//! (`shared_epochs.rs`), and the epochs read here include them: a write by any process is
//! seen at the next read ([`Db::shares_epochs`]). On PostgreSQL another node's writes are not
//! seen; a cache must expire its entries for those.
//!
//! The account epoch is the same kind of counter for what a token resolves to: it moves
//! after every write that can change a token's owner as seen by a request — a token
//! revoked, a user disabled or renamed, a membership granted, changed or withdrawn — so a
//! cache of identified tokens in front of [`Db::token_owner_by_hash`] and
//! [`Db::memberships`] keeps nothing older than such a write on this handle.

use crate::db::Db;
use crate::shared_epochs::{SharedEpochs, Slot};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The three epochs of [`Db::epochs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epochs {
    pub listing: u64,
    pub account: u64,
    pub storage: u64,
}

/// Held by a write method while it runs; moves the epoch (this handle's, then the file's
/// other processes read) when dropped.
pub(crate) struct Changing {
    local: Arc<AtomicU64>,
    shared: Option<(Arc<SharedEpochs>, Slot)>,
}

impl Drop for Changing {
    fn drop(&mut self) {
        self.local.fetch_add(1, Ordering::AcqRel);
        if let Some((file, slot)) = &self.shared {
            file.bump_or_log(*slot);
        }
    }
}

/// See [`Db::moving_refs`]: moves the listing epoch when dropped.
pub struct MovingRefs {
    /// Held for its `Drop` alone.
    _changing: Changing,
}

impl std::fmt::Debug for MovingRefs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MovingRefs")
    }
}

impl Db {
    /// A count of the writes that can change a listing's answer or a repository's row:
    /// those completed on this handle (and its clones), plus, on a SQLite file, those of
    /// every process ([`Db::shares_epochs`]). Read it before querying; an answer is current
    /// while it has not moved. `None` when the shared count could not be read: cache nothing.
    pub fn listing_epoch(&self) -> Option<u64> {
        self.epochs().map(|epochs| epochs.listing)
    }

    /// The guard a write method that can change a listing's answer takes first, so that the
    /// epoch moves once the write is over, whichever way the method returns.
    pub(crate) fn changing_listings(&self) -> Changing {
        self.changing(&self.listing_epoch, Slot::Listings)
    }

    /// The guard held while a repository's refs move outside the database (the commit API,
    /// a branch, tag or pull request ref made or deleted, a merge, a super-squash, a push
    /// through `git receive-pack`, a folder put back): it moves the listing epoch when
    /// dropped, so that a cache of what a revision names, kept under that epoch, keeps
    /// nothing older than a ref move whose call has returned. Drop it after the ref has
    /// moved (or failed to) and before the caller is answered.
    pub fn moving_refs(&self) -> MovingRefs {
        MovingRefs {
            _changing: self.changing_listings(),
        }
    }

    /// The same count as [`Db::listing_epoch`] for the writes that can change what a token
    /// resolves to (its owner, the owner's state and memberships). Read it before resolving
    /// a token; a resolution is current while it has not moved.
    pub fn account_epoch(&self) -> Option<u64> {
        self.epochs().map(|epochs| epochs.account)
    }

    /// The guard of a write method that can change what a token resolves to.
    pub(crate) fn changing_accounts(&self) -> Changing {
        self.changing(&self.account_epoch, Slot::Accounts)
    }

    /// The guard of a write method that can change what [`Db::lfs_download`] answers
    /// ([`Epochs::storage`]).
    pub(crate) fn changing_storage(&self) -> Changing {
        self.changing(&self.storage_epoch, Slot::Storage)
    }

    /// The three epochs read at once (one read of the shared file where two or three
    /// would do): [`Db::listing_epoch`], [`Db::account_epoch`], and the same count for the
    /// writes that can change what [`Db::lfs_download`] answers (an LFS object linked to or
    /// deleted from a repository, a Xet file recorded, repointed by compaction or forgotten).
    pub fn epochs(&self) -> Option<Epochs> {
        // This handle's counts first: a write of this process that completed before the
        // read is counted by one or the other, and both only grow.
        let own = Epochs {
            listing: self.listing_epoch.load(Ordering::Acquire),
            account: self.account_epoch.load(Ordering::Acquire),
            storage: self.storage_epoch.load(Ordering::Acquire),
        };
        let Some(file) = &self.shared_epochs else {
            return Some(own);
        };
        let shared = file.read()?;
        Some(Epochs {
            listing: own.listing.wrapping_add(shared.listings),
            account: own.account.wrapping_add(shared.accounts),
            storage: own.storage.wrapping_add(shared.storage),
        })
    }

    /// Whether the epochs count every process's writes: a SQLite database (a file, shared
    /// through its epochs file, or in memory, which no other process can open). On
    /// PostgreSQL they count this node's writes only.
    pub fn shares_epochs(&self) -> bool {
        matches!(self.pool, crate::backend::Pool::Sqlite(_))
    }

    fn changing(&self, local: &Arc<AtomicU64>, slot: Slot) -> Changing {
        Changing {
            local: Arc::clone(local),
            shared: self
                .shared_epochs
                .as_ref()
                .map(|file| (Arc::clone(file), slot)),
        }
    }
}
