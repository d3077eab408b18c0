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
//! Download counts ([`Db::count_download`]) do not move it: they change on every designated
//! file fetched, and a cache may show them a little late (the Hub's are late too). Writes by
//! another process or another node on the same database are not seen either; a cache must
//! expire its entries for those.
//!
//! The account epoch is the same kind of counter for what a token resolves to: it moves
//! after every write that can change a token's owner as seen by a request — a token
//! revoked, a user disabled or renamed, a membership granted, changed or withdrawn — so a
//! cache of identified tokens in front of [`Db::token_owner_by_hash`] and
//! [`Db::memberships`] keeps nothing older than such a write on this handle.

use crate::db::Db;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Held by a write method while it runs; moves the epoch when dropped.
pub(crate) struct Changing(Arc<AtomicU64>);

impl Drop for Changing {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

impl Db {
    /// How many writes that can change a listing's answer have completed on this handle (and
    /// its clones). Read it before querying; an answer is current while it has not moved.
    pub fn listing_epoch(&self) -> u64 {
        self.listing_epoch.load(Ordering::Acquire)
    }

    /// The guard a write method that can change a listing's answer takes first, so that the
    /// epoch moves once the write is over, whichever way the method returns.
    pub(crate) fn changing_listings(&self) -> Changing {
        Changing(Arc::clone(&self.listing_epoch))
    }

    /// How many writes that can change what a token resolves to (its owner, the owner's
    /// state and memberships) have completed on this handle. Read it before resolving a
    /// token; a resolution is current while it has not moved.
    pub fn account_epoch(&self) -> u64 {
        self.account_epoch.load(Ordering::Acquire)
    }

    /// The guard of a write method that can change what a token resolves to.
    pub(crate) fn changing_accounts(&self) -> Changing {
        Changing(Arc::clone(&self.account_epoch))
    }
}
