//! Rebuilding file bytes from stored xorbs: for checking an uploaded file's SHA-256
//! ([`hash_plan`]), and for serving Xet-backed files to clients that speak plain HTTP (the
//! LFS bridge, [`stream_plan`]; [`stream_plan_remote`] when the xorbs are in a bucket). Memory stays bounded whatever the file size: one chunk plus
//! a few read blocks and the batches in flight (a few hundred KiB for the bridge, a few MiB
//! for the hash check).

use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Arc;
use trove_db::XetFile;
use trove_store::Store;
use trove_xet::XetHash;
use trove_xet::decode::{BlockPool, FrameDecoder};
use trove_xet::plan::{self, Plan, PlannedTerm};
use trove_xet::shard::{Term, decode_terms};
use trove_xet::xorb::XorbIndex;

/// Bytes handed to the HTTP body at a time by the bridge.
const SEND_BUFFER: usize = 256 * 1024;
/// Buffers in flight between the decoding thread and the socket.
const SEND_QUEUE: usize = 2;

/// The indices of every xorb `terms` names. A missing one is an internal error: the file
/// was verified against it, so only a damaged store can lose it.
pub async fn load_indices(
    state: &Context,
    terms: &[Term],
) -> ApiResult<HashMap<XetHash, XorbIndex>> {
    let mut wanted: Vec<[u8; 32]> = terms.iter().map(|t| t.xorb.to_bytes()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let rows = state.db.xorb_indices(&wanted).await?;
    rows.into_iter()
        .map(|(h, blob)| {
            let index = XorbIndex::decode(&blob).map_err(ApiError::internal)?;
            Ok((XetHash::from_bytes(h), index))
        })
        .collect()
}

/// [`load_indices`] through the context's [`trove_xet::xorb::IndexCache`]: only the
/// indices not held are read from the database, in one query. Only the download paths use
/// it; checks (`storage::fsck`) read the database. The indices are the cache's own, shared:
/// an index has an entry per chunk of its xorb (up to a few thousand for a 64 MiB one),
/// which a copy per download would allocate and fill again.
async fn cached_indices(
    state: &Context,
    terms: &[Term],
) -> ApiResult<HashMap<XetHash, Arc<XorbIndex>>> {
    let mut out = HashMap::new();
    let mut wanted: Vec<[u8; 32]> = Vec::new();
    for term in terms {
        if out.contains_key(&term.xorb) {
            continue;
        }
        match state.xorb_indices.get(&term.xorb) {
            Some(index) => {
                out.insert(term.xorb, index);
            }
            None => wanted.push(term.xorb.to_bytes()),
        }
    }
    if wanted.is_empty() {
        return Ok(out);
    }
    wanted.sort_unstable();
    wanted.dedup();
    for (h, blob) in state.db.xorb_indices(&wanted).await? {
        let index = Arc::new(XorbIndex::decode(&blob).map_err(ApiError::internal)?);
        let hash = XetHash::from_bytes(h);
        state.xorb_indices.put(hash, Arc::clone(&index));
        out.insert(hash, index);
    }
    Ok(out)
}

/// The terms of a stored file.
pub fn file_terms(file: &XetFile) -> ApiResult<Vec<Term>> {
    decode_terms(&file.terms).ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!("stored terms of a xet file are corrupt"))
    })
}

/// Plan `range` (`[start, end)`, `None` = all) of a stored file.
pub async fn plan_file(
    state: &Context,
    file: &XetFile,
    range: Option<(u64, u64)>,
) -> ApiResult<(Plan, HashMap<XetHash, Arc<XorbIndex>>)> {
    let terms = file_terms(file)?;
    let xorbs = cached_indices(state, &terms).await?;
    let plan = plan::plan(&terms, &xorbs, range).map_err(|e| match e {
        plan::PlanError::RangeNotSatisfiable { size, .. } => ApiError::RangeNotSatisfiable { size },
        other => ApiError::internal(other),
    })?;
    Ok((plan, xorbs))
}

