//! The context every use case takes: the hub's settings and shared services, defined once.
//! Cheap to clone (all shared behind `Arc`s). Services with state of their own that belong
//! to one part of the hub (caches of pages, the Spaces supervisor) are not here: they are
//! built on a context and held by the application state ([`crate::state::AppState`]).

use crate::cluster::Node;
use crate::config::Config;
use crate::events::{Bus, Event};
use crate::git_runtime::GitRuntime;
use crate::signing::UrlSigner;
use crate::throttle::AuthRuntime;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use trove_db::Db;
use trove_store::Store;

/// Everything a use case may need.
#[derive(Clone)]
pub struct Context {
    /// Settings, fixed for the life of the process (public URL already resolved).
    pub config: Arc<Config>,
    /// Users, tokens, repos and the LFS object index.
    pub db: Db,
    /// Large-file bytes and xorbs: a local directory or a bucket (see trove-store).
    pub store: Arc<Store>,
    /// Signs the self-authenticating LFS transfer URLs.
    pub signer: Arc<UrlSigner>,
    /// Serialises commits per repository within this process so API commits never race
    /// each other; [`Context::lock_repo`] adds the database's lock across nodes. Pushes
    /// (which take neither) are guarded by git's ref compare-and-swap (a lock file next to
    /// the ref, on the shared volume).
    pub commit_locks: Arc<CommitLocks>,
    /// Git over HTTP: command settings, the hook, the limit on concurrent git processes.
    pub git: Arc<GitRuntime>,
    /// Serialises reindexing per repository, so the last reindex to run reads the newest head.
    pub index_locks: Arc<CommitLocks>,
    /// The failed-authentication limiter and the token last-used throttle.
    pub auth: Arc<AuthRuntime>,
    /// Where the use cases report what happened ([`Context::emit`]).
    pub events: Arc<Bus<Context>>,
    /// This node: its id (leases name it) and whether it is draining.
    pub node: Arc<Node>,
    /// The repositories still waiting for the check of a start after an unclean stop
    /// (`repos::reconcile`); every request opens a repository through
    /// `repos::reconcile::with_repo`, which checks it first.
    pub repo_checks: Arc<RepoChecks>,
    /// The blocks downloads rebuilt from xorbs read stored bytes into, used again once
    /// written ([`READ_BLOCK`] bytes, at most [`FREE_READ_BLOCKS`] kept).
    pub read_blocks: Arc<trove_xet::decode::BlockPool>,
    /// The xorbs of the Xet uploads under way, hashed as they arrive for the shards to come.
    pub hash_ahead: Arc<crate::hash_ahead::HashAhead>,
    /// Xorb indices of the files downloaded lately, for planning the next downloads.
    pub xorb_indices: Arc<trove_xet::xorb::IndexCache>,
    /// Repositories opened by downloads, kept for the next ones (at most [`KEPT_REPOS`]
    /// idle handles); `repos::reconcile::read_repo` takes and gives them back.
    pub kept_repos: Arc<trove_git::KeptRepos>,
}

/// The size of the blocks downloads rebuilt from xorbs read stored bytes into.
const READ_BLOCK: usize = 256 * 1024;
/// Free read blocks kept for the next downloads: 4 MiB at rest, enough for the blocks in
/// flight of a few concurrent downloads (each has about three).
const FREE_READ_BLOCKS: usize = 16;
/// Idle repository handles kept for downloads: enough for one per connection of a client
/// downloading with a few dozen connections, or a few per repository for several; each holds
/// a few file descriptors and its pack indexes' pages.
const KEPT_REPOS: usize = 32;

impl Context {
    /// The context of a server (or of an admin command doing server work) on `config`'s
    /// data dir, whose database, store and signing key are already open.
    pub fn new(
        config: Config,
        db: Db,
        store: impl Into<Store>,
        signer: UrlSigner,
    ) -> anyhow::Result<Self> {
        let git = GitRuntime::prepare(&config)?;
        Ok(Self::with_git(config, db, store, signer, git))
    }

