//! A download's bytes as ranges of files open on this node's disk, for a server that can hand
//! them to the kernel (`sendfile(2)`) instead of reading them into memory and writing them
//! out: an LFS object stored whole is one range; a Xet file whose chunks are stored
//! uncompressed is one range per chunk, its bytes after the chunk's 8-byte header. A file
//! with a compressed chunk, or held in a bucket, has none: it streams as bytes.
//!
//! The ranges travel beside the response body as an extension (`http::driver` looks for
//! them); the body still carries the same bytes for any other server path.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use trove_store::Store;
use trove_xet::XetHash;
use trove_xet::plan::Plan;
use trove_xet::xorb::RecordHeader;

/// `len` bytes of `file` from `offset` on.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
}

/// Every byte of a response body, in order, as file ranges; cloned cheaply (a response
/// extension must be `Clone`). Whoever sends them says how much went out through
/// [`FileRanges::report_sent`], for the access log.
#[derive(Debug, Clone)]
pub struct FileRanges {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ranges: Vec<FileRange>,
    len: u64,
    sent_bytes: AtomicU64,
    sent: AtomicBool,
    complete: AtomicBool,
}

impl FileRanges {
    fn new(ranges: Vec<FileRange>) -> FileRanges {
        let len = ranges.iter().map(|r| r.len).sum();
        FileRanges {
            inner: Arc::new(Inner {
                ranges,
                len,
                sent_bytes: AtomicU64::new(0),
                sent: AtomicBool::new(false),
                complete: AtomicBool::new(false),
            }),
        }
    }

    /// `[start, end)` of a file stored whole (the caller checked the range against it).
    pub fn whole(file: File, start: u64, end: u64) -> FileRanges {
        FileRanges::new(vec![FileRange {
            file: Arc::new(file),
            offset: start,
            len: end.saturating_sub(start),
        }])
    }

    /// The ranges of `plan`'s bytes, when every chunk it touches is stored uncompressed in a
    /// xorb on this node's disk; `Ok(None)` otherwise (a compressed chunk, a bucket). Reads
    /// the 8-byte header of each chunk (blocking: call from the blocking pool); a header that
    /// does not match the stored layout is an error, as it is when the bytes are decoded.
    pub fn of_plan(store: &Store, plan: &Plan) -> io::Result<Option<FileRanges>> {
        let mut files: Vec<(XetHash, Arc<File>)> = Vec::new();
        let mut ranges: Vec<FileRange> = Vec::new();
        let mut skip = plan.offset_into_first;
        let mut remaining = plan.length;
        for term in &plan.terms {
            if remaining == 0 {
                break;
            }
            let file = match files.iter().find(|(h, _)| *h == term.xorb) {
                Some((_, f)) => f.clone(),
                None => {
                    let Some(f) = store
                        .local_xorb_file(&term.xorb.hex())
                        .map_err(io::Error::other)?
                    else {
                        return Ok(None);
                    };
                    let f = Arc::new(f);
                    files.push((term.xorb, f.clone()));
                    f
                }
            };
            let mut at = term.stored_start;
            for chunk in term.chunk_start..term.chunk_end {
                if remaining == 0 {
                    break;
                }
                let mut header = [0u8; RecordHeader::LEN];
                if at + RecordHeader::LEN as u64 > term.stored_end {
                    return Err(truncated(term.xorb, chunk));
                }
                file.read_exact_at(&mut header, at)?;
                let record =
                    RecordHeader::parse(header, chunk as usize).map_err(io::Error::other)?;
                if !record.is_raw() {
                    return Ok(None);
                }
                let data = at + RecordHeader::LEN as u64;
                let len = record.raw_len as u64;
                if data + len > term.stored_end {
                    return Err(truncated(term.xorb, chunk));
                }
                if skip >= len {
                    skip -= len;
                } else {
                    let take = (len - skip).min(remaining);
                    ranges.push(FileRange {
                        file: file.clone(),
                        offset: data + skip,
                        len: take,
                    });
                    remaining -= take;
                    skip = 0;
                }
                at = data + len;
            }
            // As the decoder does: the plan's offset applies to its first term.
            skip = 0;
        }
        if remaining != 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the chunks end {remaining} bytes short of the plan"),
            ));
        }
        Ok(Some(FileRanges::new(ranges)))
    }

    /// The ranges, in the order of the body's bytes.
    pub fn ranges(&self) -> &[FileRange] {
        &self.inner.ranges
    }

    /// Bytes in all ranges together.
    pub fn len(&self) -> u64 {
        self.inner.len
    }

    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// Called once by the server that sent the ranges instead of the body: `bytes` went out,
    /// `complete` if that was all of them.
    pub fn report_sent(&self, bytes: u64, complete: bool) {
        self.inner.sent_bytes.store(bytes, Ordering::Relaxed);
        self.inner.complete.store(complete, Ordering::Relaxed);
        self.inner.sent.store(true, Ordering::Release);
    }

    /// What [`Self::report_sent`] said, if it was called.
    pub fn sent(&self) -> Option<(u64, bool)> {
        self.inner.sent.load(Ordering::Acquire).then(|| {
            (
                self.inner.sent_bytes.load(Ordering::Relaxed),
                self.inner.complete.load(Ordering::Relaxed),
            )
        })
    }
}

fn truncated(xorb: XetHash, chunk: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("xorb {xorb}: chunk {chunk} runs past the term's stored bytes"),
    )
}

/// The marker a request carries when the server in front of the router can send
/// [`FileRanges`] itself: handlers build them only then (reading chunk headers costs a
/// little). Set by `http::driver`, never by a client.
#[derive(Debug, Clone, Copy)]
pub struct CanSendFiles;
