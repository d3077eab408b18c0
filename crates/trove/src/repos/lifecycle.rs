//! Creating and deleting repositories: a database row plus a bare git repository that starts
//! with one commit holding the Hub's usual `.gitattributes`.

use super::gitattributes::DEFAULT_GITATTRIBUTES;
use super::{RepoRef, repo_url};
use crate::auth::{Access, Caller};
use crate::clock::{now_ms, now_secs};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use trove_db::{DbError, Repo};
use trove_git::{GitRepo, Signature};
use trove_types::{RepoId, RepoName, RepoType};

/// The author of the initial commit, as on the Hub (clients look for it).
pub fn system_signature() -> Signature {
    Signature {
        name: "system".into(),
        email: "system@trove.local".into(),
    }
}

pub struct Created {
    pub repo: Repo,
    pub url: String,
}

pub async fn create(
    state: &AppState,
    caller: &Caller,
    repo_type: RepoType,
    namespace: &str,
    name: &str,
    private: bool,
) -> ApiResult<Created> {
    let namespace = RepoName::parse(namespace).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let name = RepoName::parse(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let user = caller.require_user()?;
    if Access::in_namespace(caller, namespace.as_str()) < Access::Write {
        return Err(ApiError::Forbidden(format!(
            "You don't have the rights to create a repo under the namespace {:?}",
            namespace.as_str()
        )));
    }
    let id = RepoId::new(namespace, name);
    let url = repo_url(state, repo_type, id.namespace.as_str(), id.name.as_str());
    if state.db.repo_by_name(repo_type, &id).await?.is_some() {
        return Err(conflict(repo_type, url));
    }
    let repo = match state
        .db
        .create_repo(repo_type, &id, private, user.id, now_ms())
        .await
    {
        Ok(repo) => repo,
        Err(DbError::Conflict { .. }) => return Err(conflict(repo_type, url)),
        Err(e) => return Err(ApiError::internal(e)),
    };
    let dir = state.git_dir(repo.id);
    let trash = state.trash_dir();
    let init = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        if dir.exists() {
            // Left behind by a crash between a delete's database commit and its cleanup.
            move_to_trash(&dir, &trash)?;
        }
        GitRepo::init_bare(
            &dir,
            &[(".gitattributes", DEFAULT_GITATTRIBUTES.as_bytes())],
            &system_signature(),
            now_secs() as i64,
        )?;
        Ok(())
    })
    .await
    .map_err(ApiError::internal)
    .and_then(|r| r.map_err(ApiError::internal));
    if let Err(e) = init {
        let _ = state.db.delete_repo(repo.id).await;
        return Err(e);
    }
    tracing::info!(repo.id = repo.id, repo.name = %id, repo.type = %repo_type, private, "repo created");
    crate::accounts::audit(
        &state.db,
        caller.user().map_or("-", |u| u.name.as_str()),
        "repo.create",
        Some(&repo.namespace),
        Some(&format!("{repo_type}:{id}")),
        Some(if private { "private" } else { "public" }),
    )
    .await;
    super::index::reindex_after_write(state, &repo).await;
    Ok(Created { repo, url })
}

fn conflict(repo_type: RepoType, url: String) -> ApiError {
    ApiError::Conflict {
        message: format!("You already created this {repo_type} repo"),
        url: Some(url),
    }
}

pub async fn delete(state: &AppState, caller: &Caller, repo: &RepoRef) -> ApiResult<()> {
    repo.require_admin(caller)?;
    state.db.delete_repo(repo.repo.id).await?;
    let dir = state.git_dir(repo.repo.id);
    let trash = state.trash_dir();
    tokio::task::spawn_blocking(move || match move_to_trash(&dir, &trash) {
        Ok(Some(moved)) => {
            if let Err(e) = std::fs::remove_dir_all(&moved) {
                tracing::warn!(path = %moved.display(), error = %e, "could not remove a deleted repo");
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "could not move a deleted repo to the trash")
        }
    });
    tracing::info!(repo.id = repo.repo.id, "repo deleted");
    let target = format!(
        "{}:{}/{}",
        repo.repo_type, repo.repo.namespace, repo.repo.name
    );
    let actor = caller.user().map_or("-", |u| u.name.as_str());
    crate::accounts::audit(
        &state.db,
        actor,
        "repo.delete",
        Some(&repo.repo.namespace),
        Some(&target),
        None,
    )
    .await;
    Ok(())
}

fn move_to_trash(
    dir: &std::path::Path,
    trash: &std::path::Path,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    std::fs::create_dir_all(trash)?;
    let target = trash.join(uuid::Uuid::new_v4().to_string());
    std::fs::rename(dir, &target)?;
    Ok(Some(target))
}
