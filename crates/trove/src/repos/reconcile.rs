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
//!
//! On PostgreSQL several nodes share the repositories: every node starts through [`claim`],
//! under the `repo-check` lease, and the one that checks keeps the lease for its walk
//! ([`LeasedCheck::run`]), so that no other node serves while a walk may remove a lock file.

use super::folders::{InitialCommit, init_repo, move_to_trash, staging_dir, system_signature};
use crate::context::Context;
pub use crate::context::Reconciled;
use crate::context::RepoChecks;
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
    F: FnOnce(&mut GitRepo) -> ApiResult<T> + Send + 'static,
{
    let f = match open_then(state, repo_id, f).await? {
        Ok(done) => return done,
        Err(f) => f,
    };
    open_put_back(state, repo_id, f).await
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
    open_put_back(state, repo.id, move |git: &mut GitRepo| f(git)).await
}

/// [`read_repo`] on the calling thread with an idle kept handle, if one is idle: `Ok(None)`
/// (and `f` not run) when none is, including when the folder is missing — the caller then
/// goes through [`read_repo`], which opens, or puts the folder back. See
/// `repos::read_git_inline` for what `f` may do.
pub async fn read_repo_inline<T>(
    state: &Context,
    repo: &Repo,
    f: impl FnOnce(&GitRepo) -> ApiResult<T>,
) -> ApiResult<Option<T>> {
    ensure_checked(state, repo.id).await?;
    let path = state.git_dir(repo.id);
    let generation = repo.created_at_ms;
    let Some(git) = state.kept_repos.take_idle(&path, generation) else {
        return Ok(None);
    };
    let done = f(&git);
    state.kept_repos.give_back(git, generation);
    done.map(Some)
}

