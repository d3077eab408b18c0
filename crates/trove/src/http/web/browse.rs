//! A repository's files in the browser: folders (`/{repo}/tree/{rev}[/{path}]`) with sizes,
//! LFS/Xet badges and each entry's last commit; a file's page (`/{repo}/blob/{rev}/{path}`):
//! text with line numbers (coloured by the page script), images shown, a safetensors file's
//! tensors, anything else as metadata and a download button; and `/{repo}/raw/{rev}/{path}`,
//! a file's bytes as `text/plain` that a browser never runs (`Content-Security-Policy:
//! sandbox`, `nosniff`). Reading goes through `repos::browse` and `repos::content`, with the
//! API's authorization.

use super::csrf::CsrfToken;
use super::head::RepoHead;
use super::{Nav, human_size, path_segments, render, repo_path, rev_segment, section_of};
use crate::auth::Caller;
use crate::clock::format_secs;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, RepoAt};
use crate::repos::browse::{self, FileAt};
use crate::repos::content::{self, FileBytes};
use crate::repos::{RepoRef, safetensors, with_git};
use crate::state::AppState;
use askama::Template;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use trove_git::EntryKind;
use trove_types::Revision;

/// Text files up to this size are shown; larger ones get a download button.
const MAX_TEXT_BYTES: u64 = 512 << 10;
/// Tensors listed at most on a safetensors page.
const MAX_TENSORS: usize = 5_000;
/// Branches and tags offered in the switcher.
const MAX_REFS: usize = 200;

#[derive(Deserialize)]
pub struct RevPath {
    rev: Revision,
    #[serde(default)]
    path: String,
}

pub struct Crumb {
    pub label: String,
    pub href: String,
}

pub struct EntryRow {
    pub name: String,
    pub href: String,
    pub dir: bool,
    pub size: String,
    pub lfs: bool,
    pub last_title: String,
    pub last_href: String,
    pub last_when: String,
}

pub struct RefLink {
    pub name: String,
    pub href: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "tree.html")]
pub struct TreePage {
    pub nav: Nav,
    pub head: RepoHead,
    pub crumbs: Vec<Crumb>,
    pub commit: String,
    pub entries: Vec<EntryRow>,
    pub refs: Vec<RefLink>,
    /// The folder shown, as a query value (for the upload and new-file links).
    pub folder: String,
}

pub enum View {
    Text {
        /// One entry per line: HTML from [`crate::highlight`] when `highlighted`, else
        /// plain text (escaped by the template).
        lines: Vec<String>,
        lang: String,
        highlighted: bool,
    },
    Image {
        src: String,
    },
    Tensors {
        rows: Vec<(String, String, String, String)>,
        total: String,
        more: usize,
    },
    Binary {
        note: String,
    },
}

#[derive(Template)]
#[template(path = "blob.html")]
pub struct BlobPage {
    pub nav: Nav,
    pub head: RepoHead,
    pub crumbs: Vec<Crumb>,
    pub size: String,
    pub lfs_oid: Option<String>,
    pub xet: bool,
    pub download: String,
    pub raw: String,
    pub view: View,
    /// The edit page, for writers of a text file kept in git.
    pub edit: Option<String>,
}

/// Breadcrumbs of `path` (the repo root first), each a folder link.
fn crumbs(base: &str, rev: &str, path: &str) -> Vec<Crumb> {
    let mut out = vec![Crumb {
        label: "(root)".to_owned(),
        href: format!("{base}/tree/{}", rev_segment(rev)),
    }];
    let mut so_far = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if !so_far.is_empty() {
            so_far.push('/');
        }
        so_far.push_str(segment);
        out.push(Crumb {
            label: segment.to_owned(),
            href: format!(
                "{base}/tree/{}/{}",
                rev_segment(rev),
                path_segments(&so_far)
            ),
        });
    }
    out
}

pub async fn tree_root(
    state: State<AppState>,
    csrf: CsrfToken,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<RevPath>>,
) -> Response {
    tree(state, csrf, repo_at, path).await
}

pub async fn tree(
    State(state): State<AppState>,
    csrf: CsrfToken,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<RevPath>>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(RevPath { rev, path }) = path?;
        tree_page(&state, &caller, &csrf, &repo, rev.as_str(), &path).await
    }
    .await
    .unwrap_or_else(super::error_page)
}

