//! A basic-transfer upload packed into xorbs while it arrives, each byte written once.
//!
//! The body's pieces (`Bytes`, reference counted) go two ways: to SHA-256, hashed in batches
//! of about [`BATCH`] bytes on the blocking pool while the next batch is received, and
//! through a bounded channel to the packing stage, a thread of the blocking pool that cuts
//! and hashes chunks exactly as a Xet client would ([`StreamChunker`]), looks each batch of
//! about [`LOOKUP_BATCH`] bytes of chunks up in the chunk index, and packs the chunks the
//! store does not hold into server-built xorbs as they fill: written to staging files, or in
//! S3 mode built in memory while the node's budget for it has room
//! ([`trove_store::Store::xorb_buffer`]; the bucket's answer to the PUT is what makes them
//! durable, a local copy would only be written and read back). A full xorb is made durable
//! beside the upload ([`trove_store::Store::ready_xorb`]: fsynced locally, uploaded to its
//! key in S3 mode), at most [`READY_DEPTH`] at a time.
//!
//! Nothing is visible before the body is verified: only once its SHA-256 and size match the
//! oid does the stage get the end of the stream; then the xorbs are published (locally a
//! rename) and the xorbs and the file recorded in one transaction. A body that fails, runs
//! long or short, or hashes to something else closes the channel without that end: the stage
//! drops its xorbs and their staging files before the answer goes out. (In S3 mode the xorbs
//! it had already uploaded stay in the bucket, unrecorded: no reader finds a xorb the
//! database does not name, a later upload of the same chunks adopts it, and `trove fsck`
//! lists such files.)
//!
//! Memory: at most [`DEPTH`] batches waiting for the stage (backpressure slows the upload to
//! the stage's pace), [`LOOKUP_BATCH`] bytes of chunks waiting for their lookup, a write
//! buffer per xorb being filled (in S3 mode the xorb itself, up to 64 MiB, and the
//! [`READY_DEPTH`] on their way, all within the node-wide budget), plus 48 bytes per chunk of
//! the file — whatever its size.

use super::{Ingested, Place, Timings, log_ingested, terms_of, xorb_record};
use crate::clock::now_ms;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use trove_db::{Db, NewXorb, XetFile};
use trove_store::{ReadyXorb, StagedXorb, Store, StoreError, XorbBuffer};
use trove_types::Sha256Hex;
use trove_xet::XetHash;
use trove_xet::chunk::{StreamChunk, StreamChunker};
use trove_xet::hash;
use trove_xet::pack::{self, XorbPacker};
use trove_xet::shard;
use trove_xet::xorb::XorbIndex;

/// Bytes gathered from the body before they are hashed and handed to the stage in one go.
pub(crate) const BATCH: usize = 1 << 20;
/// Batches that may wait for the packing stage.
const DEPTH: usize = 4;
/// Bytes of chunks looked up in the chunk index in one query.
const LOOKUP_BATCH: u64 = 8 << 20;
/// Full xorbs being made durable (fsynced, or uploaded to the bucket) at once.
const READY_DEPTH: usize = 2;
/// Write buffer of the staging file of the xorb being filled.
const WRITE_BUFFER: usize = 1 << 20;

/// What the body stream sends the stage.
pub(crate) enum Msg {
    Batch(Vec<Bytes>),
    /// The body was verified: finish and hand back what was packed.
    End,
}

