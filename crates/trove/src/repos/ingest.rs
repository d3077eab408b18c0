//! Plain LFS uploads into the chunk store: a verified whole-file object is cut into chunks
//! exactly as a Xet client would cut it, chunks the store already holds (uploaded through
//! either path) are referenced where they are, the new ones are packed into server-built
//! xorbs, and the file is recorded as a Xet file — the same record a Xet upload of the same
//! bytes produces, with the same file hash. The whole-file copy is deleted last.
//!
//! Crash safety comes from the order: xorbs are durable before they are recorded, recorded
//! before a file names them, and the file (which is what makes the object visible to batch
//! requests and downloads) is recorded before the whole-file copy goes. A crash at any point
//! leaves either the object unpublished (the client uploads it again and ingestion runs
//! again) or published and readable, from the copy or from the xorbs.
//!
//! Memory: one chunk at a time plus 48 bytes per chunk of the file (its hash, length and
//! offset), whatever the file's size.

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
use trove_db::{XetFile, XorbRecord};
use trove_types::Sha256Hex;
use trove_xet::XetHash;
use trove_xet::chunk::{Chunker, MAX_CHUNK};
use trove_xet::hash;
use trove_xet::pack::{self, XorbPacker};
use trove_xet::shard::{self, Term};
use trove_xet::xorb::XorbIndex;

/// Bytes read from the object at a time while chunking.
const READ_BUFFER: usize = 1 << 20;

/// One chunk of the file being ingested.
#[derive(Debug, Clone, Copy)]
struct FileChunk {
    hash: XetHash,
    offset: u64,
    len: u32,
}

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

/// Moves whole-file object `oid` (`size` bytes, verified, in the store) into the chunk store
/// and links it to repository `repo_id`. An object already held as a Xet file is only linked.
/// Empty objects stay whole (there is nothing to chunk).
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
    // A local file of the object (in S3 mode this node's staged copy, or a download that
    // `copy` removes when it drops, after the packing below).
    let copy = state
        .store
        .local_copy(oid)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("stored object {oid} is missing")))?;
    let path = copy.path().to_owned();
    let chunks = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || chunk_file(&path)).await??
    };
    let (chunks, digest) = chunks;
    if Sha256Hex::from_digest(&digest) != *oid {
        return Err(ApiError::internal(anyhow::anyhow!(
            "stored object {oid} no longer hashes to its name"
        )));
    }
    let hashes: Vec<[u8; 32]> = chunks.iter().map(|c| c.hash.to_bytes()).collect();
    let held = state.db.chunk_locations(&hashes).await?;

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

    let mut report = Ingested {
        chunks: chunks.len() as u64,
        new_chunks: packed.len() as u64,
        ..Ingested::default()
    };
    let mut pack_hashes = Vec::with_capacity(packs.len());
    for members in packs {
        let picked: Vec<FileChunk> = members.iter().map(|&i| chunks[i]).collect();
        let (xorb, stored) = pack_and_store(state, repo_id, &path, picked).await?;
        pack_hashes.push(xorb);
        report.new_xorbs += 1;
        report.stored_bytes += stored;
    }

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
    tracing::info!(
        oid = %oid,
        repo_id,
        chunks = report.chunks,
        new_chunks = report.new_chunks,
        new_xorbs = report.new_xorbs,
        stored_bytes = report.stored_bytes,
        "storage.lfs_ingested"
    );
    Ok(report)
}

/// Records `file` for repository `repo_id` (an LFS object of that repository, referencing
/// its xorbs).
async fn link_file(state: &Context, repo_id: i64, file: &XetFile) -> ApiResult<()> {
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

/// Chunks the file at `path`: every chunk's hash, offset and length, and the file's SHA-256
/// computed in the same pass.
fn chunk_file(path: &Path) -> std::io::Result<(Vec<FileChunk>, [u8; 32])> {
    let mut file = File::open(path)?;
    let mut chunker = Chunker::default();
    let mut sha = Sha256::new();
    let mut out = Vec::new();
    let mut buf = vec![0u8; READ_BUFFER];
    // The bytes of the chunk in progress, for its hash; never more than one chunk.
    let mut current: Vec<u8> = Vec::with_capacity(MAX_CHUNK);
    let mut offset = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        let mut rest = &buf[..n];
        while let Some(cut) = chunker.next_boundary(rest) {
            current.extend_from_slice(&rest[..cut]);
            out.push(FileChunk {
                hash: hash::chunk_hash(&current),
                offset,
                len: current.len() as u32,
            });
            offset += current.len() as u64;
            current.clear();
            rest = &rest[cut..];
        }
        current.extend_from_slice(rest);
    }
    if !current.is_empty() {
        out.push(FileChunk {
            hash: hash::chunk_hash(&current),
            offset,
            len: current.len() as u32,
        });
    }
    Ok((out, sha.finalize().into()))
}

/// Packs `chunks` (read from the object at `path`) into one xorb, stores it durably, records
/// it and its chunks, and links it to the repository. Returns its hash and stored size.
async fn pack_and_store(
    state: &Context,
    repo_id: i64,
    path: &Path,
    chunks: Vec<FileChunk>,
) -> ApiResult<(XetHash, u64)> {
    let path = path.to_owned();
    let (xorb, index) = write_xorb(state, move |packer| {
        let object = File::open(&path)?;
        let mut data = vec![0u8; MAX_CHUNK];
        for c in &chunks {
            let bytes = &mut data[..c.len as usize];
            object.read_exact_at(bytes, c.offset)?;
            let h = packer.push(bytes).map_err(ApiError::internal)?;
            if h != c.hash {
                return Err(ApiError::internal(anyhow::anyhow!(
                    "object {} changed while it was being packed",
                    path.display()
                )));
            }
        }
        Ok(())
    })
    .await?;
    let raw = xorb.to_bytes();
    let stored = index.stored_len();
    let (record, chunk_hashes) = xorb_record(&index);
    let now = now_ms();
    state
        .db
        .record_xorb(&raw, &record, &chunk_hashes, now)
        .await?;
    state.db.link_repo_xorb(repo_id, &raw, now).await?;
    Ok((xorb, stored))
}

/// The packer a server-built xorb is written through.
pub(crate) type StagedPacker = XorbPacker<BufWriter<File>>;

/// Builds one server-built xorb from the chunks `fill` pushes (on the blocking pool), then
/// makes it durable: written to a staging file, fsynced, published create-if-absent. It is
/// not recorded. LFS ingestion and GC's compaction both build their xorbs here.
pub(crate) async fn write_xorb<F>(state: &Context, fill: F) -> ApiResult<(XetHash, XorbIndex)>
where
    F: FnOnce(&mut StagedPacker) -> ApiResult<()> + Send + 'static,
{
    let store = (*state.store).clone();
    let (staged, xorb, index) = tokio::task::spawn_blocking(move || -> ApiResult<_> {
        let (mut staged, out) = store.create_staged_xorb()?;
        let mut packer = XorbPacker::new(BufWriter::with_capacity(READ_BUFFER, out));
        fill(&mut packer)?;
        let (xorb, index, out) = packer.finish().map_err(ApiError::internal)?;
        out.into_inner()
            .map_err(|e| ApiError::internal(e.into_error()))?;
        staged.set_len(index.stored_len());
        Ok((staged, xorb, index))
    })
    .await??;
    state
        .store
        .publish_xorb(staged, &xorb.hex(), index.stored_len())
        .await?;
    Ok((xorb, index))
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
fn terms_of(chunks: &[FileChunk], places: &[Place], packs: &[XetHash]) -> ApiResult<Vec<Term>> {
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
