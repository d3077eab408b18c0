//! What an LFS download needs to know of its object ([`trove_db::Db::lfs_download`]: whether
//! the repository's owners deleted it, the Xet file holding its bytes), kept so that a
//! download of a small LFS file does not read it every time.
//!
//! Keyed by the repository's id and the object's SHA-256. Freshness (see `epoch_cache.rs`):
//! the epoch is the sum of the database's storage epoch (an object linked to or deleted from
//! a repository, a Xet file recorded, repointed by compaction or forgotten by garbage
//! collection) and its listing epoch (a repository deleted: its id may be used again). On
//! SQLite both count every process's writes; on PostgreSQL another node's are seen within
//! the time-to-live, the token cache's (`[auth] token_cache_ms`, off there by default).
//!
//! Only answers whose Xet terms are small are kept ([`MAX_TERMS_BYTES`]: a file of a few
//! xorbs): the cache is for the many small files, and a very large file's terms would make
//! its entries large for a lookup its transfer dwarfs.

use super::epoch_cache::EpochCache;
use std::time::{Duration, Instant};
use trove_db::{Db, Epochs, LfsDownload};
use trove_types::Sha256Hex;

/// Answers kept at most.
pub const MAX_ENTRIES: usize = 4096;

/// The largest Xet terms an answer kept may carry, in bytes.
pub const MAX_TERMS_BYTES: usize = 4096;

/// The cache; one per process (in [`super::AuthRuntime`]).
#[derive(Debug)]
pub struct LfsDownloadCache(EpochCache<(i64, Sha256Hex), LfsDownload>);

impl LfsDownloadCache {
    /// A cache whose answers live `ttl`; a zero `ttl` keeps nothing.
    pub fn new(ttl: Duration) -> LfsDownloadCache {
        LfsDownloadCache(EpochCache::new(ttl, MAX_ENTRIES))
    }

    /// [`Db::lfs_download`] from the cache, or from the database (and then kept). `epochs`
    /// must have been read ([`Db::epochs`]) before this call: an answer is kept only if no
    /// write completed in between; `None` reads them now.
    pub async fn lfs_download(
        &self,
        db: &Db,
        repo_id: i64,
        oid: &Sha256Hex,
        epochs: Option<Epochs>,
    ) -> trove_db::Result<LfsDownload> {
        if !self.0.is_on() {
            return db.lfs_download(repo_id, oid).await;
        }
        let epoch = epochs
            .or_else(|| db.epochs())
            .map(|epochs| epochs.storage.wrapping_add(epochs.listing));
        let key = (repo_id, oid.clone());
        let now = Instant::now();
        if let Some(known) = self.0.get(&key, epoch, now, |_| true) {
            return Ok(known);
        }
        let known = db.lfs_download(repo_id, oid).await?;
        let small = known
            .xet
            .as_ref()
            .is_none_or(|file| file.terms.len() <= MAX_TERMS_BYTES);
        if small {
            self.0.put(key, epoch, known.clone(), now);
        }
        Ok(known)
    }

    /// How many answers are kept (tests).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