/// Receives `body` as LFS object `oid` (`size` bytes, not yet held) for repository
/// `repo_id`: verified, packed into xorbs, published and recorded as a Xet file before this
/// returns. On any error nothing is visible and the upload's staging is gone.
pub(crate) async fn receive_packed<S>(
    state: &Context,
    repo_id: i64,
    oid: &Sha256Hex,
    size: u64,
    body: S,
) -> ApiResult<Ingested>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
{
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<Msg>(DEPTH);
    let stage = {
        let (db, store) = (state.db.clone(), (*state.store).clone());
        tokio::task::spawn_blocking(move || run_stage(db, store, rx))
    };
    let verified = verify_body(body, oid, size, Some(&tx)).await;
    if let Err(e) = verified {
        // Closing the channel without `End` makes the stage drop what it packed.
        drop(tx);
        return Err(match stage.await {
            // The stage failed first (its error is why the body stopped being read).
            Ok(Err(stage_error)) if matches!(e, VerifyError::StageGone) => stage_error,
            _ => e.into_api(),
        });
    }
    let receive = started.elapsed();
    // The stage is gone only if it failed; its error is reported by the join below.
    let _ = tx.send(Msg::End).await;
    drop(tx);
    let waited = Instant::now();
    let packed = stage.await??;
    let mut timings = packed.timings;
    timings.receive = receive;
    timings.chunk_wait = waited.elapsed();

    // Published, then recorded: a xorb is durable before the database names it.
    let clock = Instant::now();
    let mut new_xorbs = Vec::with_capacity(packed.xorbs.len());
    let mut report = Ingested {
        chunks: packed.chunks.len() as u64,
        new_chunks: packed.new_chunks,
        ..Ingested::default()
    };
    let mut pack_hashes = Vec::with_capacity(packed.xorbs.len());
    for x in packed.xorbs {
        state
            .store
            .publish_ready_xorb(x.ready, &x.hash.hex())
            .await?;
        let (record, chunk_hashes) = xorb_record(&x.index);
        report.new_xorbs += 1;
        report.stored_bytes += record.stored_bytes;
        pack_hashes.push(x.hash);
        new_xorbs.push(NewXorb {
            hash: x.hash.to_bytes(),
            record,
            chunk_hashes,
        });
    }
    timings.publish += clock.elapsed();

    let clock = Instant::now();
    let terms = terms_of(&packed.chunks, &packed.places, &pack_hashes)?;
    let sized: Vec<(XetHash, u64)> = packed
        .chunks
        .iter()
        .map(|c| (c.hash, u64::from(c.len)))
        .collect();
    let file = XetFile {
        file_hash: hash::file_hash(&sized).to_bytes(),
        size,
        sha256: oid.clone(),
        terms: shard::encode_terms(&terms),
    };
    let mut names: Vec<[u8; 32]> = terms.iter().map(|t| t.xorb.to_bytes()).collect();
    names.sort_unstable();
    names.dedup();
    state
        .db
        .record_ingested_file(repo_id, &new_xorbs, &file, &names, now_ms())
        .await?;
    timings.record += clock.elapsed();
    log_ingested(oid, repo_id, "pack", size, &report, &timings, waited);
    Ok(report)
}

/// Reads `body` to its end, hashing it (and handing it to the packing stage behind `tx`, if
/// any), and checks it is exactly `size` bytes hashing to `oid`. Stops reading as soon as the
/// body runs past `size`. Nothing is written.
pub(crate) async fn verify_body<S>(
    mut body: S,
    oid: &Sha256Hex,
    size: u64,
    tx: Option<&mpsc::Sender<Msg>>,
) -> Result<(), VerifyError>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Unpin,
{
    let mut hasher = Hasher::Idle(Sha256::new());
    let mut batch = Vec::new();
    let mut batch_len = 0usize;
    let mut received = 0u64;
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| VerifyError::Store(StoreError::Body(e)))?;
        received = received.saturating_add(piece.len() as u64);
        if received > size {
            return Err(VerifyError::Store(StoreError::SizeMismatch {
                expected: size,
                actual: received,
            }));
        }
        if piece.is_empty() {
            continue;
        }
        batch_len += piece.len();
        batch.push(piece);
        if batch_len >= BATCH {
            let full = std::mem::take(&mut batch);
            batch_len = 0;
            submit(&mut hasher, full, tx).await?;
        }
    }
    if !batch.is_empty() {
        submit(&mut hasher, batch, tx).await?;
    }
    let digest = hasher.reclaim().await?.finalize();
    if received != size {
        return Err(VerifyError::Store(StoreError::SizeMismatch {
            expected: size,
            actual: received,
        }));
    }
    let actual = Sha256Hex::from_digest(&digest.into());
    if actual != *oid {
        return Err(VerifyError::Store(StoreError::HashMismatch {
            expected: oid.clone(),
            actual,
        }));
    }
    Ok(())
}

/// Why a body was refused.
#[derive(Debug)]
pub(crate) enum VerifyError {
    /// The body itself: short, long, unreadable, or hashing to another oid.
    Store(StoreError),
    /// The packing stage stopped taking bytes (it failed; its own error says why).
    StageGone,
    /// The hashing job panicked or was cancelled.
    Join(tokio::task::JoinError),
}

impl VerifyError {
    pub(crate) fn into_api(self) -> ApiError {
        match self {
            VerifyError::Store(e) => e.into(),
            VerifyError::StageGone => {
                ApiError::internal(anyhow::anyhow!("the packing stage stopped"))
            }
            VerifyError::Join(e) => ApiError::internal(e),
        }
    }
}

