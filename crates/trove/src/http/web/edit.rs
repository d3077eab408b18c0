//! Text files written in the browser: `/{repo}/edit/{rev}/{path}` changes a file and
//! `/{repo}/new/{rev}` creates one, each as one commit to the branch or as a pull request
//! (see [`super::committing`]). Only text files up to [`MAX_EDIT_BYTES`] kept in git are
//! edited here; a new file whose path the `.gitattributes` sends to LFS goes through LFS,
//! as the client would send it.

use super::committing::Target;
use super::csrf::CsrfToken;
use super::head::RepoHead;
use super::upload::lfs_rules_at;
use super::{Nav, path_segments, render, repo_path, section_of};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, RepoAt};
use crate::repos::browse;
use crate::repos::commit::{PendingCommit, lfs_file_op};
use crate::repos::content;
use crate::repos::gitattributes::should_use_lfs;
use crate::repos::{RepoRef, resolve, with_git};
use crate::state::AppState;
use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use trove_git::{EntryKind, TreeOp};
use trove_types::{RepoPath, Revision, Sha256Hex};

/// The largest file edited in the browser.
pub const MAX_EDIT_BYTES: u64 = 1 << 20;

#[derive(Deserialize)]
pub struct RevPath {
    rev: Revision,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
pub struct FolderQuery {
    #[serde(default)]
    folder: String,
}

#[derive(Template)]
#[template(path = "edit.html")]
pub struct EditPage {
    pub nav: Nav,
    pub head: RepoHead,
    pub action: String,
    /// The file's path; empty on the new-file page until the visitor names it.
    pub path: String,
    pub new_file: bool,
    pub content: String,
    pub can_write: bool,
    pub max_bytes: u64,
}

#[derive(Deserialize)]
pub struct EditForm {
    #[serde(default)]
    csrf: String,
    /// The new file's path (the new-file form only).
    #[serde(default)]
    path: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    description: String,
    /// branch | pr
    #[serde(default)]
    target: String,
}

fn edit_page(
    caller: &Caller,
    csrf: &CsrfToken,
    repo: &RepoRef,
    rev: &str,
    path: String,
    content: String,
    new_file: bool,
) -> Response {
    let (section, _) = section_of(repo.repo_type);
    let head = RepoHead::of(repo, "files", rev);
    let action = if new_file {
        format!("{}/new/{}", head.path, head.rev_url)
    } else {
        format!(
            "{}/edit/{}/{}",
            head.path,
            head.rev_url,
            path_segments(&path)
        )
    };
    render(&EditPage {
        nav: Nav::new(section, caller, csrf),
        action,
        path,
        new_file,
        content,
        can_write: head.writer,
        head,
        max_bytes: MAX_EDIT_BYTES,
    })
}

/// The text of `path` at `rev` if it can be edited here.
async fn editable_text(
    state: &AppState,
    caller: &Caller,
    repo: &RepoRef,
    rev: &str,
    path: &str,
) -> ApiResult<String> {
    let file = browse::file(state, caller, repo, rev, path).await?;
    if matches!(file.entry.kind, EntryKind::File { lfs: Some(_), .. }) {
        return Err(ApiError::bad_request(format!(
            "{path} is stored in LFS: download it and upload a new version instead"
        )));
    }
    if file.size > MAX_EDIT_BYTES {
        return Err(ApiError::bad_request(format!(
            "{path} is larger than {MAX_EDIT_BYTES} bytes, too large to edit in the browser"
        )));
    }
    let bytes = content::read_range(state, repo, &file.entry.kind, 0, MAX_EDIT_BYTES)
        .await?
        .unwrap_or_default();
    match String::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => Ok(text),
        _ => Err(ApiError::bad_request(format!("{path} is not a text file"))),
    }
}

/// `GET /{repo}/edit/{rev}/{path}`.
pub async fn edit_form(
    State(state): State<AppState>,
    csrf: CsrfToken,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<RevPath>>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(RevPath { rev, path }) = path?;
        repo.require_contribute(&caller)?;
        let text = editable_text(&state, &caller, &repo, rev.as_str(), &path).await?;
        Ok::<_, ApiError>(edit_page(
            &caller,
            &csrf,
            &repo,
            rev.as_str(),
            path,
            text,
            false,
        ))
    }
    .await
    .unwrap_or_else(super::error_page)
}

/// `GET /{repo}/new/{rev}[?folder=…]`.
pub async fn new_form(
    State(_state): State<AppState>,
    csrf: CsrfToken,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<RevPath>>,
    query: axum::extract::Query<FolderQuery>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(RevPath { rev, .. }) = path?;
        repo.require_contribute(&caller)?;
        let folder = query.folder.trim_matches('/');
        let prefix = if folder.is_empty() {
            String::new()
        } else {
            format!("{folder}/")
        };
        Ok::<_, ApiError>(edit_page(
            &caller,
            &csrf,
            &repo,
            rev.as_str(),
            prefix,
            String::new(),
            true,
        ))
    }
    .await
    .unwrap_or_else(super::error_page)
}

