//! Making the repositories on disk and the database agree again after a crash, without
//! holding the start back for a walk over every repository.
//!
//! Each serving process leaves a file in `<repos>/.running/` while it runs and removes it
//! only after a clean stop ([`RunningMarker`]). A start that finds none of them (alone on
//! the hub) knows that every process before it stopped cleanly — no lock file, quarantine
//! or half-created repository can be left — and checks nothing. A start that finds one
//! checks (see [`reconcile`] for what a check does):
//!
//! - before serving, what a request could trip over and what cannot be checked later
//!   without racing the requests: the staging folder and the folders without a row;
//! - then each repository, in the background, while requests are served. [`with_repo`]
//!   stands between every request and a repository's folder: a repository not yet checked
//!   is checked first, under a lock that the walk takes too, so that a lock file is never
//!   removed once a write to that repository may have begun in this process.
//!
//! The walk reads the repositories a page at a time ([`trove_db::Db::repo_stamps_after`]),
//! so its memory does not grow with the hub.

use super::folders::{InitialCommit, init_repo, move_to_trash, staging_dir, system_signature};
use crate::context::Context;
pub use crate::context::Reconciled;
use crate::error::ApiResult;
use futures_util::StreamExt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use trove_db::{Repo, RepoStamp};
use trove_git::GitRepo;

/// Repositories read from the database at a time by the walk and the orphan pass.
const PAGE: i64 = 2000;

/// Runs `f` on repository `repo_id`'s bare repository, off the async threads: the one way
/// requests open a repository. The repository is checked first while a start-up check is
/// pending ([`ensure_checked`]); otherwise nothing touches the file system before the open
/// itself, and a folder found missing by the open (removed by hand while the hub was
/// stopped, lost with a disk) is put back as a check would, and opened again.
pub async fn with_repo<T, F>(state: &Context, repo_id: i64, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&GitRepo) -> ApiResult<T> + Send + 'static,
{
    let f = match open_then(state, repo_id, f).await? {
        Ok(done) => return done,
        Err(f) => f,
    };
    put_back_missing(state, repo_id).await?;
    let path = state.git_dir(repo_id);
    tokio::task::spawn_blocking(move || f(&GitRepo::open(&path)?)).await?
}

/// [`with_repo`] for a read: `f` may get a handle kept from an earlier read of the same
/// repository (`Context::kept_repos`), which answers as a fresh open would — refs are read
/// from their files at each lookup and a missing object makes libgit2 look for new packs
/// (see `trove_git::KeptRepos`) — and the handle is kept for the next read afterwards.
/// `f` must only read: nothing it changes in the handle may outlive it. The repository
/// row's creation time tells this repository's handles from those of an earlier one that
/// had its id.
pub async fn read_repo<T, F>(state: &Context, repo: &Repo, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&GitRepo) -> ApiResult<T> + Send + 'static,
{
    ensure_checked(state, repo.id).await?;
    let path = state.git_dir(repo.id);
    let generation = repo.created_at_ms;
    let kept = state.kept_repos.clone();
    let f = match tokio::task::spawn_blocking(move || match kept.take(&path, generation) {
        Ok(git) => {
            let done = f(&git);
            kept.give_back(git, generation);
            Ok(done)
        }
        Err(trove_git::GitError::RepoNotFound { .. }) => Err(f),
        Err(e) => Ok(Err(e.into())),
    })
    .await?
    {
        Ok(done) => return done,
        Err(f) => f,
    };
    put_back_missing(state, repo.id).await?;
    let path = state.git_dir(repo.id);
    tokio::task::spawn_blocking(move || f(&GitRepo::open(&path)?)).await?
}

/// [`Context::git_dir`], for a caller that hands the folder to a git process or walks it
/// itself: the repository is opened once as by [`with_repo`] (a folder pending its check is
/// checked, a missing one put back). A folder still missing afterwards (its row was deleted
/// meanwhile) is the caller's to find.
pub async fn checked_git_dir(state: &Context, repo_id: i64) -> ApiResult<PathBuf> {
    if open_then(state, repo_id, |_| Ok(())).await?.is_err() {
        put_back_missing(state, repo_id).await?;
    }
    Ok(state.git_dir(repo_id))
}

/// The first half of [`with_repo`]: `f`'s result, or `f` back when the folder is missing.
async fn open_then<T, F>(state: &Context, repo_id: i64, f: F) -> ApiResult<Result<ApiResult<T>, F>>
where
    T: Send + 'static,
    F: FnOnce(&GitRepo) -> ApiResult<T> + Send + 'static,
{
    ensure_checked(state, repo_id).await?;
    let path = state.git_dir(repo_id);
    Ok(
        tokio::task::spawn_blocking(move || match GitRepo::open(&path) {
            Ok(git) => Ok(f(&git)),
            Err(trove_git::GitError::RepoNotFound { .. }) => Err(f),
            Err(e) => Ok(Err(e.into())),
        })
        .await?,
    )
}