/// The SHA-256 state: here, or out hashing one batch.
enum Hasher {
    Idle(Sha256),
    Busy(JoinHandle<Sha256>),
}

impl Hasher {
    async fn reclaim(&mut self) -> Result<Sha256, VerifyError> {
        let taken = std::mem::replace(self, Hasher::Idle(Sha256::new()));
        match taken {
            Hasher::Idle(h) => Ok(h),
            Hasher::Busy(job) => job.await.map_err(VerifyError::Join),
        }
    }
}

/// Hands `batch` to the stage (waiting while it is [`DEPTH`] batches behind), then hashes it
/// on the blocking pool once the previous batch is hashed.
async fn submit(
    hasher: &mut Hasher,
    batch: Vec<Bytes>,
    tx: Option<&mpsc::Sender<Msg>>,
) -> Result<(), VerifyError> {
    if let Some(tx) = tx
        && tx.send(Msg::Batch(batch.clone())).await.is_err()
    {
        return Err(VerifyError::StageGone);
    }
    let mut sha = hasher.reclaim().await?;
    *hasher = Hasher::Busy(tokio::task::spawn_blocking(move || {
        for piece in &batch {
            sha.update(piece);
        }
        sha
    }));
    Ok(())
}

/// A xorb the stage packed, made durable, not yet visible.
struct PackedXorb {
    hash: XetHash,
    index: XorbIndex,
    ready: ReadyXorb,
}

/// What the stage made of a verified body.
struct Packed {
    chunks: Vec<StreamChunk>,
    places: Vec<Place>,
    new_chunks: u64,
    xorbs: Vec<PackedXorb>,
    timings: Timings,
}

/// A full xorb being made durable, or made durable already.
enum Readying {
    Pending(JoinHandle<Result<ReadyXorb, StoreError>>),
    Done(ReadyXorb),
}

struct FullXorb {
    hash: XetHash,
    index: XorbIndex,
    ready: Readying,
}

/// Where the xorb being filled is written.
enum Sink {
    /// A staging file (always locally; in S3 mode when the memory budget is used up).
    File {
        staged: StagedXorb,
        out: BufWriter<File>,
    },
    /// Memory, in S3 mode: put into the bucket from there.
    Memory(XorbBuffer),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File { out, .. } => out.write(buf),
            Sink::Memory(b) => b.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::File { out, .. } => out.write_all(buf),
            Sink::Memory(b) => b.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File { out, .. } => out.flush(),
            Sink::Memory(b) => b.flush(),
        }
    }
}

/// A full xorb, written where its [`Sink`] was.
enum Full {
    File(StagedXorb),
    Memory(XorbBuffer),
}

/// The xorb being filled.
struct Filling {
    packer: XorbPacker<Sink>,
    /// Bytes of records so far, counted before compression (see [`pack::fits`]).
    bytes: u64,
}

/// The packing stage's state.
struct Stage {
    db: Db,
    store: Store,
    handle: Handle,
    chunker: StreamChunker,
    found: Vec<StreamChunk>,
    /// Bytes after the last chunk boundary: the start of the next chunk.
    tail: Bytes,
    /// Chunks cut but not yet looked up, with their bytes.
    pending: Vec<(StreamChunk, Bytes)>,
    pending_bytes: u64,
    chunks: Vec<StreamChunk>,
    places: Vec<Place>,
    /// New chunks of this upload: where they were packed.
    packed: HashMap<XetHash, (usize, u32)>,
    filling: Option<Filling>,
    full: Vec<FullXorb>,
    timings: Timings,
}

fn run_stage(db: Db, store: Store, mut rx: mpsc::Receiver<Msg>) -> ApiResult<Packed> {
    let cpu_start = thread_cpu_time();
    let mut stage = Stage {
        db,
        store,
        handle: Handle::current(),
        chunker: StreamChunker::default(),
        found: Vec::new(),
        tail: Bytes::new(),
        pending: Vec::new(),
        pending_bytes: 0,
        chunks: Vec::new(),
        places: Vec::new(),
        packed: HashMap::new(),
        filling: None,
        full: Vec::new(),
        timings: Timings::default(),
    };
    let result = loop {
        match rx.blocking_recv() {
            Some(Msg::Batch(batch)) => {
                if let Err(e) = stage.feed(batch) {
                    break Err(e);
                }
            }
            Some(Msg::End) => break stage.finish(),
            None => break Err(ApiError::internal(anyhow::anyhow!("the upload stopped"))),
        }
    };
    match result {
        Ok(mut packed) => {
            packed.timings.chunk_cpu = thread_cpu_time()
                .zip(cpu_start)
                .map(|(end, start)| end.saturating_sub(start));
            Ok(packed)
        }
        Err(e) => {
            stage.discard();
            Err(e)
        }
    }
}

