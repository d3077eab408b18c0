//! The first few bytes of a zlib stream, inflated without building decoding tables.
//!
//! [`crate::pack_headers`] needs the first bytes of thousands of deltas (the size of the
//! object each makes) and nothing more. A general inflater builds lookup tables for every
//! block it starts (miniz_oxide's `init_tree` was a seventh of a first push's hook, for
//! twenty bytes of output per delta); here each code is decoded bit by bit from the counts of
//! its code lengths (canonical Huffman codes, RFC 1951), which costs nothing to set up and
//! little for the few symbols read. Whatever is not a well-formed stream gives `None`, and
//! the caller falls back on libgit2.

/// Codes are at most this long (RFC 1951).
const MAX_BITS: usize = 15;
/// Literal/length and distance symbols together, at most.
const MAX_CODES: usize = 286 + 30;

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DISTANCE_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DISTANCE_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order in which a dynamic block lists the code lengths of its code-length code.
const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Reads a deflate stream's bits, least significant first.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
    buffer: u64,
    held: u32,
}

impl Bits<'_> {
    /// The next `n` bits (`n` ≤ 16).
    fn take(&mut self, n: u32) -> Option<u32> {
        while self.held < n {
            let byte = *self.data.get(self.at)?;
            self.at += 1;
            self.buffer |= u64::from(byte) << self.held;
            self.held += 8;
        }
        let value = (self.buffer & ((1u64 << n) - 1)) as u32;
        self.buffer >>= n;
        self.held -= n;
        Some(value)
    }

    /// Drops the bits left of the current byte (before a stored block).
    fn align(&mut self) {
        let drop = self.held % 8;
        self.buffer >>= drop;
        self.held -= drop;
    }
}

/// A canonical Huffman code: how many codes of each length, and the symbols in code order.
struct Code {
    count: [u16; MAX_BITS + 1],
    symbols: [u16; MAX_CODES],
}

