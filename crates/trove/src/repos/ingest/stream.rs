//! A basic-transfer upload packed into xorbs while it arrives, each byte written once.
//!
//! The body's pieces (`Bytes`, reference counted) go two ways: to SHA-256, hashed in batches
//! of about [`BATCH`] bytes on the blocking pool while the next batch is received, and
//! through a bounded channel to the packing stage, a thread of the blocking pool that cuts
//! and hashes chunks exactly as a Xet client would ([`PieceChunker`], which keeps a chunk
//! that lies within one piece of the body as a slice of it), looks each batch of
//! about [`LOOKUP_BATCH`] bytes of chunks up in the chunk index, and packs the chunks the
//! store does not hold into server-built xorbs as they fill: written to staging files (with
//! `O_DIRECT` where the filesystem allows, [`trove_store::DirectWriter`]), or in
//! S3 mode built in memory while the node's budget for it has room
//! ([`trove_store::Store::xorb_buffer`]; the bucket's answer to the PUT is what makes them
//! durable, a local copy would only be written and read back). A full xorb is made durable
//! beside the upload ([`trove_store::Store::ready_xorb`]: fsynced locally, uploaded to its
//! key in S3 mode), at most [`READY_BYTES`] of them at a time. Xorbs are filled to the
//! format's limit (64 MiB or 8192 chunks); in S3 mode only the last two of an upload are cut
//! at half of what remains ([`tail_limit`]), so that less is left to send once the body has
//! arrived.
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
//! the stage's pace), [`LOOKUP_BATCH`] bytes of chunks waiting for their lookup (slices of
//! the body's pieces as they arrived, a chunk spanning pieces copied into its own buffer), a
//! write buffer per xorb being filled (in S3 mode the xorb itself, up to 64 MiB, and the
//! [`READY_BYTES`] on their way, all within the node-wide budget), plus 48 bytes per chunk of
//! the file — whatever its size.

use super::{Ingested, Place, Timings, log_ingested, terms_of, xorb_record};
use crate::clock::now_ms;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use trove_db::{Db, NewXorb, XetFile};
use trove_store::{DirectWriter, ReadyXorb, StagedXorb, Store, StoreError, XorbBuffer, XorbPieces};
use trove_types::Sha256Hex;
use trove_xet::XetHash;
use trove_xet::chunk::{PieceChunker, StreamChunk};
use trove_xet::hash;
use trove_xet::pack::{self, CompressionScheme, XorbPacker};
use trove_xet::shard;
use trove_xet::xorb::{MAX_XORB_CHUNKS, XorbIndex};

/// Bytes gathered from the body before they are hashed and handed to the stage in one go.
pub(crate) const BATCH: usize = 1 << 20;
/// Batches in a full xorb: what one xorb's PUT lets go of at once in S3 mode, where its
/// chunks are slices of the batches they came in.
pub(crate) const XORB_FRAMES: usize = (pack::MAX_PACKED_BYTES as usize).div_ceil(BATCH);
/// Batches that may wait for the packing stage.
const DEPTH: usize = 4;
/// Bytes of chunks looked up in the chunk index in one query.
const LOOKUP_BATCH: u64 = 8 << 20;
/// Bytes of full xorbs being made durable (fsynced, or uploaded to the bucket) at once: two
/// full-size xorbs, or more of the smaller ones that end an upload in S3 mode.
const READY_BYTES: u64 = 2 * pack::MAX_PACKED_BYTES;
/// In S3 mode, what remains of a body under which [`tail_limit`] no longer splits it: the
/// smallest xorb it cuts is half of this.
const TAIL_MIN: u64 = 8 << 20;
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
        tokio::task::spawn_blocking(move || run_stage(db, store, size, rx))
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
    /// Waited for, and it failed (its error went to the caller): its handle is spent and
    /// must not be polled again.
    Failed,
}

struct FullXorb {
    hash: XetHash,
    index: XorbIndex,
    /// Its stored bytes.
    len: u64,
    ready: Readying,
}

