//! `GET /api/{T}/{repo}/tree/{rev}[/{path}]` and `POST /api/{T}/{repo}/paths-info/{rev}`:
//! file and folder entries with git ids, real sizes and LFS details.

use super::{link_header, next_page_url};
use crate::clock::format_secs;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, QueryParams, RepoAt, RevParam};
use crate::repos::{RepoRef, read_git, resolve};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::HashMap;
use trove_git::{CommitInfo, Entry, EntryKind, GitRepo};
use trove_types::{GitOid, RepoPath, Revision, Sha256Hex};
use trove_xet::XetHash;

/// Entries per page; with `expand=true` each needs a history walk, so pages are smaller.
const PAGE_SIZE: usize = 1000;
const PAGE_SIZE_EXPANDED: usize = 50;
/// Commits walked at most to find each entry's last commit.
const LAST_COMMIT_WALK_LIMIT: usize = 10_000;
/// paths-info accepts this many paths per call (the client sends up to 500).
const MAX_PATHS_INFO: usize = 1000;

#[derive(Serialize)]
pub struct LfsJson {
    pub oid: String,
    pub size: u64,
    #[serde(rename = "pointerSize")]
    pub pointer_size: u64,
}

#[derive(Serialize)]
pub struct LastCommitJson {
    id: String,
    title: String,
    date: String,
}

#[derive(Serialize)]
pub struct EntryJson {
    #[serde(rename = "type")]
    kind: &'static str,
    oid: String,
    size: u64,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lfs: Option<LfsJson>,
    /// Set only for LFS files held as verified Xet files (see [`add_xet_hashes`]).
    #[serde(rename = "xetHash", skip_serializing_if = "Option::is_none")]
    xet_hash: Option<String>,
    #[serde(rename = "lastCommit", skip_serializing_if = "Option::is_none")]
    last_commit: Option<LastCommitJson>,
}

/// Put `xetHash` on the LFS entries whose bytes the CAS can rebuild, so hf_xet may fetch
/// them (and `snapshot_download` skips the HEAD for them).
async fn add_xet_hashes(state: &AppState, entries: &mut [EntryJson]) -> ApiResult<()> {
    let oids: Vec<Sha256Hex> = entries
        .iter()
        .filter_map(|e| e.lfs.as_ref())
        .filter_map(|l| Sha256Hex::parse(&l.oid).ok())
        .collect();
    if oids.is_empty() {
        return Ok(());
    }
    let found = state.db.xet_hashes_by_sha256(&oids).await?;
    for entry in entries.iter_mut() {
        let hash = entry
            .lfs
            .as_ref()
            .and_then(|l| Sha256Hex::parse(&l.oid).ok())
            .and_then(|oid| found.get(&oid));
        entry.xet_hash = hash.map(|h| XetHash::from_bytes(*h).hex());
    }
    Ok(())
}

impl EntryJson {
    pub fn from_entry(entry: Entry, last_commit: Option<&CommitInfo>) -> Self {
        let last_commit = last_commit.map(|c| LastCommitJson {
            id: c.id.to_string(),
            title: c.title.clone(),
            date: format_secs(c.time_unix),
        });
        match entry.kind {
            EntryKind::File { blob, size, lfs } => EntryJson {
                kind: "file",
                oid: blob.to_string(),
                size,
                path: entry.path,
                lfs: lfs.map(|l| LfsJson {
                    oid: l.pointer.oid.to_string(),
                    size: l.pointer.size,
                    pointer_size: l.pointer_size,
                }),
                xet_hash: None,
                last_commit,
            },
            EntryKind::Dir { tree } => EntryJson {
                kind: "directory",
                oid: tree.to_string(),
                size: 0,
                path: entry.path,
                lfs: None,
                xet_hash: None,
                last_commit,
            },
        }
    }
}

fn to_json(
    git: &GitRepo,
    commit: &GitOid,
    entries: Vec<Entry>,
    expand: bool,
) -> ApiResult<Vec<EntryJson>> {
    let last: HashMap<String, CommitInfo> = if expand {
        let paths: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
        git.last_commits(commit, &paths, LAST_COMMIT_WALK_LIMIT)?
    } else {
        HashMap::new()
    };
    Ok(entries
        .into_iter()
        .map(|e| {
            let lc = last.get(&e.path);
            EntryJson::from_entry(e, lc)
        })
        .collect())
}

/// A page cursor pins the commit of the first page, so a moving branch cannot shift pages.
fn parse_cursor(cursor: &str) -> Option<(GitOid, usize)> {
    let (commit, offset) = cursor.split_once(':')?;
    Some((GitOid::parse(commit).ok()?, offset.parse().ok()?))
}

/// The `{*path}` of a tree route: a folder, checked as a [`RepoPath`] so that nothing
/// malformed (a NUL, `..`) reaches git.
#[derive(serde::Deserialize)]
pub struct FolderParam {
    path: String,
}

impl FolderParam {
    /// The folder, `""` for the root (`tree/main/` and `tree/main//` are the root too).
    fn folder(&self) -> ApiResult<String> {
        let trimmed = self.path.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(String::new());
        }
        RepoPath::parse(trimmed)
            .map(|p| p.as_str().to_owned())
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }
}

