//! Stored xorb bytes back into file bytes, one chunk at a time (memory: one chunk).

use crate::plan::PlannedTerm;
use crate::xorb::{XorbError, read_chunk};
use std::io::{Read, Write};

/// Decode the chunks of `term` from `stored` (positioned at the term's first stored byte),
/// skip the first `skip` decompressed bytes, and write at most `take` bytes to `out`.
/// Returns the bytes written. Fails if the stored bytes end early or do not decompress to
/// the term's length.
pub fn decode_term<R: Read, W: Write>(
    stored: R,
    term: &PlannedTerm,
    mut skip: u64,
    take: u64,
    out: &mut W,
) -> Result<u64, XorbError> {
    let mut reader = stored.take(term.stored_end - term.stored_start);
    let mut buf = Vec::new();
    let mut written = 0u64;
    let mut produced = 0u64;
    for chunk in term.chunk_start..term.chunk_end {
        if written >= take {
            break;
        }
        if read_chunk(&mut reader, chunk as usize, &mut buf)?.is_none() {
            return Err(XorbError::Truncated {
                chunk: chunk as usize,
            });
        }
        produced += buf.len() as u64;
        let len = buf.len() as u64;
        if skip >= len {
            skip -= len;
            continue;
        }
        let from = skip as usize;
        skip = 0;
        let n = (len - from as u64).min(take - written) as usize;
        out.write_all(&buf[from..from + n])?;
        written += n as u64;
    }
    if written < take && produced != term.unpacked_len {
        return Err(XorbError::MalformedChunk {
            chunk: term.chunk_end as usize,
            reason: format!(
                "term decodes to {produced} bytes, expected {}",
                term.unpacked_len
            ),
        });
    }
    Ok(written)
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
