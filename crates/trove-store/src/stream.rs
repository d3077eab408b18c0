//! Streaming a body into a file while hashing it, with bounded memory.
//!
//! Incoming chunks are gathered (without copying: `Bytes` are reference counted) into a
//! batch of about [`WRITE_BATCH`] bytes. Each batch is hashed and written by two jobs on the
//! blocking pool running side by side, while the next batch is received: on a machine with
//! two cores or more an upload goes at the pace of the slower of SHA-256 and the disk, not of
//! their sum. At most two batches are alive at once, whatever the body's size.
//!
//! Writes bypass the page cache where the filesystem allows it (see [`Sink`]): copying every
//! uploaded byte into the page cache and writing it back at `fsync` time costs about as much
//! CPU as hashing it, fills memory with data nobody is reading, and leaves all of the disk
//! work for the final `fsync`.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use tokio::task::JoinHandle;

/// Bytes gathered from a body before they are hashed and written in one go.
pub const WRITE_BATCH: usize = 4 << 20;

/// Alignment and granularity of direct writes: 4 KiB suits every common logical block size.
const ALIGN: usize = 4096;

/// A body fully written and hashed.
pub(crate) struct Streamed {
    pub file: File,
    pub digest: [u8; 32],
    pub len: u64,
}

pub(crate) enum StreamError {
    /// More than `limit` bytes arrived; reading stopped at `received`.
    TooLong { received: u64 },
    /// The body stream yielded an error.
    Body(io::Error),
    /// Writing the file failed.
    Write(io::Error),
}

type HashJob = JoinHandle<Sha256>;
type WriteJob = JoinHandle<io::Result<Sink>>;

/// The sink and hasher are either here or out with the one batch being processed.
enum Writer {
    Idle(Sink, Sha256),
    Busy(HashJob, WriteJob),
    Failed,
}

impl Writer {
    /// Wait for the batch in flight, if any, and take the sink and hasher back.
    async fn reclaim(&mut self) -> io::Result<(Sink, Sha256)> {
        match std::mem::replace(self, Writer::Failed) {
            Writer::Idle(sink, hasher) => Ok((sink, hasher)),
            Writer::Busy(hash, write) => {
                // Both are awaited before either result is looked at, so that nothing
                // touches the file once this returns.
                let (hashed, written) = (hash.await, write.await);
                let hasher = joined(hashed)?;
                Ok((joined(written)??, hasher))
            }
            Writer::Failed => Err(io::Error::other("writer already failed")),
        }
    }

    async fn submit(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        let (mut sink, mut hasher) = self.reclaim().await?;
        let to_write = batch.clone();
        let hash = tokio::task::spawn_blocking(move || {
            for chunk in &batch {
                hasher.update(chunk);
            }
            hasher
        });
        let write = tokio::task::spawn_blocking(move || {
            for chunk in &to_write {
                sink.write(chunk)?;
            }
            sink.flush_blocks()?;
            Ok(sink)
        });
        *self = Writer::Busy(hash, write);
        Ok(())
    }
}

/// The value of a finished blocking job; its panic, if it panicked.
pub(crate) fn joined<T>(result: Result<T, tokio::task::JoinError>) -> io::Result<T> {
    match result {
        Ok(value) => Ok(value),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(io::Error::other(e)),
    }
}

/// Write `body` into `file` (open for writing at `path`) from byte `offset` on, hashing it,
/// refusing to read past `limit` bytes. A short body is not an error here: the caller
/// compares `len`. The returned file has had every byte written to it but is not synced.
///
/// On error, any batch in flight is awaited before returning, so nothing writes to the file
/// after this returns. (If the future itself is dropped, the batch in flight finishes on
/// its own; callers rely on final verification, never on that.)
pub(crate) async fn hash_into_file<S>(
    file: File,
    path: &Path,
    offset: u64,
    mut body: S,
    limit: u64,
) -> Result<Streamed, StreamError>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Unpin,
{
    let sink = {
        let path = path.to_owned();
        joined(
            tokio::task::spawn_blocking(move || Sink::new(file, open_direct(&path), offset)).await,
        )
        .map_err(StreamError::Write)?
    };
    let mut writer = Writer::Idle(sink, Sha256::new());
    let result = pump(&mut writer, &mut body, limit).await;
    match result {
        Ok(len) => {
            let (sink, hasher) = writer.reclaim().await.map_err(StreamError::Write)?;
            let file = joined(tokio::task::spawn_blocking(move || sink.finish()).await)
                .and_then(|r| r)
                .map_err(StreamError::Write)?;
            Ok(Streamed {
                file,
                digest: hasher.finalize().into(),
                len,
            })
        }
        Err(e) => {
            let _ = writer.reclaim().await;
            Err(e)
        }
    }
}

