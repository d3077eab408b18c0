//! Plain LFS uploads into the chunk store: an upload is cut into chunks exactly as a Xet
//! client would cut it, chunks the store already holds (uploaded through either path) are
//! referenced where they are, the new ones are packed into server-built xorbs, and the file
//! is recorded as a Xet file — the same record a Xet upload of the same bytes produces, with
//! the same file hash.
//!
//! Two ways in, one result. A basic-transfer upload is chunked, looked up and packed while it
//! arrives, SHA-256 beside it on another core ([`stream`]: each byte is written once, into a
//! xorb; nothing is published before the body is verified). A multipart upload (its parts
//! arrive in any order, so the stream's chunk boundaries are only known once all are in),
//! and the migration of objects stored before the chunk store existed, are chunked in one
//! pass over the stored object ([`ingest_object`], which recomputes the SHA-256 in the same
//! pass), then packed from it and the whole-file copy deleted. Both look chunks up, pack and
//! record the same way, so the same bytes give the same xorbs and file whichever way they
//! came.
//!
//! Crash safety comes from the order: xorbs are durable before they are recorded, recorded
//! before (or in the same transaction as) the file that names them, and the file is what
//! makes the object visible to batch requests and downloads. A crash at any point leaves
//! either the object unpublished (the client uploads it again and ingestion runs again) or
//! published and readable.
//!
//! Memory: a few MiB of body batches in flight, one read span of at most [`READ_SPAN`]
//! bytes while packing, plus 48 bytes per chunk of the file, whatever the file's size.

mod stream;

pub(crate) use stream::{BATCH, XORB_FRAMES, receive_packed, verify_body};

use crate::clock::now_ms;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use crate::repos::rebuild;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};
use trove_db::{XetFile, XorbRecord};
use trove_types::Sha256Hex;
use trove_xet::XetHash;
use trove_xet::chunk::{StreamChunk, StreamChunker};
use trove_xet::hash;
use trove_xet::pack::{self, XorbPacker};
use trove_xet::shard::{self, Term};
use trove_xet::xorb::XorbIndex;

/// Bytes read from the object at a time while chunking it in one pass.
const READ_BUFFER: usize = 1 << 20;

/// Most bytes of consecutive new chunks read from the object in one go while packing.
const READ_SPAN: u64 = 8 << 20;

/// Where a chunk of the file will be read from once ingested.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// A xorb the store already holds.
    Held { xorb: XetHash, index: u32 },
    /// The `index`th chunk of the `pack`th xorb this ingestion builds.
    New { pack: usize, index: u32 },
}

/// What one ingestion did, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ingested {
    pub chunks: u64,
    pub new_chunks: u64,
    pub new_xorbs: u64,
    /// Bytes added to the store (packed xorbs as written).
    pub stored_bytes: u64,
}

/// Where one ingestion's time went, stage by stage, for the `storage.lfs_ingested` log line
/// (which `bench/storage.sh` reads).
#[derive(Debug, Clone, Copy, Default)]
struct Timings {
    /// Receiving the body and verifying its SHA-256 (basic transfer only).
    receive: Duration,
    /// Cutting and hashing (gear chunker + BLAKE3): the chunking stage's busy time.
    chunk: Duration,
    /// The chunking stage's CPU time (streamed uploads only: its own thread).
    chunk_cpu: Option<Duration>,
    /// Waiting for the packing stage after the body was verified (basic transfer only).
    chunk_wait: Duration,
    /// Reading the whole object again, with its SHA-256 (one-pass ingestion only).
    reread: Duration,
    /// Chunk-index lookups.
    lookup: Duration,
    /// Reading new chunks back from the object for packing.
    pack_read: Duration,
    /// Packing: each chunk's hash checked again, compressed if chosen, written.
    pack: Duration,
    /// Making each xorb durable: fsync, publish (for a basic upload: waiting for the
    /// fsyncs or bucket uploads running beside the stream, then the renames).
    publish: Duration,
    /// Database records: xorbs, the file, its links.
    record: Duration,
    /// Not a time: bytes of the chunks that spanned pieces of the body as it arrived, each
    /// copied into a buffer of its own (streamed uploads only; every other chunk is kept as
    /// a slice of its piece).
    spanning_bytes: u64,
}