/// Where the xorb being filled is written.
enum Sink {
    /// A staging file (always locally; in S3 mode when the memory budget is used up).
    File {
        staged: StagedXorb,
        /// Straight to the disk where it can (locally: nothing reads the xorb back before
        /// the upload ends, and fresh page-cache pages for all of its bytes cost about as
        /// much CPU as hashing them).
        out: DirectWriter,
    },
    /// Memory, in S3 mode: put into the bucket from there.
    Memory(XorbBuffer),
    /// A raw xorb in S3 mode: each record's header, then the chunk's bytes where they were
    /// received (slices of the batches), put as those pieces — no copy of the chunks. The
    /// packer writes nothing here ([`XorbPacker::push_raw`]).
    Pieces {
        pieces: XorbPieces,
        /// Where the records' headers are written, each split off as a piece (one buffer
        /// for all of them).
        headers: BytesMut,
    },
}

/// What the packer would write to a [`Sink::Pieces`]: nothing may be.
fn no_writes() -> io::Error {
    io::Error::other("a raw xorb held as pieces is not written to")
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File { out, .. } => out.write(buf),
            Sink::Memory(b) => b.write(buf),
            Sink::Pieces { .. } => Err(no_writes()),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::File { out, .. } => out.write_all(buf),
            Sink::Memory(b) => b.write_all(buf),
            Sink::Pieces { .. } => Err(no_writes()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File { out, .. } => out.flush(),
            Sink::Memory(b) => b.flush(),
            Sink::Pieces { .. } => Ok(()),
        }
    }
}

/// A full xorb, written where its [`Sink`] was.
enum Full {
    File(StagedXorb),
    Memory(XorbBuffer),
    Pieces(XorbPieces),
}

/// The xorb being filled.
struct Filling {
    packer: XorbPacker<Sink>,
    /// Bytes of records so far, counted before compression (see [`pack::fits`]).
    bytes: u64,
    /// Bytes of records it is closed at (see [`tail_limit`]).
    limit: u64,
}