async fn pump<S>(writer: &mut Writer, body: &mut S, limit: u64) -> Result<u64, StreamError>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Unpin,
{
    let mut batch = Vec::new();
    let mut batch_len = 0usize;
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StreamError::Body)?;
        received = received.saturating_add(chunk.len() as u64);
        if received > limit {
            return Err(StreamError::TooLong { received });
        }
        if chunk.is_empty() {
            continue;
        }
        batch_len += chunk.len();
        batch.push(chunk);
        if batch_len >= WRITE_BATCH {
            writer
                .submit(std::mem::take(&mut batch))
                .await
                .map_err(StreamError::Write)?;
            batch_len = 0;
        }
    }
    if !batch.is_empty() {
        writer.submit(batch).await.map_err(StreamError::Write)?;
    }
    Ok(received)
}

/// A file written from its start in order, through an aligned buffer straight to the disk
/// where the filesystem allows it (see [`Sink`]): for files built piece by piece, such as the
/// xorbs an upload is packed into, which would otherwise be copied into fresh page-cache
/// pages (on this kind of VM the most expensive memory to touch) only to be written back at
/// `fsync`. Whole 4 KiB blocks go to the disk as the buffer fills; the tail, at
/// [`DirectWriter::finish`].
pub struct DirectWriter {
    out: Out,
}

enum Out {
    Direct(Sink),
    /// Where the filesystem has no direct I/O (tmpfs): an ordinary buffered writer.
    Cached(io::BufWriter<File>),
}

/// The buffer of [`Out::Cached`].
const CACHED_BUFFER: usize = 1 << 20;

impl DirectWriter {
    /// Writes into `file` (open for writing at `path`, empty) from its start.
    pub fn new(file: File, path: &Path) -> Self {
        let out = match open_direct(path) {
            Some(direct) => Out::Direct(Sink::new(file, Some(direct), 0)),
            None => Out::Cached(io::BufWriter::with_capacity(CACHED_BUFFER, file)),
        };
        Self { out }
    }

    /// Writes into `file` through an ordinary buffer and the page cache, for a file that is
    /// read back soon.
    pub fn buffered(file: File) -> Self {
        Self {
            out: Out::Cached(io::BufWriter::with_capacity(CACHED_BUFFER, file)),
        }
    }

    /// Writes what is still buffered and hands back the plain handle (not synced).
    pub fn finish(self) -> io::Result<File> {
        match self.out {
            Out::Direct(sink) => sink.finish(),
            Out::Cached(out) => out.into_inner().map_err(io::IntoInnerError::into_error),
        }
    }
}

impl io::Write for DirectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.out {
            Out::Direct(sink) => {
                sink.write(buf)?;
                Ok(buf.len())
            }
            Out::Cached(out) => out.write(buf),
        }
    }

    /// Writes what can be written now: with direct I/O the whole blocks gathered so far
    /// (less than a block waits for [`DirectWriter::finish`]).
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Out::Direct(sink) => sink.flush_blocks(),
            Out::Cached(out) => out.flush(),
        }
    }
}

/// A second handle on `path` that bypasses the page cache, or `None` where the filesystem
/// (tmpfs, some network filesystems) or the platform does not offer that.
fn open_direct(path: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(file) => Some(file),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "store.direct_io_unavailable");
                None
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Where a body's bytes land: one file, at increasing offsets from where the body starts.
///
/// With a direct handle, bytes are copied into an aligned buffer and whole aligned blocks go
/// from there straight to the disk; only the unaligned ends (a part that starts or stops
/// mid-block, the last partial block of an object) go through the page cache. Mixing both is
/// safe: the kernel keeps them coherent, and `fsync` on the plain handle covers both. A
/// filesystem that accepts `O_DIRECT` at open but refuses the writes demotes the sink to the
/// page cache for good.
struct Sink {
    file: File,
    direct: Option<File>,
    /// File offset of the next byte: where `buf` starts.
    offset: u64,
    buf: AlignedBuf,
}

impl Sink {
    fn new(file: File, direct: Option<File>, offset: u64) -> Self {
        let buf = AlignedBuf::new(if direct.is_some() { WRITE_BATCH } else { 0 });
        Self {
            file,
            direct,
            offset,
            buf,
        }
    }

    fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.direct.is_none() {
            return self.write_through_cache(data);
        }
        // Up to the first block boundary through the page cache, so `buf` starts aligned.
        let misaligned = (self.offset % ALIGN as u64) as usize;
        if self.buf.len == 0 && misaligned != 0 {
            let head = data.len().min(ALIGN - misaligned);
            self.write_through_cache(&data[..head])?;
            data = &data[head..];
        }
        while !data.is_empty() {
            let taken = self.buf.extend(data);
            data = &data[taken..];
            if self.buf.is_full() {
                self.flush_blocks()?;
            }
        }
        Ok(())
    }

    /// Write the whole blocks gathered so far; less than a block stays in the buffer.
    fn flush_blocks(&mut self) -> io::Result<()> {
        let Some(direct) = &self.direct else {
            return Ok(());
        };
        let whole = self.buf.len / ALIGN * ALIGN;
        if whole == 0 {
            return Ok(());
        }
        match direct.write_all_at(&self.buf.filled()[..whole], self.offset) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(error = %e, "store.direct_io_refused");
                self.direct = None;
                let all = self.buf.len;
                self.file.write_all_at(self.buf.filled(), self.offset)?;
                self.offset += all as u64;
                self.buf.consume(all);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        self.offset += whole as u64;
        self.buf.consume(whole);
        Ok(())
    }

    /// Write what is left and hand back the plain handle.
    fn finish(mut self) -> io::Result<File> {
        self.flush_blocks()?;
        let rest = self.buf.len;
        if rest > 0 {
            self.file
                .write_all_at(&self.buf.filled()[..rest], self.offset)?;
            self.offset += rest as u64;
            self.buf.consume(rest);
        }
        Ok(self.file)
    }

    fn write_through_cache(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, self.offset)?;
        self.offset += data.len() as u64;
        Ok(())
    }
}

