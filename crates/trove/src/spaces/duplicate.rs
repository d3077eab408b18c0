//! Duplicating a repository (`duplicate_repo`, and `duplicate_space` before it): a new
//! repository whose branches and tags are the source's, whose large files are readable
//! without copying a byte (the same store objects, linked to it), and — for a Space — the
//! source's variables, never its secrets (the caller passes the secrets the copy needs).
//! Hardware and volumes are not run here and are ignored, as a free Hub account's are.

use crate::auth::Caller;
use crate::auth::policy::Access;
use crate::clock::now_ms;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use crate::repos::RepoRef;
use crate::repos::lifecycle::{self, Created};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;
use trove_db::{EnvKind, SpaceEnvEntry};
use trove_types::{RepoId, RepoType};

/// Longest a copy of the history may take.
const COPY_TIMEOUT: Duration = Duration::from_secs(600);

/// What the caller asked of the copy, validated at the edge.
pub struct DuplicateRequest {
    pub to: RepoId,
    /// `None`: as private as the source.
    pub private: Option<bool>,
    /// `Some(None)`: never sleep.
    pub sleep_time_secs: Option<Option<i64>>,
    /// Set on the copy; a variable of the same name replaces the source's.
    pub variables: Vec<SpaceEnvEntry>,
    pub secrets: Vec<SpaceEnvEntry>,
}

/// Duplicates `source` (which the caller may read, files included) to `request.to`, which
/// the caller may create. A failure after the new repository exists removes it.
pub async fn duplicate(
    state: &Context,
    caller: &Caller,
    source: &RepoRef,
    request: DuplicateRequest,
) -> ApiResult<Created> {
    source.require_content(caller)?;
    let private = request.private.unwrap_or(source.repo.private);
    let created = lifecycle::create(
        state,
        caller,
        source.repo_type,
        request.to.namespace.as_str(),
        request.to.name.as_str(),
        private,
    )
    .await?;
    match fill(state, source, &created, request).await {
        Ok(()) => {
            tracing::info!(
                repo.id = created.repo.id,
                source.id = source.repo.id,
                "repo duplicated"
            );
            Ok(created)
        }
        Err(e) => {
            let copy = RepoRef {
                access: Access::Admin,
                ..RepoRef::for_server(state, &created.repo)
            };
            if let Err(cleanup) = lifecycle::delete(state, caller, &copy).await {
                tracing::error!(repo.id = created.repo.id, error = ?cleanup, "removing a failed duplicate");
            }
            Err(e)
        }
    }
}

async fn fill(
    state: &Context,
    source: &RepoRef,
    created: &Created,
    request: DuplicateRequest,
) -> ApiResult<()> {
    let to = &created.repo;
    // The links first: once the refs are there, every file they name must be readable.
    state
        .db
        .copy_content_links(source.repo.id, to.id, now_ms())
        .await?;
    {
        let _guard = state.lock_repo(to.id).await?;
        // Dropped after the fetch: the copy's refs no longer name its
        // initial commit.
        let _moving = state.db.moving_refs();
        let from = crate::repos::reconcile::checked_git_dir(state, source.repo.id).await?;
        copy_refs(
            &from,
            &crate::repos::reconcile::checked_git_dir(state, to.id).await?,
        )
        .await?;
    }
    if source.repo_type == RepoType::Space {
        let inherited = state
            .db
            .space_env(source.repo.id)
            .await?
            .into_iter()
            .filter(|e| e.kind == EnvKind::Variable);
        for entry in inherited.chain(request.variables).chain(request.secrets) {
            state.db.put_space_env(to.id, &entry).await?;
        }
        if let Some(sleep) = request.sleep_time_secs {
            let mut settings = state.db.space_settings(to.id).await?;
            settings.sleep_time_secs = sleep;
            state
                .db
                .set_space_settings(to.id, &settings, now_ms())
                .await?;
        }
    }
    state.db.touch_repo(to.id, now_ms()).await?;
    state.emit([crate::events::Event::ref_created(
        to,
        &format!("refs/heads/{}", trove_types::DEFAULT_BRANCH),
    )]);
    crate::repos::index::reindex_after_write(state, to).await;
    Ok(())
}

/// Fetches every branch and tag of `from` into `to`, replacing what `to` had; objects and
/// refs are fsynced as a push's are. Pull request refs stay behind with their discussions.
async fn copy_refs(from: &Path, to: &Path) -> ApiResult<()> {
    let mut command = Command::new("git");
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args([
            "-c",
            "core.fsync=objects,pack-metadata,reference",
            "-c",
            "core.fsyncMethod=fsync",
            "-c",
            "protocol.file.allow=always",
            "--git-dir",
        ])
        .arg(to)
        .args(["fetch", "--quiet", "--no-write-fetch-head", "--no-tags"])
        .arg(from)
        .args(["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(COPY_TIMEOUT, command.output())
        .await
        .map_err(|_| ApiError::internal(anyhow::anyhow!("copying the history timed out")))??;
    if !output.status.success() {
        return Err(ApiError::internal(anyhow::anyhow!(
            "git fetch for a duplicate failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}