/// Which way the chunks came (`object`) and when the work after receiving began.
#[derive(Debug)]
struct Origin {
    via: &'static str,
    begun: Instant,
    /// A local file of the object already at hand (the one-pass path chunked it), if any.
    copy: Option<trove_store::LocalCopy>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Moves whole-file object `oid` (`size` bytes, verified, in the store) into the chunk store
/// and links it to repository `repo_id`, chunking it in one pass over the stored object. An
/// object already held as a Xet file is only linked. Empty objects stay whole (there is
/// nothing to chunk).
pub async fn ingest_object(
    state: &Context,
    repo_id: i64,
    oid: &Sha256Hex,
    size: u64,
) -> ApiResult<Ingested> {
    if size == 0 {
        return Ok(Ingested::default());
    }
    if let Some(file) = state.db.xet_file_by_sha256(oid).await? {
        link_file(state, repo_id, &file).await?;
        state.store.remove_object(oid).await?;
        return Ok(Ingested::default());
    }
    let copy = local_copy(state, oid).await?;
    let path = copy.path().to_owned();
    let started = Instant::now();
    let (chunks, digest, chunk_busy) =
        tokio::task::spawn_blocking(move || chunk_file(&path)).await??;
    if Sha256Hex::from_digest(&digest) != *oid {
        return Err(ApiError::internal(anyhow::anyhow!(
            "stored object {oid} no longer hashes to its name"
        )));
    }
    let timings = Timings {
        chunk: chunk_busy,
        reread: started.elapsed().saturating_sub(chunk_busy),
        ..Timings::default()
    };
    let origin = Origin {
        via: "object",
        begun: started,
        copy: Some(copy),
    };
    ingest_chunks(state, repo_id, oid, size, chunks, timings, origin).await
}

/// A local file of stored object `oid`: in S3 mode this node's staged copy or a download,
/// removed when the copy drops (after the packing that reads it).
async fn local_copy(state: &Context, oid: &Sha256Hex) -> ApiResult<trove_store::LocalCopy> {
    state
        .store
        .local_copy(oid)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("stored object {oid} is missing")))
}

/// The common part: look the chunks up, pack the new ones, record the file, drop the
/// whole-file copy.
async fn ingest_chunks(
    state: &Context,
    repo_id: i64,
    oid: &Sha256Hex,
    size: u64,
    chunks: Vec<StreamChunk>,
    mut timings: Timings,
    mut origin: Origin,
) -> ApiResult<Ingested> {
    let started = Instant::now();
    let hashes: Vec<[u8; 32]> = chunks.iter().map(|c| c.hash.to_bytes()).collect();
    let held = state.db.chunk_locations(&hashes).await?;
    drop(hashes);
    timings.lookup = started.elapsed();

    // Decide each chunk's place: held already, or packed (once) into a new xorb.
    let mut places = Vec::with_capacity(chunks.len());
    let mut packs: Vec<Vec<usize>> = Vec::new();
    let mut pack_bytes = 0u64;
    let mut packed: HashMap<XetHash, (usize, u32)> = HashMap::new();
    for (i, c) in chunks.iter().enumerate() {
        if let Some(loc) = held.get(&c.hash.to_bytes()) {
            places.push(Place::Held {
                xorb: XetHash::from_bytes(loc.xorb),
                index: loc.index,
            });
            continue;
        }
        if let Some(&(pack, index)) = packed.get(&c.hash) {
            places.push(Place::New { pack, index });
            continue;
        }
        let need_new = packs
            .last()
            .is_none_or(|p| !pack::fits(p.len(), pack_bytes, u64::from(c.len)));
        if need_new {
            packs.push(Vec::new());
            pack_bytes = 0;
        }
        let pack_no = packs.len() - 1;
        let current = &mut packs[pack_no];
        let index = current.len() as u32;
        current.push(i);
        pack_bytes += 8 + u64::from(c.len);
        packed.insert(c.hash, (pack_no, index));
        places.push(Place::New {
            pack: pack_no,
            index,
        });
    }
    drop(held);

    let mut report = Ingested {
        chunks: chunks.len() as u64,
        new_chunks: packed.len() as u64,
        ..Ingested::default()
    };
    drop(packed);
    let copy = match origin.copy.take() {
        Some(copy) => copy,
        None => local_copy(state, oid).await?,
    };
    let path = copy.path().to_owned();
    let mut pack_hashes = Vec::with_capacity(packs.len());
    for members in packs {
        let picked: Vec<StreamChunk> = members.iter().map(|&i| chunks[i]).collect();
        let (xorb, stored) = pack_and_store(state, repo_id, &path, picked, &mut timings).await?;
        pack_hashes.push(xorb);
        report.new_xorbs += 1;
        report.stored_bytes += stored;
    }

    let recording = Instant::now();
    let terms = terms_of(&chunks, &places, &pack_hashes)?;
    let sized: Vec<(XetHash, u64)> = chunks.iter().map(|c| (c.hash, u64::from(c.len))).collect();
    let file = XetFile {
        file_hash: hash::file_hash(&sized).to_bytes(),
        size,
        sha256: oid.clone(),
        terms: shard::encode_terms(&terms),
    };
    link_file(state, repo_id, &file).await?;
    state.store.remove_object(oid).await?;
    timings.record += recording.elapsed();
    log_ingested(
        oid,
        repo_id,
        origin.via,
        size,
        &report,
        &timings,
        origin.begun,
    );
    Ok(report)
}

