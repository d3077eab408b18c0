//! A repository's large files: `GET /api/{t}/{repo}/lfs-files` (paged with `Link`, as
//! `list_lfs_files` reads it) and `POST /api/{t}/{repo}/lfs-files/batch` (permanent deletion,
//! `permanently_delete_lfs_files`) and `POST /api/{t}/{repo}/lfs-files/duplicate` (copies
//! to another repository, `copy_files`). Listing needs read access; deletion, admin rights;
//! duplication, reading the source's files and writing the target.

use super::{Empty, link_header, next_page_url};
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, QueryParams, RepoAt};
use crate::state::AppState;
use crate::storage::{self, lfs_files};
use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use trove_types::{RepoType, Sha256Hex};
use trove_xet::XetHash;

/// Items per page unless `limit` asks for fewer.
const PAGE: u32 = 1000;

/// One item as `LFSFileInfo` reads it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LfsFileJson {
    file_oid: String,
    filename: String,
    oid: String,
    pushed_at: String,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    xet_hash: Option<String>,
}

/// `GET /api/{t}/{ns}/{name}/lfs-files[?cursor=…&limit=…]`.
pub async fn list(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    query: QueryParams,
    uri: Uri,
) -> ApiResult<Response> {
    repo.require_content(&caller)?;
    let after = query
        .get("cursor")
        .map(|c| Sha256Hex::parse(c).map_err(|_| ApiError::bad_request("Invalid cursor")))
        .transpose()?;
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=PAGE).contains(l))
            .ok_or_else(|| ApiError::bad_request(format!("limit must be between 1 and {PAGE}")))?,
        None => PAGE,
    };
    // One more than the page, to know whether another follows.
    let mut page = lfs_files::page(&state, &repo, after.as_ref(), limit + 1).await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next = more
        .then(|| page.last().map(|(f, _)| f.oid.as_str().to_owned()))
        .flatten();
    let items: Vec<LfsFileJson> = page
        .into_iter()
        .map(|(f, place)| LfsFileJson {
            file_oid: f.oid.as_str().to_owned(),
            filename: place.as_ref().map_or_else(String::new, |p| p.path.clone()),
            oid: f.oid.as_str().to_owned(),
            pushed_at: format_ms(f.pushed_at_ms),
            reference: place.map(|p| p.reference),
            size: f.size,
            xet_hash: f.xet_hash.map(|h| XetHash::from_bytes(h).hex()),
        })
        .collect();
    Ok(match next {
        Some(cursor) => {
            let url = next_page_url(&state, &uri, &cursor);
            ([link_header(&url)], Json(items)).into_response()
        }
        None => Json(items).into_response(),
    })
}

/// The body of `POST …/lfs-files/batch`.
#[derive(Deserialize)]
pub struct BatchBody {
    deletions: Deletions,
}

#[derive(Deserialize)]
pub struct Deletions {
    sha: Vec<String>,
    /// Whether the Hub should rewrite history to drop the pointers; Trove keeps them (the
    /// bytes go either way).
    #[serde(rename = "rewriteHistory", default)]
    _rewrite_history: bool,
}

/// `POST /api/{t}/{ns}/{name}/lfs-files/batch`.
pub async fn batch(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiJson(body): ApiJson<BatchBody>,
) -> ApiResult<Json<Empty>> {
    repo.require_admin(&caller)?;
    lfs_files::delete(&state, repo.repo.id, &body.deletions.sha).await?;
    Ok(Json(Empty {}))
}

/// The body of `POST …/lfs-files/duplicate`, as the client's `_duplicate_lfs_files` sends it.
#[derive(Deserialize)]
pub struct DuplicateBody {
    target: DuplicateTarget,
    files: Vec<DuplicateFile>,
}

#[derive(Deserialize)]
pub struct DuplicateTarget {
    #[serde(rename = "type")]
    repo_type: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DuplicateFile {
    sha256: String,
    #[serde(default)]
    xet_hash: Option<String>,
    /// The source path, for the client's messages only.
    #[serde(default, rename = "filename")]
    _filename: Option<String>,
}

#[derive(Serialize)]
pub struct DuplicateAnswer {
    duplicated: u64,
    failed: Vec<DuplicateFailure>,
}

#[derive(Serialize)]
pub struct DuplicateFailure {
    sha256: String,
    error: String,
}

/// `POST /api/{t}/{ns}/{name}/lfs-files/duplicate` on the source repository.
pub async fn duplicate(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiJson(body): ApiJson<DuplicateBody>,
) -> ApiResult<Json<DuplicateAnswer>> {
    let target_type = RepoType::from_singular(&body.target.repo_type).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid target repository type {:?}",
            body.target.repo_type
        ))
    })?;
    let files: Vec<storage::duplicate::FileToCopy> = body
        .files
        .into_iter()
        .map(|f| storage::duplicate::FileToCopy {
            sha256: f.sha256,
            xet_hash: f.xet_hash,
        })
        .collect();
    let done = storage::duplicate::duplicate(
        &state,
        &caller,
        &repo,
        target_type,
        &body.target.name,
        &files,
    )
    .await?;
    Ok(Json(DuplicateAnswer {
        duplicated: done.linked,
        failed: done
            .failed
            .into_iter()
            .map(|f| DuplicateFailure {
                sha256: f.sha256,
                error: f.error,
            })
            .collect(),
    }))
}
