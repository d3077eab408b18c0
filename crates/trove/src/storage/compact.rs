//! Compaction of mostly-dead xorbs, a step of garbage collection.
//!
//! A xorb some file still names, but whose chunks the files need add up to less than
//! `[storage] compact_below` of its bytes, has its live chunks rewritten into a new
//! server-built xorb (the packer LFS ingestion uses: same format, same compression choice).
//! In order: the new xorb is made durable; one transaction records it, moves the live
//! chunks' index entries and every file's terms to it, and marks the old xorb released; the
//! old xorb, now unreferenced, is swept like any other once the grace period has passed
//! since its release — clients holding shards that name it still read it meanwhile. A crash
//! before the transaction leaves the new xorb stored but unrecorded: every file still reads
//! the old one, and the next run builds the same xorb again (same chunks, same hash).

use crate::clock::now_ms;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use crate::repos::ingest::{write_xorb, xorb_record};
use std::io::BufReader;
use trove_db::Compaction;
use trove_xet::XetHash;
use trove_xet::shard::{self, Term};
use trove_xet::xorb::{XorbIndex, read_chunk};

/// What compacting one xorb did (or, in a dry run, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Stored bytes of the new xorb (in a dry run: of the live chunks as stored now).
    pub bytes_rewritten: u64,
    /// Stored bytes of the old xorb, freed when the sweep removes it.
    pub bytes_to_free: u64,
}

/// Which chunks of a xorb of `num_chunks` chunks the terms need (those naming `xorb`).
/// `None` if a term names a chunk the xorb does not have.
fn live_chunks(xorb: &XetHash, num_chunks: usize, terms: &[Term]) -> Option<Vec<bool>> {
    let mut live = vec![false; num_chunks];
    for t in terms.iter().filter(|t| t.xorb == *xorb) {
        let range = live.get_mut(t.chunk_start as usize..t.chunk_end as usize)?;
        range.fill(true);
    }
    Some(live)
}

/// Each chunk's index in the compacted xorb (`None` for a dead chunk).
fn new_indices(live: &[bool]) -> Vec<Option<u32>> {
    let mut next = 0u32;
    live.iter()
        .map(|&l| {
            l.then(|| {
                next += 1;
                next - 1
            })
        })
        .collect()
}

/// `terms` with every term naming `old` moved to `new`. `None` if a term spans a dead chunk.
fn repoint(terms: &[Term], old: &XetHash, new: &XetHash, map: &[Option<u32>]) -> Option<Vec<Term>> {
    terms
        .iter()
        .map(|t| {
            if t.xorb != *old {
                return Some(*t);
            }
            let first = (*map.get(t.chunk_start as usize)?)?;
            let last = (*map.get(t.chunk_end.checked_sub(1)? as usize)?)?;
            Some(Term {
                xorb: *new,
                chunk_start: first,
                chunk_end: last + 1,
                unpacked_len: t.unpacked_len,
            })
        })
        .collect()
}