impl Code {
    /// The code of symbols with these lengths (0: unused; each at most `MAX_BITS`, as every
    /// caller reads them: 3 bits, or a symbol below 16); `None` when over-subscribed.
    fn new(lengths: &[u8]) -> Option<Code> {
        // Counted in four tallies, summed after: one tally would make each step wait for
        // the previous one's store when neighbouring symbols have the same length (most do).
        let mut tallies = [[0u16; MAX_BITS + 1]; 4];
        let mut quads = lengths.chunks_exact(4);
        for quad in &mut quads {
            for (tally, &len) in tallies.iter_mut().zip(quad) {
                tally[usize::from(len) & MAX_BITS] += 1;
            }
        }
        for &len in quads.remainder() {
            tallies[0][usize::from(len) & MAX_BITS] += 1;
        }
        let mut count = [0u16; MAX_BITS + 1];
        for (len, total) in count.iter_mut().enumerate().skip(1) {
            *total = tallies.iter().map(|t| t[len]).sum();
        }
        let mut left: i32 = 1;
        for &c in &count[1..] {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return None;
            }
        }
        let mut next = [0u16; MAX_BITS + 2];
        for len in 1..=MAX_BITS {
            next[len + 1] = next[len] + count[len];
        }
        let mut symbols = [0u16; MAX_CODES];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len != 0 {
                let slot = &mut next[usize::from(len)];
                symbols[usize::from(*slot)] = u16::try_from(symbol).ok()?;
                *slot += 1;
            }
        }
        Some(Code { count, symbols })
    }

    /// The next symbol; `None` at the end of the input or on a code no symbol has.
    fn decode(&self, bits: &mut Bits<'_>) -> Option<u16> {
        // Codes of one length are consecutive, starting at `first`; their symbols start at
        // `index` in `symbols`.
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for &count in &self.count[1..] {
            code |= i32::try_from(bits.take(1)?).ok()?;
            let count = i32::from(count);
            if code - first < count {
                return self
                    .symbols
                    .get(usize::try_from(index + code - first).ok()?)
                    .copied();
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        None
    }
}

/// Fills `out` with the first bytes `zlib` inflates to and says how many: fewer than
/// `out.len()` when the stream ends sooner. `None` when the input is cut short or is not a
/// well-formed zlib stream (as far as it was read: nothing after `out.len()` bytes is looked
/// at, and the checksum is not).
pub(crate) fn inflate_head(zlib: &[u8], out: &mut [u8]) -> Option<usize> {
    let (&cmf, &flg) = (zlib.first()?, zlib.get(1)?);
    // Deflate with a window of at most 32 KiB, a valid check, no preset dictionary.
    if cmf & 0x0f != 8 || cmf >> 4 > 7 || (u16::from(cmf) * 256 + u16::from(flg)) % 31 != 0 {
        return None;
    }
    if flg & 0x20 != 0 {
        return None;
    }
    let mut bits = Bits {
        data: zlib.get(2..)?,
        at: 0,
        buffer: 0,
        held: 0,
    };
    let mut produced = 0;
    if out.is_empty() {
        return Some(0);
    }
    loop {
        let last = bits.take(1)? == 1;
        match bits.take(2)? {
            0 => {
                bits.align();
                let len = bits.take(16)?;
                if len != !bits.take(16)? & 0xffff {
                    return None;
                }
                for _ in 0..len {
                    out[produced] = u8::try_from(bits.take(8)?).ok()?;
                    produced += 1;
                    if produced == out.len() {
                        return Some(produced);
                    }
                }
            }
            kind @ (1 | 2) => {
                let dynamic;
                let (literals, distances) = if kind == 1 {
                    let fixed = FIXED.get_or_init(fixed_codes).as_ref()?;
                    (&fixed.0, &fixed.1)
                } else {
                    dynamic = dynamic_codes(&mut bits)?;
                    (&dynamic.0, &dynamic.1)
                };
                loop {
                    let symbol = literals.decode(&mut bits)?;
                    if symbol < 256 {
                        out[produced] = u8::try_from(symbol).ok()?;
                        produced += 1;
                        if produced == out.len() {
                            return Some(produced);
                        }
                        continue;
                    }
                    if symbol == 256 {
                        break;
                    }
                    let l = usize::from(symbol - 257);
                    let len = u32::from(*LENGTH_BASE.get(l)?)
                        + bits.take(u32::from(*LENGTH_EXTRA.get(l)?))?;
                    let d = usize::from(distances.decode(&mut bits)?);
                    let distance = usize::from(*DISTANCE_BASE.get(d)?)
                        + usize::try_from(bits.take(u32::from(*DISTANCE_EXTRA.get(d)?))?).ok()?;
                    if distance > produced {
                        return None;
                    }
                    for _ in 0..len {
                        out[produced] = out[produced - distance];
                        produced += 1;
                        if produced == out.len() {
                            return Some(produced);
                        }
                    }
                }
            }
            _ => return None,
        }
        if last {
            return Some(produced);
        }
    }
}

/// The codes of blocks compressed with fixed codes (most deltas are small, and small
/// streams use them), built once.
static FIXED: std::sync::OnceLock<Option<(Code, Code)>> = std::sync::OnceLock::new();

/// The codes of a block compressed with fixed codes.
fn fixed_codes() -> Option<(Code, Code)> {
    let mut lengths = [0u8; 288];
    lengths[..144].fill(8);
    lengths[144..256].fill(9);
    lengths[256..280].fill(7);
    lengths[280..].fill(8);
    Some((Code::new(&lengths)?, Code::new(&[5u8; 30])?))
}

/// The codes a dynamic block's header describes.
fn dynamic_codes(bits: &mut Bits<'_>) -> Option<(Code, Code)> {
    let literals = usize::try_from(bits.take(5)?).ok()? + 257;
    let distances = usize::try_from(bits.take(5)?).ok()? + 1;
    let code_lengths = usize::try_from(bits.take(4)?).ok()? + 4;
    if literals > 286 || distances > 30 {
        return None;
    }
    let mut lengths = [0u8; 19];
    for &at in &CODE_LENGTH_ORDER[..code_lengths] {
        lengths[at] = u8::try_from(bits.take(3)?).ok()?;
    }
    let length_code = Code::new(&lengths)?;
    let total = literals + distances;
    let mut lengths = [0u8; MAX_CODES];
    let mut at = 0;
    while at < total {
        let symbol = length_code.decode(bits)?;
        if symbol < 16 {
            lengths[at] = u8::try_from(symbol).ok()?;
            at += 1;
            continue;
        }
        let (len, repeat) = match symbol {
            16 => (*lengths.get(at.checked_sub(1)?)?, 3 + bits.take(2)?),
            17 => (0, 3 + bits.take(3)?),
            18 => (0, 11 + bits.take(7)?),
            _ => return None,
        };
        let end = at + usize::try_from(repeat).ok()?;
        if end > total {
            return None;
        }
        lengths[at..end].fill(len);
        at = end;
    }
    // A block must be able to end.
    if lengths[256] == 0 {
        return None;
    }
    Some((
        Code::new(&lengths[..literals])?,
        Code::new(&lengths[literals..total])?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn zlib(data: &[u8], level: u32) -> Vec<u8> {
        let mut compress = Compress::new(Compression::new(level), true);
        let mut out = Vec::with_capacity(data.len() * 2 + 64);
        compress
            .compress_vec(data, &mut out, FlushCompress::Finish)
            .expect("compress");
        out
    }

    /// Bytes with runs, repeats and noise, so that every kind of block and symbol appears.
    fn sample(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            match next() % 4 {
                0 => data.push(next() as u8),
                1 => data.extend(std::iter::repeat_n(next() as u8, (next() % 40) as usize)),
                2 if !data.is_empty() => {
                    let from = next() as usize % data.len();
                    let n = (next() as usize % 30).min(data.len() - from);
                    data.extend_from_within(from..from + n);
                }
                _ => data.extend_from_slice(b"delta header "),
            }
        }
        data.truncate(len);
        data
    }

    #[test]
    fn agrees_with_flate2_at_every_level_and_length() {
        for seed in 0..60u64 {
            let data = sample(seed, [0, 1, 5, 20, 300, 5000][seed as usize % 6]);
            for level in 0..=9 {
                let stream = zlib(&data, level);
                for want in [1usize, 2, 20, 64, data.len() + 1] {
                    let mut out = vec![0u8; want];
                    let n = inflate_head(&stream, &mut out).expect("well-formed stream");
                    assert_eq!(n, want.min(data.len()), "seed {seed} level {level}");
                    assert_eq!(&out[..n], &data[..n], "seed {seed} level {level}");
                }
            }
        }
    }

    #[test]
    fn cut_or_damaged_streams_give_none_or_a_prefix_never_a_panic() {
        let data = sample(7, 4000);
        let stream = zlib(&data, 6);
        // Cut anywhere before the first 20 bytes come out: None (or the bytes, never others).
        for cut in 0..stream.len() {
            let mut out = [0u8; 20];
            if let Some(n) = inflate_head(&stream[..cut], &mut out) {
                assert_eq!(&out[..n], &data[..n]);
            }
        }
        assert_eq!(inflate_head(b"", &mut [0u8; 4]), None);
        assert_eq!(
            inflate_head(b"\x78\x9d\x00", &mut [0u8; 4]),
            None,
            "bad check"
        );
        assert_eq!(
            inflate_head(b"\x78\xbb\x00", &mut [0u8; 4]),
            None,
            "dictionary"
        );
        // Every byte flipped in turn: whatever comes out, no panic.
        for at in 0..stream.len().min(400) {
            let mut bad = stream.clone();
            bad[at] ^= 0x5a;
            let _ = inflate_head(&bad, &mut [0u8; 20]);
        }
    }
}