/// A fixed-capacity byte buffer starting at an [`ALIGN`]-aligned address, as direct I/O
/// requires: over-allocated, and used from its first aligned byte on.
struct AlignedBuf {
    mem: Vec<u8>,
    start: usize,
    cap: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(cap: usize) -> Self {
        let mem = vec![0u8; cap + ALIGN];
        let start = (ALIGN - mem.as_ptr().addr() % ALIGN) % ALIGN;
        Self {
            mem,
            start,
            cap,
            len: 0,
        }
    }

    fn filled(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }

    fn is_full(&self) -> bool {
        self.len == self.cap
    }

    /// Copy as much of `data` as fits; returns how much that was.
    fn extend(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.cap - self.len);
        let at = self.start + self.len;
        self.mem[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    /// Drop the first `n` bytes, moving the rest to the front.
    fn consume(&mut self, n: usize) {
        let (from, to) = (self.start + n, self.start + self.len);
        self.mem.copy_within(from..to, self.start);
        self.len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    /// Writes `data` in `chunk`-sized pieces at `offset` of a file already `prefill` long,
    /// with or without a direct handle, and returns the whole file.
    fn write_through_sink(direct: bool, offset: u64, data: &[u8], chunk: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("create");
        file.set_len(offset).expect("prefill");
        let direct = if direct { open_direct(&path) } else { None };
        let mut sink = Sink::new(file, direct, offset);
        for piece in data.chunks(chunk) {
            sink.write(piece).expect("write");
            sink.flush_blocks().expect("flush");
        }
        sink.finish().expect("finish").sync_all().expect("sync");
        std::fs::read(&path).expect("read back")
    }

    #[test]
    fn sink_writes_every_byte_at_its_offset() {
        for direct in [true, false] {
            for (offset, len, chunk) in [
                (0, 0, 1),
                (0, 100, 7),
                (0, 3 * ALIGN, ALIGN),
                (0, WRITE_BATCH * 2 + 12_345, 300_001),
                (1000, ALIGN * 5 + 17, 5000),
                (ALIGN as u64 * 3, ALIGN * 4, 1 << 20),
                (4095, 10, 3),
                (12_345, WRITE_BATCH + 1, WRITE_BATCH + 1),
            ] {
                let data = pattern(len);
                let file = write_through_sink(direct, offset, &data, chunk);
                assert_eq!(file.len(), offset as usize + len, "{direct} {offset} {len}");
                assert!(file[..offset as usize].iter().all(|b| *b == 0));
                assert!(
                    file[offset as usize..] == data[..],
                    "{direct} {offset} {len}"
                );
            }
        }
    }

    #[test]
    fn direct_writer_writes_small_pieces_in_order() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("temp dir");
        let data = pattern(WRITE_BATCH * 2 + 4096 * 3 + 99);
        for direct in [true, false] {
            let path = dir.path().join(format!("x-{direct}"));
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .expect("create");
            let mut out = if direct {
                DirectWriter::new(file, &path)
            } else {
                DirectWriter::buffered(file)
            };
            // Record headers and chunk bodies, as a xorb is written.
            for piece in data
                .chunks(8)
                .step_by(1)
                .take(100)
                .chain(data[800..].chunks(65_537))
            {
                out.write_all(piece).expect("write");
            }
            out.flush().expect("flush");
            out.finish().expect("finish").sync_all().expect("sync");
            assert!(std::fs::read(&path).expect("read back") == data, "{direct}");
        }
    }

    #[test]
    fn aligned_buffer_is_aligned_and_keeps_the_rest() {
        let mut buf = AlignedBuf::new(2 * ALIGN);
        assert_eq!(buf.filled().as_ptr().addr() % ALIGN, 0);
        assert_eq!(buf.extend(&[1; 3 * ALIGN]), 2 * ALIGN);
        assert!(buf.is_full());
        buf.consume(ALIGN + 1);
        assert_eq!(buf.filled().len(), ALIGN - 1);
        assert_eq!(buf.filled().as_ptr().addr() % ALIGN, 0);
    }
}