/// The second half of [`with_repo`] and [`read_repo`], once the open found the folder
/// missing: the folder put back as a check would, then `f` on a fresh open.
async fn open_put_back<T, F>(state: &Context, repo_id: i64, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut GitRepo) -> ApiResult<T> + Send + 'static,
{
    put_back_missing(state, repo_id).await?;
    let path = state.git_dir(repo_id);
    tokio::task::spawn_blocking(move || f(&mut GitRepo::open(&path)?)).await?
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
    F: FnOnce(&mut GitRepo) -> ApiResult<T> + Send + 'static,
{
    ensure_checked(state, repo_id).await?;
    let path = state.git_dir(repo_id);
    Ok(
        tokio::task::spawn_blocking(move || match GitRepo::open(&path) {
            Ok(mut git) => Ok(f(&mut git)),
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
///
/// On PostgreSQL the walk runs only while the `repo-check` lease is surely this node's
/// ([`crate::context::RepoChecks::within_lease`]): once it is not, the walk stops with an
/// error and leaves the rest unchecked ([`LeasedCheck::run`]).
pub async fn check_all(state: &Context) -> anyhow::Result<Reconciled> {
    let checks = &state.repo_checks;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    let mut after = 0;
    let mut failed = Vec::new();
    loop {
        if !checks.within_lease() {
            anyhow::bail!("the repo-check lease lapsed after repository {after}");
        }
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
    // A repository skipped because the lease lapsed meanwhile was not checked.
    if !checks.within_lease() {
        anyhow::bail!("the repo-check lease lapsed before the walk's end");
    }
    if failed.is_empty() {
        close(checks).await;
    }
    let mut found = std::mem::take(&mut *checks.found.lock().unwrap_or_else(|e| e.into_inner()));
    found.failed = failed;
    Ok(found)
}

/// Ends the checking in this process: waits for the checks under way (each holds its
/// repository's stripe), then lets every request through unchecked. Taking every stripe
/// first means that no check is still removing files of a repository that a request let
/// through from now on may be writing to.
async fn close(checks: &RepoChecks) {
    let mut held = Vec::with_capacity(checks.stripes.len());
    for stripe in &checks.stripes {
        held.push(stripe.lock().await);
    }
    checks.pending.store(false, Ordering::Release);
    for mut checked in held {
        checked.clear();
        checked.shrink_to_fit();
    }
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
    // Past the lease (PostgreSQL), another node may serve or check: nothing is checked.
    if !checks.pending() || checked.contains(&repo_id) || !checks.within_lease() {
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
    // A new history in the old one's place: nothing a revision named before stands.
    drop(state.db.moving_refs());
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

/// What a start on PostgreSQL settled, holding the `repo-check` lease ([`claim`]).
pub struct Claim {
    /// This process's running marker, written while the lease was held.
    pub running: RunningMarker,
    /// The markers of processes that did not stop cleanly (or of nodes serving now).
    pub left_behind: Vec<PathBuf>,
    /// The other nodes found serving, when markers were found: their lock files and
    /// quarantines are in flight, so nothing is checked.
    pub others: Vec<String>,
    /// `Some` when this node checks the repositories: it holds the `repo-check` lease until
    /// [`LeasedCheck::run`] ends.
    pub check: Option<LeasedCheck>,
}

/// The check of a start after a crash on PostgreSQL, under the `repo-check` lease: renewed
/// in the background from [`claim`] until [`LeasedCheck::run`] ends (or this is dropped).
pub struct LeasedCheck {
    left_behind: Vec<PathBuf>,
    renewer: crate::cluster::AbortOnDrop,
}

/// How often a node waiting for the `repo-check` lease asks again.
const CLAIM_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The start of a node on PostgreSQL, before it serves: waits while another node holds the
/// `repo-check` lease (it decides, or checks the repositories after a crash), then takes it
/// and, holding it, announces this node (its presence lease), reads the running markers,
/// and writes its own. It checks (`check` is `Some`, the lease kept) only when markers were
/// left behind and no other node serves; otherwise it releases the lease at once.
///
/// Every node takes the lease before it serves and announces itself while holding it, so
/// the node that decides to check sees every node serving then, and no node starts serving
/// until its walk is over (or its lease expired: the node died, and the next node to take
/// the lease finds the markers still there and checks again).
pub async fn claim(state: &Context, repos_dir: &Path) -> anyhow::Result<Claim> {
    use crate::cluster::{self, leases::REPO_CHECK};
    let (db, node) = (&state.db, &state.node);
    let mut waited_since: Option<std::time::Instant> = None;
    let mut told = std::time::Instant::now();
    loop {
        match db
            .try_lease(
                REPO_CHECK,
                node.id(),
                cluster::ttl_ms(),
                crate::clock::now_ms(),
            )
            .await
        {
            Ok(true) => break,
            Ok(false) => {
                let first = waited_since.is_none();
                let since = *waited_since.get_or_insert_with(std::time::Instant::now);
                if first || told.elapsed() >= std::time::Duration::from_secs(30) {
                    told = std::time::Instant::now();
                    let holder = db
                        .lease(REPO_CHECK, crate::clock::now_ms())
                        .await
                        .ok()
                        .flatten()
                        .map_or_else(|| "unknown".to_owned(), |l| l.holder);
                    tracing::info!(
                        holder,
                        waited_secs = since.elapsed().as_secs(),
                        "waiting for another node's repository check before serving"
                    );
                }
            }
            Err(e) => tracing::warn!(lease = REPO_CHECK, error = %e, "cluster.lease_failed"),
        }
        tokio::time::sleep(CLAIM_POLL).await;
    }
    if let Some(since) = waited_since {
        tracing::info!(
            waited_ms = since.elapsed().as_millis() as u64,
            "repository check lease free"
        );
    }
    let decided = async {
        cluster::announce(db, node)
            .await
            .map_err(|e| anyhow::anyhow!("announcing this node in the database: {e}"))?;
        let left_behind = RunningMarker::left_behind(repos_dir)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", repos_dir.display()))?;
        let others = if left_behind.is_empty() {
            Vec::new()
        } else {
            cluster::others_serving(db, node)
                .await
                .map_err(|e| anyhow::anyhow!("listing the other nodes: {e}"))?
        };
        let running = RunningMarker::create(repos_dir, node.id())
            .map_err(|e| anyhow::anyhow!("marking {} as in use: {e}", repos_dir.display()))?;
        anyhow::Ok((left_behind, others, running))
    };
    let (left_behind, others, running) = match decided.await {
        Ok(decided) => decided,
        Err(e) => {
            let _ = db.release_lease(REPO_CHECK, node.id()).await;
            return Err(e);
        }
    };
    if left_behind.is_empty() || !others.is_empty() {
        db.release_lease(REPO_CHECK, node.id()).await?;
        return Ok(Claim {
            running,
            left_behind,
            others,
            check: None,
        });
    }
    // This node checks. The lease is renewed now (reading the others took a few seconds) and
    // from now on in the background; a renewal that finds it taken stops the checking.
    let checks = state.repo_checks.clone();
    let now = crate::clock::now_ms();
    if !db
        .try_lease(REPO_CHECK, node.id(), cluster::ttl_ms(), now)
        .await?
    {
        anyhow::bail!("the repo-check lease was taken over while deciding");
    }
    checks
        .held_until_ms
        .store(held_until(now), Ordering::Release);
    let renewer = {
        let (db, node) = (db.clone(), node.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::cluster::LEASE_RENEW);
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = crate::clock::now_ms();
                match db
                    .try_lease(REPO_CHECK, node.id(), cluster::ttl_ms(), now)
                    .await
                {
                    Ok(true) => {
                        if !checks.renewed(held_until(now)) {
                            return;
                        }
                    }
                    Ok(false) => {
                        tracing::error!(
                            lease = REPO_CHECK,
                            "repo-check lease taken over: this node checks no repository from now on"
                        );
                        checks.lapse();
                        return;
                    }
                    // No check starts once the last renewal is too old (`within_lease`).
                    Err(e) => {
                        tracing::warn!(lease = REPO_CHECK, error = %e, "cluster.lease_renew_failed")
                    }
                }
            }
        })
    };
    Ok(Claim {
        running,
        left_behind: left_behind.clone(),
        others,
        check: Some(LeasedCheck {
            left_behind,
            renewer: crate::cluster::AbortOnDrop(renewer),
        }),
    })
}

/// Until when a lease renewed at `now_ms` is surely still held: its term less one renewal
/// period, so that a check never starts in the last moments before another node may take
/// it over.
fn held_until(now_ms: i64) -> i64 {
    let margin = i64::try_from(crate::cluster::LEASE_RENEW.as_millis()).unwrap_or(i64::MAX);
    now_ms.saturating_add(crate::cluster::ttl_ms().saturating_sub(margin))
}

impl LeasedCheck {
    /// The walk ([`check_all`]) under the lease, [`start`] having run before serving. When
    /// it checked every repository, the markers it answered for are removed and then the
    /// lease released: the nodes waiting for it serve. When it did not (the lease lapsed, a
    /// page could not be read, a repository's check failed), this node stops checking —
    /// requests reach repositories unchecked, as on a node that found others serving, so
    /// that no check here can ever remove a lock file of a write on another node — the
    /// markers stay for the next start to check again, and the lease is released.
    pub async fn run(self, state: &Context) -> anyhow::Result<Reconciled> {
        use crate::cluster::leases::REPO_CHECK;
        let checks = &state.repo_checks;
        let walked = check_all(state).await;
        let outcome = match walked {
            Ok(done) if done.failed.is_empty() => {
                RunningMarker::remove_all(&self.left_behind);
                Ok(done)
            }
            Ok(done) => Err(anyhow::anyhow!(
                "the check of {} repositories failed (see above)",
                done.failed.len()
            )),
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            checks.lapse();
            close(checks).await;
        }
        drop(self.renewer);
        if let Err(e) = state.db.release_lease(REPO_CHECK, state.node.id()).await {
            tracing::warn!(lease = REPO_CHECK, error = %e, "cluster.lease_release_failed");
        }
        outcome
    }
}

/// Stops the checking in this process for good (a clean stop): once this returns no check
/// runs, and the `repo-check` lease may be handed on.
pub async fn stop_checking(state: &Context) {
    let checks = &state.repo_checks;
    checks.lapse();
    if checks.pending() {
        close(checks).await;
    }
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

    /// Removes the files [`RunningMarker::left_behind`] found, once the check they called
    /// for is done (a failure is logged: the next start checks again).
    pub fn remove_all(paths: &[PathBuf]) {
        for marker in paths {
            if let Err(e) = Self::remove_path(marker) {
                tracing::warn!(path = %marker.display(), error = %e, "could not remove a running marker");
            }
        }
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
