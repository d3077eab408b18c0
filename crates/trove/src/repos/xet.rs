//! The Xet chunk store as repositories use it: storing a xorb for a repository, registering
//! the files of a shard, and the rule that scopes both — a CAS token sees only the xorbs
//! referenced by its repository (uploaded for it, or making up a file linked to it), or by
//! any repository of its namespace when its user may read them all (the owner, a member of
//! the organization, through a token that reaches the namespace), and the xorbs its user
//! uploaded, so that knowing a hash never confirms that content is held where the holder of
//! the token may not read. The user is a unit because the client reuses every xorb it
//! uploaded earlier — to any repository, of any namespace, since deleted or not — without
//! sending it again: the user sent those bytes, so naming them again tells them nothing.

use crate::clock::now_ms;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use crate::hash_ahead;
use crate::repos::rebuild;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io;
use std::time::Instant;
use trove_db::{XetFile, XorbRecord, XorbViewer};
use trove_types::Sha256Hex;
use trove_xet::XetHash;
use trove_xet::plan;
use trove_xet::shard::{self, ShardError, ShardFile};
use trove_xet::xorb::{self, XorbError, XorbIndex};

/// Stores xorb `hash` for the repository of `uploader` from an upload `body`, after checking
/// that the bytes are a valid xorb with that hash, and records that the uploader's user sent
/// it (now: the client trusts it from now on). Returns whether the repository did not
/// reference it before. A xorb the server already holds for others is read and checked all
/// the same (the upload proves the client has the bytes) and then linked, never answered
/// from what others hold; the body is skipped only when the same user sent it before.
pub async fn store_xorb<S>(
    state: &Context,
    uploader: XorbViewer,
    hash: XetHash,
    body: S,
) -> ApiResult<bool>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin + 'static,
{
    let raw = hash.to_bytes();
    // This upload's place among the uploader's xorbs, hashed in order for the shard to come
    // (`hash_ahead`); a xorb not stored below (refused, sent before) ends that chain here.
    let ticket = state.hash_ahead.ticket(uploader_of(uploader));
    if sent_before(state, uploader, &raw).await?
        // A xorb garbage collection has moved aside is missing, whatever the index says.
        && state.store.has_xorb(&hash.hex()).await?
    {
        return link(state, uploader, hash, now_ms()).await;
    }
    let clock = Instant::now();
    // Validated while it arrives, from the same pieces the staging file gets: no second
    // pass over the staged bytes.
    let (body, validator) = validate_alongside(body, hash);
    let staged = state
        .store
        .receive_xorb(body, xorb::MAX_XORB_UPLOAD_BYTES)
        .await;
    let receive = clock.elapsed();
    let clock = Instant::now();
    let validated = validator.await?;
    let staged = staged?;
    let index = validated.map_err(|e| match e {
        XorbError::Io(e) => ApiError::internal(e),
        refused => {
            tracing::warn!(xorb = %hash, error = %refused, "xet.xorb_refused");
            ApiError::bad_request(format!("Invalid xorb: {refused}"))
        }
    })?;
    let validate = clock.elapsed();
    let clock = Instant::now();
    let now = now_ms();
    if state.db.xorb_stored_bytes(&raw).await?.is_none()
        || !state.store.has_xorb(&hash.hex()).await?
    {
        state
            .store
            .publish_received_xorb(staged, &hash.hex(), index.stored_len())
            .await?;
        let record = XorbRecord {
            stored_bytes: index.stored_len(),
            raw_bytes: index.raw_len(),
            num_chunks: index.num_chunks(),
            chunk_index: index.encode(),
        };
        let chunk_hashes: Vec<[u8; 32]> = index.chunks.iter().map(|c| c.hash.to_bytes()).collect();
        state
            .db
            .record_xorb(&raw, &record, &chunk_hashes, now)
            .await?;
        tracing::info!(
            xorb = %hash,
            chunks = record.num_chunks,
            bytes = record.stored_bytes,
            receive_ms = receive.as_millis() as u64,
            validate_ms = validate.as_millis() as u64,
            publish_record_ms = clock.elapsed().as_millis() as u64,
            "xet.xorb_stored"
        );
    }
    let linked = link(state, uploader, hash, now).await?;
    let (store, blocks) = ((*state.store).clone(), state.read_blocks.clone());
    let whole = rebuild::whole_xorb(hash, &index);
    ticket.stored(
        hash,
        index.num_chunks(),
        index.raw_len(),
        Box::new(move |hasher| rebuild::hash_plan_here(&store, &blocks, &whole, hasher)),
    );
    Ok(linked)
}

