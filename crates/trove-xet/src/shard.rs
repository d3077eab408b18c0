//! Uploaded shards: the file reconstructions a client registers, checked term by term.

use crate::hash::{self, XetHash};
use crate::xorb::XorbIndex;
use std::io::Cursor;
use xet_core_structures::metadata_shard::MDBShardFileHeader;
use xet_core_structures::metadata_shard::streaming_shard::process_shard_file_info_section;

/// Largest shard body we accept (the protocol splits shards above 64 MiB).
pub const MAX_SHARD_BYTES: u64 = 64 * 1024 * 1024;

/// One term of a file: chunks `[chunk_start, chunk_end)` of a xorb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub xorb: XetHash,
    pub chunk_start: u32,
    pub chunk_end: u32,
    pub unpacked_len: u32,
}

/// A file reconstruction as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardFile {
    pub file_hash: XetHash,
    pub terms: Vec<Term>,
    /// One verification hash per term, when the client sent them.
    pub verification: Option<Vec<XetHash>>,
    /// The SHA-256 the client claims for the whole file, as plain digest bytes.
    pub sha256: Option<[u8; 32]>,
}

/// Why a shard was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("shard is malformed: {0}")]
    Malformed(String),
    #[error("shard is larger than {MAX_SHARD_BYTES} bytes")]
    TooLarge,
    #[error("file {file} carries no verification entries")]
    NoVerification { file: XetHash },
    #[error("file {file} references xorb {xorb}, which this server does not hold")]
    XorbMissing { file: XetHash, xorb: XetHash },
    #[error("file {file} references chunks {start}..{end} of xorb {xorb}, which has {chunks}")]
    RangeOutOfBounds {
        file: XetHash,
        xorb: XetHash,
        start: u32,
        end: u32,
        chunks: u32,
    },
    #[error("file {file}: term {term} claims {claimed} bytes, its chunks hold {actual}")]
    UnpackedMismatch {
        file: XetHash,
        term: usize,
        claimed: u32,
        actual: u64,
    },
    #[error("file {file}: verification hash of term {term} does not match the chunks")]
    VerificationMismatch { file: XetHash, term: usize },
    #[error("file hash mismatch: the shard names {claimed}, its chunks hash to {actual}")]
    FileHashMismatch { claimed: XetHash, actual: XetHash },
}

/// Parse the file section of an uploaded shard. Every allocation is charged against the
/// body's own length first, so a record claiming more entries than the body holds fails
/// before anything is allocated for it.
pub fn parse(body: &[u8]) -> Result<Vec<ShardFile>, ShardError> {
    if body.len() as u64 > MAX_SHARD_BYTES {
        return Err(ShardError::TooLarge);
    }
    let mut reader = Cursor::new(body);
    MDBShardFileHeader::deserialize(&mut reader)
        .map_err(|e| ShardError::Malformed(e.to_string()))?;
    let mut files = Vec::new();
    process_shard_file_info_section(
        &mut reader,
        |view| {
            let n = view.num_entries();
            let terms = (0..n)
                .map(|i| {
                    let e = view.entry(i);
                    Term {
                        xorb: e.xorb_hash.into(),
                        chunk_start: e.chunk_index_start,
                        chunk_end: e.chunk_index_end,
                        unpacked_len: e.unpacked_segment_bytes,
                    }
                })
                .collect();
            let verification = view.contains_verification().then(|| {
                (0..n)
                    .map(|i| view.verification(i).range_hash.into())
                    .collect()
            });
            let sha256 = view.metadata_ext().map(|m| swap_words(m.sha256.into()));
            files.push(ShardFile {
                file_hash: view.file_hash().into(),
                terms,
                verification,
                sha256,
            });
            Ok(())
        },
        Some(body.len() as u64),
    )
    .map_err(|e| ShardError::Malformed(e.to_string()))?;
    Ok(files)
}

/// Clients put the SHA-256 in a shard as a Xet hash parsed from the digest's hex string, so
/// the stored bytes are the digest with each 8-byte word reversed. The swap is its own inverse.
pub fn swap_words(mut bytes: [u8; 32]) -> [u8; 32] {
    for word in bytes.chunks_exact_mut(8) {
        word.reverse();
    }
    bytes
}

