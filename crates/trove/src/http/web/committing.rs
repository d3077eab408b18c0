//! Where a commit made through a page goes — the branch shown, a new pull request, or an
//! existing pull request's `refs/pr/N` — and who may make it, decided before any byte of the
//! body is stored, with the same use cases and checks as `POST /api/{T}/{repo}/commit/{rev}`.

use super::repo_path;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::repos::RepoRef;
use crate::repos::commit::{PendingCommit, commit, commit_to_ref};
use crate::repos::discussions;
use crate::state::AppState;

/// Where a page's commit goes.
pub enum Target {
    Branch,
    NewPullRequest,
    PullRequest(trove_db::Discussion),
}

impl Target {
    /// The target the form asked for (`pr` = open a pull request), checked against what the
    /// caller may do: writers commit to branches, contributors open pull requests, a pull
    /// request's author (or a writer) adds to it.
    pub async fn decide(
        state: &AppState,
        caller: &Caller,
        repo: &RepoRef,
        rev: &str,
        open_pr: bool,
    ) -> ApiResult<Target> {
        if let Some(num) = discussions::pr_number(rev) {
            let pr = discussions::pull_request_for_commit(state, caller, repo, num).await?;
            return Ok(Target::PullRequest(pr));
        }
        if open_pr {
            repo.require_contribute(caller)?;
            Ok(Target::NewPullRequest)
        } else {
            repo.require_write(caller)?;
            Ok(Target::Branch)
        }
    }

    /// Makes the commit and answers the page to show next: the new commit, or the pull
    /// request it opened or updated.
    pub async fn commit(
        self,
        state: &AppState,
        caller: &Caller,
        repo: &RepoRef,
        rev: &str,
        pending: PendingCommit,
    ) -> ApiResult<String> {
        let base = repo_path(repo);
        let summary = pending.summary.clone();
        Ok(match self {
            Target::Branch => {
                let oid = commit(state, caller, repo, rev, pending).await?;
                format!("{base}/commit/{oid}")
            }
            Target::NewPullRequest => {
                let (_, pr) =
                    discussions::open_with_commit(state, caller, repo, rev, pending).await?;
                format!("{base}/discussions/{}", pr.num)
            }
            Target::PullRequest(pr) => {
                let oid = commit_to_ref(state, caller, repo, rev, pending).await?;
                let pr =
                    discussions::record_commit(state, caller, repo, pr, &oid, &summary).await?;
                format!("{base}/discussions/{}", pr.num)
            }
        })
    }
}
