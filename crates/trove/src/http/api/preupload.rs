//! `POST /api/{T}/{repo}/preupload/{rev}`: tells the client, per file, whether to inline it
//! (`regular`) or upload it through LFS, whether `.gitignore` drops it, and its current oid.

use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, RepoAt, RevParam};
use crate::repos::gitattributes::{PathMatcher, should_use_lfs};
use crate::repos::{resolve, with_git};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;

use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use trove_git::EntryKind;
use trove_types::RepoPath;

/// The client sends batches of 256; more than this in one call is refused.
const MAX_FILES: usize = 1000;

#[derive(Deserialize)]
pub struct PreuploadRequest {
    files: Vec<PreuploadFile>,
    #[serde(rename = "gitIgnore")]
    git_ignore: Option<String>,
}

#[derive(Deserialize)]
struct PreuploadFile {
    path: String,
    /// Base64 of the first 512 bytes.
    #[serde(default)]
    sample: String,
    size: u64,
}

#[derive(Serialize)]
struct PreuploadAnswer {
    path: String,
    #[serde(rename = "uploadMode")]
    upload_mode: &'static str,
    #[serde(rename = "shouldIgnore")]
    should_ignore: bool,
    oid: Option<String>,
}

/// `{"files": [...]}`.
#[derive(Serialize)]
struct PreuploadAnswers {
    files: Vec<PreuploadAnswer>,
}

pub async fn preupload(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiPath(RevParam { rev }): ApiPath<RevParam>,
    ApiJson(body): ApiJson<PreuploadRequest>,
) -> ApiResult<Response> {
    // Contributors preupload for the pull requests they open; the commit decides the target.
    repo.require_contribute(&caller)?;
    if body.files.len() > MAX_FILES {
        return Err(ApiError::bad_request(format!(
            "At most {MAX_FILES} files per preupload call"
        )));
    }
    let mut files = Vec::with_capacity(body.files.len());
    for f in body.files {
        // An invalid or escaping path is 422, as on the Hub (and as the commit answers).
        let path =
            RepoPath::parse(&f.path).map_err(|e| ApiError::UnprocessableEntity(e.to_string()))?;
        let sample = base64::engine::general_purpose::STANDARD
            .decode(f.sample.as_bytes())
            .map_err(|_| ApiError::bad_request(format!("Invalid base64 sample for {path}")))?;
        files.push((path, sample, f.size));
    }
    let git_ignore = body.git_ignore;
    let answers = with_git(&state, &repo, move |git| {
        let commit = resolve(git, rev.as_str())?;
        let read_text = |name: &str| -> ApiResult<Option<String>> {
            match git.entry_at(&commit, name)? {
                Some(trove_git::Entry {
                    kind:
                        EntryKind::File {
                            blob, lfs: None, ..
                        },
                    ..
                }) => {
                    let bytes = git.read_blob(&blob)?;
                    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
                }
                _ => Ok(None),
            }
        };
        let lfs = PathMatcher::lfs_patterns(&read_text(".gitattributes")?.unwrap_or_default());
        let ignore_text = match git_ignore {
            Some(text) => Some(text),
            None => read_text(".gitignore")?,
        };
        let ignore = ignore_text.map(|t| PathMatcher::gitignore(&t));
        let mut answers = Vec::with_capacity(files.len());
        for (path, sample, size) in files {
            let oid = match git.entry_at(&commit, path.as_str())? {
                Some(trove_git::Entry {
                    kind: EntryKind::File { blob, lfs, .. },
                    ..
                }) => Some(
                    lfs.map(|l| l.pointer.oid.to_string())
                        .unwrap_or_else(|| blob.to_string()),
                ),
                _ => None,
            };
            let upload_mode = if should_use_lfs(&lfs, path.as_str(), size, &sample) {
                "lfs"
            } else {
                "regular"
            };
            answers.push(PreuploadAnswer {
                should_ignore: ignore
                    .as_ref()
                    .is_some_and(|m| m.matches_file(path.as_str())),
                path: path.to_string(),
                upload_mode,
                oid,
            });
        }
        Ok(answers)
    })
    .await?;
    Ok(Json(PreuploadAnswers { files: answers }).into_response())
}
