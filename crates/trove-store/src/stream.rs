//! Streaming a body into a file while hashing it, with bounded memory.
//!
//! Incoming chunks are gathered (without copying: `Bytes` are reference counted) into a
//! batch of about [`WRITE_BATCH`] bytes; each batch is hashed and written on the blocking
//! pool while the next one is received. At most two batches are alive at once, whatever the
//! body's size.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Write};
use tokio::task::JoinHandle;

/// Bytes gathered from a body before they are hashed and written in one go.
pub const WRITE_BATCH: usize = 1 << 20;

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

type Job = JoinHandle<io::Result<(File, Sha256)>>;

/// The file and hasher are either here or out with the one batch being written.
enum Writer {
    Idle(File, Sha256),
    Busy(Job),
    Failed,
}

impl Writer {
    /// Wait for the batch in flight, if any, and take the file and hasher back.
    async fn reclaim(&mut self) -> io::Result<(File, Sha256)> {
        match std::mem::replace(self, Writer::Failed) {
            Writer::Idle(file, hasher) => Ok((file, hasher)),
            Writer::Busy(job) => match job.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => Err(io::Error::other(e)),
            },
            Writer::Failed => Err(io::Error::other("writer already failed")),
        }
    }

    async fn submit(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        let (mut file, mut hasher) = self.reclaim().await?;
        *self = Writer::Busy(tokio::task::spawn_blocking(move || {
            for chunk in &batch {
                // Hash then write each chunk while it is still hot in cache.
                hasher.update(chunk);
                file.write_all(chunk)?;
            }
            Ok((file, hasher))
        }));
        Ok(())
    }
}

/// Write `body` to `file` from its current position, hashing it, refusing to read past
/// `limit` bytes. A short body is not an error here: the caller compares `len`.
///
/// On error, any batch in flight is awaited before returning, so nothing writes to the file
/// after this returns. (If the future itself is dropped, the batch in flight finishes on
/// its own; callers rely on final verification, never on that.)
pub(crate) async fn hash_into_file<S>(
    file: File,
    mut body: S,
    limit: u64,
) -> Result<Streamed, StreamError>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Unpin,
{
    let mut writer = Writer::Idle(file, Sha256::new());
    let result = pump(&mut writer, &mut body, limit).await;
    match result {
        Ok(len) => {
            let (file, hasher) = writer.reclaim().await.map_err(StreamError::Write)?;
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