/// The chain of xorbs an upload of `viewer` joins.
fn uploader_of(viewer: XorbViewer) -> hash_ahead::Uploader {
    (viewer.repo_id, viewer.user_id)
}

/// Links stored xorb `hash` to the uploader's repository and user; whether the repository's
/// link is new.
async fn link(state: &Context, uploader: XorbViewer, hash: XetHash, now: i64) -> ApiResult<bool> {
    let linked = state
        .db
        .link_uploaded_xorb(uploader, &hash.to_bytes(), now)
        .await?;
    let (repo_id, user_id) = (uploader.repo_id, uploader.user_id);
    tracing::info!(xorb = %hash, repo_id, user_id, linked, "xet.xorb_linked");
    Ok(linked)
}

/// Whether the uploader sent xorb `raw` before, so that this upload's body need not be
/// checked again: their user did (whichever repository it went to), or, for a token naming
/// no user, the xorb is visible to it (a repository in its reach uploaded it). A user who only sees the xorb through a
/// namespace sends the bytes, checked like any upload, before it counts as theirs: a member
/// of an organization must not keep, in every namespace they write to, a xorb they never
/// sent.
async fn sent_before(state: &Context, uploader: XorbViewer, raw: &[u8; 32]) -> ApiResult<bool> {
    Ok(match uploader.user_id {
        Some(user_id) => state.db.user_uploaded_xorb(user_id, raw).await?,
        None => state
            .db
            .visible_xorb_stored_bytes(uploader, raw)
            .await?
            .is_some(),
    })
}

/// A xorb body passed on to the store.
type BodyStream = futures_util::stream::BoxStream<'static, Result<Bytes, io::Error>>;
/// The validator of a xorb body, answering its chunk index once the body has ended.
type Validator = tokio::task::JoinHandle<Result<XorbIndex, XorbError>>;

/// Pieces of a xorb body waiting for the validator: enough to keep it busy while the next
/// ones arrive, few enough to bound memory (pieces are at most a few hundred KiB).
const VALIDATE_DEPTH: usize = 16;

/// Wraps `body` so that every piece also goes to a validator of xorb `hash` running on the
/// blocking pool; the validator sees the end of the body when the returned stream is dropped
/// or ends. A validator that stopped early (a footer, or a refusal) no longer slows the body.
fn validate_alongside<S>(body: S, hash: XetHash) -> (BodyStream, Validator)
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(VALIDATE_DEPTH);
    let validator = tokio::task::spawn_blocking(move || {
        xorb::validate_buffered(
            PieceReader {
                rx,
                piece: Bytes::new(),
            },
            &hash,
        )
    });
    let wrapped = futures_util::stream::unfold((body, Some(tx)), |(mut body, mut tx)| async move {
        let item = futures_util::StreamExt::next(&mut body).await?;
        if let (Ok(piece), Some(sender)) = (&item, &tx)
            && !piece.is_empty()
            && sender.send(piece.clone()).await.is_err()
        {
            tx = None;
        }
        if item.is_err() {
            tx = None;
        }
        Some((item, (body, tx)))
    });
    (Box::pin(wrapped), validator)
}

/// A blocking [`io::BufRead`] over the pieces of a body sent through a channel: each piece
/// is the buffer, read from where it is.
struct PieceReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    piece: Bytes,
}

impl io::Read for PieceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = io::BufRead::fill_buf(self)?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        io::BufRead::consume(self, n);
        Ok(n)
    }
}

impl io::BufRead for PieceReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.piece.is_empty() {
            match self.rx.blocking_recv() {
                Some(piece) => self.piece = piece,
                None => break,
            }
        }
        Ok(&self.piece)
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.piece.len());
        bytes::Buf::advance(&mut self.piece, n);
    }
}

/// The stored size of xorb `hash` if it is visible to `viewer`; `None` whether it is unknown
/// or held for others only.
pub async fn xorb_size(
    state: &Context,
    viewer: XorbViewer,
    hash: &XetHash,
) -> ApiResult<Option<u64>> {
    Ok(state
        .db
        .visible_xorb_stored_bytes(viewer, &hash.to_bytes())
        .await?)
}