/// `POST /{repo}/edit/{rev}/{path}`.
pub async fn edit(
    State(state): State<AppState>,
    headers: HeaderMap,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<RevPath>>,
    form: Result<Form<EditForm>, FormRejection>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(RevPath { rev, path }) = path?;
        let form = super::form_fields(form)?;
        CsrfToken::check(&state, &headers, &form.csrf)?;
        let target = Target::decide(&state, &caller, &repo, rev.as_str(), open_pr(&form)?).await?;
        let old = editable_text(&state, &caller, &repo, rev.as_str(), &path).await?;
        let path =
            RepoPath::parse(&path).map_err(|e| ApiError::UnprocessableEntity(e.to_string()))?;
        // Browsers send a textarea's lines with CRLF: a file that had none keeps LF.
        let content = if old.contains("\r\n") {
            form.content.clone()
        } else {
            form.content.replace("\r\n", "\n")
        };
        let summary = default_summary(&form.summary, || format!("Update {path}"));
        write(
            &state,
            &caller,
            &repo,
            rev.as_str(),
            target,
            path,
            content,
            summary,
            form.description,
        )
        .await
    }
    .await
    .unwrap_or_else(super::error_page)
}

/// `POST /{repo}/new/{rev}`: refused if the path is already taken.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<RevPath>>,
    form: Result<Form<EditForm>, FormRejection>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(RevPath { rev, .. }) = path?;
        let form = super::form_fields(form)?;
        CsrfToken::check(&state, &headers, &form.csrf)?;
        let target = Target::decide(&state, &caller, &repo, rev.as_str(), open_pr(&form)?).await?;
        let path = RepoPath::parse(form.path.trim())
            .map_err(|e| ApiError::UnprocessableEntity(e.to_string()))?;
        let (taken_path, taken_rev) = (path.to_string(), rev.as_str().to_owned());
        let taken = with_git(&state, &repo, move |git| {
            let commit = resolve(git, &taken_rev)?;
            Ok(git.entry_at(&commit, &taken_path)?.is_some())
        })
        .await?;
        if taken {
            return Err(ApiError::Conflict {
                message: format!("{path} already exists: edit it instead"),
                url: None,
            });
        }
        let content = form.content.replace("\r\n", "\n");
        let summary = default_summary(&form.summary, || format!("Create {path}"));
        write(
            &state,
            &caller,
            &repo,
            rev.as_str(),
            target,
            path,
            content,
            summary,
            form.description,
        )
        .await
    }
    .await
    .unwrap_or_else(super::error_page)
}

fn open_pr(form: &EditForm) -> ApiResult<bool> {
    match form.target.as_str() {
        "" | "branch" => Ok(false),
        "pr" => Ok(true),
        other => Err(ApiError::bad_request(format!(
            "Unknown target {other:?}: branch or pr"
        ))),
    }
}

fn default_summary(summary: &str, default: impl FnOnce() -> String) -> String {
    match summary.trim() {
        "" => default(),
        s => s.to_owned(),
    }
}

/// Writes `content` at `path` (through LFS if the client would) and commits it.
#[expect(
    clippy::too_many_arguments,
    reason = "one call per form, each naming its parts"
)]
async fn write(
    state: &AppState,
    caller: &Caller,
    repo: &RepoRef,
    rev: &str,
    target: Target,
    path: RepoPath,
    content: String,
    summary: String,
    description: String,
) -> ApiResult<Response> {
    if content.len() as u64 > MAX_EDIT_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_EDIT_BYTES,
        });
    }
    let bytes = content.into_bytes();
    let rules = lfs_rules_at(state, repo, rev).await?;
    let op = if should_use_lfs(&rules, path.as_str(), bytes.len() as u64, &bytes)
        && !trove_git::is_gitmodules_name(path.file_name())
    {
        let oid = Sha256Hex::from_digest(&Sha256::digest(&bytes).into());
        let size = bytes.len() as u64;
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
        crate::repos::lfs::receive(state, repo.repo.id, &oid, size, body).await?;
        lfs_file_op(state, repo, path, oid, Some(size)).await?
    } else {
        if trove_git::is_gitmodules_name(path.file_name())
            && let Some(why) = trove_git::gitmodules_problem(&bytes)
        {
            return Err(ApiError::bad_request(format!("{path}: {why}")));
        }
        let blob = with_git(state, repo, move |git| Ok(git.write_blob(&bytes)?)).await?;
        TreeOp::Upsert { path, blob }
    };
    let pending = PendingCommit {
        summary,
        description,
        parent_commit: None,
        ops: vec![op],
    };
    let next = target.commit(state, caller, repo, rev, pending).await?;
    Ok(Redirect::to(&next).into_response())
}

/// `/{repo}/blob/{rev}/{path}`'s edit link, for the file page.
pub fn edit_href(repo: &RepoRef, rev_url: &str, path: &str) -> String {
    format!("{}/edit/{rev_url}/{}", repo_path(repo), path_segments(path))
}