/// Check `file` against the xorbs we hold: each term names a stored xorb, a chunk range
/// inside it, the right unpacked length and a verification hash over exactly those chunks;
/// and the chunk sequence hashes to the file hash. Returns the file's size in bytes.
pub fn check_file<'a>(
    file: &ShardFile,
    mut xorb: impl FnMut(&XetHash) -> Option<&'a XorbIndex>,
) -> Result<u64, ShardError> {
    let fid = file.file_hash;
    let verification = file
        .verification
        .as_ref()
        .filter(|v| v.len() == file.terms.len())
        .ok_or(ShardError::NoVerification { file: fid })?;
    let mut sized = Vec::new();
    let mut size = 0u64;
    for (i, term) in file.terms.iter().enumerate() {
        let index = xorb(&term.xorb).ok_or(ShardError::XorbMissing {
            file: fid,
            xorb: term.xorb,
        })?;
        if term.chunk_start >= term.chunk_end || term.chunk_end > index.num_chunks() {
            return Err(ShardError::RangeOutOfBounds {
                file: fid,
                xorb: term.xorb,
                start: term.chunk_start,
                end: term.chunk_end,
                chunks: index.num_chunks(),
            });
        }
        let actual = index.raw_range_len(term.chunk_start, term.chunk_end);
        if actual != term.unpacked_len as u64 {
            return Err(ShardError::UnpackedMismatch {
                file: fid,
                term: i,
                claimed: term.unpacked_len,
                actual,
            });
        }
        let range = &index.chunks[term.chunk_start as usize..term.chunk_end as usize];
        let hashes: Vec<XetHash> = range.iter().map(|c| c.hash).collect();
        if hash::range_hash(&hashes) != verification[i] {
            return Err(ShardError::VerificationMismatch { file: fid, term: i });
        }
        for c in term.chunk_start..term.chunk_end {
            sized.push((index.chunks[c as usize].hash, index.chunk_raw_len(c)));
        }
        size += actual;
    }
    let actual = hash::file_hash(&sized);
    if actual != fid {
        return Err(ShardError::FileHashMismatch {
            claimed: fid,
            actual,
        });
    }
    Ok(size)
}

const TERM_LEN: usize = 44;

/// The compact form of a term list kept in the database: 44 bytes per term.
pub fn encode_terms(terms: &[Term]) -> Vec<u8> {
    let mut out = Vec::with_capacity(terms.len() * TERM_LEN);
    for t in terms {
        out.extend_from_slice(&t.xorb.to_bytes());
        out.extend_from_slice(&t.chunk_start.to_le_bytes());
        out.extend_from_slice(&t.chunk_end.to_le_bytes());
        out.extend_from_slice(&t.unpacked_len.to_le_bytes());
    }
    out
}

/// Read back [`encode_terms`]'s output; `None` if it is not a whole number of terms.
pub fn decode_terms(bytes: &[u8]) -> Option<Vec<Term>> {
    if !bytes.len().is_multiple_of(TERM_LEN) {
        return None;
    }
    bytes
        .chunks_exact(TERM_LEN)
        .map(|r| {
            let u32_at = |o: usize| {
                r.get(o..o + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_le_bytes)
            };
            Some(Term {
                xorb: XetHash::from_slice(&r[..32])?,
                chunk_start: u32_at(32)?,
                chunk_end: u32_at(36)?,
                unpacked_len: u32_at(40)?,
            })
        })
        .collect()
}

/// Test helpers: serialize a shard the way a client uploads it (no footer).
pub mod testing {
    use super::*;
    use xet_core_structures::metadata_shard::file_structs::{
        FileDataSequenceEntry, FileDataSequenceHeader, FileMetadataExt, FileVerificationEntry,
        MDBFileInfo,
    };
    use xet_core_structures::metadata_shard::shard_in_memory::MDBInMemoryShard;