/// New files of one shard rebuilt and hashed at once.
const VERIFY_AT_ONCE: usize = 2;

/// Checks every file of a shard against the xorbs visible to `viewer`, rebuilds and hashes
/// those not yet held within its reach, then records them all as LFS objects of the
/// viewer's repository. Nothing is recorded unless every file checks out. Returns whether
/// any file is new to the repository (never whether someone else holds it).
pub async fn register_shard(state: &Context, viewer: XorbViewer, bytes: Bytes) -> ApiResult<bool> {
    let repo_id = viewer.repo_id;
    let shard_bytes = bytes.len();
    let files = tokio::task::spawn_blocking(move || shard::parse(&bytes))
        .await?
        .map_err(shard_error)?;
    // The check below rebuilds and hashes every new file, seconds for large ones: this line
    // opens it, `xet.shard_registered` (or a refusal) closes it, so a node that dies or
    // stalls mid-check shows where.
    tracing::info!(
        repo_id,
        files = files.len(),
        terms = files.iter().map(|f| f.terms.len()).sum::<usize>(),
        shard_bytes,
        "xet.shard_received"
    );
    let mut wanted: Vec<[u8; 32]> = files
        .iter()
        .flat_map(|f| f.terms.iter().map(|t| t.xorb.to_bytes()))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    // A xorb not visible to the viewer is missing as far as this shard is concerned, and
    // so is one garbage collection dropped, whoever uploaded it.
    let xorbs = state
        .db
        .visible_xorb_indices(viewer, &wanted)
        .await?
        .into_iter()
        .map(|(h, blob)| {
            let index = XorbIndex::decode(&blob).map_err(ApiError::internal)?;
            Ok((XetHash::from_bytes(h), index))
        })
        .collect::<ApiResult<HashMap<_, _>>>()?;
    let mut to_verify = Vec::new();
    let mut known_files = Vec::new();
    for file in &files {
        let size = shard::check_file(file, |h| xorbs.get(h)).map_err(shard_error)?;
        let hash = file.file_hash.to_bytes();
        match state.db.xet_file(&hash).await? {
            // Held within the viewer's reach already: nothing to prove.
            Some(known) if state.db.xet_file_in_reach(viewer, &hash).await? => {
                known_files.push(known)
            }
            // New, or held only where the viewer may not read: rebuilt and hashed all the
            // same, so that neither the answer nor its time tells them apart. A known file
            // keeps its record (the shard's terms only proved the bytes again).
            known => to_verify.push((file.clone(), size, known)),
        }
    }
    let clock = Instant::now();
    // The xorbs this uploader sent since their last shard, hashed as they arrived: a file
    // made of the first of them starts from that hash.
    let chain = state.hash_ahead.take(uploader_of(viewer)).await;
    // Two files at a time: each is rebuilt and hashed on two threads already, and a shard
    // may name thousands of small files. Each comes back with the bytes found hashed ahead.
    let checked: Vec<(XetFile, u64)> = futures_util::stream::iter(to_verify)
        .map(|(file, size, known)| {
            let xorbs = &xorbs;
            let head = chain.as_ref().and_then(|c| c.head(&file.terms));
            async move {
                let ahead = head.as_ref().map_or(0, |h| h.bytes);
                let checked = verify_file(state, file, size, xorbs, head).await?;
                ApiResult::Ok((known.unwrap_or(checked), ahead))
            }
        })
        .buffered(VERIFY_AT_ONCE)
        .try_collect()
        .await?;
    let rebuild = clock.elapsed();
    let hashed_ahead: u64 = checked.iter().map(|(_, ahead)| ahead).sum();
    let verified: Vec<XetFile> = checked.into_iter().map(|(file, _)| file).collect();
    state.hash_ahead.note_used(hashed_ahead);
    let clock = Instant::now();
    let now = now_ms();
    let mut linked = false;
    for file in verified.iter().chain(&known_files) {
        let terms = rebuild::file_terms(file)?;
        let mut names: Vec<[u8; 32]> = terms.iter().map(|t| t.xorb.to_bytes()).collect();
        names.sort_unstable();
        names.dedup();
        linked |= state.db.record_xet_file(repo_id, file, &names, now).await?;
    }
    tracing::info!(
        repo_id,
        new = verified.len(),
        known = known_files.len(),
        bytes = verified.iter().map(|f| f.size).sum::<u64>(),
        rebuild_hash_ms = rebuild.as_millis() as u64,
        hashed_ahead_bytes = hashed_ahead,
        record_ms = clock.elapsed().as_millis() as u64,
        "xet.shard_registered"
    );
    Ok(linked)
}

