//! Packing chunks into a xorb on the server, for files that arrive whole (plain LFS uploads)
//! rather than as client-built xorbs. The output is the same format clients upload (chunk
//! records, no footer) and validates with [`crate::xorb::validate`].
//!
//! Compression is chosen once per xorb by measurement: the first chunk is compressed both
//! ways (LZ4, and byte-grouping + LZ4, which suits 16- and 32-bit floats) and the smaller wins,
//! unless neither saves [`MIN_SAVING`] of the chunk, in which case the xorb is stored raw and
//! costs no compression work at all (random-looking weights do not compress). Each chunk
//! still falls back to raw on its own when compressing it would not shrink it.

use crate::hash::{self, XetHash};
use crate::xorb::{ChunkMeta, MAX_XORB_CHUNKS, XorbError, XorbIndex};
use std::io::Write;
use xet_core_structures::error::CoreError;
pub use xet_core_structures::xorb_object::CompressionScheme;
use xet_core_structures::xorb_object::{
    XORB_CHUNK_HEADER_LENGTH, XorbChunkHeader, serialize_chunk, write_chunk_header,
};

/// Bytes of a chunk record's header (what precedes the chunk's bytes in a xorb).
pub const HEADER_LEN: usize = XORB_CHUNK_HEADER_LENGTH;

/// Most bytes of chunk data (headers included, before compression) the server puts in one
/// xorb: the client's 64 MiB cap.
pub const MAX_PACKED_BYTES: u64 = 64 * 1024 * 1024;

/// Compression must save at least this fraction (1/32 ≈ 3%) of the sampled chunk to be used.
const MIN_SAVING: usize = 32;

/// Whether a chunk of `len` bytes still fits a xorb holding `chunks` chunks and `bytes` bytes
/// of records, counted before compression (compression only ever shrinks a record).
pub fn fits(chunks: usize, bytes: u64, len: u64) -> bool {
    chunks < MAX_XORB_CHUNKS && bytes + XORB_CHUNK_HEADER_LENGTH as u64 + len <= MAX_PACKED_BYTES
}

/// The compression scheme for a xorb whose first chunk is `sample`.
pub fn choose_compression(sample: &[u8]) -> CompressionScheme {
    let size = |scheme: CompressionScheme| {
        scheme
            .compress_from_slice(sample)
            .map_or(usize::MAX, |c| c.len())
    };
    let (lz4, bg4) = (
        size(CompressionScheme::LZ4),
        size(CompressionScheme::ByteGrouping4LZ4),
    );
    let (best, best_len) = if bg4 < lz4 {
        (CompressionScheme::ByteGrouping4LZ4, bg4)
    } else {
        (CompressionScheme::LZ4, lz4)
    };
    if best_len.saturating_add(sample.len() / MIN_SAVING) < sample.len() {
        best
    } else {
        CompressionScheme::None
    }
}

/// Writes chunk records to `out` and keeps the index and hash of the xorb being built.
#[derive(Debug)]
pub struct XorbPacker<W: Write> {
    out: W,
    scheme: Option<CompressionScheme>,
    chunks: Vec<ChunkMeta>,
    sized: Vec<(XetHash, u64)>,
    stored: u64,
    raw: u64,
}

