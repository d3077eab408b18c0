//! History: one commit's metadata, paginated logs, and the last commit that changed a path.

use crate::Result;
use crate::error::GitError;
use crate::repo::{GitRepo, from_git2};
use std::collections::HashMap;
use std::path::Path;
use trove_types::GitOid;

/// What the Hub shows of a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    /// The commit id.
    pub id: GitOid,
    /// The first line of the message.
    pub title: String,
    /// The full message, trailing newlines removed.
    pub message: String,
    /// Author name, as recorded in the commit.
    pub author_name: String,
    /// Author email, as recorded in the commit.
    pub author_email: String,
    /// Author time, seconds since the Unix epoch (what `git log` shows as the date).
    pub time_unix: i64,
    /// Parent commit ids, first parent first.
    pub parents: Vec<GitOid>,
}

impl CommitInfo {
    fn from_commit(commit: &git2::Commit<'_>) -> Self {
        // Pushed commits may carry any bytes in these fields; show them approximately.
        let message = String::from_utf8_lossy(commit.message_bytes())
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        let title = message.lines().next().unwrap_or_default().to_owned();
        let author = commit.author();
        Self {
            id: from_git2(commit.id()),
            title,
            message,
            author_name: String::from_utf8_lossy(author.name_bytes()).into_owned(),
            author_email: String::from_utf8_lossy(author.email_bytes()).into_owned(),
            time_unix: author.when().seconds(),
            parents: commit.parent_ids().map(from_git2).collect(),
        }
    }
}

impl GitRepo {
    /// The metadata of `commit`.
    pub fn commit_info(&self, commit: &GitOid) -> Result<CommitInfo> {
        Ok(CommitInfo::from_commit(&self.find_commit(commit)?))
    }

    /// The history of `commit`, newest first in `git log` order (topological, then by time),
    /// skipping the first `skip` commits and returning at most `limit`; the flag says whether
    /// more commits follow.
    pub fn log(
        &self,
        commit: &GitOid,
        skip: usize,
        limit: usize,
    ) -> Result<(Vec<CommitInfo>, bool)> {
        let start = self.find_commit(commit)?;
        let mut walk = self
            .repo
            .revwalk()
            .map_err(GitError::git("starting history walk"))?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)
            .map_err(GitError::git("sorting history"))?;
        walk.push(start.id())
            .map_err(GitError::git("starting history walk"))?;
        let mut ids = Vec::with_capacity(limit.saturating_add(1).min(1024));
        // One more than asked, to tell whether there is a next page.
        for id in walk.skip(skip).take(limit.saturating_add(1)) {
            ids.push(id.map_err(GitError::git("walking history"))?);
        }
        let has_more = ids.len() > limit;
        ids.truncate(limit);
        let commits = ids
            .into_iter()
            .map(|id| {
                self.find_commit(&from_git2(id))
                    .map(|c| CommitInfo::from_commit(&c))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((commits, has_more))
    }

    /// For each of `paths` (files or folders, "" = root), the most recent commit reachable from
    /// `commit` along first parents whose tree differs from its first parent's at that path.
    /// Walks at most `max_commits` commits; paths absent from `commit`'s tree, or not settled
    /// within the walk, are missing from the result.
    pub fn last_commits(
        &self,
        commit: &GitOid,
        paths: &[String],
        max_commits: usize,
    ) -> Result<HashMap<String, CommitInfo>> {
        let mut current = self.find_commit(commit)?;
        let tree = current.tree().map_err(GitError::git("reading tree"))?;
        // (path, what it is in `current`): only paths present at the start can be settled.
        let mut pending: Vec<(&String, (git2::Oid, i32))> = Vec::new();
        for path in paths {
            if let Some(state) = path_state(&tree, path)? {
                pending.push((path, state));
            }
        }
        let mut found = HashMap::new();
        let mut walked = 0;
        while !pending.is_empty() && walked < max_commits {
            walked += 1;
            let parent = match current.parent_count() {
                0 => None,
                _ => Some(
                    current
                        .parent(0)
                        .map_err(GitError::git("reading parent commit"))?,
                ),
            };
            let parent_tree = parent
                .as_ref()
                .map(|p| p.tree())
                .transpose()
                .map_err(GitError::git("reading tree"))?;
            let mut still_pending = Vec::with_capacity(pending.len());
            for (path, state) in pending {
                let before = match &parent_tree {
                    Some(tree) => path_state(tree, path)?,
                    None => None,
                };
                if before == Some(state) {
                    still_pending.push((path, state));
                } else {
                    found.insert(path.clone(), CommitInfo::from_commit(&current));
                }
            }
            pending = still_pending;
            match parent {
                Some(parent) => current = parent,
                None => break,
            }
        }
        Ok(found)
    }
}

/// The object id and mode at `path` in `tree` (`None` if absent); a mode change is a change.
fn path_state(tree: &git2::Tree<'_>, path: &str) -> Result<Option<(git2::Oid, i32)>> {
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        return Ok(Some((tree.id(), 0o040000)));
    }
    match tree.get_path(Path::new(path)) {
        Ok(entry) => Ok(Some((entry.id(), entry.filemode()))),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(GitError::Git {
            action: "looking up path",
            source: e,
        }),
    }
}
