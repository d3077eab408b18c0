//! Xorbs: validating an upload and the per-chunk index we keep for every stored xorb.
//!
//! A xorb is a run of `[8-byte chunk header][compressed chunk]` records, optionally followed
//! by a footer that starts with `XETBLOB`. We store only the records (the footer is derived
//! data, rebuilt from our index when needed) and keep, per chunk, its hash and where it ends
//! in the stored bytes and in the decompressed bytes.

use crate::hash::{self, XetHash};
use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, Read, Write};
use std::sync::{Arc, Mutex};
use xet_core_structures::xorb_object::{
    CompressionScheme, XORB_CHUNK_HEADER_LENGTH, XorbChunkHeader, parse_chunk_header,
};

/// Largest xorb body we accept: 64 MiB of chunk records plus room for a footer.
pub const MAX_XORB_UPLOAD_BYTES: u64 = 64 * 1024 * 1024 + 2 * 1024 * 1024;
/// Most chunks one xorb may hold.
pub const MAX_XORB_CHUNKS: usize = 8 * 1024;
/// Largest run of chunk records: clients cap a xorb at 64 MiB of chunk data, stored raw when
/// compression does not help, and each chunk adds its 8-byte header on top.
pub const MAX_XORB_CONTENT_BYTES: u64 =
    64 * 1024 * 1024 + (MAX_XORB_CHUNKS * XORB_CHUNK_HEADER_LENGTH) as u64;

const FOOTER_IDENT: &[u8; 7] = b"XETBLOB";

/// Why an uploaded xorb (or a stored one being read back) was refused.
#[derive(Debug, thiserror::Error)]
pub enum XorbError {
    #[error("xorb has no chunks")]
    Empty,
    #[error("xorb has more than {MAX_XORB_CHUNKS} chunks")]
    TooManyChunks,
    #[error("xorb chunk records exceed {MAX_XORB_CONTENT_BYTES} bytes")]
    TooLarge,
    #[error("xorb is truncated inside chunk {chunk}")]
    Truncated { chunk: usize },
    #[error("xorb chunk {chunk} is malformed: {reason}")]
    MalformedChunk { chunk: usize, reason: String },
    #[error("xorb hash mismatch: the path names {expected}, the chunks hash to {actual}")]
    HashMismatch { expected: XetHash, actual: XetHash },
    #[error("stored xorb index is corrupt")]
    CorruptIndex,
    /// Reading or writing the xorb's bytes failed. Its cause is the error's source (not
    /// displayed through): what the error mapping looks for (a full disk → 507).
    #[error("xorb I/O failed")]
    Io(#[from] io::Error),
}

/// One chunk of a stored xorb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    pub hash: XetHash,
    /// Offset just past this chunk's record (header included) in the stored bytes.
    pub stored_end: u32,
    /// Offset just past this chunk's bytes in the decompressed xorb.
    pub raw_end: u32,
}

/// The index of a stored xorb: its chunks in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XorbIndex {
    pub chunks: Vec<ChunkMeta>,
}

const META_LEN: usize = 40;

impl XorbIndex {
    pub fn num_chunks(&self) -> u32 {
        self.chunks.len() as u32
    }

    /// Bytes of chunk records as stored.
    pub fn stored_len(&self) -> u64 {
        self.chunks.last().map_or(0, |c| c.stored_end as u64)
    }

    /// Bytes once every chunk is decompressed.
    pub fn raw_len(&self) -> u64 {
        self.chunks.last().map_or(0, |c| c.raw_end as u64)
    }

    /// Stored byte range `[start, end)` of chunks `[first, last)`. The caller checks bounds.
    pub fn stored_range(&self, first: u32, last: u32) -> (u64, u64) {
        (self.stored_start(first), self.stored_start(last))
    }

    /// Decompressed length of chunks `[first, last)`. The caller checks bounds.
    pub fn raw_range_len(&self, first: u32, last: u32) -> u64 {
        self.raw_start(last) - self.raw_start(first)
    }

    /// Decompressed length of chunk `i`. The caller checks bounds.
    pub fn chunk_raw_len(&self, i: u32) -> u64 {
        self.raw_start(i + 1) - self.raw_start(i)
    }

    fn stored_start(&self, i: u32) -> u64 {
        match i.checked_sub(1) {
            None => 0,
            Some(prev) => self.chunks[prev as usize].stored_end as u64,
        }
    }

    fn raw_start(&self, i: u32) -> u64 {
        match i.checked_sub(1) {
            None => 0,
            Some(prev) => self.chunks[prev as usize].raw_end as u64,
        }
    }

