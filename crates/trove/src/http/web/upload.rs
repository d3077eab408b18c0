//! `/{repo}/upload/{rev}`: files added through the browser as one commit, to the branch or as
//! a pull request. The form is `multipart/form-data` (a file picker; the page script adds
//! drag and drop and progress) read as a stream: each file is written to a temporary file
//! under the store's `tmp/` while its SHA-256 and size are computed, never held whole in
//! memory. Each file then goes where `huggingface_hub` would send it — through LFS when the
//! revision's `.gitattributes` says so, when it is over the Hub's 10 MB threshold or looks
//! binary (the preupload rule, `repos::gitattributes::should_use_lfs`) — into the same
//! content store as an LFS upload (`repos::lfs::receive`), and the commit is the API's use
//! case (`repos::commit`, `repos::discussions`).

use super::committing::Target;
use super::csrf::CsrfToken;
use super::head::RepoHead;
use super::{Nav, render, section_of};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, RepoAt, RevParam};
use crate::repos::commit::{PendingCommit, lfs_file_op};
use crate::repos::gitattributes::{LFS_SIZE_THRESHOLD, PathMatcher, should_use_lfs};
use crate::repos::{RepoRef, resolve, with_git};
use crate::state::AppState;
use askama::Template;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;
use trove_git::{EntryKind, TreeOp};
use trove_types::{RepoPath, Sha256Hex};

/// Files in one upload (the client's preupload batches are 256; a page is for fewer).
pub const MAX_FILES: usize = 100;
/// Bytes of a text field (commit message, description, folder, choices).
const MAX_FIELD_BYTES: usize = 64 << 10;
/// The first bytes of a file, for the "looks binary" rule (what the client samples).
const SAMPLE_BYTES: usize = 512;

#[derive(Template)]
#[template(path = "upload.html")]
pub struct UploadPage {
    pub nav: Nav,
    pub head: RepoHead,
    pub action: String,
    /// The caller may commit to the branch (otherwise only a pull request is offered).
    pub can_write: bool,
    pub folder: String,
    pub max_files: usize,
}

#[derive(serde::Deserialize)]
pub struct FolderQuery {
    #[serde(default)]
    folder: String,
}

/// `GET /{repo}/upload/{rev}`: the form, for anyone who may contribute.
pub async fn page(
    State(_state): State<AppState>,
    csrf: CsrfToken,
    repo_at: ApiResult<RepoAt>,
    rev: ApiResult<ApiPath<RevParam>>,
    query: axum::extract::Query<FolderQuery>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(RevParam { rev }) = rev?;
        repo.require_contribute(&caller)?;
        let (section, _) = section_of(repo.repo_type);
        let head = RepoHead::of(&repo, "files", rev.as_str());
        Ok::<_, ApiError>(render(&UploadPage {
            action: format!("{}/upload/{}", head.path, head.rev_url),
            nav: Nav::new(section, &caller, &csrf),
            can_write: head.writer,
            head,
            folder: query.folder.trim_matches('/').to_owned(),
            max_files: MAX_FILES,
        }))
    }
    .await
    .unwrap_or_else(super::error_page)
}

/// A file received into a temporary file, removed when this is dropped (whatever happened).
struct Staged {
    path: RepoPath,
    tmp: PathBuf,
    size: u64,
    sha256: Sha256Hex,
    sample: Vec<u8>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.tmp)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.tmp.display(), error = %e, "web upload: temporary file left behind");
        }
    }
}

/// What the form said, besides its files.
#[derive(Default)]
struct UploadForm {
    summary: String,
    description: String,
    folder: String,
    open_pr: bool,
}

/// `POST /{repo}/upload/{rev}`: see the module docs. The form's text fields come before its
/// files (the page orders them so): the CSRF token and the target are checked before any
/// file is stored.
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    repo_at: ApiResult<RepoAt>,
    rev: ApiResult<ApiPath<RevParam>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(RevParam { rev }) = rev?;
        let rev = rev.as_str();
        // Nobody who may not contribute gets to send a body.
        repo.require_contribute(&caller)?;
        let mut multipart = multipart.map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut form = UploadForm::default();
        let mut csrf_checked = false;
        let mut target: Option<Target> = None;
        let mut staged: Vec<Staged> = Vec::new();
        let budget = state.config.limits.max_lfs_object_bytes;
        let mut received: u64 = 0;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| bad_multipart(e, budget))?
        {
            let name = field.name().unwrap_or_default().to_owned();
            if name == "files" {
                if !csrf_checked {
                    CsrfToken::check(&state, &headers, "")?;
                    csrf_checked = true;
                }
                if target.is_none() {
                    target = Some(Target::decide(&state, &caller, &repo, rev, form.open_pr).await?);
                }
                // A picker left empty still sends one part, with no name and no bytes.
                if field.file_name().is_none_or(str::is_empty) {
                    continue;
                }
                if staged.len() >= MAX_FILES {
                    return Err(ApiError::bad_request(format!(
                        "At most {MAX_FILES} files per upload"
                    )));
                }
                let file = stage(&state, field, &form.folder, budget - received).await?;
                received += file.size;
                staged.push(file);
                continue;
            }
            if target.is_some() {
                return Err(ApiError::bad_request(format!(
                    "The field {name:?} must come before the files"
                )));
            }
            let value = text_field(field, budget).await?;
            match name.as_str() {
                "csrf" => {
                    CsrfToken::check(&state, &headers, &value)?;
                    csrf_checked = true;
                }
                "summary" => form.summary = value,
                "description" => form.description = value,
                "folder" => form.folder = value.trim().trim_matches('/').to_owned(),
                "target" => {
                    form.open_pr = match value.as_str() {
                        "branch" => false,
                        "pr" => true,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "Unknown target {other:?}: branch or pr"
                            )));
                        }
                    }
                }
                other => return Err(ApiError::bad_request(format!("Unknown field {other:?}"))),
            }
        }
        if !csrf_checked {
            CsrfToken::check(&state, &headers, "")?;
        }
        let Some(target) = target.filter(|_| !staged.is_empty()) else {
            return Err(ApiError::bad_request("Choose at least one file to upload"));
        };
        let summary = match form.summary.trim() {
            "" if staged.len() == 1 => format!("Upload {}", staged[0].path),
            "" => format!("Upload {} files", staged.len()),
            s => s.to_owned(),
        };
        let ops = store_files(&state, &repo, rev, &staged).await?;
        let pending = PendingCommit {
            summary,
            description: form.description,
            parent_commit: None,
            ops,
        };
        let next = target.commit(&state, &caller, &repo, rev, pending).await?;
        Ok::<_, ApiError>(Redirect::to(&next).into_response())
    }
    .await
    .unwrap_or_else(super::error_page)
}