/// Makes the database and the repositories on disk agree again after a crash: [`start`],
/// then [`check_all`]. It assumes that no other process uses the repositories: a serving
/// process runs it only when no other node serves the hub.
///
/// - Staging folders of creations that never committed are removed: they belong to no row.
/// - A `repos/<id>.git` without a row is moved to the trash: it belongs to a deleted
///   repository whose clean-up was cut short, or to a creation that never committed.
/// - Lock files and temporary objects in every repository are removed: a lock left by a
///   dead process would otherwise fail every write to what it locks.
/// - A row whose git folder is missing gets a new repository with the initial commit, so
///   that it answers again and keeps what the database holds of it (settings,
///   discussions). When the row shows no write after its creation, nothing was lost; when
///   it does, the history is gone and the log says so at error level, naming the folder to
///   restore from a backup. Nothing that exists is ever overwritten: a folder that cannot be
///   opened as a repository is logged and left as it is.
pub async fn reconcile(state: &Context) -> anyhow::Result<Reconciled> {
    start(state).await?;
    check_all(state).await
}

/// The part of [`reconcile`] done before anything is served: the staging folder and the
/// folders without a row are cleared (later, a creation in flight could be taken for
/// either), and every repository is marked as waiting for its check.
pub async fn start(state: &Context) -> anyhow::Result<()> {
    let checks = &state.repo_checks;
    for stripe in &checks.stripes {
        stripe.lock().await.clear();
    }
    *checks.found.lock().unwrap_or_else(|e| e.into_inner()) = Reconciled::default();
    checks.pending.store(true, Ordering::Release);

    let repos_dir = state.config.repos_dir();
    let staging = staging_dir(&repos_dir);
    let listed = {
        let repos_dir = repos_dir.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<i64>> {
            if staging.exists() {
                std::fs::remove_dir_all(&staging)?;
            }
            repo_folder_ids(&repos_dir)
        })
        .await??
    };
    // Both in id order: a merge finds the folders without a row, one page of rows at a time.
    let mut orphans = Vec::new();
    let mut folders = listed.into_iter().peekable();
    let mut after = 0;
    loop {
        let page = state.db.repo_stamps_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let mut rows = page.iter().map(|s| s.id).peekable();
        while let Some(&folder) = folders.peek() {
            if folder > after {
                break;
            }
            while rows.next_if(|&row| row < folder).is_some() {}
            if rows.peek() != Some(&folder) {
                orphans.push(folder);
            }
            folders.next();
        }
    }
    orphans.extend(folders);
    if !orphans.is_empty() {
        let dirs: Vec<PathBuf> = orphans.iter().map(|&id| state.git_dir(id)).collect();
        let trash = state.trash_dir();
        let moved = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<PathBuf>> {
            for dir in &dirs {
                tracing::warn!(path = %dir.display(), "git folder without a repository; moved to the trash");
                move_to_trash(dir, &trash)?;
            }
            Ok(dirs)
        })
        .await??;
        checks.record(|found| found.orphans = moved);
    }
    Ok(())
}

/// The ids of the `<id>.git` folders in `repos_dir`, sorted.
fn repo_folder_ids(repos_dir: &Path) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    let entries = match std::fs::read_dir(repos_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let name = entry?.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".git"))
            .and_then(|id| id.parse::<i64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The part of [`reconcile`] that may run while requests are served: checks every
/// repository not yet checked (a few at a time), then reports what all the checks since
/// [`start`] found and lets requests through unchecked from then on — unless a check
/// failed, in which case requests keep checking the repositories the walk could not.
pub async fn check_all(state: &Context) -> anyhow::Result<Reconciled> {
    let checks = &state.repo_checks;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    let mut after = 0;
    let mut failed = Vec::new();
    loop {
        let page = state.db.repo_stamps_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let results: Vec<(i64, anyhow::Result<()>)> = futures_util::stream::iter(page)
            .map(|stamp| async move { (stamp.id, check(state, stamp.id, Some(stamp)).await) })
            .buffer_unordered(threads)
            .collect()
            .await;
        for (id, result) in results {
            if let Err(e) = result {
                tracing::error!(repo.id = id, error = %e, "repository check failed; retried when a request reaches it");
                failed.push(id);
            }
        }
    }
    if failed.is_empty() {
        checks.pending.store(false, Ordering::Release);
        for stripe in &checks.stripes {
            let mut checked = stripe.lock().await;
            checked.clear();
            checked.shrink_to_fit();
        }
    }
    let mut found = std::mem::take(&mut *checks.found.lock().unwrap_or_else(|e| e.into_inner()));
    found.failed = failed;
    Ok(found)
}

/// Checks repository `repo_id` unless it already was (or no check is under way): to be
/// called before anything reads or writes its folder ([`with_repo`] does). Waits while
/// another task checks it. With no check under way it returns at once, touching nothing.
pub async fn ensure_checked(state: &Context, repo_id: i64) -> anyhow::Result<()> {
    if state.repo_checks.pending() {
        return check(state, repo_id, None).await;
    }
    Ok(())
}

/// Puts back the folder of repository `repo_id`, found missing by an open, under the lock
/// a check takes: another request may have put it back meanwhile, and be writing to it, so
/// only a folder still missing is touched, never the leftovers of one that exists.
async fn put_back_missing(state: &Context, repo_id: i64) -> anyhow::Result<()> {
    let _checked = state.repo_checks.stripe(repo_id).lock().await;
    if tokio::fs::try_exists(state.git_dir(repo_id)).await? {
        return Ok(());
    }
    put_back(state, repo_id, None).await
}

async fn check(state: &Context, repo_id: i64, stamp: Option<RepoStamp>) -> anyhow::Result<()> {
    let checks = &state.repo_checks;
    if !checks.pending() {
        return Ok(());
    }
    let mut checked = checks.stripe(repo_id).lock().await;
    if !checks.pending() || checked.contains(&repo_id) {
        return Ok(());
    }
    check_one(state, repo_id, stamp).await?;
    checked.insert(repo_id);
    Ok(())
}

/// The check of one repository (see [`reconcile`]), its stripe held by the caller.
async fn check_one(state: &Context, repo_id: i64, stamp: Option<RepoStamp>) -> anyhow::Result<()> {
    let dir = state.git_dir(repo_id);
    let exists = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || dir.try_exists()).await??
    };
    if !exists {
        return put_back(state, repo_id, stamp).await;
    }
    let (removed, unreadable) = tokio::task::spawn_blocking(move || {
        let removed = trove_git::remove_leftovers(&dir)?;
        for path in &removed {
            tracing::warn!(repo.id = repo_id, path = %path.display(), "removed a stale lock or temporary file");
        }
        let unreadable = match GitRepo::open(&dir) {
            Ok(_) => false,
            Err(e) => {
                tracing::error!(repo.id = repo_id, path = %dir.display(), error = %e, "git folder cannot be opened; left as it is");
                true
            }
        };
        Ok::<_, trove_git::GitError>((removed, unreadable))
    })
    .await??;
    if !removed.is_empty() || unreadable {
        state.repo_checks.record(|f| {
            f.leftovers.extend(removed);
            if unreadable {
                f.unreadable.push(repo_id);
            }
        });
    }
    Ok(())
}