    /// The compact form kept in the database: 40 bytes per chunk.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.chunks.len() * META_LEN);
        for c in &self.chunks {
            out.extend_from_slice(&c.hash.to_bytes());
            out.extend_from_slice(&c.stored_end.to_le_bytes());
            out.extend_from_slice(&c.raw_end.to_le_bytes());
        }
        out
    }

    /// Read back [`Self::encode`]'s output, checking that offsets only grow.
    pub fn decode(bytes: &[u8]) -> Result<Self, XorbError> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(META_LEN) {
            return Err(XorbError::CorruptIndex);
        }
        let mut chunks = Vec::with_capacity(bytes.len() / META_LEN);
        let (mut stored, mut raw) = (0u32, 0u32);
        for rec in bytes.chunks_exact(META_LEN) {
            let hash = XetHash::from_slice(&rec[..32]).ok_or(XorbError::CorruptIndex)?;
            let stored_end = u32::from_le_bytes(
                rec[32..36]
                    .try_into()
                    .map_err(|_| XorbError::CorruptIndex)?,
            );
            let raw_end = u32::from_le_bytes(
                rec[36..40]
                    .try_into()
                    .map_err(|_| XorbError::CorruptIndex)?,
            );
            if stored_end <= stored || raw_end < raw {
                return Err(XorbError::CorruptIndex);
            }
            (stored, raw) = (stored_end, raw_end);
            chunks.push(ChunkMeta {
                hash,
                stored_end,
                raw_end,
            });
        }
        Ok(XorbIndex { chunks })
    }
}

/// Chunks of xorb indices kept by [`IndexCache`]: about 1.5 MiB (48 bytes a chunk),
/// the indices of some 4000 small files' xorbs or of a few GiB of large files.
const CACHED_INDEX_CHUNKS: usize = 32 * 1024;

/// Decoded xorb indices of the files downloaded lately, so that a download plans its file
/// without asking the database for them again. A xorb's hash names its content, so an
/// index never changes under its hash (compaction writes a new xorb under a new hash), and
/// nothing needs invalidating: entries leave oldest first when the chunks they hold pass
/// [`CACHED_INDEX_CHUNKS`].
#[derive(Default)]
pub struct IndexCache {
    inner: Mutex<IndexCacheInner>,
}

#[derive(Default)]
struct IndexCacheInner {
    indices: HashMap<XetHash, Arc<XorbIndex>>,
    order: VecDeque<XetHash>,
    chunks: usize,
}

