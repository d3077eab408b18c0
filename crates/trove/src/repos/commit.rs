//! Committing operations to a branch: the rules behind the NDJSON commit endpoint.
//!
//! Blobs are written to the object database while the request is read (unreferenced objects
//! are invisible and pruned by git's gc); the commit becomes visible only when the branch moves
//! by compare-and-swap. API commits to one repo are serialised by a per-repo lock; a concurrent
//! `git push` is caught by the compare-and-swap, and we rebuild on the new head unless the
//! client pinned `parentCommit` (then it gets 412). No update is ever lost.

use super::{RepoRef, with_git, write_git};
use crate::auth::Caller;
use crate::clock::{now_ms, now_secs};
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use trove_git::{CommitError, GitRepo, Signature, TreeOp};
use trove_types::{GitOid, LfsPointer, RepoPath, Revision, Sha256Hex};

/// How many times a commit is rebuilt when a push moved the branch underneath it.
const MAX_REBUILDS: usize = 5;
/// How often, and how long each time, a commit waits for a branch locked by a push.
const MAX_LOCK_WAITS: usize = 100;
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// A commit read from the request, blobs already written.
pub struct PendingCommit {
    pub summary: String,
    pub description: String,
    /// `parentCommit`: the head the client based its changes on (5-40 hex).
    pub parent_commit: Option<String>,
    pub ops: Vec<TreeOp>,
}

/// Turns an `lfsFile` operation into a pointer blob, after checking that this repo owns a
/// verified object with that oid (and size, when the client gave one).
pub async fn lfs_file_op(
    state: &Context,
    repo: &RepoRef,
    path: RepoPath,
    oid: Sha256Hex,
    size: Option<u64>,
) -> ApiResult<TreeOp> {
    let stored = state.db.repo_object_size(repo.repo.id, &oid).await?;
    let Some(stored) = stored else {
        return Err(ApiError::UnprocessableEntity(format!(
            "LFS object {oid} for {path} was never uploaded to this repository; upload it first"
        )));
    };
    if let Some(size) = size
        && size != stored
    {
        return Err(ApiError::bad_request(format!(
            "LFS object {oid} for {path} has size {stored}, not {size}"
        )));
    }
    let pointer = LfsPointer { oid, size: stored }.to_text();
    let blob = with_git(state, repo, move |git| {
        Ok(git.write_blob(pointer.as_bytes())?)
    })
    .await?;
    Ok(TreeOp::Upsert { path, blob })
}

/// The full ref a commit to `revision` moves: an existing branch, or an existing `refs/pr/N`.
fn target_ref(git: &GitRepo, revision: &str) -> ApiResult<String> {
    let candidates = if let Some(short) = revision.strip_prefix("refs/heads/") {
        vec![format!("refs/heads/{short}")]
    } else if revision.starts_with("refs/pr/") {
        vec![revision.to_owned()]
    } else {
        vec![format!("refs/heads/{revision}")]
    };
    for full in candidates {
        if git.ref_target(&full)?.is_some() {
            return Ok(full);
        }
    }
    if git.resolve_revision(revision)?.is_some() {
        return Err(ApiError::bad_request(format!(
            "Cannot commit to {revision:?}: commits go to a branch"
        )));
    }
    Err(ApiError::RevisionNotFound {
        revision: revision.to_owned(),
    })
}

fn parent_matches(parent: &str, head: &GitOid) -> ApiResult<bool> {
    let valid = (5..=40).contains(&parent.len()) && parent.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(ApiError::bad_request(format!(
            "Invalid parentCommit {parent:?}"
        )));
    }
    Ok(head.as_str().starts_with(&parent.to_ascii_lowercase()))
}

pub(crate) fn author_of(caller: &Caller) -> ApiResult<Signature> {
    let user = caller.require_user()?;
    let email = user
        .email
        .clone()
        .unwrap_or_else(|| format!("{}@users.noreply.trove.local", user.name));
    Ok(Signature {
        name: user.name.clone(),
        email,
    })
}

/// Applies `pending` to the branch `revision` (or an existing `refs/pr/N`) and returns the
/// new commit id; the caller must have write access.
pub async fn commit(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    revision: &str,
    pending: PendingCommit,
) -> ApiResult<GitOid> {
    repo.require_write(caller)?;
    commit_to_ref(state, caller, repo, revision, pending).await
}

