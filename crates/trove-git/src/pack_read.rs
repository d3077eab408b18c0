//! The content of packed objects, read straight from the packs [`crate::pack_headers`] read
//! the headers of: inflated with zlib and rebuilt from their deltas here, rather than asked of
//! libgit2 one object at a time (which finds each in the pack index again, takes a lock for
//! each step and keeps every delta base in a shared cache: two fifths of a `pre-receive`
//! hook's time on a first push of 17,000 objects).
//!
//! Reading goes forward through each pack, as the objects lie in it, and keeps the objects
//! that other entries are deltas of, so that a delta usually finds its base already built.
//! Every check git applies holds here too: a whole object must inflate to exactly its stated
//! size with a valid zlib stream, a delta must apply to a base of the size it states and
//! produce the size it states. Whatever fails a check, is too large, or has its base in
//! another pack gives "unknown", and the caller asks libgit2.

use crate::inflate_head::inflate_head;
use crate::pack_headers::{Base, Cursor, EntryAt, Pack};
use flate2::{Decompress, FlushDecompress, Status};
use std::collections::HashMap;
use std::rc::Rc;

/// Objects larger than this (and deltas of that size) are left to libgit2: a hook reads
/// trees and small blobs, and a tree of 16 MiB names some 400,000 files.
const MAX_OBJECT_BYTES: u64 = 16 << 20;
/// Bytes of delta bases kept per reader before the kept ones are dropped.
const MAX_KEPT_BYTES: usize = 32 << 20;
/// Deltas applied one after another at most for one object (git makes chains of 50 at most
/// with `gc --aggressive`; index-pack accepts longer ones).
const MAX_CHAIN: usize = 10_000;
/// Bytes of a delta's compressed data inflated to read the size of its result.
const DELTA_HEAD_INPUT: usize = 512;
/// Bytes each open pack is read through. Small: going forward, the reads are of small
/// objects close together, but a delta's base may lie far back in the pack, often in the
/// part another thread reads (a first push read ~2,000 such bases, with a buffer of 64 KiB
/// that was 140 MB copied out of the page cache for 1.2 MB of pack).
const READ_BUFFER: usize = 8 * 1024;

/// Reads objects from the packs of one [`crate::pack_headers::Contents`]; one per thread,
/// each with its own open files and kept bases.
pub(crate) struct PackReader<'a> {
    packs: &'a [Pack],
    /// The packs opened so far, by their place in `packs`.
    open: Vec<Option<Cursor>>,
    input: Vec<u8>,
    inflater: Decompress,
    /// Objects that are bases of other entries, by where they lie.
    kept: HashMap<(usize, usize), Rc<[u8]>>,
    kept_bytes: usize,
}

impl<'a> PackReader<'a> {
    pub(crate) fn new(packs: &'a [Pack]) -> PackReader<'a> {
        PackReader {
            packs,
            open: Vec::new(),
            input: Vec::new(),
            inflater: Decompress::new(true),
            kept: HashMap::new(),
            kept_bytes: 0,
        }
    }

    /// The file of pack `pack`, opened on first use.
    fn cursor(&mut self, pack: usize) -> Option<&mut Cursor> {
        if self.open.len() <= pack {
            self.open.resize_with(pack + 1, || None);
        }
        match &mut self.open[pack] {
            Some(cursor) => Some(cursor),
            slot => {
                let file = std::fs::File::open(&self.packs.get(pack)?.path).ok()?;
                Some(slot.insert(Cursor::new(file, READ_BUFFER)))
            }
        }
    }

    /// Reads entry `k`'s compressed data (all of it, or its first `at_most` bytes) into
    /// `self.input`.
    fn compressed(&mut self, pack: usize, k: usize, at_most: usize) -> Option<()> {
        let entry = self.packs.get(pack)?.entries.get(k)?;
        let (data_at, end) = (entry.data_at, self.packs[pack].data_end(k));
        let len = usize::try_from(end.checked_sub(data_at)?)
            .ok()?
            .min(at_most);
        let mut input = std::mem::take(&mut self.input);
        input.resize(len, 0);
        let read = self
            .cursor(pack)
            .and_then(|cursor| cursor.seek(data_at).and_then(|()| cursor.bytes(&mut input)));
        self.input = input;
        if read.is_none() {
            // A read that failed part way leaves the file's position unknown: reopen it.
            self.open[pack] = None;
        }
        read
    }

    /// The size of the object the delta at `at` makes, from the first bytes it inflates to;
    /// `None` when it cannot be read so.
    pub(crate) fn delta_size(&mut self, at: EntryAt) -> Option<u64> {
        self.compressed(at.pack, at.entry, DELTA_HEAD_INPUT)?;
        // Two sizes of at most ten bytes each. An error or a short answer: unknown.
        let mut out = [0u8; 20];
        let produced = inflate_head(&self.input, &mut out)?;
        let mut head = out.get(..produced)?;
        let _source_size = varint(&mut head)?;
        varint(&mut head)
    }

    /// The content of the object at `at`, whole or rebuilt from its deltas; `None` when it
    /// cannot be read so.
    pub(crate) fn read(&mut self, at: EntryAt) -> Option<Rc<[u8]>> {
        let packs = self.packs;
        let pack = packs.get(at.pack)?;
        // Down the chain to an object kept or stored whole, then up again applying deltas.
        let mut chain = Vec::new();
        let mut k = at.entry;
        let mut content = loop {
            if let Some(kept) = self.kept.get(&(at.pack, k)) {
                break Rc::clone(kept);
            }
            match pack.entries.get(k)?.base {
                Base::Whole(_) => {
                    let whole: Rc<[u8]> = self.inflate(at.pack, k)?.into();
                    self.keep(at.pack, k, &whole);
                    break whole;
                }
                Base::Offset(_) | Base::Id(_) if chain.len() < MAX_CHAIN => {
                    chain.push(k);
                    k = (*pack.bases.get(k)?)?;
                }
                _ => return None,
            }
        };
        for &k in chain.iter().rev() {
            let delta = self.inflate(at.pack, k)?;
            content = apply_delta(&content, &delta)?.into();
            self.keep(at.pack, k, &content);
        }
        Some(content)
    }

    /// Keeps `content`, the object at entry `k`, if another entry is a delta of it.
    fn keep(&mut self, pack: usize, k: usize, content: &Rc<[u8]>) {
        if !self.packs[pack].is_base.get(k).copied().unwrap_or(false) {
            return;
        }
        if self.kept_bytes + content.len() > MAX_KEPT_BYTES {
            self.kept.clear();
            self.kept_bytes = 0;
        }
        if content.len() <= MAX_KEPT_BYTES {
            self.kept_bytes += content.len();
            self.kept.insert((pack, k), Rc::clone(content));
        }
    }

    /// Entry `k`'s data inflated: exactly its stated size, from one complete zlib stream.
    fn inflate(&mut self, pack: usize, k: usize) -> Option<Vec<u8>> {
        let size = self.packs.get(pack)?.entries.get(k)?.size;
        if size > MAX_OBJECT_BYTES {
            return None;
        }
        let size = usize::try_from(size).ok()?;
        // zlib's worst case grows data by a few bytes per 16 KiB block: anything longer
        // than this is left to libgit2 rather than read into memory.
        self.compressed(pack, k, 2 * size + 1024)?;
        // One byte more than expected, so that an object longer than its header says shows.
        let mut out = Vec::with_capacity(size + 1);
        self.inflater.reset(true);
        let status = self
            .inflater
            .decompress_vec(&self.input, &mut out, FlushDecompress::Finish)
            .ok()?;
        (status == Status::StreamEnd && out.len() == size).then_some(out)
    }
}

/// A little-endian base-128 number at the start of `bytes`, which moves past it.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let (&c, rest) = bytes.split_first()?;
        *bytes = rest;
        if shift > 63 {
            return None;
        }
        value |= u64::from(c & 0x7f) << shift;
        shift += 7;
        if c & 0x80 == 0 {
            return Some(value);
        }
    }
}