/// Compacts xorb `hash` if its live bytes are below `below` of its raw bytes. Returns what
/// was done, or `None` when it is live enough, gone, or a file was recorded meanwhile.
pub async fn compact_xorb(
    state: &Context,
    hash: &[u8; 32],
    below: f64,
    dry_run: bool,
) -> ApiResult<Option<Compacted>> {
    let old = XetHash::from_bytes(*hash);
    let Some(encoded) = state.db.xorb_indices(&[*hash]).await?.remove(hash) else {
        return Ok(None);
    };
    // Damaged records are fsck's to report; compaction leaves such a xorb alone.
    let Ok(index) = XorbIndex::decode(&encoded) else {
        tracing::warn!(xorb = %old.hex(), "gc.compact_skipped_bad_index");
        return Ok(None);
    };
    let files = state.db.files_naming_xorb(hash).await?;
    let mut decoded = Vec::with_capacity(files.len());
    let mut live = vec![false; index.chunks.len()];
    for (file, terms) in &files {
        let Some(needed) = shard::decode_terms(terms)
            .and_then(|terms| live_chunks(&old, index.chunks.len(), &terms).zip(Some(terms)))
        else {
            tracing::warn!(xorb = %old.hex(), file = %hex(file), "gc.compact_skipped_bad_terms");
            return Ok(None);
        };
        let (needed, terms) = needed;
        live.iter_mut().zip(needed).for_each(|(l, n)| *l |= n);
        decoded.push((*file, terms));
    }
    let (mut live_raw, mut live_stored) = (0u64, 0u64);
    let (mut raw_start, mut stored_start) = (0u64, 0u64);
    for (c, &l) in index.chunks.iter().zip(&live) {
        if l {
            live_raw += u64::from(c.raw_end) - raw_start;
            live_stored += u64::from(c.stored_end) - stored_start;
        }
        (raw_start, stored_start) = (u64::from(c.raw_end), u64::from(c.stored_end));
    }
    let total = index.raw_len();
    if live_raw == 0 || (live_raw as f64) >= below * (total as f64) || live_raw == total {
        return Ok(None);
    }
    let bytes_to_free = index.stored_len();
    if dry_run {
        return Ok(Some(Compacted {
            bytes_rewritten: live_stored,
            bytes_to_free,
        }));
    }
    if !state.store.has_xorb(&old.hex()).await? {
        tracing::warn!(xorb = %old.hex(), "gc.compact_skipped_missing_xorb");
        return Ok(None);
    }

    let store = (*state.store).clone();
    let (old_hex, chunks, keep) = (old.hex(), index.chunks.clone(), live.clone());
    let written = write_xorb(state, move |packer| {
        let file = store
            .open_xorb_at(&old_hex, 0)?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("xorb {old_hex} vanished")))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut buf = Vec::new();
        for (i, (c, &l)) in chunks.iter().zip(&keep).enumerate() {
            if read_chunk(&mut reader, i, &mut buf)
                .map_err(ApiError::internal)?
                .is_none()
            {
                return Err(ApiError::internal(anyhow::anyhow!(
                    "xorb {old_hex} ends at chunk {i}"
                )));
            }
            if l && packer.push(&buf).map_err(ApiError::internal)? != c.hash {
                return Err(ApiError::internal(anyhow::anyhow!(
                    "xorb {old_hex}: chunk {i} does not match its hash"
                )));
            }
        }
        Ok(())
    })
    .await?;
    let (new, new_index) = (written.xorb, written.index);

    let map = new_indices(&live);
    let mut rewritten = Vec::with_capacity(decoded.len());
    for (file, terms) in &decoded {
        let terms = repoint(terms, &old, &new, &map).ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("file {} spans a dead chunk", hex(file)))
        })?;
        rewritten.push((*file, shard::encode_terms(&terms)));
    }
    let moved: Vec<([u8; 32], u32)> = index
        .chunks
        .iter()
        .zip(&map)
        .filter_map(|(c, m)| m.map(|m| (c.hash.to_bytes(), m)))
        .collect();
    let (record, _) = xorb_record(&new_index);
    let done = state
        .db
        .compact_xorb(&Compaction {
            old: *hash,
            new: new.to_bytes(),
            record: &record,
            moved_chunks: &moved,
            files: &rewritten,
            now_ms: now_ms(),
        })
        .await?;
    Ok(done.then_some(Compacted {
        bytes_rewritten: new_index.stored_len(),
        bytes_to_free,
    }))
}

fn hex(bytes: &[u8; 32]) -> String {
    XetHash::from_bytes(*bytes).hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(xorb: u8, start: u32, end: u32) -> Term {
        Term {
            xorb: XetHash::from_bytes([xorb; 32]),
            chunk_start: start,
            chunk_end: end,
            unpacked_len: end.saturating_sub(start) * 10,
        }
    }

    #[test]
    fn live_chunks_are_the_union_of_the_terms_naming_the_xorb() {
        let x = XetHash::from_bytes([1; 32]);
        let terms = [term(1, 1, 3), term(2, 0, 9), term(1, 5, 6)];
        assert_eq!(
            live_chunks(&x, 7, &terms),
            Some(vec![false, true, true, false, false, true, false])
        );
        // A term past the xorb's end is refused, not clamped.
        assert_eq!(live_chunks(&x, 4, &terms), None);
        assert_eq!(live_chunks(&x, 7, &[term(1, 3, 2)]), None);
    }

    #[test]
    fn terms_move_to_the_new_xorb_with_their_chunks_renumbered() {
        let (old, new) = (XetHash::from_bytes([1; 32]), XetHash::from_bytes([9; 32]));
        let live = [false, true, true, false, false, true, false];
        let map = new_indices(&live);
        assert_eq!(map, vec![None, Some(0), Some(1), None, None, Some(2), None]);
        let terms = [term(1, 1, 3), term(2, 0, 9), term(1, 5, 6)];
        let moved = repoint(&terms, &old, &new, &map).expect("all live");
        assert_eq!(
            moved[0],
            Term {
                xorb: new,
                chunk_start: 0,
                chunk_end: 2,
                unpacked_len: 20
            }
        );
        assert_eq!(moved[1], terms[1], "another xorb's term is untouched");
        assert_eq!(
            moved[2],
            Term {
                xorb: new,
                chunk_start: 2,
                chunk_end: 3,
                unpacked_len: 10
            }
        );
        // A term spanning a dead chunk cannot be moved.
        assert_eq!(repoint(&[term(1, 2, 4)], &old, &new, &map), None);
        assert_eq!(repoint(&[term(1, 0, 0)], &old, &new, &map), None);
    }
}
