//! Browsing a repository's files for the web pages: a folder with the last commit of each
//! entry, a file's entry, and a commit with its diff. Reads only; who may read is decided
//! by `RepoRef` (files need [`RepoRef::require_content`], folder listings only sight of
//! the repository, as in the tree API).
//!
//! The last commit of each entry of a folder is a walk of history; its answer depends only
//! on the commit and the folder, so it is kept in a bounded cache keyed by both.

use super::bounded::Bounded;
use super::{RepoRef, resolve, with_git};
use crate::auth::Caller;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use std::collections::HashMap;
use std::sync::Arc;
use trove_git::{CommitInfo, DiffLimits, Entry, EntryKind, TreeDiff};
use trove_types::GitOid;

/// Commits walked at most to find the last commit of a folder's entries (entries not
/// settled by then show none).
const LAST_COMMIT_WALK: usize = 2_000;
/// Folders whose last commits are cached.
const CACHE_FOLDERS: usize = 512;
/// Entries of one folder given last commits (a larger folder shows none: the walk would
/// be long and the page is long anyway).
const MAX_ENTRIES_WITH_COMMITS: usize = 1_000;

/// What a page shows of a diff.
pub const PAGE_DIFF: DiffLimits = DiffLimits {
    max_files: 300,
    max_lines_per_file: 1_500,
    max_total_lines: 10_000,
};

type LastCommits = Arc<HashMap<String, CommitInfo>>;
/// A folder of a commit: (commit, path).
type FolderKey = (GitOid, String);

/// Last commits of folders, by (commit, folder), least recently added first out.
pub struct BrowseCache(Bounded<FolderKey, LastCommits>);

impl Default for BrowseCache {
    fn default() -> Self {
        BrowseCache(Bounded::new(CACHE_FOLDERS))
    }
}

impl BrowseCache {
    fn get(&self, key: &FolderKey) -> Option<LastCommits> {
        self.0.get(key)
    }

    fn put(&self, key: FolderKey, value: LastCommits) {
        self.0.put(key, value);
    }
}

/// A folder at a revision.
pub struct Folder {
    pub commit: GitOid,
    pub entries: Vec<Entry>,
    pub last: LastCommits,
}

/// The folder `dir` ("" = root) at `rev`; `EntryNotFound` when there is none.
pub async fn folder(
    state: &Context,
    cache: &BrowseCache,
    repo: &RepoRef,
    rev: &str,
    dir: &str,
) -> ApiResult<Folder> {
    let rev = rev.to_owned();
    let dir = dir.to_owned();
    let (commit, entries) = {
        let dir = dir.clone();
        with_git(state, repo, move |git| {
            let commit = resolve(git, &rev)?;
            let entries =
                git.list_tree(&commit, &dir, false)?
                    .ok_or_else(|| ApiError::EntryNotFound {
                        message: format!("No folder {dir} at {rev}"),
                        commit: Some(commit.clone()),
                    })?;
            Ok((commit, entries))
        })
        .await?
    };
    let key = (commit.clone(), dir.clone());
    let last = match cache.get(&key) {
        Some(last) => last,
        None if entries.len() > MAX_ENTRIES_WITH_COMMITS => Arc::new(HashMap::new()),
        None => {
            let paths: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
            let at = commit.clone();
            let last = Arc::new(
                with_git(state, repo, move |git| {
                    Ok(git.last_commits(&at, &paths, LAST_COMMIT_WALK)?)
                })
                .await?,
            );
            cache.put(key, last.clone());
            last
        }
    };
    Ok(Folder {
        commit,
        entries,
        last,
    })
}

/// A file at a revision, for a caller who may read the repository's files.
pub struct FileAt {
    pub commit: GitOid,
    pub entry: Entry,
    pub size: u64,
}

/// The file `path` at `rev`. A folder or nothing at `path` is `EntryNotFound`.
pub async fn file(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    rev: &str,
    path: &str,
) -> ApiResult<FileAt> {
    repo.require_content(caller)?;
    let rev = rev.to_owned();
    let path = path.to_owned();
    with_git(state, repo, move |git| {
        let commit = resolve(git, &rev)?;
        match git.entry_at(&commit, &path)? {
            Some(
                entry @ Entry {
                    kind: EntryKind::File { size, .. },
                    ..
                },
            ) => Ok(FileAt {
                commit,
                size,
                entry,
            }),
            _ => Err(ApiError::EntryNotFound {
                message: format!("No file {path} at {rev}"),
                commit: Some(commit),
            }),
        }
    })
    .await
}

/// A commit and what it changes (against its first parent), within the page's budget.
pub async fn commit_with_diff(
    state: &Context,
    repo: &RepoRef,
    rev: &str,
) -> ApiResult<(CommitInfo, TreeDiff)> {
    let rev = rev.to_owned();
    with_git(state, repo, move |git| {
        let commit = resolve(git, &rev)?;
        let info = git.commit_info(&commit)?;
        let diff = git.diff_commits(info.parents.first(), &commit, PAGE_DIFF)?;
        Ok((info, diff))
    })
    .await
}

/// What a pull request changes: from the merge base of `base_ref` and `head_ref` to the
/// head. `None` when either ref is gone.
pub async fn revisions_diff(
    state: &Context,
    repo: &RepoRef,
    base_ref: &str,
    head_ref: &str,
) -> ApiResult<Option<TreeDiff>> {
    let (base_ref, head_ref) = (base_ref.to_owned(), head_ref.to_owned());
    with_git(state, repo, move |git| {
        let (Some(base), Some(head)) = (
            git.resolve_revision(&base_ref)?,
            git.resolve_revision(&head_ref)?,
        ) else {
            return Ok(None);
        };
        let from = git.merge_base(&base, &head)?;
        Ok(Some(git.diff_commits(from.as_ref(), &head, PAGE_DIFF)?))
    })
    .await
}