/// The packing stage's state.
struct Stage {
    db: Db,
    store: Store,
    handle: Handle,
    /// Bytes of the whole body.
    size: u64,
    /// Whether the last xorbs are cut in halves ([`tail_limit`]; S3 mode).
    split_tail: bool,
    /// Whether the first of the last two xorbs was started ([`tail_limit`]).
    halved: bool,
    chunker: PieceChunker,
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

fn run_stage(db: Db, store: Store, size: u64, mut rx: mpsc::Receiver<Msg>) -> ApiResult<Packed> {
    let cpu_start = thread_cpu_time();
    let split_tail = store.is_remote();
    let mut stage = Stage {
        db,
        store,
        handle: Handle::current(),
        size,
        split_tail,
        halved: false,
        chunker: PieceChunker::default(),
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
    /// [`LOOKUP_BATCH`] bytes of them wait. Piece by piece, as the body arrived: a chunk
    /// inside one piece is kept as a slice of it (no copy: it goes into the xorb as it is),
    /// only a chunk spanning pieces is copied, once ([`PieceChunker`]).
    fn feed(&mut self, batch: Vec<Bytes>) -> ApiResult<()> {
        let clock = Instant::now();
        let cut_from = self.pending.len();
        for piece in &batch {
            self.chunker.feed(piece, &mut self.pending);
        }
        drop(batch);
        self.count_pending_from(cut_from);
        self.timings.chunk += clock.elapsed();
        if self.pending_bytes >= LOOKUP_BATCH {
            self.resolve_pending()?;
        }
        Ok(())
    }

    /// Counts the bytes of the chunks the chunker just cut (those from `from` on) among the
    /// bytes waiting for their lookup.
    fn count_pending_from(&mut self, from: usize) {
        let cut: u64 = self.pending[from..]
            .iter()
            .map(|(_, bytes)| bytes.len() as u64)
            .sum();
        self.pending_bytes += cut;
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
            let (pack, index) = self.pack_chunk(&c, bytes)?;
            self.packed.insert(c.hash, (pack, index));
            self.places.push(Place::New { pack, index });
        }
        self.timings.pack += clock.elapsed();
        Ok(())
    }

    /// Appends a new chunk to the xorb being filled (starting another when it is full).
    fn pack_chunk(&mut self, c: &StreamChunk, bytes: Bytes) -> ApiResult<(usize, u32)> {
        let len = u64::from(c.len);
        if self.filling.as_ref().is_some_and(|f| {
            !pack::fits(f.packer.len(), f.bytes, len) || f.bytes + RECORD_HEADER + len > f.limit
        }) {
            self.close_xorb()?;
        }
        let filling = match &mut self.filling {
            Some(f) => f,
            None => {
                let limit = if self.split_tail {
                    let (limit, halved) =
                        tail_limit(self.size.saturating_sub(c.offset), self.halved);
                    self.halved = halved;
                    limit
                } else {
                    pack::MAX_PACKED_BYTES
                };
                // Measured on the xorb's first chunk (random-looking bytes are stored raw):
                // a raw xorb in S3 mode is held as the pieces it is made of, else it is
                // written into a buffer (compressed records are new bytes) or a file.
                let scheme = pack::choose_compression(&bytes);
                let pieces = (scheme == CompressionScheme::None)
                    .then(|| self.store.xorb_pieces(limit))
                    .flatten();
                let sink = if let Some(pieces) = pieces {
                    Sink::Pieces {
                        pieces,
                        headers: BytesMut::with_capacity(pack::HEADER_LEN * MAX_XORB_CHUNKS),
                    }
                } else if let Some(buffer) = self.store.xorb_buffer(limit) {
                    Sink::Memory(buffer)
                } else {
                    let (staged, file) = self.store.create_staged_xorb()?;
                    // In S3 mode the file is read back for its PUT: from the page cache.
                    let out = if self.store.is_remote() {
                        DirectWriter::buffered(file)
                    } else {
                        DirectWriter::new(file, staged.path())
                    };
                    Sink::File { staged, out }
                };
                self.filling.insert(Filling {
                    packer: XorbPacker::with_compression(sink, scheme),
                    bytes: 0,
                    limit,
                })
            }
        };
        let index = filling.packer.len() as u32;
        // The chunker hashed these very bytes in memory a moment ago.
        if matches!(filling.packer.get_mut(), Sink::Pieces { .. }) {
            let header = filling
                .packer
                .push_raw(bytes.len(), c.hash)
                .map_err(ApiError::internal)?;
            if let Sink::Pieces { pieces, headers } = filling.packer.get_mut() {
                headers.extend_from_slice(&header);
                pieces.push(headers.split().freeze())?;
                pieces.push(bytes)?;
            }
        } else {
            filling
                .packer
                .push_hashed(&bytes, c.hash)
                .map_err(ApiError::internal)?;
        }
        filling.bytes += RECORD_HEADER + len;
        Ok((self.full.len(), index))
    }

    /// Finishes the xorb being filled and starts making it durable beside the upload,
    /// waiting first while the others still on their way would make more than
    /// [`READY_BYTES`] with it.
    fn close_xorb(&mut self) -> ApiResult<()> {
        let Some(Filling { packer, .. }) = self.filling.take() else {
            return Ok(());
        };
        let (xorb, index, sink) = packer.finish().map_err(ApiError::internal)?;
        let len = index.stored_len();
        // Flushed and closed before it is read back for its PUT (or fsynced).
        let sink = match sink {
            Sink::File { mut staged, out } => {
                let file: File = out.finish().map_err(ApiError::internal)?;
                drop(file);
                staged.set_len(len);
                Full::File(staged)
            }
            Sink::Memory(mut buffer) => {
                buffer.truncate(usize::try_from(len).map_err(ApiError::internal)?);
                Full::Memory(buffer)
            }
            Sink::Pieces { pieces, .. } => {
                if pieces.len() != len {
                    return Err(ApiError::internal(anyhow::anyhow!(
                        "a raw xorb of {len} bytes held {} bytes of pieces",
                        pieces.len()
                    )));
                }
                Full::Pieces(pieces)
            }
        };
        let clock = Instant::now();
        loop {
            let pending = self
                .full
                .iter()
                .filter(|f| matches!(f.ready, Readying::Pending(_)));
            let (count, bytes) = pending.fold((0, 0), |(n, b), f| (n + 1, b + f.len));
            if count == 0 || bytes + len <= READY_BYTES {
                break;
            }
            self.settle(1)?;
        }
        let store = self.store.clone();
        let hex = xorb.hex();
        let job = self.handle.spawn(async move {
            match sink {
                Full::File(staged) => store.ready_xorb(staged, &hex, len).await,
                Full::Memory(buffer) => store.ready_xorb_buffer(buffer, &hex).await,
                Full::Pieces(pieces) => store.ready_xorb_pieces(pieces, &hex).await,
            }
        });
        self.timings.publish += clock.elapsed();
        self.full.push(FullXorb {
            hash: xorb,
            index,
            len,
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
                let outcome = self.handle.block_on(job);
                // The handle is spent whatever came of it: a failure leaves `Failed` behind
                // for `discard`, which would otherwise wait on it again (and panic).
                full.ready = Readying::Failed;
                full.ready = Readying::Done(outcome??);
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
        let cut_from = self.pending.len();
        self.timings.spanning_bytes = chunker.finish(&mut self.pending);
        self.count_pending_from(cut_from);
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
                Readying::Pending(_) | Readying::Failed => {
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

/// Bytes of a chunk record's header in a xorb.
const RECORD_HEADER: u64 = 8;

/// Most bytes of records (headers included) `remaining` bytes of the body make: every chunk
/// but the last is at least 8 KiB, so at most one 8-byte header per KiB, plus the last one's.
fn records_bound(remaining: u64) -> u64 {
    remaining + remaining / 1024 + 2 * RECORD_HEADER
}

/// Bytes of records at which a xorb is closed in S3 mode when its first chunk has
/// `remaining` bytes of the body from its start on, and whether the upload's last two xorbs
/// have begun (`halved`, passed back in for the next xorb). There, the xorbs still on their
/// way to the bucket when the body has arrived are what the client's answer waits for, and
/// every xorb is a request for each later download (smaller ones are also fetched at a
/// lower rate): xorbs are full until what remains fits in two, which are then cut at half of
/// it, so that at the end the last xorb's PUT overlaps the arrival of the second half and
/// what is left to send is that half — an upload of N × 64 MiB of new bytes is ⌈N⌉ + 1
/// xorbs. What remains when it is at most [`TAIL_MIN`] goes into one xorb.
fn tail_limit(remaining: u64, halved: bool) -> (u64, bool) {
    let records = records_bound(remaining);
    let cap = pack::MAX_PACKED_BYTES;
    if halved || remaining <= TAIL_MIN {
        // The rest in one: sized to hold it (the memory budget is taken for this size).
        (records.clamp(TAIL_MIN / 2, cap), halved)
    } else if records <= 2 * cap {
        ((records / 2).clamp(TAIL_MIN / 2, cap), true)
    } else {
        (cap, false)
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

    /// The xorb limits one upload of `size` bytes of new chunks gets in S3 mode (chunks taken
    /// as exactly filling each limit, headers of 64 KiB chunks counted).
    fn tail_xorbs(size: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let (mut at, mut halved) = (0, false);
        while at < size {
            let (limit, h) = tail_limit(size - at, halved);
            halved = h;
            out.push(limit);
            // The body bytes of records filling `limit`: one 8-byte header per 64 KiB chunk.
            at += limit - limit / (8 * 1024 + 1);
        }
        out
    }

    #[test]
    fn an_upload_is_full_xorbs_then_the_rest_in_two_halves() {
        let mib = 1 << 20;
        let cap = pack::MAX_PACKED_BYTES;
        for n in 1..=10u64 {
            let sizes = tail_xorbs(n * 64 * mib);
            assert_eq!(sizes.len() as u64, n + 1, "{n}: {sizes:?}");
            assert!(
                sizes[..sizes.len() - 2].iter().all(|&s| s == cap),
                "{sizes:?}"
            );
            // The last two: each about half of the last 64 MiB.
            for &s in &sizes[sizes.len() - 2..] {
                assert!((32 * mib..=33 * mib).contains(&s), "{n}: {sizes:?}");
            }
        }
        // Between whole multiples: still ⌈N⌉ + 1 at most.
        for size in [100 * mib, 300 * mib, 1000 * mib, 513 * mib] {
            let sizes = tail_xorbs(size);
            assert!(
                sizes.len() as u64 <= size.div_ceil(64 * mib) + 1,
                "{sizes:?}"
            );
        }
        // Never above the format's cap, never below half the floor.
        for size in [1, 5 * mib, 9 * mib, 100 * mib, 10 << 30] {
            for limit in tail_xorbs(size) {
                assert!((TAIL_MIN / 2..=cap).contains(&limit), "{size}");
            }
        }
    }

    #[test]
    fn a_small_upload_stays_one_xorb() {
        for size in [1u64, 4 << 20, 8 << 20] {
            let (limit, _) = tail_limit(size, false);
            // Room for every record: a header per 8 KiB chunk, plus the last one's.
            assert!(
                limit >= size + size.div_ceil(8192) * RECORD_HEADER,
                "{size}"
            );
            assert_eq!(tail_xorbs(size).len(), 1, "{size}");
        }
    }
}
