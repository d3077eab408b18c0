//! The Xet hash: 32 bytes, written as four little-endian u64 words of 16 hex digits each.
//! That hex form (not the byte-wise one) is what URLs, JSON and `X-Xet-Hash` carry.

use std::fmt;
use xet_core_structures::merklehash::MerkleHash;

/// A Xet chunk, xorb or file hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct XetHash(pub(crate) MerkleHash);

/// The text was not 64 lowercase or uppercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Xet hash (64 hex digits): {0:?}")]
pub struct InvalidXetHash(pub String);

impl XetHash {
    /// Parse the protocol's hex form.
    pub fn parse(hex: &str) -> Result<Self, InvalidXetHash> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidXetHash(hex.chars().take(80).collect()));
        }
        MerkleHash::from_hex(hex)
            .map(XetHash)
            .map_err(|_| InvalidXetHash(hex.to_owned()))
    }

    /// The protocol's hex form (64 lowercase digits).
    pub fn hex(&self) -> String {
        self.0.hex()
    }

    /// The 32 raw bytes, as stored in shards and in our indices.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.into()
    }

    /// From 32 raw bytes (as produced by [`Self::to_bytes`]).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        XetHash(MerkleHash::from(bytes))
    }

    /// From a slice of our stored indices; `None` unless exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self::from_bytes)
    }
}

impl From<MerkleHash> for XetHash {
    fn from(h: MerkleHash) -> Self {
        XetHash(h)
    }
}

impl fmt::Display for XetHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for XetHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XetHash({})", self.hex())
    }
}

/// Keyed BLAKE3 of one chunk's bytes.
pub fn chunk_hash(data: &[u8]) -> XetHash {
    XetHash(xet_core_structures::merklehash::compute_data_hash(data))
}

/// The xorb hash: the aggregated Merkle root over (chunk hash, chunk size).
pub fn xorb_hash(chunks: &[(XetHash, u64)]) -> XetHash {
    XetHash(xet_core_structures::merklehash::xorb_hash(&to_merkle(
        chunks,
    )))
}

/// The file hash: the zero-keyed hash of the Merkle root over all of a file's chunks.
pub fn file_hash(chunks: &[(XetHash, u64)]) -> XetHash {
    XetHash(xet_core_structures::merklehash::file_hash(&to_merkle(
        chunks,
    )))
}

/// The verification hash of a term: proves the uploader knew the chunk hashes it references.
pub fn range_hash(chunk_hashes: &[XetHash]) -> XetHash {
    let hashes: Vec<MerkleHash> = chunk_hashes.iter().map(|h| h.0).collect();
    XetHash(
        xet_core_structures::metadata_shard::chunk_verification::range_hash_from_chunks(&hashes),
    )
}

fn to_merkle(chunks: &[(XetHash, u64)]) -> Vec<(MerkleHash, u64)> {
    chunks.iter().map(|(h, n)| (h.0, *n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_uses_word_order() {
        let bytes: [u8; 32] = std::array::from_fn(|i| i as u8);
        let h = XetHash::from_bytes(bytes);
        // First u64 word is bytes 0..8 little-endian, printed most significant digit first.
        assert!(h.hex().starts_with("0706050403020100"), "{}", h.hex());
        assert_eq!(XetHash::parse(&h.hex()), Ok(h));
        assert_eq!(h.to_bytes(), bytes);
    }

    #[test]
    fn parse_rejects_wrong_length_and_non_hex() {
        assert!(XetHash::parse("abc").is_err());
        assert!(XetHash::parse(&"g".repeat(64)).is_err());
        assert!(XetHash::parse(&"0".repeat(65)).is_err());
        assert!(XetHash::parse(&"A".repeat(64)).is_ok());
    }

    #[test]
    fn one_chunk_xorb_hash_is_the_chunk_hash() {
        let c = chunk_hash(b"hello");
        assert_eq!(xorb_hash(&[(c, 5)]), c);
        // A file hash is keyed differently from the xorb hash of the same chunks.
        assert_ne!(file_hash(&[(c, 5)]), c);
    }
}
