//! Content-defined chunking exactly as Xet clients cut files, so that bytes the server chunks
//! (plain LFS uploads) and bytes a client chunked (Xet uploads) meet in the same chunks.
//!
//! The rule: a 64-bit gear hash over the chunk's bytes (`h = (h << 1) + TABLE[byte]`, the
//! `gearhash` crate's default table), reset at every cut. No cut before [`MIN_CHUNK`] bytes;
//! a cut after the first byte from there on that leaves the top 16 bits of `h` zero; a forced
//! cut at [`MAX_CHUNK`]; the rest of the input is the last chunk. The hash only remembers its
//! last 64 bytes, so the first `MIN_CHUNK - 64` bytes of each chunk are skipped unhashed
//! without changing a single cut.

use crate::hash::{self, XetHash};
use bytes::Bytes;

/// The average chunk length the mask aims at.
pub const TARGET_CHUNK: usize = 64 * 1024;
/// No chunk but a file's last is shorter.
pub const MIN_CHUNK: usize = TARGET_CHUNK / 8;
/// No chunk is longer.
pub const MAX_CHUNK: usize = TARGET_CHUNK * 2;
/// The top 16 bits: the low bits of a gear hash depend on too few bytes to be cut on.
const MASK: u64 = ((TARGET_CHUNK - 1) as u64) << (64 - TARGET_CHUNK.trailing_zeros());
/// How many trailing bytes the gear hash depends on.
const WINDOW: usize = 64;
/// Bytes each of the four lanes of [`next_match`] covers per block.
const LANE: usize = 8 * 1024;

/// Finds chunk boundaries in a stream fed piece by piece.
#[derive(Debug, Default)]
pub struct Chunker {
    hasher: gearhash::Hasher<'static>,
    /// Bytes of the current, unfinished chunk seen so far.
    len: usize,
}

impl Chunker {
    /// How many leading bytes of `data` complete the current chunk, or `None` when all of
    /// `data` belongs to it and the chunk goes on. After `Some(n)`, feed `data[n..]` next.
    pub fn next_boundary(&mut self, data: &[u8]) -> Option<usize> {
        let mut pos = 0;
        // Bytes the hash will have forgotten by the first position where a cut may fall.
        let unhashed = MIN_CHUNK - WINDOW;
        if self.len < unhashed {
            let skip = (unhashed - self.len).min(data.len());
            pos += skip;
            self.len += skip;
        }
        // Bytes that reach the hash but end where no cut may fall yet.
        if self.len < MIN_CHUNK - 1 && pos < data.len() {
            let take = (MIN_CHUNK - 1 - self.len).min(data.len() - pos);
            self.hasher.update(&data[pos..pos + take]);
            pos += take;
            self.len += take;
        }
        if pos == data.len() {
            return None;
        }
        let room = (MAX_CHUNK - self.len).min(data.len() - pos);
        let mut h = self.hasher.get_hash();
        let found = next_match(&mut h, &data[pos..pos + room]);
        self.hasher.set_hash(h);
        match found {
            Some(n) => Some(self.cut(pos + n)),
            None => {
                self.len += room;
                if self.len == MAX_CHUNK {
                    Some(self.cut(pos + room))
                } else {
                    None
                }
            }
        }
    }

    /// Ends the current chunk at `at` bytes into the piece being fed.
    fn cut(&mut self, at: usize) -> usize {
        self.hasher.set_hash(0);
        self.len = 0;
        at
    }
}

