//! LFS objects as a repository receives them: bytes verified against their oid and kept in
//! the chunk store (see `repos::ingest`: a basic upload is packed into xorbs on the way in, a
//! multipart one is assembled in staging and ingested from there), then recorded and linked
//! to the repository they were uploaded for. A repository may reference an object
//! only once such a link exists, so knowing a hash never grants another repository's content.

use crate::clock::now_ms;
use crate::context::Context;
use crate::error::ApiResult;
use crate::repos::ingest::{self, ingest_object, receive_packed};
use bytes::Bytes;
use futures_util::Stream;
use std::io;
use trove_store::PutOutcome;
use trove_types::Sha256Hex;

/// Records a verified object and links it to the repository it was uploaded for.
pub async fn publish(state: &Context, repo_id: i64, oid: &Sha256Hex, size: u64) -> ApiResult<()> {
    let now = now_ms();
    state.db.record_lfs_object(oid, size, now).await?;
    state.db.link_repo_object(repo_id, oid, now).await?;
    Ok(())
}

/// The basic transfer: `body` is packed into the chunk store as it arrives (refused, with
/// nothing kept, unless it is `size` bytes hashing to `oid`), then the object is published
/// for `repo_id`.
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
    let outcome = if size == 0 {
        // Empty objects stay whole: there is nothing to chunk.
        state.store.put(oid, size, body).await?
    } else if let Some(file) = state.db.xet_file_by_sha256(oid).await? {
        // Bytes already held as a Xet file: verified, then only linked; nothing is written.
        ingest::verify_body(body, oid, size, None)
            .await
            .map_err(|e| e.into_api())?;
        ingest::link_file(state, repo_id, &file).await?;
        PutOutcome::AlreadyPresent
    } else {
        receive_packed(state, repo_id, oid, size, body).await?;
        PutOutcome::Stored
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