impl<W: Write> XorbPacker<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            scheme: None,
            chunks: Vec::new(),
            sized: Vec::new(),
            stored: 0,
            raw: 0,
        }
    }

    /// A packer whose xorb uses `scheme`, chosen by the caller (with [`choose_compression`]
    /// on its first chunk, typically) instead of measured on the first chunk pushed.
    pub fn with_compression(out: W, scheme: CompressionScheme) -> Self {
        Self {
            scheme: Some(scheme),
            ..Self::new(out)
        }
    }

    /// The writer, for bytes of the xorb the caller places itself ([`Self::push_raw`]).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Chunks packed so far.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The compression chosen for this xorb (known once the first chunk is in).
    pub fn compression(&self) -> Option<CompressionScheme> {
        self.scheme
    }

    /// Appends one chunk; returns its hash. The caller keeps within [`fits`].
    pub fn push(&mut self, data: &[u8]) -> Result<XetHash, XorbError> {
        let h = hash::chunk_hash(data);
        self.push_hashed(data, h)?;
        Ok(h)
    }

    /// Appends one chunk whose hash `h` the caller computed from these very bytes in memory
    /// (the chunker of a streamed upload): hashing them again would only cost time. Bytes
    /// read back from storage go through [`Self::push`], which hashes what it packs.
    pub fn push_hashed(&mut self, data: &[u8], h: XetHash) -> Result<(), XorbError> {
        if self.chunks.len() == MAX_XORB_CHUNKS {
            return Err(XorbError::TooManyChunks);
        }
        let scheme = *self.scheme.get_or_insert_with(|| choose_compression(data));
        let written = serialize_chunk(data, &mut self.out, scheme).map_err(|e| match e {
            // Writing failed (a full disk…): the I/O error itself, not a fault of the chunk.
            CoreError::Io(io) => XorbError::Io(io),
            other => XorbError::MalformedChunk {
                chunk: self.chunks.len(),
                reason: other.to_string(),
            },
        })?;
        self.record(h, written as u64, data.len() as u64)
    }

    /// Notes a chunk of `raw` bytes, `stored` in the xorb with its header, hashing to `h`.
    fn record(&mut self, h: XetHash, stored: u64, raw: u64) -> Result<(), XorbError> {
        self.stored += stored;
        self.raw += raw;
        let (stored_end, raw_end) = match (u32::try_from(self.stored), u32::try_from(self.raw)) {
            (Ok(s), Ok(r)) => (s, r),
            _ => return Err(XorbError::TooLarge),
        };
        self.chunks.push(ChunkMeta {
            hash: h,
            stored_end,
            raw_end,
        });
        self.sized.push((h, raw));
        Ok(())
    }

    /// Records a chunk of `len` bytes, hashing to `h` (as for [`Self::push_hashed`]), in a
    /// xorb stored raw ([`Self::with_compression`] with [`CompressionScheme::None`]) without
    /// writing anything: returns the record's header. The caller sends the header, then the
    /// chunk's own bytes, after the records before it — so a raw xorb can go out as the
    /// pieces its chunks were received in, never copied into one buffer.
    pub fn push_raw(
        &mut self,
        len: usize,
        h: XetHash,
    ) -> Result<[u8; XORB_CHUNK_HEADER_LENGTH], XorbError> {
        let chunk = self.chunks.len();
        if chunk == MAX_XORB_CHUNKS {
            return Err(XorbError::TooManyChunks);
        }
        if self.scheme != Some(CompressionScheme::None) {
            return Err(XorbError::MalformedChunk {
                chunk,
                reason: "a raw record pushed into a compressed xorb".into(),
            });
        }
        let raw_len = u32::try_from(len).map_err(|_| XorbError::TooLarge)?;
        let mut header = [0u8; XORB_CHUNK_HEADER_LENGTH];
        write_chunk_header(
            &mut header.as_mut_slice(),
            &XorbChunkHeader::new(CompressionScheme::None, raw_len, raw_len),
        )?;
        self.record(h, (XORB_CHUNK_HEADER_LENGTH + len) as u64, len as u64)?;
        Ok(header)
    }

    /// The xorb's hash and index, and the writer back (flushed).
    pub fn finish(mut self) -> Result<(XetHash, XorbIndex, W), XorbError> {
        if self.chunks.is_empty() {
            return Err(XorbError::Empty);
        }
        self.out.flush()?;
        Ok((
            hash::xorb_hash(&self.sized),
            XorbIndex {
                chunks: self.chunks,
            },
            self.out,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xorb;
    use rand::{Rng, SeedableRng};

    fn pack(chunks: &[Vec<u8>]) -> (XetHash, XorbIndex, Vec<u8>, Option<CompressionScheme>) {
        let mut packer = XorbPacker::new(Vec::new());
        for c in chunks {
            packer.push(c).expect("push");
        }
        let scheme = packer.compression();
        let (h, index, bytes) = packer.finish().expect("finish");
        (h, index, bytes, scheme)
    }

    #[test]
    fn a_packed_xorb_validates_and_decodes_to_its_chunks() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let random: Vec<u8> = (0..70_000).map(|_| rng.random()).collect();
        // Half-precision-like values: the high byte of each pair repeats, the low one varies.
        let floats: Vec<u8> = (0..60_000u32)
            .flat_map(|i| [(i * 37 % 251) as u8, 0x3c, (i % 7) as u8, 0x3c])
            .take(60_000)
            .collect();
        let text = b"the same words again and again ".repeat(1000);
        for (chunks, expect) in [
            (vec![random.clone(), text.clone()], CompressionScheme::None),
            (
                vec![floats.clone(), random.clone()],
                CompressionScheme::ByteGrouping4LZ4,
            ),
            (vec![text.clone(), floats.clone()], CompressionScheme::LZ4),
        ] {
            let (h, index, bytes, scheme) = pack(&chunks);
            assert_eq!(scheme, Some(expect));
            let validated = xorb::validate(bytes.as_slice(), &h).expect("valid xorb");
            assert_eq!(validated, index);
            assert_eq!(index.stored_len(), bytes.len() as u64);
            let total: usize = chunks.iter().map(Vec::len).sum();
            assert_eq!(index.raw_len(), total as u64);
        }
    }

    #[test]
    fn raw_records_placed_by_the_caller_make_the_same_xorb_as_packed_ones() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let chunks: Vec<Vec<u8>> = [70_000usize, 8_192, 131_072, 1]
            .iter()
            .map(|&n| (0..n).map(|_| rng.random()).collect())
            .collect();
        let (h, index, packed, scheme) = pack(&chunks);
        assert_eq!(scheme, Some(CompressionScheme::None));

        let mut raw = XorbPacker::with_compression(Vec::new(), CompressionScheme::None);
        let mut placed = Vec::new();
        for c in &chunks {
            let header = raw
                .push_raw(c.len(), hash::chunk_hash(c))
                .expect("raw record");
            placed.extend_from_slice(&header);
            placed.extend_from_slice(c);
        }
        let (raw_hash, raw_index, written) = raw.finish().expect("finish");
        assert!(written.is_empty(), "push_raw writes nothing itself");
        assert_eq!((raw_hash, &raw_index), (h, &index));
        assert_eq!(placed, packed);
        assert_eq!(
            xorb::validate(placed.as_slice(), &h).expect("valid xorb"),
            index
        );

        // A compressed xorb takes no raw records.
        let mut lz4 = XorbPacker::with_compression(Vec::new(), CompressionScheme::LZ4);
        assert!(matches!(
            lz4.push_raw(10, hash::chunk_hash(&[0; 10])),
            Err(XorbError::MalformedChunk { .. })
        ));
    }

    #[test]
    fn compressed_xorbs_are_smaller() {
        let text = b"the same words again and again ".repeat(2000);
        let (_, index, _, _) = pack(std::slice::from_ref(&text));
        assert!(index.stored_len() < text.len() as u64 / 4);
    }

    #[test]
    fn the_size_budget_holds_the_client_limits() {
        assert!(fits(0, 0, 128 * 1024));
        assert!(!fits(0, MAX_PACKED_BYTES - 100, 100));
        assert!(!fits(MAX_XORB_CHUNKS, 0, 1));
        assert!(matches!(
            XorbPacker::new(Vec::new()).finish(),
            Err(XorbError::Empty)
        ));
    }
}