/// The object `delta` makes of `base` (git's delta format: the base's size, the result's
/// size, then instructions to copy a range of the base or insert the bytes that follow).
/// `None` if the delta does not fit the base or does not make the size it states.
fn apply_delta(base: &[u8], delta: &[u8]) -> Option<Vec<u8>> {
    let mut rest = delta;
    if varint(&mut rest)? != base.len() as u64 {
        return None;
    }
    let size = varint(&mut rest)?;
    if size > MAX_OBJECT_BYTES {
        return None;
    }
    let size = usize::try_from(size).ok()?;
    let mut out = Vec::with_capacity(size);
    while let Some((&op, after)) = rest.split_first() {
        rest = after;
        if op & 0x80 != 0 {
            // Copy: which of four offset bytes and three size bytes follow, by bit.
            let mut offset = 0usize;
            let mut len = 0usize;
            for i in 0..4 {
                if op & (1 << i) != 0 {
                    let (&b, after) = rest.split_first()?;
                    rest = after;
                    offset |= usize::from(b) << (8 * i);
                }
            }
            for i in 0..3 {
                if op & (0x10 << i) != 0 {
                    let (&b, after) = rest.split_first()?;
                    rest = after;
                    len |= usize::from(b) << (8 * i);
                }
            }
            if len == 0 {
                len = 0x10000;
            }
            out.extend_from_slice(base.get(offset..offset.checked_add(len)?)?);
        } else if op != 0 {
            let len = usize::from(op);
            out.extend_from_slice(rest.get(..len)?);
            rest = &rest[len..];
        } else {
            // Reserved: git refuses it.
            return None;
        }
        if out.len() > size {
            return None;
        }
    }
    (out.len() == size).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_copy_and_insert_and_misfits_are_refused() {
        let base = b"0123456789abcdef";
        // base size 16, result size 9: copy 4 bytes from offset 2, insert "xyz", copy 2 from 14.
        let delta = [16, 9, 0x91, 2, 4, 3, b'x', b'y', b'z', 0x91, 14, 2];
        assert_eq!(
            apply_delta(base, &delta).as_deref(),
            Some(&b"2345xyzef"[..])
        );
        // A stated base size that is not the base's.
        let mut wrong = delta;
        wrong[0] = 15;
        assert_eq!(apply_delta(base, &wrong), None);
        // A stated result size that is not what the instructions make.
        let mut wrong = delta;
        wrong[1] = 10;
        assert_eq!(apply_delta(base, &wrong), None);
        // A copy past the base's end, the reserved instruction, a cut insert.
        assert_eq!(apply_delta(base, &[16, 4, 0x91, 14, 4]), None);
        assert_eq!(apply_delta(base, &[16, 1, 0]), None);
        assert_eq!(apply_delta(base, &[16, 3, 3, b'a']), None);
        // Every cut of a good delta is refused, never a panic.
        for cut in 0..delta.len() {
            assert_eq!(apply_delta(base, &delta[..cut]), None, "cut at {cut}");
        }
    }
}
