//! A repository's large files as its owners manage them (`list_lfs_files`,
//! `permanently_delete_lfs_files`): the LFS objects it links, where its history uses each,
//! and permanent deletion — the pointers stay in history, the repository stops holding the
//! bytes (its downloads of them answer as for a missing object), and garbage collection
//! frees them once no other repository needs them.

use crate::clock::now_ms;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use crate::repos::{RepoRef, with_git};
use std::collections::HashMap;
use trove_db::RepoLfsFile;
use trove_git::LfsPlace;
use trove_types::{DEFAULT_BRANCH, Sha256Hex};

/// Most oids one deletion request may name (the client sends batches of 1000).
pub const MAX_DELETIONS: usize = 1000;

/// One page of a repository's LFS objects, each with where its history uses it (`None`
/// for an object linked but not used by any ref).
pub async fn page(
    state: &Context,
    repo: &RepoRef,
    after: Option<&Sha256Hex>,
    limit: u32,
) -> ApiResult<Vec<(RepoLfsFile, Option<LfsPlace>)>> {
    let files = state
        .db
        .repo_lfs_files_page(repo.repo.id, after, limit)
        .await?;
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let mut places: HashMap<String, LfsPlace> = with_git(state, repo, |git| {
        Ok(git.lfs_pointer_places(DEFAULT_BRANCH)?)
    })
    .await?;
    Ok(files
        .into_iter()
        .map(|f| {
            let place = places.remove(f.oid.as_str());
            (f, place)
        })
        .collect())
}

/// Deletes `oids` from repository `repo_id` permanently. Unknown oids, and oids the
/// repository does not link, are skipped. Returns how many were deleted.
pub async fn delete(state: &Context, repo_id: i64, oids: &[String]) -> ApiResult<u64> {
    if oids.len() > MAX_DELETIONS {
        return Err(ApiError::bad_request(format!(
            "At most {MAX_DELETIONS} files may be deleted per request"
        )));
    }
    let parsed = oids
        .iter()
        .map(|o| {
            Sha256Hex::parse(o)
                .map_err(|_| ApiError::bad_request(format!("Invalid LFS file oid: {o:?}")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let deleted = state
        .db
        .delete_repo_lfs_files(repo_id, &parsed, now_ms())
        .await?;
    tracing::info!(
        repo_id,
        asked = parsed.len(),
        deleted,
        "storage.lfs_files_deleted"
    );
    Ok(deleted)
}