pub async fn tree_root(
    State(state): State<AppState>,
    RepoAt { repo, .. }: RepoAt,
    ApiPath(RevParam { rev }): ApiPath<RevParam>,
    query: QueryParams,
    uri: Uri,
) -> ApiResult<Response> {
    list(&state, &repo, rev, String::new(), &query, &uri).await
}

pub async fn tree_path(
    State(state): State<AppState>,
    RepoAt { repo, .. }: RepoAt,
    ApiPath(RevParam { rev }): ApiPath<RevParam>,
    ApiPath(folder): ApiPath<FolderParam>,
    query: QueryParams,
    uri: Uri,
) -> ApiResult<Response> {
    list(&state, &repo, rev, folder.folder()?, &query, &uri).await
}

async fn list(
    state: &AppState,
    repo: &RepoRef,
    rev: Revision,
    dir: String,
    query: &QueryParams,
    uri: &Uri,
) -> ApiResult<Response> {
    let recursive = query.flag("recursive");
    let expand = query.flag("expand");
    let page_size = if expand {
        PAGE_SIZE_EXPANDED
    } else {
        PAGE_SIZE
    };
    let cursor = match query.get("cursor") {
        Some(c) => Some(parse_cursor(c).ok_or_else(|| ApiError::bad_request("Invalid cursor"))?),
        None => None,
    };
    let (mut entries, commit, more) = read_git(state, repo, move |git| {
        let (commit, offset) = match cursor {
            Some((commit, offset)) => (commit, offset),
            None => (resolve(git, rev.as_str())?, 0),
        };
        let Some(all) = git.list_tree(&commit, &dir, recursive)? else {
            return Err(ApiError::EntryNotFound {
                message: format!("Entry not found: {dir} is not a folder at {rev}"),
                commit: Some(commit),
            });
        };
        let more = all.len() > offset + page_size;
        let page: Vec<Entry> = all.into_iter().skip(offset).take(page_size).collect();
        let json = to_json(git, &commit, page, expand)?;
        Ok((json, (commit, offset + page_size), more))
    })
    .await?;
    add_xet_hashes(state, &mut entries).await?;
    let mut headers = HeaderMap::new();
    if more {
        let cursor = format!("{}:{}", commit.0, commit.1);
        let (name, value) = link_header(&next_page_url(state, uri, &cursor));
        headers.insert(name, value.parse()?);
    }
    Ok((headers, Json(entries)).into_response())
}

/// `paths-info`: the body is form-encoded (`paths=a&paths=b&expand=false`); JSON is accepted too.
/// A path that cannot name a file (a NUL, `..`, `.git`) names none: it is left out of the
/// answer like any missing path.
pub async fn paths_info(
    State(state): State<AppState>,
    RepoAt { repo, .. }: RepoAt,
    ApiPath(RevParam { rev }): ApiPath<RevParam>,
    body: Bytes,
) -> ApiResult<Json<Vec<EntryJson>>> {
    let (paths, expand) = parse_paths_info_body(&body)?;
    if paths.len() > MAX_PATHS_INFO {
        return Err(ApiError::bad_request(format!(
            "At most {MAX_PATHS_INFO} paths per request"
        )));
    }
    let mut entries = read_git(&state, &repo, move |git| {
        let commit = resolve(git, rev.as_str())?;
        let mut found = Vec::new();
        for path in paths {
            let Ok(path) = RepoPath::parse(path.trim_matches('/')) else {
                continue;
            };
            if let Some(entry) = git.entry_at(&commit, path.as_str())? {
                found.push(entry);
            }
        }
        to_json(git, &commit, found, expand)
    })
    .await?;
    add_xet_hashes(&state, &mut entries).await?;
    Ok(Json(entries))
}

fn parse_paths_info_body(body: &[u8]) -> ApiResult<(Vec<String>, bool)> {
    let trimmed = body.iter().position(|b| !b.is_ascii_whitespace());
    if trimmed.is_some_and(|i| body[i] == b'{') {
        #[derive(serde::Deserialize)]
        struct JsonBody {
            paths: Vec<String>,
            #[serde(default)]
            expand: bool,
        }
        let parsed: JsonBody = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))?;
        return Ok((parsed.paths, parsed.expand));
    }
    let query = QueryParams::parse(
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("Body is not UTF-8"))?,
    );
    let paths = query.all("paths").into_iter().map(str::to_owned).collect();
    Ok((paths, query.flag("expand")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_info_accepts_form_and_json() {
        let (p, e) =
            parse_paths_info_body(b"paths=a.txt&paths=dir%2Fb&expand=false").expect("form");
        assert_eq!(p, vec!["a.txt", "dir/b"]);
        assert!(!e);
        let (p, e) = parse_paths_info_body(br#"{"paths":["x"],"expand":true}"#).expect("json");
        assert_eq!(p, vec!["x"]);
        assert!(e);
        assert!(parse_paths_info_body(b"{bad").is_err());
    }

    #[test]
    fn cursors_pin_a_commit() {
        let c = format!("{}:1000", "a".repeat(40));
        assert_eq!(parse_cursor(&c).map(|(_, o)| o), Some(1000));
        assert!(parse_cursor("zz:1").is_none());
        assert!(parse_cursor("nocolon").is_none());
    }
}
