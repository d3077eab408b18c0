//! Global-dedup answers: which chunks a client may ask about, and the shard that tells it
//! where the chunks it is about to upload already are.
//!
//! The answer lists xorbs (every chunk's hash, size and offset), no file records. Its chunk
//! hashes are keyed with a fresh HMAC key, so a client can match only chunks it already
//! holds the bytes of, and the key carries an expiry after which the client stops using it.

use crate::hash::XetHash;
use crate::shard::{ShardError, Term};
use crate::xorb::XorbIndex;
use std::io::Cursor;
use std::time::Duration;
use xet_core_structures::merklehash::MerkleHash;
use xet_core_structures::metadata_shard::MDBShardInfo;
use xet_core_structures::metadata_shard::hash_is_global_dedup_eligible;
use xet_core_structures::metadata_shard::shard_in_memory::MDBInMemoryShard;
use xet_core_structures::metadata_shard::xorb_structs::{
    MDBXorbInfo, XorbChunkSequenceEntry, XorbChunkSequenceHeader,
};

/// Bytes a xorb takes in an answer: one 48-byte header plus 48 bytes per chunk (the lookup
/// tables add 12 per chunk and 16 per xorb, counted here too).
pub fn answer_bytes(index: &XorbIndex) -> u64 {
    64 + 60 * u64::from(index.num_chunks())
}

/// Whether a chunk is one clients query by its hash alone (about one in 1024). Clients also
/// query the first chunk of every file, which [`is_queryable`] admits.
pub fn is_key_chunk(hash: &XetHash) -> bool {
    hash_is_global_dedup_eligible(&hash.0)
}

/// Whether `chunk`, found at chunk `index` of `xorb`, is one a client may ask about given a
/// file made of `terms`: a key chunk, or the file's first chunk.
pub fn is_queryable(chunk: &XetHash, xorb: &XetHash, index: u32, terms: &[Term]) -> bool {
    is_key_chunk(chunk)
        || terms
            .first()
            .is_some_and(|t| t.xorb == *xorb && t.chunk_start == index)
}

/// Whether a file made of `terms` reads chunk `index` of `xorb`.
pub fn terms_cover(terms: &[Term], xorb: &XetHash, index: u32) -> bool {
    terms
        .iter()
        .any(|t| t.xorb == *xorb && t.chunk_start <= index && index < t.chunk_end)
}

/// The answer to a global-dedup query: a shard describing `xorbs`, its chunk hashes keyed
/// with `key`, valid for `valid_for`.
pub fn answer_shard(
    xorbs: &[(XetHash, &XorbIndex)],
    key: [u8; 32],
    valid_for: Duration,
) -> Result<Vec<u8>, ShardError> {
    let mut shard = MDBInMemoryShard::default();
    for (hash, index) in xorbs {
        let too_large = || ShardError::Malformed(format!("xorb {hash} is too large to describe"));
        let raw_len = u32::try_from(index.raw_len()).map_err(|_| too_large())?;
        let mut chunks = Vec::with_capacity(index.chunks.len());
        let mut start = 0u32;
        for c in &index.chunks {
            let len = c.raw_end.checked_sub(start).ok_or_else(too_large)?;
            chunks.push(XorbChunkSequenceEntry::new(c.hash.0, len, start));
            start = c.raw_end;
        }
        let info = MDBXorbInfo {
            metadata: XorbChunkSequenceHeader::new(hash.0, index.chunks.len() as u32, raw_len),
            chunks,
        };
        shard
            .add_xorb_block(info)
            .map_err(|e| ShardError::Malformed(e.to_string()))?;
    }
    let plain = shard
        .to_bytes()
        .map_err(|e| ShardError::Malformed(e.to_string()))?;
    let mut reader = Cursor::new(plain.as_slice());
    let info = MDBShardInfo::load_from_reader(&mut reader)
        .map_err(|e| ShardError::Malformed(e.to_string()))?;
    // The export reads the shard from the reader's position, which loading left at the footer.
    reader.set_position(0);
    let mut out = Vec::with_capacity(plain.len());
    info.export_as_keyed_shard(
        &mut reader,
        &mut out,
        MerkleHash::from(key),
        valid_for,
        false,
        true,
        true,
    )
    .map_err(|e| ShardError::Malformed(e.to_string()))?;
    Ok(out)
}