/// The `storage.lfs_ingested` line: where one ingestion's time went (`begun`: when the work
/// after receiving began).
fn log_ingested(
    oid: &Sha256Hex,
    repo_id: i64,
    via: &'static str,
    size: u64,
    report: &Ingested,
    t: &Timings,
    begun: Instant,
) {
    let mib_s = |d: Duration| {
        if d.is_zero() {
            0.0
        } else {
            (size as f64 / f64::from(1u32 << 20) / d.as_secs_f64() * 10.0).round() / 10.0
        }
    };
    tracing::info!(
        oid = %oid,
        repo_id,
        via,
        size_bytes = size,
        chunks = report.chunks,
        new_chunks = report.new_chunks,
        new_xorbs = report.new_xorbs,
        stored_bytes = report.stored_bytes,
        receive_ms = ms(t.receive),
        chunk_ms = ms(t.chunk),
        chunk_mib_s = mib_s(t.chunk),
        chunk_cpu_ms = t.chunk_cpu.map(ms),
        chunk_cpu_mib_s = t.chunk_cpu.map(mib_s),
        chunk_wait_ms = ms(t.chunk_wait),
        reread_ms = ms(t.reread),
        lookup_ms = ms(t.lookup),
        pack_read_ms = ms(t.pack_read),
        pack_ms = ms(t.pack),
        publish_ms = ms(t.publish),
        record_ms = ms(t.record),
        spanning_bytes = t.spanning_bytes,
        after_receive_ms = ms(begun.elapsed()),
        "storage.lfs_ingested"
    );
}

/// Records `file` for repository `repo_id` (an LFS object of that repository, referencing
/// its xorbs).
pub(crate) async fn link_file(state: &Context, repo_id: i64, file: &XetFile) -> ApiResult<()> {
    let terms = rebuild::file_terms(file)?;
    let mut names: Vec<[u8; 32]> = terms.iter().map(|t| t.xorb.to_bytes()).collect();
    names.sort_unstable();
    names.dedup();
    state
        .db
        .record_xet_file(repo_id, file, &names, now_ms())
        .await?;
    Ok(())
}

/// Chunks the file at `path` in one pass: every chunk's hash, offset and length, the file's
/// SHA-256 computed in the same pass, and the time spent cutting and hashing chunks.
fn chunk_file(path: &Path) -> std::io::Result<(Vec<StreamChunk>, [u8; 32], Duration)> {
    let mut file = File::open(path)?;
    let mut chunker = StreamChunker::default();
    let mut sha = Sha256::new();
    let mut out = Vec::new();
    let mut buf = vec![0u8; READ_BUFFER];
    let mut busy = Duration::ZERO;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        let start = Instant::now();
        chunker.feed(&buf[..n], &mut out);
        busy += start.elapsed();
    }
    chunker.finish(&mut out);
    Ok((out, sha.finalize().into(), busy))
}

/// Packs `chunks` (read from the object at `path`) into one xorb, stores it durably, records
/// it and its chunks, and links it to the repository. Returns its hash and stored size.
async fn pack_and_store(
    state: &Context,
    repo_id: i64,
    path: &Path,
    chunks: Vec<StreamChunk>,
    timings: &mut Timings,
) -> ApiResult<(XetHash, u64)> {
    let path = path.to_owned();
    let written = write_xorb(state, move |packer| {
        let object = File::open(&path)?;
        let (mut read, mut packing) = (Duration::ZERO, Duration::ZERO);
        let mut span = Vec::new();
        let mut rest = chunks.as_slice();
        while let Some(first) = rest.first() {
            // A run of chunks that follow each other in the object, read in one go.
            let start = first.offset;
            let mut end = start + u64::from(first.len);
            let mut n = 1;
            while let Some(next) = rest.get(n)
                && next.offset == end
                && end + u64::from(next.len) - start <= READ_SPAN
            {
                end += u64::from(next.len);
                n += 1;
            }
            let clock = Instant::now();
            span.resize((end - start) as usize, 0);
            object.read_exact_at(&mut span, start)?;
            read += clock.elapsed();
            let clock = Instant::now();
            for c in &rest[..n] {
                let at = (c.offset - start) as usize;
                let bytes = &span[at..at + c.len as usize];
                // The packer hashes what it packs: bytes that changed on disk since they were
                // hashed on arrival never enter a xorb under the old hash.
                let h = packer.push(bytes).map_err(ApiError::internal)?;
                if h != c.hash {
                    return Err(ApiError::internal(anyhow::anyhow!(
                        "object {} changed while it was being packed",
                        path.display()
                    )));
                }
            }
            packing += clock.elapsed();
            rest = &rest[n..];
        }
        Ok((read, packing))
    })
    .await?;
    let (read, packing) = written.value;
    timings.pack_read += read;
    timings.pack += packing + written.finish;
    timings.publish += written.publish;
    let recording = Instant::now();
    let raw = written.xorb.to_bytes();
    let stored = written.index.stored_len();
    let (record, chunk_hashes) = xorb_record(&written.index);
    let now = now_ms();
    state
        .db
        .record_xorb(&raw, &record, &chunk_hashes, now)
        .await?;
    state.db.link_repo_xorb(repo_id, &raw, now).await?;
    timings.record += recording.elapsed();
    Ok((written.xorb, stored))
}