/// [`commit`] without the write check, for callers that decided otherwise who may commit
/// (a pull request's author pushing to its `refs/pr/N`).
pub async fn commit_to_ref(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    revision: &str,
    pending: PendingCommit,
) -> ApiResult<GitOid> {
    let author = author_of(caller)?;
    let _guard = state.lock_repo(repo.repo.id).await?;
    let revision = revision.to_owned();
    let revision_for_index = revision.clone();
    let (old, commit) = write_git(state, repo, move |git| {
        let full_ref = target_ref(git, &revision)?;
        let mut rebuilds = 0;
        let mut lock_waits = 0;
        loop {
            let head = git.ref_target(&full_ref)?;
            if let (Some(parent), Some(head)) = (&pending.parent_commit, &head)
                && !parent_matches(parent, head)?
            {
                return Err(ApiError::StaleParentCommit);
            }
            let result = git.commit(
                &full_ref,
                head.as_ref(),
                &pending.ops,
                &pending.summary,
                &pending.description,
                &author,
                now_secs() as i64,
            );
            match result {
                Ok(oid) => return Ok((head, oid)),
                Err(CommitError::RefMoved { .. }) if pending.parent_commit.is_some() => {
                    return Err(ApiError::StaleParentCommit);
                }
                Err(CommitError::RefMoved { .. }) if rebuilds < MAX_REBUILDS => rebuilds += 1,
                Err(CommitError::RefMoved { .. }) => {
                    return Err(ApiError::Conflict {
                        message: "The branch kept moving while committing; please retry".into(),
                        url: None,
                    });
                }
                // A push is moving the branch this instant (git holds its lock file for
                // milliseconds): wait, then compare again.
                Err(CommitError::RefLocked { .. }) if lock_waits < MAX_LOCK_WAITS => {
                    lock_waits += 1;
                    std::thread::sleep(LOCK_WAIT);
                }
                Err(e) => return Err(e.into()),
            }
        }
    })
    .await?;
    state.db.touch_repo(repo.repo.id, now_ms()).await?;
    tracing::info!(repo.id = repo.repo.id, commit = %commit, "commit created");
    state.emit([crate::events::Event::committed(
        &repo.repo,
        &revision_for_index,
        old.as_ref(),
        &commit,
    )]);
    if is_default_branch(&revision_for_index) {
        super::index::reindex_after_write(state, &repo.repo).await;
    }
    Ok(commit)
}

/// Super-squash: replaces the history of the branch `revision` (or an existing
/// `refs/pr/N`) by one commit with the same tree and `message`, and returns it. A branch
/// moved meanwhile by a push is squashed at its new head. The event is a commit's, so
/// webhooks fire and a Space rebuilds; the bytes only the old history named are garbage
/// collection's to free.
pub async fn super_squash(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    revision: &str,
    message: &str,
) -> ApiResult<GitOid> {
    // Rewriting the default branch's history is an administrator's, as a force-push of it
    // is (`http::git::hook`); other branches and pull requests, a writer's.
    if is_default_branch(revision) {
        repo.require_admin(caller)?;
    } else {
        repo.require_write(caller)?;
    }
    let author = author_of(caller)?;
    let _guard = state.lock_repo(repo.repo.id).await?;
    let revision = revision.to_owned();
    let message = message.to_owned();
    let target = revision.clone();
    let (old, commit) = write_git(state, repo, move |git| {
        let full_ref = target_ref(git, &target)?;
        let mut attempts = 0;
        loop {
            let head = git
                .ref_target(&full_ref)?
                .ok_or_else(|| ApiError::RevisionNotFound {
                    revision: target.clone(),
                })?;
            match git.squash(&full_ref, &head, &message, &author, now_secs() as i64) {
                Ok(oid) => return Ok((head, oid)),
                Err(CommitError::RefMoved { .. } | CommitError::RefLocked { .. })
                    if attempts < MAX_LOCK_WAITS =>
                {
                    attempts += 1;
                    std::thread::sleep(LOCK_WAIT);
                }
                Err(e) => return Err(e.into()),
            }
        }
    })
    .await?;
    state.db.touch_repo(repo.repo.id, now_ms()).await?;
    tracing::info!(repo.id = repo.repo.id, commit = %commit, revision = %revision, "history squashed");
    state.emit([crate::events::Event::committed(
        &repo.repo,
        &revision,
        Some(&old),
        &commit,
    )]);
    if is_default_branch(&revision) {
        super::index::reindex_after_write(state, &repo.repo).await;
    }
    Ok(commit)
}

/// Only the default branch is indexed; commits to other branches leave the index as it is.
fn is_default_branch(revision: &str) -> bool {
    Revision::parse(revision).is_ok_and(|r| r.is_default_branch())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_commit_matches_by_prefix() {
        let head = GitOid::parse(&format!("abcde{}", "0".repeat(35))).expect("hex");
        assert!(parent_matches("abcde", &head).expect("valid"));
        assert!(parent_matches(head.as_str(), &head).expect("valid"));
        assert!(!parent_matches("abcdf", &head).expect("valid"));
        assert!(parent_matches("abcd", &head).is_err());
        assert!(parent_matches("xyzxyz", &head).is_err());
    }
}