/// Feeds `buf` to gear hash `h` until a position where `h & MASK == 0`: how many bytes that
/// took (and `h` the hash after them), or `None` (and `h` the hash after all of `buf`) — the
/// answer of `gearhash::Hasher::next_match(buf, MASK)`, faster.
///
/// One hash is a chain of dependent steps (shift, add a table entry) that keeps the CPU's
/// other units idle. Since the hash only remembers its last [`WINDOW`] bytes, a block is
/// split into four lanes hashed side by side: lane 0 goes on from `h`; lanes 1–3 first hash
/// the `WINDOW` bytes before their start, which gives the very hash the single chain would
/// have there. A cut in lane 0 is the first one; a cut in a later lane is kept until the end
/// of the block (an earlier lane may still find one). Blocks too short for four lanes go to
/// the `gearhash` crate's own SIMD loop.
fn next_match(h: &mut u64, buf: &[u8]) -> Option<usize> {
    // `x & MASK == 0` for the top 16 bits of MASK.
    const LIMIT: u64 = 1 << 48;
    const _: () = assert!(MASK == !(LIMIT - 1) && LANE >= WINDOW);
    let table = &gearhash::DEFAULT_TABLE;
    let step = |x: u64, b: u8| (x << 1).wrapping_add(table[usize::from(b)]);
    let mut base = 0;
    while buf.len() - base >= 4 * LANE {
        let block = &buf[base..base + 4 * LANE];
        let warm = |lane: usize| {
            block[lane * LANE - WINDOW..lane * LANE]
                .iter()
                .fold(0u64, |x, &b| step(x, b))
        };
        let (mut x0, mut x1, mut x2, mut x3) = (*h, warm(1), warm(2), warm(3));
        let (l0, rest) = block.split_at(LANE);
        let (l1, rest) = rest.split_at(LANE);
        let (l2, l3) = rest.split_at(LANE);
        // The earliest cut found in lanes 1–3: (offset in the block, hash there).
        let mut later: Option<(usize, u64)> = None;
        for (i, (((&a, &b), &c), &d)) in l0.iter().zip(l1).zip(l2).zip(l3).enumerate() {
            x0 = step(x0, a);
            x1 = step(x1, b);
            x2 = step(x2, c);
            x3 = step(x3, d);
            if (x0 < LIMIT) | (x1 < LIMIT) | (x2 < LIMIT) | (x3 < LIMIT) {
                if x0 < LIMIT {
                    *h = x0;
                    return Some(base + i + 1);
                }
                let (lane, x) = if x1 < LIMIT {
                    (1, x1)
                } else if x2 < LIMIT {
                    (2, x2)
                } else {
                    (3, x3)
                };
                let at = lane * LANE + i;
                if later.is_none_or(|(first, _)| at < first) {
                    later = Some((at, x));
                }
            }
        }
        if let Some((at, x)) = later {
            *h = x;
            return Some(base + at + 1);
        }
        *h = x3;
        base += 4 * LANE;
    }
    let mut tail = gearhash::Hasher::default();
    tail.set_hash(*h);
    let found = tail.next_match(&buf[base..], MASK);
    *h = tail.get_hash();
    found.map(|n| base + n)
}

/// One chunk of a stream: its hash, where it starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamChunk {
    pub hash: XetHash,
    pub offset: u64,
    pub len: u32,
}

/// Cuts a stream fed in pieces of any size into chunks and hashes each one. A chunk that lies
/// within one piece is hashed in place; the bytes of one that spans pieces are gathered in a
/// buffer of at most [`MAX_CHUNK`] bytes and hashed in one go when it ends — one copy of
/// those bytes is far cheaper than hashing them in piece-sized steps, which keeps BLAKE3 off
/// its wide SIMD path (measured by the `ingest_stages` example). Same chunks and hashes as
/// [`chunk_all`] over the pieces put end to end.
#[derive(Debug, Default)]
pub struct StreamChunker {
    chunker: Chunker,
    /// The bytes of the current chunk fed so far, when it began in an earlier piece.
    carry: Vec<u8>,
    position: Position,
}

/// Where the next chunk of a stream starts: hands out each chunk's place as it ends.
#[derive(Debug, Default)]
struct Position {
    start: u64,
}

impl Position {
    /// The place of the chunk of `len` bytes that starts here; the next one starts after it.
    fn next(&mut self, hash: XetHash, len: usize) -> StreamChunk {
        let chunk = StreamChunk {
            hash,
            offset: self.start,
            // A chunk is at most MAX_CHUNK bytes.
            len: len as u32,
        };
        self.start += len as u64;
        chunk
    }
}

