//! The application state, defined once and reached by every handler through `State<AppState>`.

use crate::config::Config;
use crate::git_runtime::GitRuntime;
use crate::signing::UrlSigner;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use trove_db::Db;
use trove_store::LocalStore;

/// Everything a request may need; cheap to clone (all shared behind `Arc`s).
#[derive(Clone)]
pub struct AppState {
    /// Settings, fixed for the life of the process (public URL already resolved).
    pub config: Arc<Config>,
    /// Users, tokens, repos and the LFS object index.
    pub db: Db,
    /// Large-file bytes, addressed by SHA-256.
    pub store: Arc<LocalStore>,
    /// Signs the self-authenticating LFS transfer URLs.
    pub signer: Arc<UrlSigner>,
    /// Serialises commits per repository so API commits never race each other; pushes
    /// (which do not take this lock) are guarded by the ref compare-and-swap.
    pub commit_locks: Arc<CommitLocks>,
    /// Git over HTTP: command settings, the hook, the limit on concurrent git processes.
    pub git: Arc<GitRuntime>,
    /// Serialises reindexing per repository, so the last reindex to run reads the newest head.
    pub index_locks: Arc<CommitLocks>,
    /// The failed-authentication limiter and the token last-used throttle.
    pub auth: Arc<crate::auth::runtime::AuthRuntime>,
    /// The browsing pages' facet values, recomputed at most once a minute per repo type.
    pub facet_cache: Arc<crate::repos::facets::FacetCache>,
    /// The web pages' last commit per folder entry, by commit and folder (bounded).
    pub browse_cache: Arc<crate::repos::browse::BrowseCache>,
    /// Dataset previews by repo, commit, config and split (bounded).
    pub preview_cache: Arc<crate::repos::preview::PreviewCache>,
    /// Spaces: builds, running apps and their logs.
    pub spaces: Arc<crate::spaces::Supervisor>,
}

impl AppState {
    /// The state of a server (or of an admin command doing server work) on `config`'s data
    /// dir, whose database, store and signing key are already open.
    pub fn new(
        config: Config,
        db: Db,
        store: LocalStore,
        signer: UrlSigner,
    ) -> anyhow::Result<Self> {
        let git = GitRuntime::prepare(&config)?;
        Ok(Self::with_git(config, db, store, signer, git))
    }

    /// [`AppState::new`] whose pushes run the hook of `hook_exe`: for tests, which do not run
    /// as the `trove` binary.
    pub fn with_hook_exe(
        config: Config,
        db: Db,
        store: LocalStore,
        signer: UrlSigner,
        hook_exe: PathBuf,
    ) -> anyhow::Result<Self> {
        let git = GitRuntime::prepare_with_hook(&config, hook_exe)?;
        Ok(Self::with_git(config, db, store, signer, git))
    }

    fn with_git(
        config: Config,
        db: Db,
        store: LocalStore,
        signer: UrlSigner,
        git: GitRuntime,
    ) -> Self {
        let auth = crate::auth::runtime::AuthRuntime::new(&config.auth);
        let spaces = crate::spaces::Supervisor::new(&config.spaces);
        AppState {
            config: Arc::new(config),
            db,
            store: Arc::new(store),
            signer: Arc::new(signer),
            commit_locks: Arc::new(CommitLocks::default()),
            git: Arc::new(git),
            index_locks: Arc::new(CommitLocks::default()),
            auth: Arc::new(auth),
            facet_cache: Arc::new(crate::repos::facets::FacetCache::default()),
            browse_cache: Arc::new(crate::repos::browse::BrowseCache::default()),
            preview_cache: Arc::new(crate::repos::preview::PreviewCache::default()),
            spaces: Arc::new(spaces),
        }
    }

    /// Where the bare git repository of a repo id lives: `<data>/repos/<id>.git`. Repos are
    /// addressed by database id so that a rename is a metadata change only.
    pub fn git_dir(&self, repo_id: i64) -> PathBuf {
        self.config
            .data_dir
            .join("repos")
            .join(format!("{repo_id}.git"))
    }

    /// Deleted repos are moved here first, then removed in the background.
    pub fn trash_dir(&self) -> PathBuf {
        self.config.data_dir.join("trash")
    }

    pub fn public_url(&self) -> &str {
        self.config.public_url()
    }
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
