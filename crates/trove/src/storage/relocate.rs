//! Copying every object of a local store into another store — a bucket — verified
//! (`trove migrate`): whole-file LFS objects go through the target's `put`, which hashes the
//! bytes (SHA-256) while it stages them and publishes only on a match; xorbs are staged,
//! validated as an upload is (every chunk decompressed and hashed, the Merkle root compared
//! with the name) and published. Publishing reads the size back from the bucket.
//!
//! An object the target already holds at the right size is skipped: names are content
//! hashes and publishing is all-or-nothing (a multipart upload is invisible until completed),
//! so a run killed at any instant resumes by listing the source again. A few objects move at
//! once ([`DEFAULT_CONCURRENCY`]); each holds at most one publish's memory.

use futures_util::StreamExt;
use serde::Serialize;
use trove_store::{LocalStore, Sha256Hex, Store, StoreError};
use trove_xet::XetHash;
use trove_xet::xorb::{self, XorbError};

/// Objects copied at once.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// What a run copied and found already there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RelocateReport {
    /// Objects in the source (LFS objects and xorbs).
    pub total: u64,
    pub total_bytes: u64,
    /// Copied and verified by this run.
    pub copied: u64,
    pub copied_bytes: u64,
    /// Already in the target at the right size (an earlier run's).
    pub present: u64,
    pub present_bytes: u64,
}

/// Why an object could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum RelocateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("xorb {hash} of the source is damaged: {error}")]
    Xorb { hash: String, error: XorbError },
    #[error("object {name} vanished from the source while it was copied")]
    Vanished { name: String },
    #[error("xorb {hash}: {found} bytes validated, the source file holds {stored}")]
    XorbSize {
        hash: String,
        found: u64,
        stored: u64,
    },
    #[error(
        "the source store has xorbs moved aside by a garbage collection that stopped midway; start the embedded server once (it puts them back or discards them), stop it, then migrate"
    )]
    TrashLeft,
    #[error("a copy task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

enum Item {
    Object(Sha256Hex, u64),
    Xorb(String, u64),
}

impl Item {
    fn size(&self) -> u64 {
        match self {
            Item::Object(_, n) | Item::Xorb(_, n) => *n,
        }
    }
}

/// Copies every LFS object and xorb of `source` into `target`, `concurrency` at a time,
/// calling `progress` after each. Whole-file objects staged for publishing by the target are
/// removed from its staging once published.
pub async fn copy_store(
    source: &LocalStore,
    target: &Store,
    concurrency: usize,
    mut progress: impl FnMut(&RelocateReport),
) -> Result<RelocateReport, RelocateError> {
    if !source.trashed_xorbs().await?.is_empty() {
        return Err(RelocateError::TrashLeft);
    }
    let mut items: Vec<Item> = source
        .whole_objects()
        .await?
        .into_iter()
        .map(|(oid, size)| Item::Object(oid, size))
        .collect();
    items.extend(
        source
            .stored_xorbs()
            .await?
            .into_iter()
            .map(|(hash, size)| Item::Xorb(hash, size)),
    );
    let mut report = RelocateReport {
        total: items.len() as u64,
        total_bytes: items.iter().map(Item::size).sum(),
        ..RelocateReport::default()
    };
    progress(&report);
    let source = Store::Local(source.clone());
    let mut copies = futures_util::stream::iter(items)
        .map(|item| {
            let (source, target) = (source.clone(), target.clone());
            async move {
                let size = item.size();
                let copied = match item {
                    Item::Object(oid, size) => copy_object(&source, &target, &oid, size).await?,
                    Item::Xorb(hash, size) => copy_xorb(&source, &target, &hash, size).await?,
                };
                Ok::<_, RelocateError>((copied, size))
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(done) = copies.next().await {
        let (copied, size) = done?;
        if copied {
            report.copied += 1;
            report.copied_bytes += size;
        } else {
            report.present += 1;
            report.present_bytes += size;
        }
        progress(&report);
    }
    Ok(report)
}

/// `true` if copied now, `false` if the target held it already.
async fn copy_object(
    source: &Store,
    target: &Store,
    oid: &Sha256Hex,
    size: u64,
) -> Result<bool, RelocateError> {
    if target.size_of(oid).await? == Some(size) {
        return Ok(false);
    }
    let Some((body, _)) = source.open_range(oid, 0, size).await? else {
        return Err(RelocateError::Vanished {
            name: oid.as_str().to_owned(),
        });
    };
    // The target hashes while it stages, and publishes only on a match of hash and size.
    target.put(oid, size, body).await?;
    if target.is_remote() {
        // The staged copy is only a cache for an ingest that will not come.
        target.staging().remove_object(oid).await?;
    }
    tracing::debug!(oid = %oid, size_bytes = size, "migrate.object_copied");
    Ok(true)
}

async fn copy_xorb(
    source: &Store,
    target: &Store,
    hash_hex: &str,
    size: u64,
) -> Result<bool, RelocateError> {
    if target.xorb_size(hash_hex).await? == Some(size) {
        return Ok(false);
    }
    let damaged = |error: XorbError| RelocateError::Xorb {
        hash: hash_hex.to_owned(),
        error,
    };
    let hash = XetHash::parse(hash_hex)
        .map_err(|e| damaged(XorbError::Io(std::io::Error::other(e.to_string()))))?;
    let Some(body) = source.open_xorb_range(hash_hex, 0, size).await? else {
        return Err(RelocateError::Vanished {
            name: hash_hex.to_owned(),
        });
    };
    let staged = target.stage_xorb(body, xorb::MAX_XORB_UPLOAD_BYTES).await?;
    let path = staged.path().to_owned();
    let index = tokio::task::spawn_blocking(move || -> Result<_, XorbError> {
        xorb::validate(std::fs::File::open(&path)?, &hash)
    })
    .await?
    .map_err(damaged)?;
    if index.stored_len() != size {
        return Err(RelocateError::XorbSize {
            hash: hash_hex.to_owned(),
            found: index.stored_len(),
            stored: size,
        });
    }
    target.publish_xorb(staged, hash_hex, size).await?;
    tracing::debug!(xorb = hash_hex, size_bytes = size, "migrate.xorb_copied");
    Ok(true)
}