async fn tree_page(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfToken,
    repo: &RepoRef,
    rev: &str,
    dir: &str,
) -> ApiResult<Response> {
    let dir = dir.trim_end_matches('/');
    let folder = browse::folder(state, &state.browse_cache, repo, rev, dir).await?;
    let base = repo_path(repo);
    let rev_url = rev_segment(rev);
    let mut entries: Vec<EntryRow> = folder
        .entries
        .iter()
        .map(|e| {
            let dir = matches!(e.kind, EntryKind::Dir { .. });
            let last = folder.last.get(&e.path);
            EntryRow {
                name: e.path.rsplit('/').next().unwrap_or(&e.path).to_owned(),
                href: format!(
                    "{base}/{}/{rev_url}/{}",
                    if dir { "tree" } else { "blob" },
                    path_segments(&e.path)
                ),
                dir,
                size: match &e.kind {
                    EntryKind::File { size, .. } => human_size(*size),
                    EntryKind::Dir { .. } => String::new(),
                },
                lfs: matches!(&e.kind, EntryKind::File { lfs: Some(_), .. }),
                last_title: last.map(|c| c.title.clone()).unwrap_or_default(),
                last_href: last
                    .map(|c| format!("{base}/commit/{}", c.id))
                    .unwrap_or_default(),
                last_when: last
                    .map(|c| {
                        format_secs(c.time_unix)
                            .get(..10)
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    // Folders first, as file browsers list them.
    entries.sort_by_key(|e| !e.dir);
    let refs = with_git(state, repo, |git| Ok(git.refs()?)).await?;
    let at = |name: &str| format!("{base}/tree/{}/{}", rev_segment(name), path_segments(dir));
    let refs = refs
        .branches
        .iter()
        .chain(refs.tags.iter())
        .take(MAX_REFS)
        .map(|(name, _)| RefLink {
            name: name.clone(),
            href: at(name).trim_end_matches('/').to_owned(),
            current: name == rev,
        })
        .collect();
    let (section, _) = section_of(repo.repo_type);
    Ok(render(&TreePage {
        nav: Nav::new(section, caller, csrf),
        head: RepoHead::of(repo, "files", rev),
        crumbs: crumbs(&base, rev, dir),
        commit: folder.commit.to_string(),
        entries,
        refs,
        folder: form_urlencoded::byte_serialize(dir.as_bytes()).collect(),
    }))
}

pub async fn blob(
    State(state): State<AppState>,
    csrf: CsrfToken,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<RevPath>>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(RevPath { rev, path }) = path?;
        blob_page(&state, &caller, &csrf, &repo, rev.as_str(), &path).await
    }
    .await
    .unwrap_or_else(super::error_page)
}

fn extension(path: &str) -> String {
    path.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

async fn blob_page(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfToken,
    repo: &RepoRef,
    rev: &str,
    path: &str,
) -> ApiResult<Response> {
    let file = browse::file(state, caller, repo, rev, path).await?;
    let base = repo_path(repo);
    let file_url = format!("{}/{}", rev_segment(rev), path_segments(path));
    let download = format!("{base}/resolve/{file_url}?download=true");
    let ext = extension(path);
    let lfs_oid = match &file.entry.kind {
        EntryKind::File { lfs: Some(lfs), .. } => Some(lfs.pointer.oid.to_string()),
        _ => None,
    };
    let xet = match &lfs_oid {
        Some(_) => match FileBytes::of(repo, &file.entry.kind) {
            Some(FileBytes::Lfs { oid, .. }) => state.db.xet_file_by_sha256(&oid).await?.is_some(),
            _ => false,
        },
        None => false,
    };
    let view = match ext.as_str() {
        "png" | "jpg" | "jpeg" | "gif" | "webp" | "svg" | "bmp" | "ico" | "avif" => View::Image {
            src: format!("{base}/resolve/{file_url}"),
        },
        "safetensors" => tensors_view(state, repo, path, &file).await?,
        _ if file.size <= MAX_TEXT_BYTES => text_view(state, repo, &file, path, &ext).await?,
        _ => View::Binary {
            note: "This file is too large to show here.".into(),
        },
    };
    let editable = repo.access >= crate::auth::Access::Write
        && lfs_oid.is_none()
        && file.size <= super::edit::MAX_EDIT_BYTES
        && matches!(view, View::Text { .. });
    let edit = editable.then(|| super::edit::edit_href(repo, &rev_segment(rev), path));
    let (section, _) = section_of(repo.repo_type);
    Ok(render(&BlobPage {
        nav: Nav::new(section, caller, csrf),
        head: RepoHead::of(repo, "files", rev),
        crumbs: crumbs(&base, rev, path),
        size: human_size(file.size),
        lfs_oid,
        xet,
        download,
        raw: format!("{base}/raw/{file_url}"),
        view,
        edit,
    }))
}

async fn text_view(
    state: &AppState,
    repo: &RepoRef,
    file: &FileAt,
    path: &str,
    ext: &str,
) -> ApiResult<View> {
    let Some(bytes) = content::read_range(state, repo, &file.entry.kind, 0, MAX_TEXT_BYTES).await?
    else {
        return Ok(View::Binary {
            note: "This file's content is not available on this hub.".into(),
        });
    };
    let probe = &bytes[..bytes.len().min(8000)];
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) if !probe.contains(&0) => text.to_owned(),
        _ => {
            return Ok(View::Binary {
                note: "Binary file: not shown.".into(),
            });
        }
    };
    // Highlighting is CPU work (bounded by `highlight::MAX_BYTES`): off the async threads.
    let name = path.to_owned();
    let (lines, highlighted) =
        tokio::task::spawn_blocking(move || match crate::highlight::lines(&name, &text) {
            Some(lines) => (lines, true),
            None => (text.lines().map(str::to_owned).collect(), false),
        })
        .await?;
    Ok(View::Text {
        lines,
        lang: ext.to_owned(),
        highlighted,
    })
}

async fn tensors_view(
    state: &AppState,
    repo: &RepoRef,
    path: &str,
    file: &FileAt,
) -> ApiResult<View> {
    let header = match safetensors::read_header(state, repo, path, &file.entry.kind).await? {
        Ok(header) => header,
        Err(e) => {
            return Ok(View::Binary {
                note: e.to_string(),
            });
        }
    };
    let total = match safetensors::count_parameters(path, &header) {
        Ok(summary) => summary.total.to_string(),
        Err(e) => e.to_string(),
    };
    let mut rows = Vec::new();
    for (name, info) in header.iter().filter(|(k, _)| k.as_str() != "__metadata__") {
        if rows.len() >= MAX_TENSORS {
            break;
        }
        let dtype = info.get("dtype").and_then(Value::as_str).unwrap_or("?");
        let shape: Vec<u64> = info
            .get("shape")
            .and_then(Value::as_array)
            .map(|dims| dims.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let params = shape.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d));
        rows.push((
            name.clone(),
            dtype.to_owned(),
            format!("{shape:?}"),
            params.map(|p| p.to_string()).unwrap_or_default(),
        ));
    }
    let more = header.len().saturating_sub(rows.len() + 1);
    Ok(View::Tensors { rows, total, more })
}

/// `GET /{repo}/raw/{rev}/{path}`: the file's bytes, streamed, as text a browser shows but
/// never interprets.
pub async fn raw(
    State(state): State<AppState>,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<RevPath>>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(RevPath { rev, path }) = path?;
        let file = browse::file(&state, &caller, &repo, rev.as_str(), &path).await?;
        let bytes = FileBytes::of(&repo, &file.entry.kind)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("browse::file returned a folder")))?;
        let opened =
            content::open(&state, &bytes, None)
                .await?
                .ok_or_else(|| ApiError::EntryNotFound {
                    message: format!("The content of {path} is not available"),
                    commit: Some(file.commit.clone()),
                })?;
        let mut response = Body::from_stream(opened.stream).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(opened.len));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox"),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        Ok::<_, ApiError>(response)
    }
    .await
    .unwrap_or_else(super::error_page)
}

#[cfg(test)]
mod tests {
    use super::crumbs;

    #[test]
    fn breadcrumbs_link_every_folder() {
        let c = crumbs("/acme/m", "refs/pr/1", "a b/c");
        let hrefs: Vec<_> = c.iter().map(|c| c.href.as_str()).collect();
        assert_eq!(
            hrefs,
            [
                "/acme/m/tree/refs%2Fpr%2F1",
                "/acme/m/tree/refs%2Fpr%2F1/a%20b",
                "/acme/m/tree/refs%2Fpr%2F1/a%20b/c"
            ]
        );
    }
}