impl IndexCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, IndexCacheInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index of xorb `hash`, if held.
    pub fn get(&self, hash: &XetHash) -> Option<Arc<XorbIndex>> {
        self.lock().indices.get(hash).cloned()
    }

    /// Keeps the index of xorb `hash` (an index larger than the whole cache is not kept).
    pub fn put(&self, hash: XetHash, index: Arc<XorbIndex>) {
        let chunks = index.chunks.len();
        if chunks > CACHED_INDEX_CHUNKS {
            return;
        }
        let mut inner = self.lock();
        if inner.indices.insert(hash, index).is_some() {
            return;
        }
        inner.order.push_back(hash);
        inner.chunks += chunks;
        while inner.chunks > CACHED_INDEX_CHUNKS {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(gone) = inner.indices.remove(&old) {
                inner.chunks -= gone.chunks.len();
            }
        }
    }

    /// How many indices are held.
    pub fn len(&self) -> usize {
        self.lock().indices.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Read one chunk record from `reader` into `out` (cleared first), decompressed.
///
/// Returns the record's stored length (header included), or `None` at a clean end: end of
/// input or the start of a footer. Allocation is bounded by the header limits the format
/// enforces (a chunk is at most 128 KiB decompressed, 256 KiB compressed), and
/// decompression stops as soon as it would exceed the length the header declares.
pub fn read_chunk<R: Read>(
    reader: &mut R,
    chunk: usize,
    out: &mut Vec<u8>,
) -> Result<Option<u32>, XorbError> {
    let mut header_bytes = [0u8; XORB_CHUNK_HEADER_LENGTH];
    match read_full(reader, &mut header_bytes)? {
        0 => return Ok(None),
        n if n < XORB_CHUNK_HEADER_LENGTH => {
            if header_bytes[..n] == FOOTER_IDENT[..n.min(FOOTER_IDENT.len())] {
                return Ok(None);
            }
            return Err(XorbError::Truncated { chunk });
        }
        _ => {}
    }
    if header_bytes[..FOOTER_IDENT.len()] == FOOTER_IDENT[..] {
        return Ok(None);
    }
    let record = RecordHeader::parse(header_bytes, chunk)?;
    out.clear();
    if record.scheme == CompressionScheme::None {
        // Stored as is: read straight into the output, no staging copy.
        out.resize(record.raw_len, 0);
        if read_full(reader, out)? < record.raw_len {
            return Err(XorbError::Truncated { chunk });
        }
        return Ok(Some(record.record_len() as u32));
    }
    let mut compressed = vec![0u8; record.stored_len];
    if read_full(reader, &mut compressed)? < record.stored_len {
        return Err(XorbError::Truncated { chunk });
    }
    record.decompress(&compressed, chunk, out)?;
    Ok(Some(record.record_len() as u32))
}

/// What one chunk record's 8-byte header says.
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader {
    scheme: CompressionScheme,
    /// Bytes of the chunk as stored after the header.
    pub stored_len: usize,
    /// Bytes of the chunk once decompressed.
    pub raw_len: usize,
}

impl RecordHeader {
    /// Length of a record header.
    pub const LEN: usize = XORB_CHUNK_HEADER_LENGTH;

    /// Parse the header of chunk `chunk` (its number, for errors). A chunk stored
    /// uncompressed must say so with equal lengths.
    pub fn parse(bytes: [u8; XORB_CHUNK_HEADER_LENGTH], chunk: usize) -> Result<Self, XorbError> {
        let malformed = |reason: String| XorbError::MalformedChunk { chunk, reason };
        let header: XorbChunkHeader =
            parse_chunk_header(bytes).map_err(|e| malformed(e.to_string()))?;
        let stored_len = header.get_compressed_length() as usize;
        let raw_len = header.get_uncompressed_length() as usize;
        let scheme = header
            .get_compression_scheme()
            .map_err(|e| malformed(e.to_string()))?;
        if scheme == CompressionScheme::None && stored_len != raw_len {
            return Err(malformed(format!(
                "is stored uncompressed in {stored_len} bytes, its header says {raw_len}"
            )));
        }
        Ok(RecordHeader {
            scheme,
            stored_len,
            raw_len,
        })
    }

    /// Whether the stored bytes are the chunk's bytes as they are.
    pub fn is_raw(&self) -> bool {
        self.scheme == CompressionScheme::None
    }

    /// Header plus stored bytes.
    pub fn record_len(&self) -> usize {
        XORB_CHUNK_HEADER_LENGTH + self.stored_len
    }

    /// Decompress the record's stored bytes into `out` (cleared first), never past the
    /// length the header declares.
    pub fn decompress(
        &self,
        stored: &[u8],
        chunk: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), XorbError> {
        let malformed = |reason: String| XorbError::MalformedChunk { chunk, reason };
        out.clear();
        if self.is_raw() {
            out.extend_from_slice(stored);
            return Ok(());
        }
        out.reserve(self.raw_len);
        let mut capped = CappedWriter {
            out,
            cap: self.raw_len,
        };
        self.scheme
            .decompress_from_reader(&mut &stored[..], &mut capped)
            .map_err(|e| malformed(format!("does not decompress: {e}")))?;
        if out.len() != self.raw_len {
            return Err(malformed(format!(
                "decompresses to {} bytes, its header says {}",
                out.len(),
                self.raw_len
            )));
        }
        Ok(())
    }
}

/// Validate an uploaded xorb read from `reader`: every chunk decompresses to the length its
/// header declares, and the Merkle root of the chunk hashes equals `expected`. A trailing
/// footer is ignored (and not counted in the index). Returns the index to store.
pub fn validate<R: Read>(reader: R, expected: &XetHash) -> Result<XorbIndex, XorbError> {
    validate_buffered(io::BufReader::with_capacity(1 << 20, reader), expected)
}

/// [`validate`] from a reader that buffers already (the pieces of a body as they arrived):
/// no second buffer between it and the chunk records.
pub fn validate_buffered<R: BufRead>(
    mut reader: R,
    expected: &XetHash,
) -> Result<XorbIndex, XorbError> {
    let mut chunks: Vec<ChunkMeta> = Vec::new();
    let mut sized: Vec<(XetHash, u64)> = Vec::new();
    let mut buf = Vec::new();
    let (mut stored, mut raw) = (0u64, 0u64);
    while let Some(record_len) = read_chunk(&mut reader, chunks.len(), &mut buf)? {
        if chunks.len() == MAX_XORB_CHUNKS {
            return Err(XorbError::TooManyChunks);
        }
        stored += record_len as u64;
        raw += buf.len() as u64;
        if stored > MAX_XORB_CONTENT_BYTES || raw > u32::MAX as u64 {
            return Err(XorbError::TooLarge);
        }
        let h = hash::chunk_hash(&buf);
        sized.push((h, buf.len() as u64));
        chunks.push(ChunkMeta {
            hash: h,
            stored_end: stored as u32,
            raw_end: raw as u32,
        });
    }
    if chunks.is_empty() {
        return Err(XorbError::Empty);
    }
    let actual = hash::xorb_hash(&sized);
    if actual != *expected {
        return Err(XorbError::HashMismatch {
            expected: *expected,
            actual,
        });
    }
    Ok(XorbIndex { chunks })
}

/// Read until `buf` is full or the input ends; returns how many bytes were read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A `Write` into a Vec that refuses to grow past `cap` bytes: a decompression bomb fails
/// instead of allocating.
struct CappedWriter<'a> {
    out: &'a mut Vec<u8>,
    cap: usize,
}

