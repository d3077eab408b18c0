//! Reconstruction plans: which chunks of which xorbs, and which stored bytes, rebuild a file
//! or a byte range of it. Terms are trimmed to the chunks the range touches, so a small
//! ranged read never fetches a whole 64 MiB xorb.

use crate::hash::XetHash;
use crate::shard::Term;
use crate::xorb::XorbIndex;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

/// One term of a plan, with the stored bytes that hold its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedTerm {
    pub xorb: XetHash,
    pub chunk_start: u32,
    pub chunk_end: u32,
    /// Decompressed length of chunks `[chunk_start, chunk_end)`.
    pub unpacked_len: u64,
    /// Stored bytes `[stored_start, stored_end)` of the xorb holding those chunks.
    pub stored_start: u64,
    pub stored_end: u64,
}

/// The terms that rebuild a byte range of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Bytes to skip at the start of the first term's decompressed output.
    pub offset_into_first: u64,
    /// Bytes of file content the plan delivers after that skip.
    pub length: u64,
    pub terms: Vec<PlannedTerm>,
}

/// One fetch: a contiguous chunk range of a xorb and its stored bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    pub chunk_start: u32,
    pub chunk_end: u32,
    pub stored_start: u64,
    /// Exclusive.
    pub stored_end: u64,
}

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("range starts at {start}, the file has {size} bytes")]
    RangeNotSatisfiable { start: u64, size: u64 },
    #[error("xorb {0} of the file is missing from the index")]
    MissingXorb(XetHash),
    #[error("a term of the file lies outside its xorb")]
    Corrupt,
}

/// Total decompressed size of a term list.
pub fn file_size(terms: &[Term]) -> u64 {
    terms.iter().map(|t| t.unpacked_len as u64).sum()
}

/// Plan the bytes `[start, end)` of the file made of `terms` (`None`: the whole file).
/// `end` is clamped to the file size; a start at or past the end of a non-empty file is
/// not satisfiable. `xorbs` holds the indices by value or shared (`Arc`, as the download
/// paths keep them: an index is as large as its xorb has chunks).
pub fn plan<I: Borrow<XorbIndex>>(
    terms: &[Term],
    xorbs: &HashMap<XetHash, I>,
    range: Option<(u64, u64)>,
) -> Result<Plan, PlanError> {
    let size = file_size(terms);
    let (start, end) = match range {
        None => (0, size),
        Some((s, _)) if s >= size && size > 0 => {
            return Err(PlanError::RangeNotSatisfiable { start: s, size });
        }
        Some((s, e)) => (s.min(size), e.min(size)),
    };
    let mut out = Plan {
        offset_into_first: 0,
        length: end.saturating_sub(start),
        terms: Vec::new(),
    };
    let mut pos = 0u64;
    for term in terms {
        let term_end = pos + term.unpacked_len as u64;
        if term_end <= start {
            pos = term_end;
            continue;
        }
        if pos >= end {
            break;
        }
        let index: &XorbIndex = xorbs
            .get(&term.xorb)
            .ok_or(PlanError::MissingXorb(term.xorb))?
            .borrow();
        if term.chunk_end > index.num_chunks() || term.chunk_start >= term.chunk_end {
            return Err(PlanError::Corrupt);
        }
        // Trim to the chunks that overlap [start, end).
        let mut first = term.chunk_start;
        let mut first_pos = pos;
        while first + 1 < term.chunk_end && first_pos + index.chunk_raw_len(first) <= start {
            first_pos += index.chunk_raw_len(first);
            first += 1;
        }
        let mut last = first;
        let mut last_pos = first_pos;
        while last < term.chunk_end && last_pos < end {
            last_pos += index.chunk_raw_len(last);
            last += 1;
        }
        if out.terms.is_empty() {
            out.offset_into_first = start.saturating_sub(first_pos);
        }
        let (stored_start, stored_end) = index.stored_range(first, last);
        out.terms.push(PlannedTerm {
            xorb: term.xorb,
            chunk_start: first,
            chunk_end: last,
            unpacked_len: index.raw_range_len(first, last),
            stored_start,
            stored_end,
        });
        pos = term_end;
    }
    Ok(out)
}

