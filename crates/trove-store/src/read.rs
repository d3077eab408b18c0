//! Reading an object out as a stream of large chunks, for download bodies.
//!
//! Each chunk is read on the blocking pool straight into the buffer that is handed on
//! (`tokio::fs::File` reads into a buffer of its own and copies from it, one more pass over
//! every byte). No thread is held between chunks, so a slow client costs memory (at most a
//! chunk in flight here) but never a blocking thread.

use bytes::Bytes;
use futures_util::Stream;
use std::io::{self, Read};
use tokio::task::JoinHandle;

/// Bytes read from disk per chunk. Large enough that the blocking-pool hop and the syscalls
/// cost little per GiB; small enough that 64 downloads in flight, each holding about four
/// chunks (one being read ahead, up to three queued by the HTTP layer), stay below 128 MiB.
pub const READ_CHUNK: usize = 256 * 1024;

/// The next `len` bytes of `file` (from its current position) as a stream of chunks of at
/// most [`READ_CHUNK`] bytes. The next chunk is read while the current one is being sent, so
/// the disk (or page cache) and the socket work in parallel. A file that ends early yields an
/// `UnexpectedEof` error.
pub fn read_chunks(
    file: tokio::fs::File,
    len: u64,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    // An operation still in flight (none after `open_range`) makes this wait for it below.
    let start = ReadAhead::Start(file.try_into_std(), len);
    futures_util::stream::try_unfold(start, |state| async move {
        let (job, left) = match state {
            ReadAhead::Start(_, 0) | ReadAhead::Done => return Ok(None),
            ReadAhead::Start(Ok(file), left) => (read_chunk(file, left), left),
            ReadAhead::Start(Err(file), left) => (read_chunk(file.into_std().await, left), left),
            ReadAhead::Reading(job, left) => (job, left),
        };
        let (file, chunk) = job.await.map_err(io::Error::other)??;
        if chunk.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the object ended {left} bytes early"),
            ));
        }
        let left = left - chunk.len() as u64;
        let next = if left == 0 {
            ReadAhead::Done
        } else {
            ReadAhead::Reading(read_chunk(file, left), left)
        };
        Ok(Some((Bytes::from(chunk), next)))
    })
}

type ReadJob = JoinHandle<io::Result<(std::fs::File, Vec<u8>)>>;

enum ReadAhead {
    /// Nothing read yet: the file (still a tokio one if an operation was in flight) and
    /// how many bytes to send.
    Start(Result<std::fs::File, tokio::fs::File>, u64),
    /// The next chunk is being read; `u64` bytes remain to send, that chunk included.
    Reading(ReadJob, u64),
    Done,
}

/// Read the next chunk (at most [`READ_CHUNK`] of the `left` bytes) on the blocking pool.
fn read_chunk(file: std::fs::File, left: u64) -> ReadJob {
    let want = left.min(READ_CHUNK as u64);
    tokio::task::spawn_blocking(move || {
        // Allocation-sized exactly: `read_to_end` fills the spare capacity without zeroing it
        // first and, the limit reached, stops without growing it.
        let mut chunk = Vec::with_capacity(want as usize);
        (&file).take(want).read_to_end(&mut chunk)?;
        Ok((file, chunk))
    })
}
