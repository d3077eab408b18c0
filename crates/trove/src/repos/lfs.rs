//! LFS objects as a repository receives them: bytes streamed into the store and verified
//! against their oid (a basic upload is chunked on the way in), moved into the chunk store
//! (see `repos::ingest`), then recorded and
//! linked to the repository they were uploaded for. A repository may reference an object
//! only once such a link exists, so knowing a hash never grants another repository's content.

use crate::clock::now_ms;
use crate::context::Context;
use crate::error::ApiResult;
use crate::repos::ingest::{self, ingest_object, ingest_streamed};
use bytes::Bytes;
use futures_util::Stream;
use std::io;
use std::time::Instant;
use trove_store::PutOutcome;
use trove_types::Sha256Hex;

/// Records a verified object and links it to the repository it was uploaded for.
pub async fn publish(state: &Context, repo_id: i64, oid: &Sha256Hex, size: u64) -> ApiResult<()> {
    let now = now_ms();
    state.db.record_lfs_object(oid, size, now).await?;
    state.db.link_repo_object(repo_id, oid, now).await?;
    Ok(())
}

/// The basic transfer: streams `body` into the store (refused unless it is `size` bytes
/// hashing to `oid`), then publishes the object for `repo_id`.
pub async fn receive<S>(
    state: &Context,
    repo_id: i64,
    oid: &Sha256Hex,
    size: u64,
    body: S,
) -> ApiResult<PutOutcome>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin + 'static,
{
    let started = Instant::now();
    // Bytes already held as a Xet file are only linked: no need to chunk them as they arrive.
    let outcome = if size > 0 && state.db.xet_file_by_sha256(oid).await?.is_none() {
        let (body, stage) = ingest::chunk_alongside(body);
        let outcome = state.store.put(oid, size, body).await?;
        ingest_streamed(state, repo_id, oid, size, stage, started.elapsed()).await?;
        outcome
    } else {
        let outcome = state.store.put(oid, size, body).await?;
        ingest_object(state, repo_id, oid, size).await?;
        outcome
    };
    publish(state, repo_id, oid, size).await?;
    tracing::info!(oid = %oid, size_bytes = size, new = matches!(outcome, PutOutcome::Stored), "lfs object uploaded");
    Ok(outcome)
}

/// The multipart transfer's last step: every part is in; the store hashes and verifies the
/// whole, then the object is published for `repo_id`.
pub async fn complete_multipart(
    state: &Context,
    upload_id: &str,
    repo_id: i64,
    oid: &Sha256Hex,
    size: u64,
) -> ApiResult<()> {
    state.store.multipart_complete(upload_id).await?;
    ingest_object(state, repo_id, oid, size).await?;
    publish(state, repo_id, oid, size).await?;
    tracing::info!(oid = %oid, size_bytes = size, "lfs multipart upload completed");
    Ok(())
}
