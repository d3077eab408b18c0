//! Rebuilding file bytes from stored xorbs: for checking an uploaded file's SHA-256, and for
//! serving Xet-backed files to clients that speak plain HTTP (the LFS bridge). Memory stays at
//! one chunk plus one send buffer, whatever the file size.

use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::sync::Arc;
use trove_db::XetFile;
use trove_store::Store;
use trove_xet::XetHash;
use trove_xet::decode::BlockPool;
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

/// Write the bytes `plan` describes to `out` (blocking). Returns the bytes written.
pub fn write_plan<W: Write>(store: &Store, plan: &Plan, out: &mut W) -> io::Result<u64> {
    walk_plan(store, plan, |file, term, skip, remaining| {
        let reader = BufReader::with_capacity(SEND_BUFFER, file);
        trove_xet::decode::decode_term(reader, term, skip, remaining, out).map_err(io::Error::other)
    })?;
    Ok(plan.length)
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
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("xorb {} is missing", term.xorb),
                )
            })?;
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
        let result = send_plan(&store, &blocks, &plan, &mut batch).and_then(|_| batch.send());
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

/// [`write_plan`]'s walk, with the bytes handed to `batch` as shared slices.
fn send_plan(
    store: &Store,
    blocks: &Arc<BlockPool>,
    plan: &Plan,
    batch: &mut Batcher,
) -> io::Result<()> {
    walk_plan(store, plan, |file, term, skip, remaining| {
        trove_xet::decode::decode_term_shared(file, term, skip, remaining, blocks, &mut |bytes| {
            batch.push(bytes)
        })
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