    /// A shard holding `files` with their verification entries and SHA-256 extensions.
    pub fn build_shard(files: &[ShardFile]) -> Vec<u8> {
        let mut shard = MDBInMemoryShard::default();
        for f in files {
            let segments: Vec<FileDataSequenceEntry> = f
                .terms
                .iter()
                .map(|t| {
                    FileDataSequenceEntry::new(t.xorb.0, t.unpacked_len, t.chunk_start, t.chunk_end)
                })
                .collect();
            let verification: Vec<FileVerificationEntry> = f
                .verification
                .iter()
                .flatten()
                .map(|h| FileVerificationEntry::new(h.0))
                .collect();
            let info = MDBFileInfo {
                metadata: FileDataSequenceHeader::new(
                    f.file_hash.0,
                    segments.len(),
                    f.verification.is_some(),
                    f.sha256.is_some(),
                ),
                segments,
                verification,
                metadata_ext: f.sha256.map(|s| {
                    FileMetadataExt::new(xet_core_structures::merklehash::MerkleHash::from(
                        swap_words(s),
                    ))
                }),
            };
            // Adding to an in-memory shard only fails on inconsistent records, which the
            // helper's callers do not build.
            let _ = shard.add_file_reconstruction_info(info);
        }
        // Serializing into memory fails only on inconsistent records (see above).
        shard.to_bytes().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::build_shard;
    use super::*;
    use crate::xorb::{testing::build_xorb, validate};

    struct Fixture {
        xorb: XetHash,
        index: XorbIndex,
        file: ShardFile,
    }

    fn fixture() -> Fixture {
        let chunks: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 5000]).collect();
        let (bytes, xorb) = build_xorb(&chunks);
        let index = validate(bytes.as_slice(), &xorb).expect("valid xorb");
        let hashes: Vec<XetHash> = index.chunks.iter().map(|c| c.hash).collect();
        let sized: Vec<(XetHash, u64)> = hashes.iter().map(|h| (*h, 5000)).collect();
        let file = ShardFile {
            file_hash: hash::file_hash(&sized),
            terms: vec![Term {
                xorb,
                chunk_start: 0,
                chunk_end: 3,
                unpacked_len: 15_000,
            }],
            verification: Some(vec![hash::range_hash(&hashes)]),
            sha256: Some([9u8; 32]),
        };
        Fixture { xorb, index, file }
    }

    #[test]
    fn a_built_shard_parses_back_to_its_files() {
        let f = fixture();
        let parsed = parse(&build_shard(std::slice::from_ref(&f.file))).expect("parse");
        assert_eq!(parsed, vec![f.file]);
    }

    #[test]
    fn a_correct_file_checks_out_with_its_size() {
        let f = fixture();
        assert_eq!(
            check_file(&f.file, |h| (*h == f.xorb).then_some(&f.index)),
            Ok(15_000)
        );
    }

    #[test]
    fn each_bad_term_is_named() {
        let f = fixture();
        let lookup = |h: &XetHash| (*h == f.xorb).then_some(&f.index);

        let mut missing = f.file.clone();
        missing.terms[0].xorb = hash::chunk_hash(b"nope");
        assert!(matches!(
            check_file(&missing, lookup),
            Err(ShardError::XorbMissing { .. })
        ));

        let mut oob = f.file.clone();
        oob.terms[0].chunk_end = 4;
        assert!(matches!(
            check_file(&oob, lookup),
            Err(ShardError::RangeOutOfBounds { .. })
        ));

        let mut empty_range = f.file.clone();
        empty_range.terms[0].chunk_start = 3;
        assert!(matches!(
            check_file(&empty_range, lookup),
            Err(ShardError::RangeOutOfBounds { .. })
        ));

        let mut size = f.file.clone();
        size.terms[0].unpacked_len = 14_999;
        assert!(matches!(
            check_file(&size, lookup),
            Err(ShardError::UnpackedMismatch { .. })
        ));

        let mut verif = f.file.clone();
        verif.verification = Some(vec![hash::chunk_hash(b"forged")]);
        assert!(matches!(
            check_file(&verif, lookup),
            Err(ShardError::VerificationMismatch { .. })
        ));

        let mut none = f.file.clone();
        none.verification = None;
        assert!(matches!(
            check_file(&none, lookup),
            Err(ShardError::NoVerification { .. })
        ));

        let mut fh = f.file.clone();
        fh.file_hash = hash::chunk_hash(b"another file");
        assert!(matches!(
            check_file(&fh, lookup),
            Err(ShardError::FileHashMismatch { .. })
        ));
    }

    #[test]
    fn garbage_and_lying_shards_are_malformed() {
        assert!(matches!(
            parse(b"not a shard"),
            Err(ShardError::Malformed(_))
        ));
        let f = fixture();
        let mut bytes = build_shard(std::slice::from_ref(&f.file));
        // The first file header's entry count (after the 48-byte shard header, the 32-byte
        // file hash and the 4-byte flags): claim a billion entries.
        bytes[48 + 36..48 + 40].copy_from_slice(&1_000_000_000u32.to_le_bytes());
        assert!(matches!(parse(&bytes), Err(ShardError::Malformed(_))));
        // Truncated in the middle of the file section.
        let bytes = build_shard(std::slice::from_ref(&f.file));
        assert!(matches!(
            parse(&bytes[..100]),
            Err(ShardError::Malformed(_))
        ));
    }

    #[test]
    fn sha256_is_read_in_the_clients_word_order() {
        // hf_xet stores MerkleHash::from_hex(sha256 hex): its hex() is the digest's hex.
        let digest: [u8; 32] = std::array::from_fn(|i| i as u8);
        let as_client_stores = xet_core_structures::merklehash::MerkleHash::from_hex(
            &digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        )
        .expect("hex");
        assert_eq!(swap_words(as_client_stores.into()), digest);
    }

    #[test]
    fn terms_round_trip_through_their_encoding() {
        let f = fixture();
        assert_eq!(
            decode_terms(&encode_terms(&f.file.terms)),
            Some(f.file.terms.clone())
        );
        assert_eq!(decode_terms(&[0u8; 43]), None);
    }
}