/// Bytes of decoded slices handed from the decoding thread to the hashing one at a time;
/// a plan shorter than this is decoded and hashed on the calling thread.
const HASH_BATCH: usize = 1 << 20;
/// Batches that may wait for the hashing thread.
const HASH_QUEUE: usize = 4;

/// The SHA-256 of the bytes `plan` describes (blocking: call from the blocking pool or a
/// plain thread). Decoding (reading the xorbs, and decompressing) runs on a thread of its
/// own and hands its slices to this one, which only hashes: on two cores the rebuild takes
/// about the time of the hash alone rather than the sum of both. A plan shorter than one
/// batch ([`HASH_BATCH`]) has nothing to overlap and is decoded and hashed here, without a
/// thread. The slices are those [`decode_plan`] hands out, as [`stream_plan`] sends them;
/// memory: [`HASH_QUEUE`] batches of about [`HASH_BATCH`] bytes, plus what one decoding step
/// holds.
pub fn hash_plan(store: &Store, blocks: &Arc<BlockPool>, plan: &Plan) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    hash_plan_into(store, blocks, plan, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// [`hash_plan`] continuing `hasher`: the bytes `plan` describes are hashed after whatever
/// it hashed before (a file's first xorbs, hashed while they arrived: `hash_ahead`).
pub fn hash_plan_into(
    store: &Store,
    blocks: &Arc<BlockPool>,
    plan: &Plan,
    hasher: &mut Sha256,
) -> io::Result<()> {
    if plan.length < HASH_BATCH as u64 {
        return hash_plan_here(store, blocks, plan, hasher);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Bytes>>(HASH_QUEUE);
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            let mut slices = Vec::new();
            let mut bytes = 0usize;
            let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the hashing thread stopped");
            decode_plan(store, blocks, plan, &mut |b| {
                bytes += b.len();
                slices.push(b);
                if bytes >= HASH_BATCH {
                    bytes = 0;
                    tx.send(std::mem::take(&mut slices)).map_err(|_| gone())?;
                }
                Ok(())
            })?;
            if !slices.is_empty() {
                tx.send(slices).map_err(|_| gone())?;
            }
            Ok::<(), io::Error>(())
        });
        // Ends when the decoder finishes or fails (it drops the sender either way).
        for batch in rx {
            for slice in &batch {
                hasher.update(slice);
            }
        }
        decoder
            .join()
            .map_err(|_| io::Error::other("the decoding thread panicked"))?
    })
}

/// [`hash_plan_into`] decoding and hashing on the calling thread alone, whatever the plan's
/// length: for work nobody waits on (a xorb hashed ahead of its shard, `hash_ahead`), where
/// a second thread and its queued batches would only cost memory and wake-ups. Memory: one
/// block and one record.
pub fn hash_plan_here(
    store: &Store,
    blocks: &Arc<BlockPool>,
    plan: &Plan,
    hasher: &mut Sha256,
) -> io::Result<()> {
    decode_plan(store, blocks, plan, &mut |b| {
        hasher.update(&b);
        Ok(())
    })
}

/// The plan that reads all of xorb `hash`, whose chunk index is `index`.
pub fn whole_xorb(hash: XetHash, index: &XorbIndex) -> Plan {
    Plan {
        offset_into_first: 0,
        length: index.raw_len(),
        terms: vec![PlannedTerm {
            xorb: hash,
            chunk_start: 0,
            chunk_end: index.num_chunks(),
            unpacked_len: index.raw_len(),
            stored_start: 0,
            stored_end: index.stored_len(),
        }],
    }
}

/// The error of a plan naming a xorb the store does not hold (a damaged store: the file
/// was verified against it).
fn missing_xorb(xorb: &XetHash) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("xorb {xorb} is missing"))
}