impl Write for CappedWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.out.len() + data.len() > self.cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk decompresses to more than its header declares",
            ));
        }
        self.out.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Test helpers shared with other crates' tests: build xorb bytes from chunk payloads.
pub mod testing {
    use super::*;
    use xet_core_structures::xorb_object::write_chunk_header;

    /// Serialize `chunks` as xorb records the way clients do: every other chunk is offered
    /// to LZ4 and kept compressed only when that makes it smaller. Returns the bytes and the
    /// xorb hash.
    pub fn build_xorb(chunks: &[Vec<u8>]) -> (Vec<u8>, XetHash) {
        let mut out = Vec::new();
        let mut sized = Vec::new();
        for (i, data) in chunks.iter().enumerate() {
            let compressed = (i % 2 == 0)
                .then(|| CompressionScheme::LZ4.compress_from_slice(data).ok())
                .flatten()
                .map(|b| b.into_owned())
                .filter(|b| b.len() < data.len());
            let (scheme, body) = match compressed {
                Some(b) => (CompressionScheme::LZ4, b),
                None => (CompressionScheme::None, data.clone()),
            };
            let header = XorbChunkHeader::new(scheme, body.len() as u32, data.len() as u32);
            // Writing into a Vec cannot fail.
            let _ = write_chunk_header(&mut out, &header);
            out.extend_from_slice(&body);
            sized.push((hash::chunk_hash(data), data.len() as u64));
        }
        (out, hash::xorb_hash(&sized))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::build_xorb;
    use super::*;
    use xet_core_structures::xorb_object::write_chunk_header;

    fn chunks(n: usize, size: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| (0..size).map(|j| ((i * 31 + j * 7) % 251) as u8).collect())
            .collect()
    }

    #[test]
    fn valid_xorb_gives_its_index() {
        let data = chunks(5, 10_000);
        let (bytes, h) = build_xorb(&data);
        let index = validate(bytes.as_slice(), &h).expect("valid");
        assert_eq!(index.num_chunks(), 5);
        assert_eq!(index.stored_len(), bytes.len() as u64);
        assert_eq!(index.raw_len(), 50_000);
        assert_eq!(index.raw_range_len(1, 3), 20_000);
        assert_eq!(index.chunks[2].hash, hash::chunk_hash(&data[2]));
        assert_eq!(XorbIndex::decode(&index.encode()).expect("decodes"), index);
    }