/// The stored byte ranges a client must fetch for `plan`, per xorb: overlapping or adjacent
/// chunk ranges of one xorb are merged, so shared chunks are fetched once.
pub fn fetches<I: Borrow<XorbIndex>>(
    plan: &Plan,
    xorbs: &HashMap<XetHash, I>,
) -> BTreeMap<XetHash, Vec<Fetch>> {
    let mut ranges: BTreeMap<XetHash, Vec<(u32, u32)>> = BTreeMap::new();
    for t in &plan.terms {
        ranges
            .entry(t.xorb)
            .or_default()
            .push((t.chunk_start, t.chunk_end));
    }
    ranges
        .into_iter()
        .filter_map(|(xorb, mut rs)| {
            let index: &XorbIndex = xorbs.get(&xorb)?.borrow();
            rs.sort_unstable();
            let mut merged: Vec<(u32, u32)> = Vec::new();
            for (s, e) in rs {
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            let fetches = merged
                .into_iter()
                .map(|(s, e)| {
                    let (stored_start, stored_end) = index.stored_range(s, e);
                    Fetch {
                        chunk_start: s,
                        chunk_end: e,
                        stored_start,
                        stored_end,
                    }
                })
                .collect();
            Some((xorb, fetches))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xorb::ChunkMeta;

    /// A xorb of `sizes` raw chunks, each stored as 8 header bytes + the raw bytes.
    fn index(sizes: &[u32], seed: u8) -> (XetHash, XorbIndex) {
        let (mut s, mut r) = (0, 0);
        let chunks = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                s += 8 + n;
                r += n;
                ChunkMeta {
                    hash: crate::hash::chunk_hash(&[seed, i as u8]),
                    stored_end: s,
                    raw_end: r,
                }
            })
            .collect();
        (crate::hash::chunk_hash(&[seed]), XorbIndex { chunks })
    }

    fn setup() -> (Vec<Term>, HashMap<XetHash, XorbIndex>) {
        let (a, ia) = index(&[100, 100, 100, 100], 1);
        let (b, ib) = index(&[50, 50], 2);
        let terms = vec![
            Term {
                xorb: a,
                chunk_start: 0,
                chunk_end: 4,
                unpacked_len: 400,
            },
            Term {
                xorb: b,
                chunk_start: 0,
                chunk_end: 2,
                unpacked_len: 100,
            },
            Term {
                xorb: a,
                chunk_start: 1,
                chunk_end: 2,
                unpacked_len: 100,
            },
        ];
        (terms, HashMap::from([(a, ia), (b, ib)]))
    }

    #[test]
    fn whole_file_plan_keeps_every_term() {
        let (terms, xorbs) = setup();
        let p = plan(&terms, &xorbs, None).expect("plan");
        assert_eq!(p.length, 600);
        assert_eq!(p.offset_into_first, 0);
        assert_eq!(p.terms.len(), 3);
        assert_eq!((p.terms[0].stored_start, p.terms[0].stored_end), (0, 432));
        assert_eq!((p.terms[2].stored_start, p.terms[2].stored_end), (108, 216));
    }

    #[test]
    fn range_plan_trims_to_touched_chunks() {
        let (terms, xorbs) = setup();
        // Bytes 250..420: chunk 2 and 3 of xorb a, then the first chunk of b.
        let p = plan(&terms, &xorbs, Some((250, 420))).expect("plan");
        assert_eq!(p.offset_into_first, 50);
        assert_eq!(p.length, 170);
        assert_eq!(p.terms.len(), 2);
        assert_eq!((p.terms[0].chunk_start, p.terms[0].chunk_end), (2, 4));
        assert_eq!((p.terms[1].chunk_start, p.terms[1].chunk_end), (0, 1));
        assert_eq!(p.terms[1].unpacked_len, 50);
    }

    #[test]
    fn range_past_end_is_refused_and_end_is_clamped() {
        let (terms, xorbs) = setup();
        assert!(matches!(
            plan(&terms, &xorbs, Some((600, 700))),
            Err(PlanError::RangeNotSatisfiable { size: 600, .. })
        ));
        let p = plan(&terms, &xorbs, Some((590, 10_000))).expect("plan");
        assert_eq!(p.length, 10);
        assert_eq!(p.offset_into_first, 90);
    }

    #[test]
    fn fetches_merge_overlapping_ranges_of_one_xorb() {
        let (terms, xorbs) = setup();
        let p = plan(&terms, &xorbs, None).expect("plan");
        let f = fetches(&p, &xorbs);
        let a = terms[0].xorb;
        assert_eq!(f[&a].len(), 1, "chunks 1..2 fall inside 0..4");
        assert_eq!((f[&a][0].stored_start, f[&a][0].stored_end), (0, 432));
    }

    #[test]
    fn missing_xorb_is_reported() {
        let (terms, mut xorbs) = setup();
        xorbs.remove(&terms[1].xorb);
        assert_eq!(
            plan(&terms, &xorbs, None),
            Err(PlanError::MissingXorb(terms[1].xorb))
        );
    }
}
