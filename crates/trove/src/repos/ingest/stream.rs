//! Chunking an upload while it arrives: the body's pieces (`Bytes`, reference counted, never
//! copied) are handed, in batches of about [`TEE_BATCH`] bytes, through a bounded channel to
//! a thread of the blocking pool that cuts and hashes them ([`StreamChunker`]), while the
//! store hashes (SHA-256) and writes the same pieces on its own threads. On two cores the
//! chunk hashes are ready about when the SHA-256 is, instead of after a second pass over the
//! object.
//!
//! The chunk list is only a candidate: it is used once the store has verified the body's
//! SHA-256 and size, and only if the stage saw exactly the verified bytes. Nothing is written
//! by this stage. Memory: at most [`TEE_DEPTH`] batches waiting (backpressure slows the
//! upload to the stage's pace if it falls behind) plus 48 bytes per chunk of the file.

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt};
use std::io;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use trove_xet::chunk::{StreamChunk, StreamChunker};

/// Bytes gathered from the body before they go to the chunking stage in one message.
pub(crate) const TEE_BATCH: usize = 1 << 20;
/// Batches that may wait for the chunking stage.
const TEE_DEPTH: usize = 4;

/// What the chunking stage made of the bytes it was fed.
#[derive(Debug)]
pub(super) struct Chunked {
    pub chunks: Vec<StreamChunk>,
    /// Bytes fed.
    pub bytes: u64,
    /// Time spent cutting and hashing (not waiting for bytes).
    pub busy: Duration,
    /// CPU time the stage's thread used: its work without the moments it was preempted
    /// (`None` where the clock cannot be read).
    pub cpu: Option<Duration>,
}

/// The chunking stage of one upload, running beside it.
pub(crate) struct ChunkStage {
    job: JoinHandle<Chunked>,
}

impl ChunkStage {
    /// Waits for the stage to finish (the body stream it was fed from must be done or
    /// dropped) and returns what it found.
    pub(super) async fn finish(self) -> Result<Chunked, tokio::task::JoinError> {
        self.job.await
    }
}

/// Wraps `body` so that every piece it yields also goes to a new chunking stage. The stage
/// ends when the returned stream ends or is dropped.
pub(crate) fn chunk_alongside<S>(
    body: S,
) -> (BoxStream<'static, Result<Bytes, io::Error>>, ChunkStage)
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel::<Vec<Bytes>>(TEE_DEPTH);
    let job = tokio::task::spawn_blocking(move || run_stage(rx));
    let tee = Tee {
        body,
        tx: Some(tx),
        batch: Vec::new(),
        batch_len: 0,
    };
    let wrapped = stream::unfold(tee, |mut tee| async move {
        let item = tee.next().await?;
        Some((item, tee))
    });
    (Box::pin(wrapped), ChunkStage { job })
}

/// The body and the batch being gathered for the stage.
struct Tee<S> {
    body: S,
    /// `None` once the stage has gone (it only goes when it panicked).
    tx: Option<mpsc::Sender<Vec<Bytes>>>,
    batch: Vec<Bytes>,
    batch_len: usize,
}

impl<S> Tee<S>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Unpin,
{
    /// The body's next piece, after passing it to the stage (waiting if the stage is
    /// `TEE_DEPTH` batches behind). At the end of the body the last batch is sent and the
    /// channel closed, so the stage finishes.
    async fn next(&mut self) -> Option<Result<Bytes, io::Error>> {
        match self.body.next().await {
            Some(Ok(piece)) => {
                if !piece.is_empty() {
                    self.batch_len += piece.len();
                    self.batch.push(piece.clone());
                    if self.batch_len >= TEE_BATCH {
                        self.send().await;
                    }
                }
                Some(Ok(piece))
            }
            Some(Err(e)) => {
                // The upload fails; whatever the stage found is never used.
                self.tx = None;
                Some(Err(e))
            }
            None => {
                self.send().await;
                self.tx = None;
                None
            }
        }
    }

    async fn send(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        self.batch_len = 0;
        if batch.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx
            && tx.send(batch).await.is_err()
        {
            // The stage is gone (a panic, reported by `ChunkStage::finish`); the upload
            // itself goes on.
            self.tx = None;
        }
    }
}

fn run_stage(mut rx: mpsc::Receiver<Vec<Bytes>>) -> Chunked {
    let cpu_start = thread_cpu_time();
    let mut chunker = StreamChunker::default();
    let mut chunks = Vec::new();
    let mut busy = Duration::ZERO;
    while let Some(batch) = rx.blocking_recv() {
        let start = Instant::now();
        for piece in &batch {
            chunker.feed(piece, &mut chunks);
        }
        busy += start.elapsed();
    }
    let start = Instant::now();
    let bytes = chunker.fed();
    chunker.finish(&mut chunks);
    busy += start.elapsed();
    let cpu = thread_cpu_time()
        .zip(cpu_start)
        .map(|(end, start)| end.saturating_sub(start));
    Chunked {
        chunks,
        bytes,
        busy,
        cpu,
    }
}

/// CPU time of the calling thread so far.
fn thread_cpu_time() -> Option<Duration> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(Duration::new(
        u64::try_from(t.tv_sec).ok()?,
        u32::try_from(t.tv_nsec).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_xet::chunk::chunk_all;

    fn pseudo_random(len: usize, mut x: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stage_finds_the_chunks_of_the_bytes_passing_through() {
        let data = pseudo_random(3_500_000, 42);
        // Pieces of uneven sizes, as an HTTP body arrives.
        let mut pieces = Vec::new();
        let mut at = 0;
        let mut size = 1;
        while at < data.len() {
            let end = (at + size).min(data.len());
            pieces.push(Ok(Bytes::copy_from_slice(&data[at..end])));
            at = end;
            size = (size * 7 + 13) % 300_000 + 1;
        }
        let (wrapped, stage) = chunk_alongside(stream::iter(pieces));
        let passed: Vec<Bytes> = wrapped.map(|p| p.expect("piece")).collect::<Vec<_>>().await;
        assert_eq!(passed.concat(), data, "the body goes on unchanged");
        let chunked = stage.finish().await.expect("stage");
        assert_eq!(chunked.bytes, data.len() as u64);
        let expected = chunk_all(&data);
        let got: Vec<_> = chunked
            .chunks
            .iter()
            .map(|c| (c.hash, u64::from(c.len)))
            .collect();
        let want: Vec<_> = expected.iter().map(|c| (c.hash, c.len)).collect();
        assert_eq!(got, want);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_body_ends_the_stage_short() {
        let pieces = vec![
            Ok(Bytes::from(pseudo_random(200_000, 1))),
            Err(io::Error::other("connection reset")),
        ];
        let (wrapped, stage) = chunk_alongside(stream::iter(pieces));
        let items: Vec<_> = wrapped.collect().await;
        assert!(items[1].is_err());
        let chunked = stage.finish().await.expect("stage");
        // The first piece never filled a batch and the failure closed the channel: the stage
        // saw none of the body, so its chunks could never pass for the upload's.
        assert_eq!(chunked.bytes, 0);
        assert!(chunked.chunks.is_empty());
    }
}
