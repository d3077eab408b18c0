//! Stored xorb bytes back into file bytes, one chunk at a time (memory: one chunk), either
//! copied into a writer ([`decode_term`]) or handed out as shared buffers ([`decode_term_shared`]:
//! a chunk stored uncompressed goes out as a slice of the block it was read into, never copied
//! in user space).

use crate::plan::PlannedTerm;
use crate::xorb::{RecordHeader, XorbError, read_chunk};
use bytes::Bytes;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Decode the chunks of `term` from `stored` (positioned at the term's first stored byte),
/// skip the first `skip` decompressed bytes, and write at most `take` bytes to `out`.
/// Returns the bytes written. Fails if the stored bytes end early or do not decompress to
/// the term's length.
pub fn decode_term<R: Read, W: Write>(
    stored: R,
    term: &PlannedTerm,
    skip: u64,
    take: u64,
    out: &mut W,
) -> Result<u64, XorbError> {
    let mut reader = stored.take(term.stored_end - term.stored_start);
    let mut buf = Vec::new();
    let mut window = Window::new(skip, take);
    for chunk in term.chunk_start..term.chunk_end {
        if window.is_full() {
            break;
        }
        if read_chunk(&mut reader, chunk as usize, &mut buf)?.is_none() {
            return Err(XorbError::Truncated {
                chunk: chunk as usize,
            });
        }
        if let Some(part) = window.next(buf.len()) {
            out.write_all(&buf[part])?;
        }
    }
    window.finish(term)
}

/// Blocks the stored bytes are read into by [`decode_term_shared`], used again once every
/// slice handed out of one is dropped (hyper has written it): a fresh block of a few hundred
/// KiB is an `mmap` that the kernel zeroes page by page and a `munmap` at its free, for each
/// block of each download. At most `max` free blocks are kept (memory: `max × size` at rest);
/// a block comes back only when the pool has room.
pub struct BlockPool {
    size: usize,
    max: usize,
    free: Mutex<Vec<Vec<u8>>>,
}

impl BlockPool {
    /// A pool of blocks of `size` bytes keeping at most `max` free ones.
    pub fn new(size: usize, max: usize) -> Arc<BlockPool> {
        Arc::new(BlockPool {
            size: size.max(1),
            max,
            free: Mutex::new(Vec::new()),
        })
    }

    /// The size of the pool's blocks.
    pub fn block_size(&self) -> usize {
        self.size
    }

    /// How many free blocks the pool holds.
    pub fn free_blocks(&self) -> usize {
        self.lock().len()
    }

    /// An empty buffer with room for `want` bytes: a block of the pool when it is big
    /// enough, else a buffer of its own (a record larger than a block).
    fn take(&self, want: usize) -> Vec<u8> {
        if want <= self.size
            && let Some(block) = self.lock().pop()
        {
            return block;
        }
        Vec::with_capacity(want.max(self.size))
    }

    fn give_back(&self, mut block: Vec<u8>) {
        if block.capacity() != self.size {
            return;
        }
        block.clear();
        let mut free = self.lock();
        if free.len() < self.max {
            free.push(block);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // A panic while the list was held leaves a list of empty blocks: still good.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A block shared by the slices of it in flight; back to its pool when the last is dropped.
struct Pooled {
    block: Vec<u8>,
    pool: Arc<BlockPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.block
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.block));
    }
}

/// Like [`decode_term`], but the bytes go to `emit` as shared buffers: the stored bytes are
/// read a block of `blocks` at a time (at least one record), and a chunk stored uncompressed
/// is handed out as a slice of its block, so the only copy is the kernel's into that block;
/// a compressed chunk is decompressed into a buffer of its own. Memory: the buffers `emit`
/// keeps, plus one block and one record.
pub fn decode_term_shared<R: Read>(
    stored: R,
    term: &PlannedTerm,
    skip: u64,
    take: u64,
    blocks: &Arc<BlockPool>,
    emit: &mut dyn FnMut(Bytes) -> io::Result<()>,
) -> Result<u64, XorbError> {
    let mut reader = stored.take(term.stored_end - term.stored_start);
    let mut held = Bytes::new();
    let mut raw = Vec::new();
    let mut window = Window::new(skip, take);
    for chunk in term.chunk_start..term.chunk_end {
        if window.is_full() {
            break;
        }
        let chunk = chunk as usize;
        if !fill(&mut reader, &mut held, RecordHeader::LEN, blocks)? {
            return Err(XorbError::Truncated { chunk });
        }
        let mut header = [0u8; RecordHeader::LEN];
        header.copy_from_slice(&held[..RecordHeader::LEN]);
        let record = RecordHeader::parse(header, chunk)?;
        if !fill(&mut reader, &mut held, record.record_len(), blocks)? {
            return Err(XorbError::Truncated { chunk });
        }
        let stored_bytes = held.slice(RecordHeader::LEN..record.record_len());
        let _ = held.split_to(record.record_len());
        let bytes = if record.is_raw() {
            stored_bytes
        } else {
            record.decompress(&stored_bytes, chunk, &mut raw)?;
            Bytes::from(std::mem::take(&mut raw))
        };
        if let Some(part) = window.next(bytes.len()) {
            emit(bytes.slice(part))?;
        }
    }
    window.finish(term)
}

/// [`decode_term_shared`] for stored bytes that arrive as frames (an object store's
/// streaming GET, read on the async runtime): the frames are fed in order and the decoded
/// bytes handed out as they come. A chunk stored uncompressed goes out as slices of the
/// frames it arrived in — no copy at all in user space; a compressed one is gathered and
/// decompressed into a buffer of its own. Memory: one compressed record.
pub struct FrameDecoder {
    /// The chunk being decoded, and the term's end.
    chunk: u32,
    end: u32,
    record: Record,
    window: Window,
    /// The term's length, to check what its chunks decoded to.
    unpacked_len: u64,
    raw: Vec<u8>,
}

/// Where a [`FrameDecoder`] is within the current record.
enum Record {
    /// Reading its header: the bytes of it seen so far.
    Header {
        got: usize,
        bytes: [u8; RecordHeader::LEN],
    },
    /// Passing on an uncompressed chunk: how many of its bytes are still to come.
    Raw { left: usize },
    /// Gathering a compressed chunk before decompressing it.
    Packed {
        header: RecordHeader,
        stored: Vec<u8>,
    },
}

impl FrameDecoder {
    /// A decoder of `term`'s stored bytes (from its first stored byte on) that skips the
    /// first `skip` decompressed bytes and hands out at most `take`.
    pub fn new(term: &PlannedTerm, skip: u64, take: u64) -> Self {
        Self {
            chunk: term.chunk_start,
            end: term.chunk_end,
            record: Record::Header {
                got: 0,
                bytes: [0; RecordHeader::LEN],
            },
            window: Window::new(skip, take),
            unpacked_len: term.unpacked_len,
            raw: Vec::new(),
        }
    }

    /// Whether every byte asked for has been handed out, or every chunk decoded: the rest
    /// of the stored bytes, if any, is not needed.
    pub fn is_done(&self) -> bool {
        self.window.is_full() || self.chunk >= self.end
    }

    /// Whether every byte asked for has been handed out: the rest of the stored bytes is
    /// not needed (short of that, read them to their end: a GET's connection is reused only
    /// once its body has been read whole).
    pub fn is_full(&self) -> bool {
        self.window.is_full()
    }

    /// Decodes the next `frame` of stored bytes, handing the decoded bytes to `emit`.
    pub fn feed(&mut self, mut frame: Bytes, emit: &mut dyn FnMut(Bytes)) -> Result<(), XorbError> {
        while !frame.is_empty() && !self.is_done() {
            let chunk = self.chunk as usize;
            match &mut self.record {
                Record::Header { got, bytes } => {
                    let n = (RecordHeader::LEN - *got).min(frame.len());
                    bytes[*got..*got + n].copy_from_slice(&frame.split_to(n));
                    *got += n;
                    if *got < RecordHeader::LEN {
                        continue;
                    }
                    let header = RecordHeader::parse(*bytes, chunk)?;
                    self.record = if header.is_raw() {
                        Record::Raw {
                            left: header.raw_len,
                        }
                    } else {
                        Record::Packed {
                            stored: Vec::with_capacity(header.stored_len),
                            header,
                        }
                    };
                    if matches!(self.record, Record::Raw { left: 0 }) {
                        self.next_record();
                    }
                }
                Record::Raw { left } => {
                    let n = (*left).min(frame.len());
                    let piece = frame.split_to(n);
                    *left -= n;
                    let finished = *left == 0;
                    // The window counts bytes, so a chunk's pieces go through it one by one.
                    if let Some(part) = self.window.next(n) {
                        emit(piece.slice(part));
                    }
                    if finished {
                        self.next_record();
                    }
                }
                Record::Packed { header, stored } => {
                    let n = (header.stored_len - stored.len()).min(frame.len());
                    stored.extend_from_slice(&frame.split_to(n));
                    if stored.len() < header.stored_len {
                        continue;
                    }
                    header.decompress(stored, chunk, &mut self.raw)?;
                    let bytes = Bytes::from(std::mem::take(&mut self.raw));
                    if let Some(part) = self.window.next(bytes.len()) {
                        emit(bytes.slice(part));
                    }
                    self.next_record();
                }
            }
        }
        Ok(())
    }

    fn next_record(&mut self) {
        self.chunk += 1;
        self.record = Record::Header {
            got: 0,
            bytes: [0; RecordHeader::LEN],
        };
    }

    /// The end of the stored bytes: the bytes handed out; an error if they ended before the
    /// window was full and short of the term's last chunk, or the chunks did not decode to
    /// the term's length.
    pub fn finish(&self) -> Result<u64, XorbError> {
        if !self.is_done() {
            return Err(XorbError::Truncated {
                chunk: self.chunk as usize,
            });
        }
        if self.window.is_full() {
            return Ok(self.window.written);
        }
        self.window.finish_len(self.unpacked_len, self.end)
    }
}

/// Which bytes of a term's decoded chunks go out: the first `skip` are passed over, then at
/// most `take` are handed on; counts what the chunks decoded to, to check the term's length.
struct Window {
    skip: u64,
    take: u64,
    written: u64,
    produced: u64,
}

impl Window {
    fn new(skip: u64, take: u64) -> Self {
        Self {
            skip,
            take,
            written: 0,
            produced: 0,
        }
    }

    /// Every byte asked for has been handed on.
    fn is_full(&self) -> bool {
        self.written >= self.take
    }

    /// The part of the next decoded chunk (`len` bytes) to hand on, if any of it falls in
    /// the window; counted as handed on.
    fn next(&mut self, len: usize) -> Option<Range<usize>> {
        let len = len as u64;
        self.produced += len;
        if self.skip >= len {
            self.skip -= len;
            return None;
        }
        let from = self.skip;
        self.skip = 0;
        let n = (len - from).min(self.take - self.written);
        self.written += n;
        Some(from as usize..(from + n) as usize)
    }

    /// The bytes handed on; an error if the input ended before the window was full and the
    /// chunks did not decode to the term's length.
    fn finish(&self, term: &PlannedTerm) -> Result<u64, XorbError> {
        self.finish_len(term.unpacked_len, term.chunk_end)
    }

    /// [`Self::finish`] for a term of `unpacked_len` bytes ending at chunk `chunk_end`.
    fn finish_len(&self, unpacked_len: u64, chunk_end: u32) -> Result<u64, XorbError> {
        if self.written < self.take && self.produced != unpacked_len {
            return Err(XorbError::MalformedChunk {
                chunk: chunk_end as usize,
                reason: format!(
                    "term decodes to {} bytes, expected {}",
                    self.produced, unpacked_len
                ),
            });
        }
        Ok(self.written)
    }
}

/// Make `held` at least `need` bytes long by reading a new block (of at least `block` bytes,
/// as much as `reader` has) after what it still holds; `false` when the input ends first.
fn fill<R: Read>(
    reader: &mut R,
    held: &mut Bytes,
    need: usize,
    blocks: &Arc<BlockPool>,
) -> io::Result<bool> {
    if held.len() >= need {
        return Ok(true);
    }
    let want = need.max(blocks.block_size());
    let mut next = blocks.take(want);
    next.extend_from_slice(held);
    reader
        .by_ref()
        .take((want - held.len()) as u64)
        .read_to_end(&mut next)?;
    *held = Bytes::from_owner(Pooled {
        block: next,
        pool: blocks.clone(),
    });
    Ok(held.len() >= need)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xorb::{testing::build_xorb, validate};

    #[test]
    fn decodes_a_slice_of_a_term() {
        let chunks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 1000]).collect();
        let (bytes, h) = build_xorb(&chunks);
        let index = validate(bytes.as_slice(), &h).expect("valid");
        let (s, e) = index.stored_range(1, 3);
        let term = PlannedTerm {
            xorb: h,
            chunk_start: 1,
            chunk_end: 3,
            unpacked_len: 2000,
            stored_start: s,
            stored_end: e,
        };
        let mut out = Vec::new();
        let n = decode_term(&bytes[s as usize..], &term, 990, 20, &mut out).expect("decode");
        assert_eq!(n, 20);
        assert_eq!(&out[..10], &[1u8; 10]);
        assert_eq!(&out[10..], &[2u8; 10]);
    }

    fn shared(
        stored: &[u8],
        term: &PlannedTerm,
        skip: u64,
        take: u64,
        block: usize,
    ) -> Result<Vec<u8>, XorbError> {
        let mut out = Vec::new();
        let blocks = BlockPool::new(block, 2);
        decode_term_shared(stored, term, skip, take, &blocks, &mut |b| {
            out.extend_from_slice(&b);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn blocks_come_back_to_the_pool_once_their_last_slice_is_dropped() {
        // Incompressible chunks: stored as is, handed out as slices of their blocks.
        let mut seed = 11u32;
        let chunks: Vec<Vec<u8>> = (0..4)
            .map(|_| {
                (0..3000)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        (seed >> 16) as u8
                    })
                    .collect()
            })
            .collect();
        let (bytes, h) = build_xorb(&chunks);
        let index = validate(bytes.as_slice(), &h).expect("valid");
        let (s, e) = index.stored_range(0, 4);
        let term = PlannedTerm {
            xorb: h,
            chunk_start: 0,
            chunk_end: 4,
            unpacked_len: 12_000,
            stored_start: s,
            stored_end: e,
        };
        // Blocks of about two records: two blocks for the term, at most one kept.
        let blocks = BlockPool::new(6100, 1);
        let mut held = Vec::new();
        decode_term_shared(&bytes[s as usize..], &term, 0, 12_000, &blocks, &mut |b| {
            held.push(b);
            Ok(())
        })
        .expect("decode");
        let got: Vec<u8> = held.iter().flat_map(|b| b.iter().copied()).collect();
        let expected: Vec<u8> = chunks.concat();
        assert_eq!(got, expected);
        // Slices still held (hyper has not written them): their blocks are not free.
        assert_eq!(blocks.free_blocks(), 0);
        drop(held);
        assert_eq!(blocks.free_blocks(), 1, "bounded by the pool's max");
        // The next decode reads into the same blocks and gets the same bytes.
        let mut again = Vec::new();
        decode_term_shared(&bytes[s as usize..], &term, 0, 12_000, &blocks, &mut |b| {
            again.extend_from_slice(&b);
            Ok(())
        })
        .expect("decode");
        assert_eq!(again, expected);
    }

    /// A xorb of six chunks of uneven lengths, compressible ones (stored LZ4) and
    /// incompressible ones (stored as is, the chunks `i % 2 == random_parity`, from `seed`)
    /// mixed, and the term of its chunks 1..6.
    fn mixed_xorb(seed: u32, random_parity: usize) -> (Vec<u8>, PlannedTerm) {
        let mut seed = seed;
        let chunks: Vec<Vec<u8>> = (0..6)
            .map(|i| {
                (0..(3000 + i * 517))
                    .map(|j| {
                        if i % 2 == random_parity {
                            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                            (seed >> 16) as u8
                        } else {
                            (j % 7) as u8
                        }
                    })
                    .collect()
            })
            .collect();
        let (bytes, h) = build_xorb(&chunks);
        let index = validate(bytes.as_slice(), &h).expect("valid");
        let (s, e) = index.stored_range(1, 6);
        let term = PlannedTerm {
            xorb: h,
            chunk_start: 1,
            chunk_end: 6,
            unpacked_len: index.raw_range_len(1, 6),
            stored_start: s,
            stored_end: e,
        };
        (bytes, term)
    }

    #[test]
    fn shared_decoding_matches_copying_decoding_for_every_block_size() {
        let (bytes, term) = mixed_xorb(7, 1);
        let (s, e) = (term.stored_start, term.stored_end);
        let stored = &bytes[s as usize..];
        for (skip, take) in [(0, term.unpacked_len), (2999, 5000), (10, 1), (0, 0)] {
            let mut expected = Vec::new();
            decode_term(stored, &term, skip, take, &mut expected).expect("decode");
            for block in [1, 9, 4096, 1 << 20] {
                let got = shared(stored, &term, skip, take, block).expect("shared decode");
                assert_eq!(got, expected, "skip {skip} take {take} block {block}");
            }
        }
        let cut = &bytes[s as usize..e as usize - 5];
        assert!(matches!(
            shared(cut, &term, 0, term.unpacked_len, 4096),
            Err(XorbError::Truncated { .. })
        ));
    }

    /// `stored` fed to a [`FrameDecoder`] in frames of `frame` bytes.
    fn framed(
        stored: &[u8],
        term: &PlannedTerm,
        skip: u64,
        take: u64,
        frame: usize,
    ) -> Result<Vec<u8>, XorbError> {
        let mut dec = FrameDecoder::new(term, skip, take);
        let mut out = Vec::new();
        for piece in stored.chunks(frame) {
            if dec.is_done() {
                break;
            }
            dec.feed(Bytes::copy_from_slice(piece), &mut |b| {
                out.extend_from_slice(&b)
            })?;
        }
        let n = dec.finish()?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    #[test]
    fn frame_decoding_matches_copying_decoding_for_every_frame_size() {
        let (bytes, term) = mixed_xorb(5, 0);
        let (s, e) = (term.stored_start, term.stored_end);
        let stored = &bytes[s as usize..e as usize];
        for (skip, take) in [(0, term.unpacked_len), (2999, 5000), (10, 1), (0, 0)] {
            let mut expected = Vec::new();
            decode_term(stored, &term, skip, take, &mut expected).expect("decode");
            for frame in [1, 7, 8, 9, 4096, 1 << 20] {
                let got = framed(stored, &term, skip, take, frame).expect("framed decode");
                assert_eq!(got, expected, "skip {skip} take {take} frame {frame}");
            }
        }
        for frame in [1, 4096] {
            let cut = &stored[..stored.len() - 5];
            assert!(matches!(
                framed(cut, &term, 0, term.unpacked_len, frame),
                Err(XorbError::Truncated { .. })
            ));
        }
    }

    #[test]
    fn truncated_stored_bytes_fail() {
        let chunks: Vec<Vec<u8>> = (0..2u8).map(|i| vec![i; 1000]).collect();
        let (bytes, h) = build_xorb(&chunks);
        let index = validate(bytes.as_slice(), &h).expect("valid");
        let term = PlannedTerm {
            xorb: h,
            chunk_start: 0,
            chunk_end: 2,
            unpacked_len: 2000,
            stored_start: 0,
            stored_end: index.stored_len(),
        };
        let mut out = Vec::new();
        let cut = &bytes[..bytes.len() - 5];
        assert!(decode_term(cut, &term, 0, 2000, &mut out).is_err());
    }
}