impl StreamChunker {
    /// Feeds the next piece of the stream; every chunk it completes is appended to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<StreamChunk>) {
        while let Some(n) = self.chunker.next_boundary(data) {
            let (hash, len) = if self.carry.is_empty() {
                (hash::chunk_hash(&data[..n]), n)
            } else {
                self.carry.extend_from_slice(&data[..n]);
                let done = (hash::chunk_hash(&self.carry), self.carry.len());
                self.carry.clear();
                done
            };
            out.push(self.position.next(hash, len));
            data = &data[n..];
        }
        if !data.is_empty() {
            if self.carry.capacity() == 0 {
                self.carry.reserve_exact(MAX_CHUNK);
            }
            self.carry.extend_from_slice(data);
        }
    }

    /// Ends the stream: its last chunk, if any bytes remain, goes to `out`.
    pub fn finish(mut self, out: &mut Vec<StreamChunk>) {
        if !self.carry.is_empty() {
            let hash = hash::chunk_hash(&self.carry);
            out.push(self.position.next(hash, self.carry.len()));
        }
    }

    /// Bytes fed so far.
    pub fn fed(&self) -> u64 {
        self.position.start + self.carry.len() as u64
    }
}

/// Cuts a stream that arrives as [`Bytes`] pieces (an HTTP body) into chunks, each handed
/// out with its bytes: a chunk that lies within one piece is a slice of it (hashed in place,
/// not copied), one that spans pieces has its parts copied once into a buffer of exactly its
/// length, hashed there in one go. Same chunks and hashes as [`StreamChunker`] and
/// [`chunk_all`] over the pieces put end to end.
#[derive(Debug, Default)]
pub struct PieceChunker {
    chunker: Chunker,
    /// The current chunk's bytes so far, as the pieces they came in, when it began in an
    /// earlier piece (at most [`MAX_CHUNK`] bytes).
    parts: Vec<Bytes>,
    parts_len: usize,
    position: Position,
    /// Bytes of the chunks that spanned pieces (copied).
    spanning: u64,
}

impl PieceChunker {
    /// Feeds the next piece of the stream; every chunk it completes is appended to `out`.
    pub fn feed(&mut self, piece: &Bytes, out: &mut Vec<(StreamChunk, Bytes)>) {
        let mut at = 0;
        while let Some(n) = self.chunker.next_boundary(&piece[at..]) {
            let bytes = if self.parts.is_empty() {
                piece.slice(at..at + n)
            } else {
                self.parts.push(piece.slice(at..at + n));
                self.parts_len += n;
                self.join_parts()
            };
            self.emit(bytes, out);
            at += n;
        }
        if at < piece.len() {
            self.parts_len += piece.len() - at;
            self.parts.push(piece.slice(at..));
        }
    }

    /// Ends the stream: its last chunk, if any bytes remain, goes to `out`. Returns the
    /// bytes of all its chunks that spanned pieces ([`Self::spanning_bytes`], the last one
    /// counted).
    pub fn finish(mut self, out: &mut Vec<(StreamChunk, Bytes)>) -> u64 {
        if self.parts_len > 0 {
            let bytes = self.join_parts();
            self.emit(bytes, out);
        }
        self.spanning
    }

    /// Bytes fed so far.
    pub fn fed(&self) -> u64 {
        self.position.start + self.parts_len as u64
    }

    /// Bytes of the chunks so far that spanned pieces: the only ones copied.
    pub fn spanning_bytes(&self) -> u64 {
        self.spanning
    }

    /// The current chunk's parts as one buffer (one part needs no copy).
    fn join_parts(&mut self) -> Bytes {
        let len = std::mem::take(&mut self.parts_len);
        if self.parts.len() == 1 {
            return self.parts.pop().unwrap_or_default();
        }
        let mut joined = Vec::with_capacity(len);
        for part in self.parts.drain(..) {
            joined.extend_from_slice(&part);
        }
        self.spanning += len as u64;
        Bytes::from(joined)
    }

    fn emit(&mut self, bytes: Bytes, out: &mut Vec<(StreamChunk, Bytes)>) {
        let chunk = self.position.next(hash::chunk_hash(&bytes), bytes.len());
        out.push((chunk, bytes));
    }
}