/// Walks `plan`'s terms in order: opens each term's xorb at its first stored byte and lets
/// `decode` produce the term's bytes (skipping `skip`, at most `remaining`), returning how
/// many it produced. Fails if a xorb is missing or the terms end short of the plan's length.
fn walk_plan(
    store: &Store,
    plan: &Plan,
    mut decode: impl FnMut(Box<dyn Read + Send>, &PlannedTerm, u64, u64) -> io::Result<u64>,
) -> io::Result<()> {
    let mut skip = plan.offset_into_first;
    let mut remaining = plan.length;
    for term in &plan.terms {
        if remaining == 0 {
            break;
        }
        let file = store
            .open_xorb_at(&term.xorb.hex(), term.stored_start)
            .map_err(io::Error::other)?
            .ok_or_else(|| missing_xorb(&term.xorb))?;
        remaining -= decode(file, term, skip, remaining)?;
        skip = 0;
    }
    if remaining != 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("reconstruction ended {remaining} bytes short"),
        ));
    }
    Ok(())
}

/// The bytes of `plan` as a stream, decoded on the blocking pool. Stored bytes are read in
/// blocks of [`SEND_BUFFER`] and a chunk stored uncompressed goes to the socket as a slice of
/// its block (one copy in user space, the kernel's read); slices travel in batches of about
/// [`SEND_BUFFER`], at most [`SEND_QUEUE`] batches ahead of the socket.
pub fn stream_plan(
    store: Store,
    blocks: Arc<BlockPool>,
    plan: Plan,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Vec<Bytes>>>(SEND_QUEUE);
    tokio::task::spawn_blocking(move || {
        let mut batch = Batcher {
            tx: tx.clone(),
            slices: Vec::new(),
            bytes: 0,
        };
        let result = decode_plan(&store, &blocks, &plan, &mut |bytes| batch.push(bytes))
            .and_then(|_| batch.send());
        if let Err(e) = result {
            if e.kind() != io::ErrorKind::BrokenPipe {
                tracing::error!(error = %e, "xet.bridge_failed");
            }
            // The client sees a truncated body rather than a wrong one.
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .flat_map(|item| {
        let items: Vec<io::Result<Bytes>> = match item {
            Ok(slices) => slices.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(items)
    })
}

/// [`stream_plan`] for a store whose xorbs are fetched over HTTP (S3): the bytes are decoded
/// on the runtime as the GET's frames arrive ([`FrameDecoder`]), a chunk stored uncompressed
/// going out as slices of the frames it came in. No blocking thread sits between the bucket
/// and the socket: on the blocking pool each frame cost a wake-up of the reading thread and
/// a copy into its block, most of Trove's CPU per streamed byte. The next term's GET is sent
/// while the current one streams, so its time to first byte overlaps the transfer.
pub fn stream_plan_remote(
    store: Store,
    plan: Plan,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    let walk = RemoteWalk {
        remaining: plan.length,
        skip: plan.offset_into_first,
        terms: plan.terms.into_iter(),
        store,
        current: None,
        next: None,
        out: std::collections::VecDeque::new(),
    };
    futures_util::stream::try_unfold(walk, |mut walk| async move {
        match walk.next_bytes().await {
            Ok(Some(bytes)) => Ok(Some((bytes, walk))),
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::error!(error = %e, "xet.bridge_failed");
                Err(e)
            }
        }
    })
}

/// A GET of a term's stored bytes on its way (spawned, so it proceeds unpolled).
type Opening =
    tokio::task::JoinHandle<Result<Option<trove_store::ByteStream>, trove_store::StoreError>>;

/// [`stream_plan_remote`]'s state between the bytes it hands out.
struct RemoteWalk {
    store: Store,
    terms: std::vec::IntoIter<PlannedTerm>,
    /// Bytes of the plan still to hand out, and to skip at the start of the next term.
    remaining: u64,
    skip: u64,
    /// The term being decoded: its stored bytes' stream and its decoder.
    current: Option<(trove_store::ByteStream, FrameDecoder)>,
    /// The next term and its GET, sent ahead.
    next: Option<(PlannedTerm, Opening)>,
    /// Decoded bytes not yet handed out.
    out: std::collections::VecDeque<Bytes>,
}

/// A download abandoned mid-way (the client went away) drops its walk: the GET sent ahead
/// for the next term is stopped too, rather than left to run to its headers unawaited.
impl Drop for RemoteWalk {
    fn drop(&mut self) {
        if let Some((_, opening)) = self.next.take() {
            opening.abort();
        }
    }
}

impl RemoteWalk {
    fn open(&self, term: &PlannedTerm) -> Opening {
        let (store, hex) = (self.store.clone(), term.xorb.hex());
        let (start, end) = (term.stored_start, term.stored_end);
        tokio::spawn(async move { store.open_xorb_range(&hex, start, end).await })
    }

    /// The next term and its GET: the one sent ahead, or a new one; the GET of the term
    /// after it sent in turn.
    fn take_next(&mut self) -> Option<(PlannedTerm, Opening)> {
        let next = self.next.take().or_else(|| {
            let term = self.terms.next()?;
            let opening = self.open(&term);
            Some((term, opening))
        })?;
        if let Some(after) = self.terms.next() {
            let opening = self.open(&after);
            self.next = Some((after, opening));
        }
        Some(next)
    }

    async fn next_bytes(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(bytes) = self.out.pop_front() {
                return Ok(Some(bytes));
            }
            if self.remaining == 0 {
                return Ok(None);
            }
            let Some((stream, decoder)) = &mut self.current else {
                let Some((term, opening)) = self.take_next() else {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("reconstruction ended {} bytes short", self.remaining),
                    ));
                };
                let stream = opening
                    .await
                    .map_err(io::Error::other)?
                    .map_err(io::Error::other)?
                    .ok_or_else(|| missing_xorb(&term.xorb))?;
                let decoder = FrameDecoder::new(&term, self.skip, self.remaining);
                self.skip = 0;
                self.current = Some((stream, decoder));
                continue;
            };
            let frame = if decoder.is_full() {
                None
            } else {
                stream.next().await.transpose()?
            };
            match frame {
                Some(frame) => {
                    let out = &mut self.out;
                    decoder
                        .feed(frame, &mut |bytes| out.push_back(bytes))
                        .map_err(io::Error::other)?;
                }
                None => {
                    let written = decoder.finish().map_err(io::Error::other)?;
                    self.remaining -= written;
                    self.current = None;
                }
            }
        }
    }
}

