//! Pushes over git: who pushes and what they may do ([`Pusher`]), the variables the
//! `pre-receive` hook reads (set here; nothing a client sends can set them), and the work
//! after a push moved refs (modification time, search index, pull request events).
//!
//! The hook's rules themselves are in `http::git::hook`, and the server applies them
//! (`http::git::hook_server`) when the hook asks.

use super::RepoRef;
use crate::auth::{Access, Caller};
use crate::clock::now_ms;
use crate::context::Context;
use crate::error::ApiResult;
use crate::git_runtime::GitRuntime;
use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::Path;
use trove_git::GitRepo;
use trove_git::smart_http::GitCommandSettings;
use trove_types::GitOid;

/// The binary the hook script runs (this one).
pub const ENV_HOOK_EXE: &str = "TROVE_HOOK_EXE";
/// The number of the file descriptor through which the hook asks the server for its verdict
/// (one end of a socket pair made for this push, inherited through receive-pack;
/// `http::git::hook_server`).
pub const ENV_HOOK_FD: &str = "TROVE_HOOK_FD";

/// Who is pushing, as the server established it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pusher {
    pub name: String,
    /// The pushing user's id (`None` for an anonymous caller, who is refused anyway).
    pub user_id: Option<i64>,
    pub can_write: bool,
    /// May push to the pull requests they opened (every writer may too).
    pub can_contribute: bool,
    pub is_admin: bool,
}

impl Pusher {
    /// What `caller` may do by pushing to `repo`.
    pub fn of(caller: &Caller, repo: &RepoRef) -> Pusher {
        let (user_id, name, site_admin) = match caller {
            Caller::User { user, .. } => (Some(user.id), user.name.clone(), user.is_admin),
            Caller::Anonymous => (None, String::new(), false),
        };
        let can_write = repo.access >= Access::Write;
        Pusher {
            name,
            user_id,
            can_write,
            can_contribute: can_write || Access::may_contribute(caller, &repo.repo, repo.access),
            // Rewriting `main` stays a site administrator's act (as before organizations),
            // and only through a credential that administers this repository.
            is_admin: site_admin && repo.access >= Access::Admin,
        }
    }
}

/// The settings of a `receive-pack` run: the shared ones plus, for a run that may call the
/// hook, the variables it reads (the binary, and the descriptor `hook_fd` through which it
/// reaches the server). Who pushes is not among them: the server, which asked, knows.
pub fn push_settings(runtime: &GitRuntime, hook_fd: Option<RawFd>) -> GitCommandSettings {
    let mut settings = runtime.settings.clone();
    settings.hook_env = vec![(
        ENV_HOOK_EXE.to_owned(),
        runtime.hook_exe.clone().into_os_string(),
    )];
    if let Some(fd) = hook_fd {
        settings
            .hook_env
            .push((ENV_HOOK_FD.to_owned(), OsString::from(fd.to_string())));
    }
    settings
}

/// Every ref of the repository at `git_dir` and its target, sorted by name.
pub async fn ref_targets(git_dir: &Path) -> ApiResult<Vec<(String, GitOid)>> {
    let git_dir = git_dir.to_owned();
    Ok(tokio::task::spawn_blocking(move || GitRepo::open(&git_dir)?.ref_targets()).await??)
}

/// After receive-pack: when refs moved (`before` → now), the repository was modified
/// (lastModified), its card and files are reindexed for search if the default branch moved
/// (in the background, once the push is answered; see [`trove_db::Db::record_push`] for what
/// makes it survive a crash), and the push is logged with what it changed. A push that moved `refs/pr/N` adds a
/// `commit` event to pull request N, as an API commit to it does. A push that moved nothing
/// is logged too. Failures are logged: the push itself has landed.
pub async fn after_push(
    state: &Context,
    repo: &trove_db::Repo,
    git_dir: &Path,
    before: &[(String, GitOid)],
    caller: &Caller,
) {
    // receive-pack has exited: whatever it moved has moved. What a revision names may have
    // changed, and the push is not answered until this returns.
    drop(state.db.moving_refs());
    let after = match ref_targets(git_dir).await {
        Ok(after) => after,
        Err(e) => {
            tracing::error!(repo.id = repo.id, error = %e, "reading refs after a push");
            return;
        }
    };
    if after == before {
        // receive-pack answers a refusal inside the protocol (its status is still success):
        // a push that moved nothing was refused by git's checks or the push rules, or had
        // nothing to do. Either way, whoever runs the server can see that it happened.
        tracing::info!(
            repo.id = repo.id,
            user = caller.user().map(|u| u.name.as_str()).unwrap_or(""),
            "push moved no ref (refused, or nothing to update)"
        );
        return;
    }
    let changed: Vec<&str> = after
        .iter()
        .filter(|r| !before.contains(r))
        .map(|(name, _)| name.as_str())
        .chain(
            before
                .iter()
                .filter(|(name, _)| !after.iter().any(|(n, _)| n == name))
                .map(|(name, _)| name.as_str()),
        )
        .collect();
    // The search index reads the default branch only (as the commit API, which reindexes
    // after commits to it alone): a push that left it alone leaves nothing to reindex.
    let default_ref = format!("refs/heads/{}", trove_types::DEFAULT_BRANCH);
    let main_moved = changed.contains(&default_ref.as_str());
    // Before the answer, durably: the modification time and, when main moved, the mark that
    // the index entry is out of date, so that a reindex lost to a crash is redone at start.
    if let Err(e) = state.db.record_push(repo.id, now_ms(), main_moved).await {
        tracing::error!(repo.id = repo.id, error = %e, "recording a push");
    }
    record_pull_request_commits(state, repo, git_dir, before, &after, caller).await;
    tracing::info!(
        repo.id = repo.id,
        user = caller.user().map(|u| u.name.as_str()).unwrap_or(""),
        refs = ?changed,
        "push accepted"
    );
    state.emit([crate::events::Event::pushed(repo, before, &after)]);
    if main_moved {
        // After the answer: nothing the pusher reads back depends on it (the repository's
        // info, tree and files are read from git; only listings and search read the index),
        // and the card analysis and the walk of main's tree (a first push: 5,000 files) were
        // a tenth of its time. Reindexes of one repository take its index lock in turn, and
        // each reads main when it holds it, so the last one indexes the newest head.
        let (state, repo) = (state.clone(), repo.clone());
        tokio::spawn(async move { super::index::reindex_after_write(&state, &repo).await });
    }
}

/// A `commit` event on each pull request whose ref the push moved.
async fn record_pull_request_commits(
    state: &Context,
    repo: &trove_db::Repo,
    git_dir: &Path,
    before: &[(String, GitOid)],
    after: &[(String, GitOid)],
    caller: &Caller,
) {
    let repo_ref = RepoRef::for_server(state, repo);
    for (name, oid) in after.iter().filter(|r| !before.contains(r)) {
        let Some(num) = super::discussions::pr_number(name) else {
            continue;
        };
        let result = async {
            let discussion = super::discussions::find(state, &repo_ref, num).await?;
            let dir = git_dir.to_owned();
            let commit = oid.clone();
            let title = tokio::task::spawn_blocking(move || {
                GitRepo::open(&dir)
                    .and_then(|git| git.commit_info(&commit))
                    .map(|info| info.title)
            })
            .await??;
            super::discussions::record_commit(state, caller, &repo_ref, discussion, oid, &title)
                .await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(repo.id = repo.id, pr = num, error = %e, "pull request commit not recorded");
        }
    }
}