/// A multipart stream that broke off or overran the route's body limit (the upload budget).
fn bad_multipart(e: axum::extract::multipart::MultipartError, limit: u64) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::bad_request(format!("Could not read the upload: {}", e.body_text()))
    }
}

/// A text field, refused past [`MAX_FIELD_BYTES`].
async fn text_field(mut field: Field<'_>, budget: u64) -> ApiResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| bad_multipart(e, budget))? {
        if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(ApiError::PayloadTooLarge {
                limit: MAX_FIELD_BYTES as u64,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| ApiError::bad_request("A form field is not UTF-8"))
}

/// Streams one file part into a temporary file, hashing it; refused past `budget` bytes.
async fn stage(
    state: &AppState,
    mut field: Field<'_>,
    folder: &str,
    budget: u64,
) -> ApiResult<Staged> {
    let name = field.file_name().unwrap_or_default().replace('\\', "/");
    let joined = if folder.is_empty() {
        name
    } else {
        format!("{folder}/{name}")
    };
    let path =
        RepoPath::parse(&joined).map_err(|e| ApiError::UnprocessableEntity(e.to_string()))?;
    let dir = state.store.root().join("tmp");
    tokio::fs::create_dir_all(&dir).await?;
    let mut staged = Staged {
        path,
        tmp: dir.join(format!("web-upload-{}", uuid::Uuid::new_v4().hyphenated())),
        size: 0,
        sha256: Sha256Hex::from_digest(&[0; 32]),
        sample: Vec::new(),
    };
    let mut out = tokio::fs::File::create(&staged.tmp).await?;
    let mut hash = Sha256::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| bad_multipart(e, budget))? {
        staged.size += chunk.len() as u64;
        if staged.size > budget {
            return Err(ApiError::PayloadTooLarge { limit: budget });
        }
        hash.update(&chunk);
        if staged.sample.len() < SAMPLE_BYTES {
            let take = chunk.len().min(SAMPLE_BYTES - staged.sample.len());
            staged.sample.extend_from_slice(&chunk[..take]);
        }
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    staged.sha256 = Sha256Hex::from_digest(&hash.finalize().into());
    Ok(staged)
}

/// Writes each staged file where the client would have sent it, answering the tree
/// operations of the commit.
async fn store_files(
    state: &AppState,
    repo: &RepoRef,
    rev: &str,
    staged: &[Staged],
) -> ApiResult<Vec<TreeOp>> {
    let lfs_rules = lfs_rules_at(state, repo, rev).await?;
    let mut ops = Vec::with_capacity(staged.len());
    for file in staged {
        let path = file.path.clone();
        let lfs = should_use_lfs(&lfs_rules, path.as_str(), file.size, &file.sample);
        if lfs && !trove_git::is_gitmodules_name(path.file_name()) {
            let body = tokio_util::io::ReaderStream::new(tokio::fs::File::open(&file.tmp).await?);
            crate::repos::lfs::receive(state, repo.repo.id, &file.sha256, file.size, body).await?;
            ops.push(lfs_file_op(state, repo, path, file.sha256.clone(), Some(file.size)).await?);
            continue;
        }
        if file.size > LFS_SIZE_THRESHOLD {
            return Err(ApiError::bad_request(format!(
                "{path} must be a regular file but is larger than {LFS_SIZE_THRESHOLD} bytes"
            )));
        }
        // A regular file is at most the LFS threshold (10 MB): git writes a blob from bytes.
        let content = tokio::fs::read(&file.tmp).await?;
        if trove_git::is_gitmodules_name(path.file_name())
            && let Some(why) = trove_git::gitmodules_problem(&content)
        {
            return Err(ApiError::bad_request(format!("{path}: {why}")));
        }
        let blob = with_git(state, repo, move |git| Ok(git.write_blob(&content)?)).await?;
        ops.push(TreeOp::Upsert { path, blob });
    }
    Ok(ops)
}

/// The LFS patterns of `.gitattributes` at `rev`, as preupload reads them.
pub(super) async fn lfs_rules_at(
    state: &AppState,
    repo: &RepoRef,
    rev: &str,
) -> ApiResult<PathMatcher> {
    let rev = rev.to_owned();
    with_git(state, repo, move |git| {
        let commit = resolve(git, &rev)?;
        let text = match git.entry_at(&commit, ".gitattributes")? {
            Some(trove_git::Entry {
                kind: EntryKind::File {
                    blob, lfs: None, ..
                },
                ..
            }) => String::from_utf8_lossy(&git.read_blob(&blob)?).into_owned(),
            _ => String::new(),
        };
        Ok(PathMatcher::lfs_patterns(&text))
    })
    .await
}