/// The walk over `plan`, its bytes decoded and handed to `emit` in order as shared slices
/// (an uncompressed chunk is a slice of the block it was read into).
fn decode_plan(
    store: &Store,
    blocks: &Arc<BlockPool>,
    plan: &Plan,
    emit: &mut dyn FnMut(Bytes) -> io::Result<()>,
) -> io::Result<()> {
    walk_plan(store, plan, |file, term, skip, remaining| {
        trove_xet::decode::decode_term_shared(file, term, skip, remaining, blocks, emit)
            .map_err(io::Error::other)
    })
}

/// Slices gathered until they make [`SEND_BUFFER`] bytes, then handed to the async receiver
/// in one message; a gone receiver (the client hung up) stops the walk with `BrokenPipe`.
struct Batcher {
    tx: tokio::sync::mpsc::Sender<io::Result<Vec<Bytes>>>,
    slices: Vec<Bytes>,
    bytes: usize,
}

impl Batcher {
    fn push(&mut self, bytes: Bytes) -> io::Result<()> {
        self.bytes += bytes.len();
        self.slices.push(bytes);
        if self.bytes >= SEND_BUFFER {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        if self.slices.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        let slices = std::mem::take(&mut self.slices);
        self.tx
            .blocking_send(Ok(slices))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_xet::xorb::testing::build_xorb;

    /// Chunk payloads of `sizes` bytes, half of them compressible, half not.
    fn chunks(sizes: &[usize], seed: u32) -> Vec<Vec<u8>> {
        let mut state = seed;
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                (0..n)
                    .map(|j| {
                        if i % 2 == 0 {
                            (j % 13) as u8
                        } else {
                            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                            (state >> 16) as u8
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// Stores a xorb of `data` and returns the term of its chunks `[first, last)`.
    async fn stored_term(store: &Store, data: &[Vec<u8>], first: u32, last: u32) -> PlannedTerm {
        let (bytes, hash) = build_xorb(data);
        let index = trove_xet::xorb::validate(bytes.as_slice(), &hash).expect("a valid xorb");
        let len = bytes.len() as u64;
        let body = futures_util::stream::iter([Ok::<_, io::Error>(Bytes::from(bytes))]);
        let staged = store.stage_xorb(body, len).await.expect("staged");
        store
            .publish_xorb(staged, &hash.hex(), len)
            .await
            .expect("published");
        let (stored_start, stored_end) = index.stored_range(first, last);
        PlannedTerm {
            xorb: hash,
            chunk_start: first,
            chunk_end: last,
            unpacked_len: index.raw_range_len(first, last),
            stored_start,
            stored_end,
        }
    }

    fn direct_sha256(parts: &[&[Vec<u8>]], skip: usize, len: usize) -> [u8; 32] {
        let all: Vec<u8> = parts.iter().flat_map(|p| p.concat()).collect();
        Sha256::digest(&all[skip..skip + len]).into()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_and_large_plans_hash_as_their_bytes_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_local(dir.path().join("lfs"))
            .await
            .expect("store");
        // Small: under one batch, hashed on the calling thread.
        let small = chunks(&[3000, 5111, 7000, 2222], 1);
        let small_term = stored_term(&store, &small, 1, 4).await;
        // Large: two xorbs over several batches, hashed on two threads.
        // (A chunk holds at most 128 KiB.)
        let sizes = |n: usize, base: usize| (0..n).map(|i| base + i * 2_345).collect::<Vec<_>>();
        let big_a = chunks(&sizes(12, 100_000), 2);
        let big_b = chunks(&sizes(10, 90_001), 3);
        let a_term = stored_term(&store, &big_a, 0, 12).await;
        let b_term = stored_term(&store, &big_b, 0, 10).await;
        let cases = [
            (
                "small, whole",
                Plan {
                    offset_into_first: 0,
                    length: small_term.unpacked_len,
                    terms: vec![small_term],
                },
                direct_sha256(&[&small[1..4]], 0, small_term.unpacked_len as usize),
            ),
            (
                "small, a range",
                Plan {
                    offset_into_first: 17,
                    length: 9000,
                    terms: vec![small_term],
                },
                direct_sha256(&[&small[1..4]], 17, 9000),
            ),
            (
                "large, across two xorbs from an offset",
                Plan {
                    offset_into_first: 1234,
                    length: a_term.unpacked_len + b_term.unpacked_len - 1234 - 99,
                    terms: vec![a_term, b_term],
                },
                direct_sha256(
                    &[&big_a, &big_b],
                    1234,
                    (a_term.unpacked_len + b_term.unpacked_len - 1234 - 99) as usize,
                ),
            ),
        ];
        assert!(cases[1].1.length < HASH_BATCH as u64);
        assert!(cases[2].1.length > 2 * HASH_BATCH as u64);
        let blocks = BlockPool::new(64 * 1024, 4);
        for (name, plan, expected) in cases {
            let (store, blocks) = (store.clone(), Arc::clone(&blocks));
            let got = tokio::task::spawn_blocking(move || hash_plan(&store, &blocks, &plan))
                .await
                .expect("joined")
                .expect("hashed");
            assert_eq!(got, expected, "{name}");
        }
        // A plan naming a xorb the store lacks fails on either path.
        let plan_xorb = XetHash::from_bytes([7; 32]);
        for length in [100, 3 * HASH_BATCH as u64] {
            let plan = Plan {
                offset_into_first: 0,
                length,
                terms: vec![PlannedTerm {
                    xorb: plan_xorb,
                    ..a_term
                }],
            };
            let (store, blocks) = (store.clone(), Arc::clone(&blocks));
            let err = tokio::task::spawn_blocking(move || hash_plan(&store, &blocks, &plan))
                .await
                .expect("joined")
                .expect_err("missing xorb");
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
            assert_eq!(err.to_string(), missing_xorb(&plan_xorb).to_string());
        }
    }
}