/// The packer a server-built xorb is written through.
pub(crate) type StagedPacker = XorbPacker<BufWriter<File>>;

/// A xorb [`write_xorb`] made durable.
pub(crate) struct Written<T> {
    pub xorb: XetHash,
    pub index: XorbIndex,
    /// What the fill function returned.
    pub value: T,
    /// Finishing the xorb after the fill: flushing the last records.
    pub finish: Duration,
    /// Making it durable: fsync, publish.
    pub publish: Duration,
}

/// Builds one server-built xorb from the chunks `fill` pushes (on the blocking pool), then
/// makes it durable: written to a staging file, fsynced once, published create-if-absent. It
/// is not recorded. LFS ingestion and GC's compaction both build their xorbs here.
pub(crate) async fn write_xorb<F, T>(state: &Context, fill: F) -> ApiResult<Written<T>>
where
    F: FnOnce(&mut StagedPacker) -> ApiResult<T> + Send + 'static,
    T: Send + 'static,
{
    let store = (*state.store).clone();
    let (staged, xorb, index, value, finish) =
        tokio::task::spawn_blocking(move || -> ApiResult<_> {
            let (mut staged, out) = store.create_staged_xorb()?;
            let mut packer = XorbPacker::new(BufWriter::with_capacity(READ_BUFFER, out));
            let value = fill(&mut packer)?;
            let clock = Instant::now();
            let (xorb, index, out) = packer.finish().map_err(ApiError::internal)?;
            out.into_inner()
                .map_err(|e| ApiError::internal(e.into_error()))?;
            staged.set_len(index.stored_len());
            Ok((staged, xorb, index, value, clock.elapsed()))
        })
        .await??;
    let clock = Instant::now();
    state
        .store
        .publish_xorb(staged, &xorb.hex(), index.stored_len())
        .await?;
    Ok(Written {
        xorb,
        index,
        value,
        finish,
        publish: clock.elapsed(),
    })
}

/// How the database records a xorb with this index, and its chunk hashes in order.
pub(crate) fn xorb_record(index: &XorbIndex) -> (XorbRecord, Vec<[u8; 32]>) {
    let record = XorbRecord {
        stored_bytes: index.stored_len(),
        raw_bytes: index.raw_len(),
        num_chunks: index.num_chunks(),
        chunk_index: index.encode(),
    };
    let chunk_hashes = index.chunks.iter().map(|c| c.hash.to_bytes()).collect();
    (record, chunk_hashes)
}

/// The file's terms: runs of consecutive chunks of one xorb, in file order.
fn terms_of(chunks: &[StreamChunk], places: &[Place], packs: &[XetHash]) -> ApiResult<Vec<Term>> {
    let mut terms: Vec<Term> = Vec::new();
    for (c, place) in chunks.iter().zip(places) {
        let (xorb, index) = match *place {
            Place::Held { xorb, index } => (xorb, index),
            Place::New { pack, index } => (
                *packs.get(pack).ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("packed xorb {pack} missing"))
                })?,
                index,
            ),
        };
        if let Some(last) = terms.last_mut()
            && last.xorb == xorb
            && last.chunk_end == index
            && let Some(total) = last.unpacked_len.checked_add(c.len)
        {
            last.chunk_end += 1;
            last.unpacked_len = total;
            continue;
        }
        terms.push(Term {
            xorb,
            chunk_start: index,
            chunk_end: index + 1,
            unpacked_len: c.len,
        });
    }
    Ok(terms)
}