    /// [`Context::new`] whose pushes run the hook of `hook_exe`: for tests, which do not run
    /// as the `trove` binary.
    pub fn with_hook_exe(
        config: Config,
        db: Db,
        store: impl Into<Store>,
        signer: UrlSigner,
        hook_exe: PathBuf,
    ) -> anyhow::Result<Self> {
        let git = GitRuntime::prepare_with_hook(&config, hook_exe)?;
        Ok(Self::with_git(config, db, store, signer, git))
    }

    /// A context on parts already made.
    pub fn with_git(
        config: Config,
        db: Db,
        store: impl Into<Store>,
        signer: UrlSigner,
        git: GitRuntime,
    ) -> Self {
        let auth = AuthRuntime::new(&config.auth, db.shares_epochs());
        Context {
            config: Arc::new(config),
            db,
            store: Arc::new(store.into()),
            signer: Arc::new(signer),
            commit_locks: Arc::new(CommitLocks::default()),
            git: Arc::new(git),
            index_locks: Arc::new(CommitLocks::default()),
            auth: Arc::new(auth),
            events: Arc::new(Bus::default()),
            node: Arc::new(Node::from_env()),
            repo_checks: Arc::new(RepoChecks::default()),
            read_blocks: trove_xet::decode::BlockPool::new(READ_BLOCK, FREE_READ_BLOCKS),
            hash_ahead: Arc::default(),
            xorb_indices: Arc::default(),
            kept_repos: Arc::new(trove_git::KeptRepos::new(KEPT_REPOS)),
        }
    }

    /// Reports what happened to every subscriber of the hub's events (webhooks, Spaces),
    /// without waiting on them.
    pub fn emit(&self, events: impl IntoIterator<Item = Event>) {
        let events: Vec<Event> = events.into_iter().collect();
        self.events.publish(self, &events);
    }

    /// Holds repository `repo_id` for one commit: this process's lock first (cheap, and the
    /// only one on SQLite, where one process serves), then on PostgreSQL the database's
    /// advisory lock of the repository, so a commit through another node waits too.
    pub async fn lock_repo(&self, repo_id: i64) -> trove_db::Result<RepoGuard> {
        let local = self.commit_locks.for_repo(repo_id).lock_owned().await;
        let shared = self.db.lock_repo(repo_id).await?;
        Ok(RepoGuard {
            _shared: shared,
            _local: local,
        })
    }

    /// Holds repository `repo_id` for one reindex, like [`Context::lock_repo`] with the
    /// reindexing locks.
    pub async fn lock_repo_index(&self, repo_id: i64) -> trove_db::Result<RepoGuard> {
        let local = self.index_locks.for_repo(repo_id).lock_owned().await;
        let shared = self.db.lock_repo_index(repo_id).await?;
        Ok(RepoGuard {
            _shared: shared,
            _local: local,
        })
    }

    /// Where the bare git repository of a repo id lives: `<data>/repos/<id>.git`, or
    /// `<git_dir>/<id>.git` when `--git-dir` / `TROVE_GIT_DIR` / `[storage] git_dir` is set. Repos are
    /// addressed by database id so that a rename is a metadata change only.
    pub fn git_dir(&self, repo_id: i64) -> PathBuf {
        self.config.repos_dir().join(format!("{repo_id}.git"))
    }

    /// Deleted repos are moved here first, then removed in the background: `<data>/trash`,
    /// or `.trash` in the `git_dir` when one is set (a rename does not cross filesystems).
    pub fn trash_dir(&self) -> PathBuf {
        match &self.config.storage.git_dir {
            Some(git_dir) => git_dir.join(".trash"),
            None => self.config.data_dir.join("trash"),
        }
    }

    pub fn public_url(&self) -> &str {
        self.config.public_url()
    }
}