/// Gives repository `repo_id`, whose folder is missing, a new one with the initial commit
/// (see [`reconcile`]), unless its row is gone too.
async fn put_back(state: &Context, repo_id: i64, stamp: Option<RepoStamp>) -> anyhow::Result<()> {
    let dir = state.git_dir(repo_id);
    let stamp = match stamp {
        Some(stamp) => Some(stamp),
        None => state
            .db
            .repo_stamps_after(repo_id - 1, 1)
            .await?
            .into_iter()
            .find(|s| s.id == repo_id),
    };
    // Deleted meanwhile (its row goes before its folder): nothing to put back.
    let Some(stamp) = stamp else { return Ok(()) };
    let target = dir.clone();
    tokio::task::spawn_blocking(move || {
        // The creator is not known here, and the history is gone anyway.
        let initial = InitialCommit {
            readme: None,
            author: system_signature(),
        };
        init_repo(&target, &initial)
    })
    .await??;
    if stamp.updated_at_ms > stamp.created_at_ms {
        tracing::error!(
            repo.id = repo_id,
            path = %dir.display(),
            "git folder missing: its history is lost; an empty repository was created \
             in its place (restore the folder from a backup to get the history back)"
        );
    } else {
        tracing::warn!(
            repo.id = repo_id,
            path = %dir.display(),
            "git folder missing; initialised again (it held only its initial commit)"
        );
    }
    state.repo_checks.record(|f| f.reinitialised.push(repo_id));
    Ok(())
}

/// The file a serving process keeps in `<repos>/.running/` from before it serves until
/// after it has stopped cleanly: one left behind means a process died (or was stopped
/// with work cut short) and its repositories need the check.
#[derive(Debug)]
pub struct RunningMarker {
    path: PathBuf,
}

impl RunningMarker {
    fn dir(repos_dir: &Path) -> PathBuf {
        repos_dir.join(".running")
    }

    /// The files of processes that did not stop cleanly (read before this process writes
    /// its own).
    pub fn left_behind(repos_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        match std::fs::read_dir(Self::dir(repos_dir)) {
            Ok(entries) => entries.map(|e| e.map(|e| e.path())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Writes this process's file, durably (file and folder synced), named after the node
    /// and unique to this start.
    pub fn create(repos_dir: &Path, node_id: &str) -> std::io::Result<RunningMarker> {
        let dir = Self::dir(repos_dir);
        std::fs::create_dir_all(&dir)?;
        let safe: String = node_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{safe}-{}", uuid::Uuid::new_v4().simple()));
        let mut file = std::fs::File::create_new(&path)?;
        writeln!(file, "pid {}", std::process::id())?;
        file.sync_all()?;
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(RunningMarker { path })
    }

    /// Removes the file: this process stopped cleanly. Only once nothing it started can
    /// still write to a repository.
    pub fn remove(self) -> std::io::Result<()> {
        Self::remove_path(&self.path)
    }

    /// Removes a file [`RunningMarker::left_behind`] found, once the check it called for is
    /// done.
    pub fn remove_path(path: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}