/// Rebuild a new file from its xorbs and hash it — from `head` on, when its first terms were
/// hashed as they arrived —; refuse it if the client claimed another SHA-256. What we record
/// is always our own hash of the real bytes.
async fn verify_file(
    state: &Context,
    file: ShardFile,
    size: u64,
    xorbs: &HashMap<XetHash, XorbIndex>,
    head: Option<hash_ahead::Head>,
) -> ApiResult<XetFile> {
    let (mut hasher, rest) = match head {
        Some(head) => (head.hasher, &file.terms[head.terms..]),
        None => (Sha256::new(), &file.terms[..]),
    };
    if !rest.is_empty() {
        let plan = plan::plan(rest, xorbs, None).map_err(ApiError::internal)?;
        let (store, blocks) = ((*state.store).clone(), state.read_blocks.clone());
        hasher = tokio::task::spawn_blocking(move || {
            rebuild::hash_plan_into(&store, &blocks, &plan, &mut hasher).map(|()| hasher)
        })
        .await??;
    }
    let digest: [u8; 32] = hasher.finalize().into();
    if let Some(claimed) = file.sha256
        && claimed != digest
    {
        tracing::warn!(file = %file.file_hash, claimed = %hex::encode(claimed), actual = %hex::encode(digest), "xet.shard_sha256_mismatch");
        return Err(ApiError::bad_request(format!(
            "File {}: the shard claims SHA-256 {}, its bytes hash to {}",
            file.file_hash,
            hex::encode(claimed),
            hex::encode(digest)
        )));
    }
    Ok(XetFile {
        file_hash: file.file_hash.to_bytes(),
        size,
        sha256: Sha256Hex::from_digest(&digest),
        terms: shard::encode_terms(&file.terms),
    })
}

fn shard_error(e: ShardError) -> ApiError {
    tracing::warn!(error = %e, "xet.shard_refused");
    match e {
        ShardError::TooLarge => ApiError::PayloadTooLarge {
            limit: shard::MAX_SHARD_BYTES,
        },
        other => ApiError::bad_request(format!("Invalid shard: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_xet::xorb::testing::build_xorb;

    /// A xorb validated from its body's pieces — cut anywhere, empty ones among them — gives
    /// the index validating it whole gives, and a body cut short is refused the same way.
    #[test]
    fn the_pieces_of_a_body_validate_as_the_whole_body() {
        let chunks: Vec<Vec<u8>> = (0..5u32)
            .map(|i| {
                (0..9_000u32)
                    .map(|j| ((i * 131 + j * 7) % 253) as u8)
                    .collect()
            })
            .collect();
        let (body, hash) = build_xorb(&chunks);
        let whole = xorb::validate(body.as_slice(), &hash).expect("valid");
        for cut in [1usize, 7, 8, 4096, 9_007, 65_536] {
            let (tx, rx) = tokio::sync::mpsc::channel(2 * (body.len() / cut) + 4);
            for (i, piece) in body.chunks(cut).enumerate() {
                if i % 3 == 0 {
                    tx.try_send(Bytes::new()).expect("room");
                }
                tx.try_send(Bytes::copy_from_slice(piece)).expect("room");
            }
            drop(tx);
            let reader = PieceReader {
                rx,
                piece: Bytes::new(),
            };
            let index = xorb::validate_buffered(reader, &hash).expect("valid in pieces");
            assert_eq!(index.encode(), whole.encode(), "pieces of {cut}");
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.try_send(Bytes::copy_from_slice(&body[..body.len() - 10]))
            .expect("room");
        drop(tx);
        let short = xorb::validate_buffered(
            PieceReader {
                rx,
                piece: Bytes::new(),
            },
            &hash,
        );
        assert!(short.is_err());
    }
}