/// A repository held for a commit ([`Context::lock_repo`]). The database's lock is freed
/// first (fields drop in order), then this process's.
pub struct RepoGuard {
    _shared: trove_db::RepoLock,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

/// One async mutex per repository id (for commits, and separately for reindexing).
#[derive(Default)]
pub struct CommitLocks {
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl CommitLocks {
    pub fn for_repo(&self, repo_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        // A poisoned map only means another thread panicked while inserting; the map is still valid.
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(repo_id).or_default().clone()
    }
}

/// Locks over the repositories being checked, by `id % STRIPES`: enough that the walk's
/// threads and the requests seldom wait on each other's repository.
const STRIPES: usize = 64;

/// What a check of the repositories (`repos::reconcile`) found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Repositories whose git folder was missing and was initialised again.
    pub reinitialised: Vec<i64>,
    /// Repositories whose git folder exists but cannot be opened: left untouched, logged.
    pub unreadable: Vec<i64>,
    /// Git folders without a database row, moved to the trash.
    pub orphans: Vec<PathBuf>,
    /// Stale lock files and temporary objects removed.
    pub leftovers: Vec<PathBuf>,
    /// Repositories whose check failed (an I/O error, logged): checked again when a request
    /// reaches them.
    pub failed: Vec<i64>,
}

/// Which repositories still wait for the check of a start after an unclean stop (one per
/// process, in [`Context::repo_checks`]; `repos::reconcile` runs the checks). Nothing waits unless a check has begun.
pub struct RepoChecks {
    /// Whether a check is under way: while it is not, `repos::reconcile::ensure_checked` returns at once.
    pub(crate) pending: AtomicBool,
    /// The repositories checked so far, by `id % STRIPES`. A stripe's lock is held while one
    /// of its repositories is checked.
    pub(crate) stripes: Vec<tokio::sync::Mutex<HashSet<i64>>>,
    /// What the checks found, until the walk reports it.
    pub(crate) found: std::sync::Mutex<Reconciled>,
    /// On PostgreSQL, until when (unix ms) this node may still check: the `repo-check`
    /// lease's last renewal plus its term, less one renewal period of margin. No check
    /// starts after it, so that none runs once another node may have taken the lease over.
    /// `i64::MAX` where no lease is needed (SQLite).
    pub(crate) held_until_ms: AtomicI64,
    /// Set once `held_until_ms` passed or the lease was found taken over: from then on this
    /// process checks nothing, even if a late renewal answers.
    pub(crate) lapsed: AtomicBool,
}

impl Default for RepoChecks {
    fn default() -> Self {
        RepoChecks {
            pending: AtomicBool::new(false),
            stripes: (0..STRIPES).map(|_| Default::default()).collect(),
            found: Default::default(),
            held_until_ms: AtomicI64::new(i64::MAX),
            lapsed: AtomicBool::new(false),
        }
    }
}

impl RepoChecks {
    pub(crate) fn stripe(&self, repo_id: i64) -> &tokio::sync::Mutex<HashSet<i64>> {
        let i = usize::try_from(repo_id.rem_euclid(STRIPES as i64)).unwrap_or(0);
        &self.stripes[i]
    }

    pub(crate) fn record(&self, f: impl FnOnce(&mut Reconciled)) {
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut found);
    }

    /// Whether repositories still wait for their check.
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Whether this process may still check a repository: always on SQLite; on PostgreSQL
    /// while the `repo-check` lease is surely its own ([`RepoChecks::held_until_ms`]).
    pub fn within_lease(&self) -> bool {
        if self.lapsed.load(Ordering::Acquire) {
            return false;
        }
        if crate::clock::now_ms() >= self.held_until_ms.load(Ordering::Acquire) {
            self.lapsed.store(true, Ordering::Release);
            return false;
        }
        true
    }

    /// Records a renewal of the `repo-check` lease, good until `until_ms` (already less the
    /// margin). Returns `false`, recording nothing, once the lease has lapsed.
    pub(crate) fn renewed(&self, until_ms: i64) -> bool {
        if !self.within_lease() {
            return false;
        }
        self.held_until_ms.store(until_ms, Ordering::Release);
        true
    }

    /// This process checks nothing more (the lease was lost or given up).
    pub(crate) fn lapse(&self) {
        self.lapsed.store(true, Ordering::Release);
    }
}