/// Test helpers: read an answer the way a client does.
pub mod testing {
    use super::*;

    /// Look `query` (unkeyed chunk hashes, in file order) up in an answer as the client does:
    /// how many of them match, in which xorb, at which chunk range. `None` when the answer is
    /// not a keyed shard or holds no match.
    pub fn client_lookup(shard: &[u8], query: &[XetHash]) -> Option<(usize, XetHash, u32, u32)> {
        let mut r = Cursor::new(shard);
        let info = MDBShardInfo::load_from_reader(&mut r).ok()?;
        if !info.chunk_hashes_protected() {
            return None;
        }
        let q: Vec<MerkleHash> = query.iter().map(|h| h.0).collect();
        info.chunk_hash_dedup_query(&mut r, &q)
            .ok()
            .flatten()
            .map(|(n, e)| {
                (
                    n,
                    e.xorb_hash.into(),
                    e.chunk_index_start,
                    e.chunk_index_end,
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::client_lookup;
    use super::*;
    use crate::hash;
    use crate::xorb::{testing::build_xorb, validate};

    fn stored_xorb(seed: u8, n: u8) -> (XetHash, XorbIndex) {
        let chunks: Vec<Vec<u8>> = (0..n)
            .map(|i| vec![seed.wrapping_add(i); 3000 + usize::from(i)])
            .collect();
        let (bytes, hash) = build_xorb(&chunks);
        let index = validate(bytes.as_slice(), &hash).expect("valid xorb");
        (hash, index)
    }

    #[test]
    fn a_client_finds_its_chunks_in_the_answer_and_nothing_else() {
        let (xa, ia) = stored_xorb(1, 5);
        let (xb, ib) = stored_xorb(100, 3);
        let shard = answer_shard(&[(xa, &ia), (xb, &ib)], [7; 32], Duration::from_secs(60))
            .expect("answer");
        let hashes_b: Vec<XetHash> = ib.chunks.iter().map(|c| c.hash).collect();
        assert_eq!(client_lookup(&shard, &hashes_b[1..]), Some((2, xb, 1, 3)));
        let hashes_a: Vec<XetHash> = ia.chunks.iter().map(|c| c.hash).collect();
        assert_eq!(client_lookup(&shard, &hashes_a), Some((5, xa, 0, 5)));
        assert_eq!(client_lookup(&shard, &[hash::chunk_hash(b"unknown")]), None);
        // Keyed hashes: the raw chunk hashes appear nowhere in the answer.
        let raw = hashes_a[0].to_bytes();
        assert!(!shard.windows(32).any(|w| w == raw));
    }

    #[test]
    fn first_chunks_and_key_chunks_are_queryable() {
        let (x, index) = stored_xorb(1, 4);
        let terms = [Term {
            xorb: x,
            chunk_start: 1,
            chunk_end: 4,
            unpacked_len: 0,
        }];
        let c = |i: usize| index.chunks[i].hash;
        let plain = |h: &XetHash| !is_key_chunk(h);
        if plain(&c(1)) {
            assert!(is_queryable(&c(1), &x, 1, &terms));
        }
        if plain(&c(2)) {
            assert!(!is_queryable(&c(2), &x, 2, &terms));
        }
        assert!(terms_cover(&terms, &x, 3));
        assert!(!terms_cover(&terms, &x, 0));
        // Find a key chunk by brute force: about one hash in 1024 is one.
        let key = (0u32..100_000)
            .map(|i| hash::chunk_hash(&i.to_le_bytes()))
            .find(is_key_chunk)
            .expect("a key chunk among 100k hashes");
        assert!(is_queryable(&key, &x, 3, &terms));
    }
}
