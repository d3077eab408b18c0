//! What running git needs beyond the configuration: the command settings every git process
//! gets, the pre-receive hook script (written at every start), the binary the hook runs, and
//! the limit on concurrent git processes.

use crate::config::Config;
use anyhow::Context;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use trove_git::smart_http::GitCommandSettings;

/// The hook git runs before accepting a push: it hands over to `trove hook pre-receive`, which
/// asks the server that started this push for its verdict.
const PRE_RECEIVE_SCRIPT: &str = "#!/bin/sh\n\
# Written by `trove serve` at every start. git runs it before accepting a push; the checks\n\
# are made by the server (`trove hook pre-receive` asks it and prints its answer).\n\
exec \"$TROVE_HOOK_EXE\" hook pre-receive\n";

/// What serving git needs beyond the configuration: resolved paths and the process limit.
pub struct GitRuntime {
    /// Command settings shared by every request (the per-push hook variables are added to
    /// a copy).
    pub settings: GitCommandSettings,
    /// The binary the hook runs: this one.
    pub hook_exe: PathBuf,
    /// Absolute data dir (its `tmp/` holds large fetch requests).
    pub data_dir: PathBuf,
    pub processes: Arc<Semaphore>,
    /// The permits of `processes`.
    pub max_processes: usize,
    /// Set once a git process is killed (its deadline passed): it may have left lock files
    /// or a quarantine behind, so this process's stop is not clean and the next start checks
    /// the repositories ([`crate::repos::reconcile::RunningMarker`]).
    pub killed: Arc<AtomicBool>,
    pub timeout: Duration,
    pub max_fetch_request_bytes: u64,
    pub max_push_bytes: u64,
}

impl GitRuntime {
    /// Writes the hook script under `<data>/hooks/` and resolves the paths every request uses.
    pub fn prepare(config: &Config) -> anyhow::Result<GitRuntime> {
        let hook_exe =
            std::env::current_exe().context("locating the trove binary for git hooks")?;
        Self::prepare_with_hook(config, hook_exe)
    }

    /// [`GitRuntime::prepare`] with the binary the hook runs given (tests run in a binary
    /// that is not `trove`).
    pub fn prepare_with_hook(config: &Config, hook_exe: PathBuf) -> anyhow::Result<GitRuntime> {
        let data_dir = std::fs::canonicalize(&config.data_dir)
            .with_context(|| format!("resolving {}", config.data_dir.display()))?;
        let hooks_dir = data_dir.join("hooks");
        write_hook(&hooks_dir, "pre-receive", PRE_RECEIVE_SCRIPT)?;
        let git = &config.git;
        Ok(GitRuntime {
            settings: GitCommandSettings {
                git_bin: git.git_bin.clone(),
                path_env: std::env::var_os("PATH")
                    .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin")),
                max_push_bytes: git.max_push_bytes,
                hooks_dir: Some(hooks_dir),
                hook_env: Vec::new(),
            },
            hook_exe,
            data_dir,
            processes: Arc::new(Semaphore::new(git.max_processes.max(1))),
            max_processes: git.max_processes.max(1),
            killed: Arc::new(AtomicBool::new(false)),
            timeout: Duration::from_secs(git.timeout_secs),
            max_fetch_request_bytes: git.max_fetch_request_bytes,
            max_push_bytes: git.max_push_bytes,
        })
    }
}

impl GitRuntime {
    /// Waits up to `timeout` for every git process to exit, and says whether none was
    /// killed over the life of this process: whether no git process has left (or, once the
    /// runtime stops, will leave) anything behind in a repository.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let all = u32::try_from(self.max_processes).unwrap_or(u32::MAX);
        let idle = tokio::time::timeout(timeout, self.processes.acquire_many(all))
            .await
            .is_ok_and(|permits| permits.is_ok());
        idle && !self.killed.load(Ordering::Acquire)
    }
}

/// Writes an executable hook script atomically (a temp file renamed over the old one).
fn write_hook(dir: &Path, name: &str, script: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, script).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, dir.join(name)).with_context(|| format!("installing the {name} hook"))?;
    Ok(())
}
