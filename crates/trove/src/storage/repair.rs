//! `trove fsck --repair-index`: the derived indices rebuilt from what they derive from. The
//! chunk index (`xet_chunks`, what dedup looks chunks up in) from each recorded xorb's chunk
//! list; xorb records from the xorb files on disk that no record names (each validated
//! against its hash first, recorded as new so the grace period protects it); and which
//! xorbs each file names (`xet_file_xorbs`, what GC's sweep asks) from the file's terms.
//! Only inserts, never deletes: safe while the server serves, and a second run adds nothing.
//! File records themselves live only in the database (shards are not kept), so a lost
//! file record is not rebuilt here; fsck names it.

use crate::clock::now_ms;
use crate::context::Context;
use crate::error::ApiResult;
use crate::repos::rebuild;
use serde::Serialize;
use trove_db::XorbRecord;
use trove_xet::XetHash;
use trove_xet::xorb::{self, XorbError, XorbIndex};

const PAGE: u32 = 200;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    pub xorbs_seen: u64,
    /// Chunk-index entries put back.
    pub chunks_reindexed: u64,
    /// Xorb files on disk that had no record and now have one.
    pub xorbs_recorded: u64,
    /// Xorb files on disk that no record names and that do not match their name.
    pub xorbs_invalid: Vec<String>,
    pub files_seen: u64,
    /// File-to-xorb rows put back.
    pub file_links_restored: u64,
    /// Files whose terms cannot be decoded.
    pub files_corrupt: Vec<String>,
}

/// Rebuilds the indices; `progress` is called after each xorb and each file.
pub async fn repair_index(
    state: &Context,
    progress: &mut (dyn FnMut(&RepairReport) + Send),
) -> ApiResult<RepairReport> {
    let mut report = RepairReport::default();

    // 1. Xorb files on disk that no record names.
    for (hex, _) in state.store.stored_xorbs().await? {
        let Ok(hash) = XetHash::parse(&hex) else {
            continue;
        };
        if state
            .db
            .xorb_stored_bytes(&hash.to_bytes())
            .await?
            .is_some()
        {
            continue;
        }
        let store = (*state.store).clone();
        let checked = tokio::task::spawn_blocking(move || -> Result<XorbIndex, XorbError> {
            xorb::validate(super::fsck::open_xorb(&store, &hash)?, &hash)
        })
        .await?;
        match checked {
            Ok(index) => {
                let chunks: Vec<[u8; 32]> =
                    index.chunks.iter().map(|c| c.hash.to_bytes()).collect();
                let record = XorbRecord {
                    stored_bytes: index.stored_len(),
                    raw_bytes: index.raw_len(),
                    num_chunks: index.num_chunks(),
                    chunk_index: index.encode(),
                };
                if state
                    .db
                    .record_xorb(&hash.to_bytes(), &record, &chunks, now_ms())
                    .await?
                {
                    report.xorbs_recorded += 1;
                }
            }
            Err(e) => report.xorbs_invalid.push(format!("{hex}: {e}")),
        }
        progress(&report);
    }

    // 2. The chunk index, from every recorded xorb whose file is there.
    let mut after = [0u8; 32];
    loop {
        let page = state.db.xorbs_page(&after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for (raw, blob) in page {
            report.xorbs_seen += 1;
            let hash = XetHash::from_bytes(raw);
            // A record whose bytes are gone (or whose index is corrupt) is fsck's to name;
            // indexing its chunks would point dedup at bytes nobody can read.
            let Ok(index) = XorbIndex::decode(&blob) else {
                continue;
            };
            if !state.store.has_xorb(&hash.hex()).await? {
                continue;
            }
            let chunks: Vec<[u8; 32]> = index.chunks.iter().map(|c| c.hash.to_bytes()).collect();
            report.chunks_reindexed += state.db.reindex_xorb_chunks(&raw, &chunks).await?;
            progress(&report);
        }
    }

    // 3. Which xorbs each file names.
    let mut after = [0u8; 32];
    loop {
        let page = state.db.xet_files_page(&after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.file_hash;
        for file in page {
            report.files_seen += 1;
            let Ok(terms) = rebuild::file_terms(&file) else {
                report.files_corrupt.push(file.sha256.as_str().to_owned());
                continue;
            };
            let mut xorbs: Vec<[u8; 32]> = terms.iter().map(|t| t.xorb.to_bytes()).collect();
            xorbs.sort_unstable();
            xorbs.dedup();
            report.file_links_restored +=
                state.db.reindex_file_xorbs(&file.file_hash, &xorbs).await?;
            progress(&report);
        }
    }
    tracing::info!(
        chunks_reindexed = report.chunks_reindexed,
        xorbs_recorded = report.xorbs_recorded,
        file_links_restored = report.file_links_restored,
        "storage.index_repaired"
    );
    Ok(report)
}
