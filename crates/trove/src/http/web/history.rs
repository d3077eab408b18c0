//! A repository's history in the browser: `/{repo}/commits/{rev}` (newest first, paged by
//! `?p=N`) and `/{repo}/commit/{sha}` (message, author, parents, and the diff against the
//! first parent: per file, capped, large file diffs collapsed, binary and LFS files
//! summarised). The `commit` URL is the one the client prints after an upload.

use super::csrf::CsrfToken;
use super::head::RepoHead;
use super::{Nav, human_size, render, repo_path, section_of};
use crate::clock::format_secs;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, QueryParams, RepoAt};
use crate::repos::{browse, resolve, with_git};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use trove_git::{ChangeKind, TreeDiff};
use trove_types::Revision;

/// Commits per history page.
const PAGE: usize = 50;
/// Pages of history reachable by `?p=` (deeper history: the API or git).
const MAX_PAGE: usize = 200;
/// A file diff with more lines than this starts collapsed.
const COLLAPSE_LINES: usize = 400;

pub struct CommitRow {
    pub id: String,
    pub short: String,
    pub title: String,
    pub author: String,
    pub when: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "commits.html")]
pub struct CommitsPage {
    pub nav: Nav,
    pub head: RepoHead,
    pub commits: Vec<CommitRow>,
    pub newer: Option<String>,
    pub older: Option<String>,
}

#[derive(Deserialize)]
pub struct RevOnly {
    rev: Revision,
}

#[derive(Deserialize)]
pub struct ShaOnly {
    sha: Revision,
}

fn row(base: &str, c: &trove_git::CommitInfo) -> CommitRow {
    let id = c.id.to_string();
    CommitRow {
        short: id.get(..8).unwrap_or(&id).to_owned(),
        href: format!("{base}/commit/{id}"),
        id,
        title: c.title.clone(),
        author: c.author_name.clone(),
        when: format_secs(c.time_unix)
            .get(..16)
            .unwrap_or_default()
            .replace('T', " "),
    }
}

pub async fn commits(
    State(state): State<AppState>,
    csrf: CsrfToken,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<RevOnly>>,
    query: QueryParams,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(RevOnly { rev }) = path?;
        let page = match query.get("p") {
            None => 0,
            Some(p) => p
                .parse::<usize>()
                .ok()
                .filter(|p| *p <= MAX_PAGE)
                .ok_or_else(|| ApiError::bad_request(format!("Invalid page {p:?}")))?,
        };
        let rev_text = rev.as_str().to_owned();
        let (commits, more) = with_git(&state, &repo, move |git| {
            let head = resolve(git, &rev_text)?;
            Ok(git.log(&head, page * PAGE, PAGE)?)
        })
        .await?;
        let base = repo_path(&repo);
        let here = format!("{base}/commits/{}", super::rev_segment(rev.as_str()));
        let (section, _) = section_of(repo.repo_type);
        Ok::<_, ApiError>(render(&CommitsPage {
            nav: Nav::new(section, &caller, &csrf),
            head: RepoHead::of(&repo, "commits", rev.as_str()),
            commits: commits.iter().map(|c| row(&base, c)).collect(),
            newer: (page > 0).then(|| format!("{here}?p={}", page - 1)),
            older: (more && page < MAX_PAGE).then(|| format!("{here}?p={}", page + 1)),
        }))
    }
    .await
    .unwrap_or_else(super::error_page)
}

pub struct FileView {
    pub path: String,
    pub old_path: Option<String>,
    pub kind: &'static str,
    pub additions: usize,
    pub deletions: usize,
    pub open: bool,
    /// Instead of lines: binary or LFS files, sizes.
    pub summary: Option<String>,
    pub lines: Vec<(&'static str, String)>,
    pub truncated: bool,
}

/// A diff as the page shows it.
pub fn file_views(diff: &TreeDiff) -> Vec<FileView> {
    diff.files
        .iter()
        .map(|f| {
            let kind = match f.kind {
                ChangeKind::Added => "added",
                ChangeKind::Deleted => "deleted",
                ChangeKind::Modified => "modified",
                ChangeKind::Renamed => "renamed",
                ChangeKind::Other => "changed",
            };
            let summary = if f.binary {
                Some(format!(
                    "Binary file: {} → {}",
                    human_size(f.old_size),
                    human_size(f.new_size)
                ))
            } else if f.lfs {
                Some("Stored with Git LFS: the pointer changed (below).".to_owned())
            } else {
                None
            };
            FileView {
                path: f.path().to_owned(),
                old_path: (f.kind == ChangeKind::Renamed)
                    .then(|| f.old_path.clone())
                    .flatten(),
                kind,
                additions: f.additions,
                deletions: f.deletions,
                open: f.lines.len() <= COLLAPSE_LINES,
                summary,
                lines: f
                    .lines
                    .iter()
                    .map(|l| {
                        let class = match l.origin {
                            '+' => "add",
                            '-' => "del",
                            '@' => "hunk",
                            _ => "ctx",
                        };
                        let prefix = if l.origin == '@' { ' ' } else { l.origin };
                        (class, format!("{prefix}{}", l.text))
                    })
                    .collect(),
                truncated: f.truncated,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "commit.html")]
pub struct CommitPage {
    pub nav: Nav,
    pub head: RepoHead,
    pub id: String,
    pub title: String,
    pub message: String,
    pub author: String,
    pub when: String,
    pub parents: Vec<(String, String)>,
    pub files: Vec<FileView>,
    pub more_files: usize,
    pub browse: String,
}

pub async fn commit(
    State(state): State<AppState>,
    csrf: CsrfToken,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<ShaOnly>>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(ShaOnly { sha }) = path?;
        repo.require_content(&caller)?;
        let (info, diff) = browse::commit_with_diff(&state, &repo, sha.as_str()).await?;
        let base = repo_path(&repo);
        let id = info.id.to_string();
        let (section, _) = section_of(repo.repo_type);
        let body = info
            .message
            .strip_prefix(&info.title)
            .unwrap_or(&info.message)
            .trim()
            .to_owned();
        Ok::<_, ApiError>(render(&CommitPage {
            nav: Nav::new(section, &caller, &csrf),
            head: RepoHead::of(&repo, "commits", &id),
            browse: format!("{base}/tree/{id}"),
            title: info.title.clone(),
            message: body,
            author: format!("{} <{}>", info.author_name, info.author_email),
            when: format_secs(info.time_unix),
            parents: info
                .parents
                .iter()
                .map(|p| (p.to_string(), format!("{base}/commit/{p}")))
                .collect(),
            files: file_views(&diff),
            more_files: diff.more_files,
            id,
        }))
    }
    .await
    .unwrap_or_else(super::error_page)
}
