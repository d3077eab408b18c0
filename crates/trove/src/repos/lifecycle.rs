//! Creating and deleting repositories: a database row plus a bare git repository that starts
//! with one commit holding the Hub's usual `.gitattributes`; and, at start-up, making the
//! two agree again after a crash ([`reconcile`]).
//!
//! Creation is crash-safe by ordering: the git repository is initialised complete in a
//! staging folder (`<data>/repos/.staging/<uuid>.git`), then the database row is inserted
//! in a transaction that, before committing, renames the staged repository to
//! `repos/<id>.git` and makes the rename durable. A crash before the commit leaves no row
//! (nothing visible; at most a staging folder or an unreferenced `repos/<id>.git`, which
//! [`reconcile`] and the next creation under that id clear away); after it, the row and a
//! complete repository.
//!
//! [`reconcile`]: super::reconcile::reconcile

use super::folders::{InitialCommit, init_repo, move_to_trash, publish, staging_dir};
use super::{RepoRef, repo_url};
use crate::auth::{Access, Caller};
use crate::clock::now_ms;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use trove_db::Repo;
use trove_types::{RepoId, RepoName, RepoType};

pub struct Created {
    pub repo: Repo,
    pub url: String,
}

pub async fn create(
    state: &Context,
    caller: &Caller,
    repo_type: RepoType,
    namespace: &str,
    name: &str,
    private: bool,
) -> ApiResult<Created> {
    create_seeded(state, caller, repo_type, namespace, name, private, None).await
}

/// [`create`], with a Space's SDK written into the `README.md` of its initial commit (as the
/// Hub seeds it, so `metadata_update` and the Space's card work from the start).
pub async fn create_seeded(
    state: &Context,
    caller: &Caller,
    repo_type: RepoType,
    namespace: &str,
    name: &str,
    private: bool,
    space_sdk: Option<&str>,
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
    let readme = space_sdk.map(|sdk| space_readme(id.name.as_str(), sdk));
    let initial = InitialCommit {
        readme,
        author: super::commit::author_of(caller)?,
    };
    let repo = match create_placed(state, repo_type, &id, private, user.id, initial).await {
        Ok(repo) => repo,
        Err(ApiError::Conflict { .. }) => return Err(conflict(repo_type, url)),
        Err(e) => return Err(e),
    };
    tracing::info!(repo.id = repo.id, repo.name = %id, repo.type = %repo_type, private, "repo created");
    state.emit([crate::events::Event::repo_created(&repo)]);
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

/// Initialises the repository in the staging folder, then inserts the row and publishes the
/// repository under its id in one transaction (see the module docs).
async fn create_placed(
    state: &Context,
    repo_type: RepoType,
    id: &RepoId,
    private: bool,
    owner: i64,
    initial: InitialCommit,
) -> ApiResult<Repo> {
    let staged =
        staging_dir(&state.config.repos_dir()).join(format!("{}.git", uuid::Uuid::new_v4()));
    let target = staged.clone();
    tokio::task::spawn_blocking(move || init_repo(&target, &initial)).await??;
    let result = state
        .db
        .create_repo_with(repo_type, id, private, owner, now_ms(), |repo: Repo| {
            let from = staged.clone();
            let dir = state.git_dir(repo.id);
            let trash = state.trash_dir();
            async move {
                tokio::task::spawn_blocking(move || publish(&from, &dir, &trash)).await??;
                Ok::<(), ApiError>(())
            }
        })
        .await;
    if result.is_err() {
        let staged = staged.clone();
        tokio::task::spawn_blocking(move || {
            if staged.exists()
                && let Err(e) = std::fs::remove_dir_all(&staged)
            {
                tracing::warn!(path = %staged.display(), error = %e, "could not remove a staged repo");
            }
        })
        .await?;
    }
    result
}

/// A Space's first `README.md`: its card with the SDK, as the Hub writes it.
fn space_readme(name: &str, sdk: &str) -> String {
    let app_file = match sdk {
        "gradio" | "streamlit" => "app_file: app.py\n",
        _ => "",
    };
    format!(
        "---\ntitle: {name}\nemoji: 🚀\ncolorFrom: blue\ncolorTo: green\nsdk: {sdk}\n\
         {app_file}pinned: false\n---\n\nCheck out the configuration reference at \
         https://huggingface.co/docs/hub/spaces-config-reference\n"
    )
}

fn conflict(repo_type: RepoType, url: String) -> ApiError {
    ApiError::Conflict {
        message: format!("You already created this {repo_type} repo"),
        url: Some(url),
    }
}

pub async fn delete(state: &Context, caller: &Caller, repo: &RepoRef) -> ApiResult<()> {
    repo.require_admin(caller)?;
    state.db.delete_repo(repo.repo.id).await?;
    let dir = state.git_dir(repo.repo.id);
    let trash = state.trash_dir();
    let kept = state.kept_repos.clone();
    tokio::task::spawn_blocking(move || match move_to_trash(&dir, &trash) {
        Ok(Some(moved)) => {
            // Handles kept open on it would hold its files' space until they are closed.
            kept.forget(&dir);
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
    state.emit([crate::events::Event::repo_deleted(&repo.repo)]);
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