    #[test]
    fn a_full_xorb_of_incompressible_chunks_fits() {
        // 64 MiB of chunk data that does not compress: the headers go on top of the cap.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let chunks: Vec<Vec<u8>> = (0..1024)
            .map(|_| {
                (0..64 * 1024 / 8)
                    .flat_map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state.to_le_bytes()
                    })
                    .collect()
            })
            .collect();
        let (bytes, h) = build_xorb(&chunks);
        assert!(bytes.len() as u64 > 64 * 1024 * 1024);
        let index = validate(bytes.as_slice(), &h).expect("a full xorb is valid");
        assert_eq!(index.raw_len(), 64 * 1024 * 1024);
    }

    #[test]
    fn a_trailing_footer_is_ignored() {
        let data = chunks(3, 4_000);
        let (mut bytes, h) = build_xorb(&data);
        let content = bytes.len() as u64;
        bytes.extend_from_slice(b"XETBLOB\x01 then anything the footer holds");
        let index = validate(bytes.as_slice(), &h).expect("valid");
        assert_eq!(index.stored_len(), content);
    }

    #[test]
    fn wrong_hash_is_refused() {
        let (bytes, _) = build_xorb(&chunks(2, 100));
        let other = hash::chunk_hash(b"other");
        assert!(matches!(
            validate(bytes.as_slice(), &other),
            Err(XorbError::HashMismatch { .. })
        ));
    }

    #[test]
    fn truncated_xorb_is_refused() {
        let (bytes, h) = build_xorb(&chunks(2, 1000));
        for cut in [3, 8, 20, bytes.len() - 1] {
            let err = validate(&bytes[..cut], &h).expect_err("truncated");
            assert!(
                matches!(err, XorbError::Truncated { .. }),
                "cut {cut}: {err}"
            );
        }
    }

    #[test]
    fn empty_xorb_is_refused() {
        assert!(matches!(
            validate(&[][..], &XetHash::default()),
            Err(XorbError::Empty)
        ));
    }

    #[test]
    fn header_lying_about_length_is_refused() {
        let data = vec![7u8; 1000];
        let mut bytes = Vec::new();
        // Stored uncompressed but the header claims 2000 decompressed bytes.
        let header = XorbChunkHeader::new(CompressionScheme::None, 1000, 2000);
        write_chunk_header(&mut bytes, &header).expect("vec write");
        bytes.extend_from_slice(&data);
        let err = validate(bytes.as_slice(), &hash::chunk_hash(&data)).expect_err("lying header");
        assert!(matches!(err, XorbError::MalformedChunk { .. }), "{err}");
    }

    #[test]
    fn lz4_bomb_stops_at_the_declared_length() {
        // 100 KiB of zeros compresses to a few hundred bytes; declare only 10 bytes.
        let zeros = vec![0u8; 100 * 1024];
        let body = CompressionScheme::LZ4
            .compress_from_slice(&zeros)
            .expect("compress")
            .into_owned();
        let mut bytes = Vec::new();
        write_chunk_header(
            &mut bytes,
            &XorbChunkHeader::new(CompressionScheme::LZ4, body.len() as u32, 10),
        )
        .expect("vec write");
        bytes.extend_from_slice(&body);
        let err = validate(bytes.as_slice(), &XetHash::default()).expect_err("bomb");
        assert!(matches!(err, XorbError::MalformedChunk { .. }), "{err}");
    }

    #[test]
    fn oversize_chunk_header_is_refused() {
        let mut bytes = Vec::new();
        write_chunk_header(
            &mut bytes,
            &XorbChunkHeader::new(CompressionScheme::None, 300_000, 300_000),
        )
        .expect("vec write");
        bytes.extend(std::iter::repeat_n(0u8, 300_000));
        let err = validate(bytes.as_slice(), &XetHash::default()).expect_err("oversize");
        assert!(matches!(err, XorbError::MalformedChunk { .. }), "{err}");
    }

    #[test]
    fn corrupt_index_is_detected() {
        assert!(XorbIndex::decode(&[0u8; 39]).is_err());
        assert!(XorbIndex::decode(&[]).is_err());
        // Offsets that do not grow.
        assert!(XorbIndex::decode(&[0u8; 80]).is_err());
    }
}

#[cfg(test)]
mod index_cache_tests {
    use super::*;

    fn index(chunks: usize) -> Arc<XorbIndex> {
        Arc::new(XorbIndex {
            chunks: (0..chunks as u32)
                .map(|i| ChunkMeta {
                    hash: XetHash::default(),
                    stored_end: (i + 1) * 10,
                    raw_end: (i + 1) * 10,
                })
                .collect(),
        })
    }

    fn hash(i: u8) -> XetHash {
        XetHash::from_bytes([i; 32])
    }

    #[test]
    fn the_index_cache_holds_at_most_its_chunks_oldest_out_first() {
        let cache = IndexCache::default();
        let third = CACHED_INDEX_CHUNKS / 3;
        for i in 0..3 {
            cache.put(hash(i), index(third));
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&hash(1)).map(|x| x.chunks.len()), Some(third));
        // Past the bound: the oldest goes, the others stay.
        cache.put(hash(3), index(third));
        assert!(cache.get(&hash(0)).is_none());
        assert!(cache.get(&hash(1)).is_some() && cache.get(&hash(3)).is_some());
        assert!(cache.lock().chunks <= CACHED_INDEX_CHUNKS);
        // The same hash again changes nothing (its index is the same by construction).
        cache.put(hash(3), index(third));
        assert_eq!(cache.len(), 3);
        // An index larger than the whole cache is not kept.
        cache.put(hash(9), index(CACHED_INDEX_CHUNKS + 1));
        assert!(cache.get(&hash(9)).is_none());
        assert_eq!(cache.len(), 3);
    }
}
