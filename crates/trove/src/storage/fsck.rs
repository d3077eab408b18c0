//! Checking the chunk store (`trove fsck`): every recorded xorb is read back, every chunk
//! decompressed and hashed and the xorb hash recomputed; every Xet file's terms are checked
//! against the xorb indices and its file hash recomputed from the chunk hashes. Files that
//! name a damaged or missing xorb are named, with their SHA-256.
//!
//! Memory: one page of records and the set of damaged xorbs.

use crate::context::Context;
use crate::error::ApiResult;
use crate::repos::rebuild;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use trove_xet::XetHash;
use trove_xet::xorb::{self, XorbError, XorbIndex};

const PAGE: u32 = 200;

#[derive(Debug, Clone, Default, Serialize)]
pub struct FsckReport {
    pub xorbs_checked: u64,
    pub chunks_checked: u64,
    pub files_checked: u64,
    /// Xorbs missing, unreadable, or whose bytes do not match their hash or index.
    pub damaged_xorbs: Vec<Damage>,
    /// Files that cannot be rebuilt as recorded.
    pub damaged_files: Vec<Damage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Damage {
    /// A xorb hash, or for a file its SHA-256.
    pub name: String,
    pub problem: String,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.damaged_xorbs.is_empty() && self.damaged_files.is_empty()
    }
}

pub async fn check(state: &Context) -> ApiResult<FsckReport> {
    check_with_progress(state, &mut |_: &FsckReport| {}).await
}

/// [`check`], calling `progress` after each xorb and each file.
pub async fn check_with_progress(
    state: &Context,
    progress: &mut (dyn FnMut(&FsckReport) + Send),
) -> ApiResult<FsckReport> {
    let mut report = FsckReport::default();
    let mut damaged: HashSet<XetHash> = HashSet::new();
    let mut after = [0u8; 32];
    loop {
        let page = state.db.xorbs_page(&after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for (raw, blob) in page {
            let hash = XetHash::from_bytes(raw);
            report.xorbs_checked += 1;
            let store = (*state.store).clone();
            let checked = tokio::task::spawn_blocking(move || -> Result<XorbIndex, XorbError> {
                xorb::validate(open_xorb(&store, &hash)?, &hash)
            })
            .await?;
            let problem = match (checked, XorbIndex::decode(&blob)) {
                (Ok(found), Ok(recorded)) if found == recorded => {
                    report.chunks_checked += u64::from(found.num_chunks());
                    progress(&report);
                    continue;
                }
                (Ok(_), Ok(_)) => "its chunks differ from the recorded index".to_owned(),
                (Ok(_), Err(e)) => format!("recorded index: {e}"),
                (Err(e), _) => e.to_string(),
            };
            damaged.insert(hash);
            report.damaged_xorbs.push(Damage {
                name: hash.hex(),
                problem,
            });
        }
    }

    let mut after = [0u8; 32];
    loop {
        let page = state.db.xet_files_page(&after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.file_hash;
        for file in page {
            report.files_checked += 1;
            if let Some(problem) = check_file(state, &file, &damaged).await? {
                report.damaged_files.push(Damage {
                    name: file.sha256.as_str().to_owned(),
                    problem,
                });
            }
            progress(&report);
        }
    }
    Ok(report)
}

/// What is wrong with one file, if anything.
async fn check_file(
    state: &Context,
    file: &trove_db::XetFile,
    damaged: &HashSet<XetHash>,
) -> ApiResult<Option<String>> {
    let terms = match rebuild::file_terms(file) {
        Ok(t) => t,
        Err(_) => return Ok(Some("its recorded terms are corrupt".into())),
    };
    if let Some(t) = terms.iter().find(|t| damaged.contains(&t.xorb)) {
        return Ok(Some(format!("names damaged xorb {}", t.xorb)));
    }
    let xorbs: HashMap<XetHash, XorbIndex> = match rebuild::load_indices(state, &terms).await {
        Ok(x) => x,
        Err(_) => return Ok(Some("a xorb index it needs is unreadable".into())),
    };
    let mut chunks = Vec::new();
    for t in &terms {
        let Some(index) = xorbs.get(&t.xorb) else {
            return Ok(Some(format!("names unrecorded xorb {}", t.xorb)));
        };
        if t.chunk_start >= t.chunk_end || t.chunk_end > index.num_chunks() {
            return Ok(Some(format!("term out of range in xorb {}", t.xorb)));
        }
        for i in t.chunk_start..t.chunk_end {
            chunks.push((index.chunks[i as usize].hash, index.chunk_raw_len(i)));
        }
    }
    let size: u64 = chunks.iter().map(|c| c.1).sum();
    if size != file.size {
        return Ok(Some(format!(
            "rebuilds {size} bytes, recorded {}",
            file.size
        )));
    }
    if trove_xet::hash::file_hash(&chunks).to_bytes() != file.file_hash {
        return Ok(Some("its chunks do not hash to its file hash".into()));
    }
    Ok(None)
}

/// Xorb `hash` from its start as a blocking reader (call from the blocking pool); a missing
/// one is `NotFound`, as opening its file was.
pub(crate) fn open_xorb(
    store: &trove_store::Store,
    hash: &XetHash,
) -> std::io::Result<Box<dyn std::io::Read + Send>> {
    store
        .open_xorb_at(&hash.hex(), 0)
        .map_err(std::io::Error::other)?
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("xorb {hash} is not stored"),
            )
        })
}