impl Stage {
    /// Cuts the next batch of the body into chunks; looks them up and packs them once
    /// [`LOOKUP_BATCH`] bytes of them wait.
    fn feed(&mut self, mut batch: Vec<Bytes>) -> ApiResult<()> {
        let clock = Instant::now();
        // One contiguous buffer per batch: chunks inside it are hashed and kept in place.
        let buf = if batch.len() == 1 {
            batch.pop().unwrap_or_default()
        } else {
            let mut joined = Vec::with_capacity(batch.iter().map(Bytes::len).sum());
            for piece in &batch {
                joined.extend_from_slice(piece);
            }
            Bytes::from(joined)
        };
        drop(batch);
        self.chunker.feed(&buf, &mut self.found);
        self.take_found(buf)?;
        self.timings.chunk += clock.elapsed();
        if self.pending_bytes >= LOOKUP_BATCH {
            self.resolve_pending()?;
        }
        Ok(())
    }

    /// Moves the chunks the chunker found in `buf` (after [`Self::tail`]) to `pending`, with
    /// their bytes; what follows the last one becomes the tail.
    fn take_found(&mut self, buf: Bytes) -> ApiResult<()> {
        let mut at = 0usize;
        for c in self.found.drain(..) {
            let len = c.len as usize;
            let bytes = if self.tail.is_empty() {
                let bytes = buf.get(at..at + len).map(|_| buf.slice(at..at + len));
                at += len;
                bytes
            } else {
                let need = len.checked_sub(self.tail.len());
                let head = need.and_then(|n| buf.get(..n));
                head.map(|head| {
                    let mut joined = Vec::with_capacity(len);
                    joined.extend_from_slice(&self.tail);
                    joined.extend_from_slice(head);
                    at = head.len();
                    self.tail = Bytes::new();
                    Bytes::from(joined)
                })
            };
            let bytes = bytes.ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("a chunk boundary outside the bytes fed"))
            })?;
            self.pending_bytes += bytes.len() as u64;
            self.pending.push((c, bytes));
        }
        let rest = buf.slice(at.min(buf.len())..);
        self.tail = if self.tail.is_empty() {
            rest
        } else {
            let mut joined = Vec::with_capacity(self.tail.len() + rest.len());
            joined.extend_from_slice(&self.tail);
            joined.extend_from_slice(&rest);
            Bytes::from(joined)
        };
        Ok(())
    }

    /// Looks the waiting chunks up; packs those the store does not hold.
    fn resolve_pending(&mut self) -> ApiResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let clock = Instant::now();
        let hashes: Vec<[u8; 32]> = self
            .pending
            .iter()
            .map(|(c, _)| c.hash.to_bytes())
            .collect();
        let held = self.handle.block_on(self.db.chunk_locations(&hashes))?;
        self.timings.lookup += clock.elapsed();
        let clock = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        for (c, bytes) in pending {
            self.chunks.push(c);
            if let Some(loc) = held.get(&c.hash.to_bytes()) {
                self.places.push(Place::Held {
                    xorb: XetHash::from_bytes(loc.xorb),
                    index: loc.index,
                });
                continue;
            }
            if let Some(&(pack, index)) = self.packed.get(&c.hash) {
                self.places.push(Place::New { pack, index });
                continue;
            }
            let (pack, index) = self.pack_chunk(&c, &bytes)?;
            self.packed.insert(c.hash, (pack, index));
            self.places.push(Place::New { pack, index });
        }
        self.timings.pack += clock.elapsed();
        Ok(())
    }

    /// Appends a new chunk to the xorb being filled (starting another when it is full).
    fn pack_chunk(&mut self, c: &StreamChunk, bytes: &[u8]) -> ApiResult<(usize, u32)> {
        let len = u64::from(c.len);
        if self
            .filling
            .as_ref()
            .is_some_and(|f| !pack::fits(f.packer.len(), f.bytes, len))
        {
            self.close_xorb()?;
        }
        let filling = match &mut self.filling {
            Some(f) => f,
            None => {
                let sink = match self.store.xorb_buffer(pack::MAX_PACKED_BYTES) {
                    Some(buffer) => Sink::Memory(buffer),
                    None => {
                        let (staged, out) = self.store.create_staged_xorb()?;
                        Sink::File {
                            staged,
                            out: BufWriter::with_capacity(WRITE_BUFFER, out),
                        }
                    }
                };
                self.filling.insert(Filling {
                    packer: XorbPacker::new(sink),
                    bytes: 0,
                })
            }
        };
        let index = filling.packer.len() as u32;
        // The chunker hashed these very bytes in memory a moment ago.
        filling
            .packer
            .push_hashed(bytes, c.hash)
            .map_err(ApiError::internal)?;
        filling.bytes += 8 + len;
        Ok((self.full.len(), index))
    }

    /// Finishes the xorb being filled and starts making it durable beside the upload,
    /// waiting first while [`READY_DEPTH`] others are still on their way.
    fn close_xorb(&mut self) -> ApiResult<()> {
        let Some(Filling { packer, .. }) = self.filling.take() else {
            return Ok(());
        };
        let (xorb, index, sink) = packer.finish().map_err(ApiError::internal)?;
        let len = index.stored_len();
        // Flushed and closed before it is read back for its PUT (or fsynced).
        let sink = match sink {
            Sink::File { mut staged, out } => {
                let file: File = out
                    .into_inner()
                    .map_err(|e| ApiError::internal(e.into_error()))?;
                drop(file);
                staged.set_len(len);
                Full::File(staged)
            }
            Sink::Memory(mut buffer) => {
                buffer.truncate(usize::try_from(len).map_err(ApiError::internal)?);
                Full::Memory(buffer)
            }
        };
        let clock = Instant::now();
        let in_flight = self
            .full
            .iter()
            .filter(|f| matches!(f.ready, Readying::Pending(_)))
            .count();
        if in_flight >= READY_DEPTH {
            self.settle(in_flight + 1 - READY_DEPTH)?;
        }
        let store = self.store.clone();
        let hex = xorb.hex();
        let job = self.handle.spawn(async move {
            match sink {
                Full::File(staged) => store.ready_xorb(staged, &hex, len).await,
                Full::Memory(buffer) => store.ready_xorb_buffer(buffer, &hex).await,
            }
        });
        self.timings.publish += clock.elapsed();
        self.full.push(FullXorb {
            hash: xorb,
            index,
            ready: Readying::Pending(job),
        });
        Ok(())
    }

    /// Waits for the oldest `n` xorbs still being made durable.
    fn settle(&mut self, mut n: usize) -> ApiResult<()> {
        for full in &mut self.full {
            if n == 0 {
                break;
            }
            if let Readying::Pending(job) = &mut full.ready {
                let ready = self.handle.block_on(job)??;
                full.ready = Readying::Done(ready);
                n -= 1;
            }
        }
        Ok(())
    }

    /// The end of a verified body: the last chunk, the last lookups, the last xorb, every
    /// xorb durable.
    fn finish(&mut self) -> ApiResult<Packed> {
        let clock = Instant::now();
        let chunker = std::mem::take(&mut self.chunker);
        chunker.finish(&mut self.found);
        self.take_found(Bytes::new())?;
        self.timings.chunk += clock.elapsed();
        self.resolve_pending()?;
        self.close_xorb()?;
        let clock = Instant::now();
        self.settle(usize::MAX)?;
        self.timings.publish += clock.elapsed();
        let mut xorbs = Vec::with_capacity(self.full.len());
        for full in self.full.drain(..) {
            match full.ready {
                Readying::Done(ready) => xorbs.push(PackedXorb {
                    hash: full.hash,
                    index: full.index,
                    ready,
                }),
                Readying::Pending(_) => {
                    return Err(ApiError::internal(anyhow::anyhow!(
                        "a xorb was not made durable"
                    )));
                }
            }
        }
        Ok(Packed {
            chunks: std::mem::take(&mut self.chunks),
            places: std::mem::take(&mut self.places),
            new_chunks: self.packed.len() as u64,
            xorbs,
            timings: self.timings,
        })
    }

    /// After a failure: every staging file of this upload removed before the answer (the
    /// xorbs on their way are waited for, then dropped).
    fn discard(&mut self) {
        self.filling = None;
        for full in self.full.drain(..) {
            if let Readying::Pending(job) = full.ready {
                let _ = self.handle.block_on(job);
            }
        }
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