/// One chunk: its hash and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub hash: XetHash,
    pub len: u64,
}

/// Chunks a whole buffer: (hash, length) of each chunk in order. For tests and small inputs;
/// streams go through [`Chunker`] directly.
pub fn chunk_all(data: &[u8]) -> Vec<Chunk> {
    let mut chunker = Chunker::default();
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(n) = chunker.next_boundary(rest) {
        out.push(Chunk {
            hash: hash::chunk_hash(&rest[..n]),
            len: n as u64,
        });
        rest = &rest[n..];
    }
    if !rest.is_empty() {
        out.push(Chunk {
            hash: hash::chunk_hash(rest),
            len: rest.len() as u64,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// `len` pseudo-random bytes: SHA-256 of (seed, block number) in counter mode. The
    /// Python generator of the expected hashes below produces the same bytes.
    fn counter_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 32);
        let mut i = 0u64;
        while out.len() < len {
            let mut h = Sha256::new();
            h.update(seed.to_le_bytes());
            h.update(i.to_le_bytes());
            out.extend_from_slice(&h.finalize());
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn file_hash_of(data: &[u8]) -> String {
        let chunks: Vec<(XetHash, u64)> = chunk_all(data).iter().map(|c| (c.hash, c.len)).collect();
        hash::file_hash(&chunks).hex()
    }

    /// Expected file hashes computed by the real client: `hf_xet.hash_files` (hf_xet 1.8.0)
    /// over files holding the same bytes, printed by `bench/storage_chunk_vectors.py`. The
    /// file hash is the Merkle root of every (chunk hash, chunk length), so one misplaced cut
    /// changes it.
    #[test]
    fn file_hashes_match_hf_xet() {
        let random = |len| counter_bytes(7, len);
        let mut mixed = counter_bytes(8, 300_000);
        mixed.extend(std::iter::repeat_n(0u8, 500_000));
        mixed.extend(counter_bytes(9, 700_001));
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("random 1", random(1), EXPECTED[0]),
            ("random 8191", random(8191), EXPECTED[1]),
            ("random 8192", random(8192), EXPECTED[2]),
            ("random 8193", random(8193), EXPECTED[3]),
            ("random 131072", random(131_072), EXPECTED[4]),
            ("random 131073", random(131_073), EXPECTED[5]),
            ("random 3000001", random(3_000_001), EXPECTED[6]),
            ("zeros 1000000", vec![0u8; 1_000_000], EXPECTED[7]),
            ("mixed", mixed, EXPECTED[8]),
        ];
        for (name, data, expected) in cases {
            assert_eq!(file_hash_of(&data), expected, "{name}");
        }
    }

    const EXPECTED: [&str; 9] = [
        "31c2a842a4828675fb15e1a3745d816b2c166dc096b055c22b6c2f971344fe6b",
        "6d0849d48b07276e2ccb84f71142f2b73f5c5dbfc65dced488837cb3564ba78d",
        "6bfdca386b685cfd2b79ca0d049b54ca258fe45fa157eb3c0fb425a1e6ca28f4",
        "239f055dcfb94db0646de3a6f73fca9d40a5eabd1755feb261b716ea5f359460",
        "2fd1709108e4e6e10d41ea4d102989f842f41cefe8f90eafa47e01e1c0342ec5",
        "e9b3a579e55c654d585e4401f89033cd5158a5f74f226ae145db44385f2202a8",
        "45ad5720744dbf10291bdfba6082e9d863633bde99c0a397fa976abe79bf47ca",
        "c0c85185f4307d40facfd366573176e54fc9c76041e44e32d52489780a6d1eaa",
        "08437d0621ba10019d89a72f6711809ba92e1983e1070154bf1837da0f5063d7",
    ];

    /// The rule of the module doc, byte by byte with no shortcut: chunk lengths.
    fn reference_cuts(data: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        let (mut h, mut len) = (0u64, 0usize);
        for &b in data {
            h = (h << 1).wrapping_add(gearhash::DEFAULT_TABLE[usize::from(b)]);
            len += 1;
            if (len >= MIN_CHUNK && h & MASK == 0) || len == MAX_CHUNK {
                out.push(len as u64);
                (h, len) = (0, 0);
            }
        }
        if len > 0 {
            out.push(len as u64);
        }
        out
    }

    #[test]
    fn cuts_match_the_byte_by_byte_rule_over_megabytes() {
        let mut data = counter_bytes(21, 9 << 20);
        // Runs that never match (zeros: forced cuts) and short random stretches between.
        data.splice(3_000_000..3_000_000, std::iter::repeat_n(0u8, 400_000));
        data.splice(5_000_000..5_000_000, counter_bytes(22, 5000));
        let lens: Vec<u64> = chunk_all(&data).iter().map(|c| c.len).collect();
        assert!(lens.len() > 100, "{}", lens.len());
        assert_eq!(lens, reference_cuts(&data));
    }

    /// The four-lane search against the `gearhash` crate's, including the hash it leaves,
    /// from every kind of start: inside a block, at a block's edge, on slices too short for
    /// four lanes, with a hash carried in.
    #[test]
    fn next_match_agrees_with_gearhash() {
        let data = counter_bytes(31, 6 << 20);
        let mut lane_hits = [0usize; 4];
        for len in [
            1usize,
            100,
            4 * LANE - 1,
            4 * LANE,
            4 * LANE + 1,
            200_000,
            data.len(),
        ] {
            let (mut at, mut h_ours, mut reference) =
                (0usize, 12345u64, gearhash::Hasher::default());
            reference.set_hash(h_ours);
            let mut rounds = 0;
            while at < data.len() && rounds < 20_000 {
                rounds += 1;
                let piece = &data[at..(at + len).min(data.len())];
                let ours = next_match(&mut h_ours, piece);
                let theirs = reference.next_match(piece, MASK);
                assert_eq!(ours, theirs, "len {len} at {at}");
                assert_eq!(h_ours, reference.get_hash(), "len {len} at {at}");
                if let Some(n) = ours {
                    if len == data.len() {
                        lane_hits[(n - 1) % (4 * LANE) / LANE] += 1;
                    }
                    at += n;
                } else {
                    at += piece.len();
                }
            }
        }
        // Cuts were found in every lane, not only in the first.
        assert!(lane_hits.iter().all(|&n| n > 0), "{lane_hits:?}");
    }

    #[test]
    fn feeding_in_pieces_cuts_where_one_piece_does() {
        let data = counter_bytes(3, 1_500_000);
        let whole = chunk_all(&data);
        for piece in [1usize, 63, 4096, 65_537, 200_000] {
            let mut chunker = Chunker::default();
            let mut lens = Vec::new();
            let mut current = 0u64;
            for mut p in data.chunks(piece) {
                while let Some(n) = chunker.next_boundary(p) {
                    lens.push(current + n as u64);
                    current = 0;
                    p = &p[n..];
                }
                current += p.len() as u64;
            }
            if current > 0 {
                lens.push(current);
            }
            let expected: Vec<u64> = whole.iter().map(|c| c.len).collect();
            assert_eq!(lens, expected, "piece {piece}");
        }
    }

    #[test]
    fn the_stream_chunker_agrees_with_chunk_all_whatever_the_pieces() {
        let mut data = counter_bytes(11, 1_200_000);
        data.extend(std::iter::repeat_n(0u8, 300_000));
        data.extend(counter_bytes(12, 77_777));
        let whole = chunk_all(&data);
        for piece in [1usize, 100, 8191, 65_536, 131_073, 1 << 20, data.len()] {
            let mut stream = StreamChunker::default();
            let mut out = Vec::new();
            for p in data.chunks(piece) {
                stream.feed(p, &mut out);
            }
            assert_eq!(stream.fed(), data.len() as u64);
            stream.finish(&mut out);
            assert_eq!(out.len(), whole.len(), "piece {piece}");
            let mut offset = 0u64;
            for (s, w) in out.iter().zip(&whole) {
                assert_eq!((s.hash, u64::from(s.len)), (w.hash, w.len), "piece {piece}");
                assert_eq!(s.offset, offset, "piece {piece}");
                offset += u64::from(s.len);
            }
        }
        let mut out = Vec::new();
        StreamChunker::default().finish(&mut out);
        assert!(out.is_empty());
    }

    /// Chunks, hashes and bytes as one buffer cut whole, whatever the pieces; a chunk inside
    /// one piece is a slice of it (its bytes not copied), and only spanning chunks count as
    /// copied.
    #[test]
    fn the_piece_chunker_hands_out_each_chunk_with_its_bytes() {
        let mut data = counter_bytes(13, 1_200_000);
        data.extend(std::iter::repeat_n(0u8, 300_000));
        data.extend(counter_bytes(14, 77_777));
        let whole = chunk_all(&data);
        let source = Bytes::from(data.clone());
        for piece in [
            1usize,
            100,
            8191,
            65_536,
            131_073,
            300_000,
            1 << 20,
            data.len(),
        ] {
            let mut chunker = PieceChunker::default();
            let mut out = Vec::new();
            // Empty pieces (a body may send them) change nothing.
            chunker.feed(&Bytes::new(), &mut out);
            let mut at = 0;
            while at < source.len() {
                let end = (at + piece).min(source.len());
                chunker.feed(&source.slice(at..end), &mut out);
                at = end;
            }
            assert_eq!(chunker.fed(), data.len() as u64);
            let (fed, copied) = (out.len(), chunker.spanning_bytes());
            let copied_in_all = chunker.finish(&mut out);
            assert_eq!(out.len(), whole.len(), "piece {piece}");
            let (mut offset, mut spanning, mut spanning_in_all) = (0usize, 0u64, 0u64);
            for (i, ((c, bytes), w)) in out.iter().zip(&whole).enumerate() {
                assert_eq!((c.hash, u64::from(c.len)), (w.hash, w.len), "piece {piece}");
                assert_eq!(c.offset, offset as u64, "piece {piece}");
                assert_eq!(
                    &bytes[..],
                    &data[offset..offset + bytes.len()],
                    "piece {piece}"
                );
                let in_place = bytes.as_ptr() == source[offset..].as_ptr();
                if offset / piece == (offset + bytes.len() - 1) / piece {
                    assert!(
                        in_place,
                        "piece {piece}: a chunk inside one piece was copied"
                    );
                } else {
                    assert!(!in_place, "piece {piece}");
                    spanning_in_all += bytes.len() as u64;
                    if i < fed {
                        spanning += bytes.len() as u64;
                    }
                }
                offset += bytes.len();
            }
            // Copied are exactly the chunks that spanned pieces: those cut before the end,
            // and with the last one at the end.
            assert_eq!(copied, spanning, "piece {piece}");
            assert_eq!(copied_in_all, spanning_in_all, "piece {piece}");
            if piece >= data.len() {
                assert_eq!(copied_in_all, 0);
            }
        }
        let mut out = Vec::new();
        assert_eq!(PieceChunker::default().finish(&mut out), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn chunk_lengths_stay_within_bounds() {
        let data = counter_bytes(5, 4_000_000);
        let chunks = chunk_all(&data);
        let (last, rest) = chunks.split_last().expect("chunks");
        assert!(last.len as usize <= MAX_CHUNK);
        for c in rest {
            assert!(
                (MIN_CHUNK..=MAX_CHUNK).contains(&(c.len as usize)),
                "{}",
                c.len
            );
        }
        assert_eq!(chunks.iter().map(|c| c.len).sum::<u64>(), data.len() as u64);
        // Zeros never match the mask: every chunk is cut at the maximum.
        let zeros = chunk_all(&vec![0u8; 3 * MAX_CHUNK + 5]);
        let lens: Vec<u64> = zeros.iter().map(|c| c.len).collect();
        assert_eq!(
            lens,
            [MAX_CHUNK as u64, MAX_CHUNK as u64, MAX_CHUNK as u64, 5]
        );
        assert!(chunk_all(&[]).is_empty());
    }
}
