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

use super::gitattributes::DEFAULT_GITATTRIBUTES;
use super::{RepoRef, repo_url};
use crate::auth::{Access, Caller};
use crate::clock::{now_ms, now_secs};
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use std::path::{Path, PathBuf};
use trove_db::Repo;
use trove_git::{GitRepo, Signature};
use trove_types::{RepoId, RepoName, RepoType};

/// The author of commits made by the server itself (a repository re-initialised at start, a
/// tag made without a user).
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

/// Where repositories are initialised before they are published under their id.
pub fn staging_dir(repos_dir: &Path) -> PathBuf {
    repos_dir.join(".staging")
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

/// What the initial commit of a new repository holds besides `.gitattributes`, and who
/// authors it.
struct InitialCommit {
    readme: Option<String>,
    author: Signature,
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

/// A new repository with its initial commit, at `dir`.
fn init_repo(dir: &Path, initial: &InitialCommit) -> Result<(), trove_git::GitError> {
    let mut files: Vec<(&str, &[u8])> = vec![(".gitattributes", DEFAULT_GITATTRIBUTES.as_bytes())];
    if let Some(readme) = &initial.readme {
        files.push(("README.md", readme.as_bytes()));
    }
    GitRepo::init_bare(dir, &files, &initial.author, now_secs() as i64)?;
    Ok(())
}

/// Moves the staged repository to `dir` and makes the move durable. Whatever is at `dir`
/// has no row (the id is being given out now): a deleted repository's leftovers, or an
/// earlier creation that crashed before its commit; it goes to the trash.
fn publish(staged: &Path, dir: &Path, trash: &Path) -> std::io::Result<()> {
    if dir.exists() {
        move_to_trash(dir, trash)?;
    }
    std::fs::rename(staged, dir)?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
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

fn move_to_trash(dir: &Path, trash: &Path) -> std::io::Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    std::fs::create_dir_all(trash)?;
    let target = trash.join(uuid::Uuid::new_v4().to_string());
    std::fs::rename(dir, &target)?;
    Ok(Some(target))
}

/// What [`reconcile`] found and did.
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
}

/// Makes the database and the repositories on disk agree again after a crash; run at
/// start-up, before anything is served, since it assumes no other process uses them.
///
/// - Staging folders of creations that never committed are removed: they belong to no row.
/// - A `repos/<id>.git` without a row is moved to the trash: it belongs to a deleted
///   repository whose clean-up was cut short, or to a creation that never committed.
/// - Lock files and temporary objects in every repository are removed: a lock at start-up
///   belongs to a dead process, and would otherwise fail every write to what it locks.
/// - A row whose git folder is missing gets a new repository with the initial commit, so
///   that it answers again and keeps what the database holds of it (settings,
///   discussions). When the row shows no write after its creation, nothing was lost; when
///   it does, the history is gone and the log says so at error level, naming the folder to
///   restore from a backup. Nothing that exists is ever overwritten: a folder that cannot be
///   opened as a repository is logged and left as it is.
pub async fn reconcile(state: &Context) -> anyhow::Result<Reconciled> {
    let repos = state.db.all_repos().await?;
    let repos_dir = state.config.repos_dir();
    let dirs: Vec<(Repo, PathBuf)> = repos
        .into_iter()
        .map(|repo| {
            let dir = state.git_dir(repo.id);
            (repo, dir)
        })
        .collect();
    let trash = state.trash_dir();
    tokio::task::spawn_blocking(move || reconcile_dirs(&repos_dir, &dirs, &trash)).await?
}

fn reconcile_dirs(
    repos_dir: &Path,
    repos: &[(Repo, PathBuf)],
    trash: &Path,
) -> anyhow::Result<Reconciled> {
    let mut done = Reconciled::default();
    let staging = staging_dir(repos_dir);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let known: std::collections::HashSet<&Path> = repos.iter().map(|(_, d)| d.as_path()).collect();
    if let Ok(entries) = std::fs::read_dir(repos_dir) {
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let is_repo_dir = name
                .as_deref()
                .and_then(|n| n.strip_suffix(".git"))
                .is_some_and(|id| id.parse::<i64>().is_ok());
            if is_repo_dir && !known.contains(path.as_path()) {
                tracing::warn!(path = %path.display(), "git folder without a repository; moved to the trash");
                move_to_trash(&path, trash)?;
                done.orphans.push(path);
            }
        }
    }
    for (repo, dir) in repos {
        if !dir.exists() {
            // The creator is not known here, and the history is gone anyway.
            let initial = InitialCommit {
                readme: None,
                author: system_signature(),
            };
            init_repo(dir, &initial)?;
            if repo.updated_at_ms > repo.created_at_ms {
                tracing::error!(
                    repo.id = repo.id,
                    path = %dir.display(),
                    "git folder missing: its history is lost; an empty repository was created \
                     in its place (restore the folder from a backup to get the history back)"
                );
            } else {
                tracing::warn!(
                    repo.id = repo.id,
                    path = %dir.display(),
                    "git folder missing (a creation cut short); initialised again"
                );
            }
            done.reinitialised.push(repo.id);
            continue;
        }
        let removed = trove_git::remove_leftovers(dir)?;
        for path in &removed {
            tracing::warn!(repo.id = repo.id, path = %path.display(), "removed a stale lock or temporary file");
        }
        done.leftovers.extend(removed);
        if let Err(e) = GitRepo::open(dir) {
            tracing::error!(repo.id = repo.id, path = %dir.display(), error = %e, "git folder cannot be opened; left as it is");
            done.unreadable.push(repo.id);
        }
    }
    Ok(done)
}
