//! The use cases of the product — create and delete repositories, resolve revisions and
//! files, commit operations, the search index, listings and likes. This is where the rules
//! live; the HTTP modules only translate.

pub mod card;
pub mod commit;
pub mod content;
pub mod discussions;
pub mod gitattributes;
pub mod index;
pub mod lifecycle;
pub mod likes;
pub mod listing;
pub mod safetensors;

use crate::auth::{Access, Caller};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use trove_db::Repo;
use trove_git::GitRepo;
use trove_types::{GitOid, RepoId, RepoName, RepoType};

/// A repository the caller may at least read, with what they may do.
#[derive(Clone, Debug)]
pub struct RepoRef {
    pub repo: Repo,
    pub access: Access,
    pub repo_type: RepoType,
}

impl RepoRef {
    /// `{public}/{prefix}{namespace}/{name}`, the repo's web and git URL.
    pub fn url(&self, state: &AppState) -> String {
        repo_url(state, self.repo_type, &self.repo.namespace, &self.repo.name)
    }

    /// 403 unless the caller may write (401 when anonymous).
    pub fn require_write(&self, caller: &Caller) -> ApiResult<()> {
        match self.access {
            Access::Write => Ok(()),
            _ if caller.is_anonymous() => Err(ApiError::Unauthenticated(
                "You must be authenticated to write to this repository".into(),
            )),
            _ => Err(ApiError::Forbidden(format!(
                "You don't have write access to {}/{}",
                self.repo.namespace, self.repo.name
            ))),
        }
    }

    /// 403 unless the caller may contribute: upload files for a pull request and open one.
    /// Any signed-in reader with a write-capable token may (401 when anonymous).
    pub fn require_contribute(&self, caller: &Caller) -> ApiResult<()> {
        if Access::may_contribute(caller, self.access) {
            return Ok(());
        }
        if caller.is_anonymous() {
            return Err(ApiError::Unauthenticated(
                "You must be authenticated to contribute to this repository".into(),
            ));
        }
        Err(ApiError::Forbidden(
            "This token is read-only: a write token is needed".into(),
        ))
    }
}

pub fn repo_url(state: &AppState, repo_type: RepoType, namespace: &str, name: &str) -> String {
    format!(
        "{}/{}{namespace}/{name}",
        state.public_url(),
        repo_type.url_prefix()
    )
}

/// Finds a repository the caller may read. A repo that does not exist and one the caller may
/// not see answer the same `RepoNotFound`, so private repos never leak.
pub async fn find_readable(
    state: &AppState,
    caller: &Caller,
    repo_type: RepoType,
    namespace: &str,
    name: &str,
) -> ApiResult<RepoRef> {
    let not_found = ApiError::RepoNotFound {
        anonymous: caller.is_anonymous(),
    };
    let (Ok(namespace), Ok(name)) = (RepoName::parse(namespace), RepoName::parse(name)) else {
        return Err(not_found);
    };
    let id = RepoId::new(namespace, name);
    let Some(repo) = state
        .db
        .repo_by_name(repo_type, &id)
        .await
        .map_err(ApiError::internal)?
    else {
        return Err(not_found);
    };
    match Access::for_repo(caller, &repo) {
        Access::None => Err(not_found),
        access => Ok(RepoRef {
            repo,
            access,
            repo_type,
        }),
    }
}

/// Runs blocking git work on the repository's bare repo off the async threads.
pub async fn with_git<T, F>(state: &AppState, repo: &RepoRef, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&GitRepo) -> ApiResult<T> + Send + 'static,
{
    let path = state.git_dir(repo.repo.id);
    tokio::task::spawn_blocking(move || {
        let git = GitRepo::open(&path).map_err(ApiError::internal)?;
        f(&git)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Resolves a revision to its commit, or `RevisionNotFound`.
pub fn resolve(git: &GitRepo, revision: &str) -> ApiResult<GitOid> {
    git.resolve_revision(revision)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::RevisionNotFound {
            revision: revision.to_owned(),
        })
}
