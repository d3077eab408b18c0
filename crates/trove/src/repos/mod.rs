//! The use cases of the product — create and delete repositories, resolve revisions and
//! files, commit operations, the search index, listings and likes. This is where the rules
//! live; the HTTP modules only translate.

pub(crate) mod bounded;
pub mod browse;
/// Cards live in their own crate (a parser with a budget, fuzzed on its own); re-exported
/// here so that use cases name them as part of the repository model.
pub use trove_card as card;
pub mod commit;
pub mod content;
pub mod discussions;
pub mod facets;
pub mod file_ranges;
pub mod folders;
pub mod gating;
pub mod gitattributes;
pub mod index;
pub mod ingest;
pub mod lfs;
pub mod lifecycle;
pub mod likes;
pub mod listing;
pub mod listing_cache;
pub mod preview;
pub mod push;
pub mod rebuild;
pub mod reconcile;
pub mod relocate;
pub mod resolve_cache;
pub mod safetensors;
pub mod settings;
pub mod xet;

use crate::auth::{Access, Caller};
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use crate::throttle::repo_cache::RepoRowCache;
use trove_db::Repo;
use trove_git::GitRepo;
use trove_types::{GitOid, RepoId, RepoName, RepoType};

/// A repository the caller may at least see, with what they may do.
#[derive(Clone, Debug)]
pub struct RepoRef {
    pub repo: Repo,
    pub access: Access,
    pub repo_type: RepoType,
    /// The repository's page, `{public}/{prefix}{namespace}/{name}`: refusals name it.
    pub page_url: String,
    /// The database's epochs as read before this request's first lookup, for the caches of
    /// its later ones (`None`: not read, or unknown — those caches then read their own).
    pub epochs: Option<trove_db::Epochs>,
}

impl RepoRef {
    /// A repository the server itself works on (indexing, pushes, builds), read-only.
    pub fn for_server(state: &Context, repo: &Repo) -> RepoRef {
        RepoRef {
            page_url: repo_url(state, repo.repo_type, &repo.namespace, &repo.name),
            repo: repo.clone(),
            access: Access::Read,
            repo_type: repo.repo_type,
            epochs: None,
        }
    }

    /// `{public}/{prefix}{namespace}/{name}`, the repo's web and git URL.
    pub fn url(&self, state: &Context) -> String {
        repo_url(state, self.repo_type, &self.repo.namespace, &self.repo.name)
    }

    /// `GatedRepo` unless the caller may read the files (not only the metadata), in the
    /// Hub's words: scripts match them, and they tell the user where to ask for access.
    pub fn require_content(&self, caller: &Caller) -> ApiResult<()> {
        if self.access >= Access::Read {
            return Ok(());
        }
        let what = format!(
            "{} {}/{}",
            self.repo_type.as_str(),
            self.repo.namespace,
            self.repo.name
        );
        let anonymous = caller.is_anonymous();
        let message = if anonymous {
            format!(
                "Access to {what} is restricted. You must have access to it and be \
                 authenticated to access it. Please log in."
            )
        } else {
            format!(
                "Access to {what} is restricted and you are not in the authorized list. \
                 Visit {} to ask for access.",
                self.page_url
            )
        };
        Err(ApiError::GatedRepo { anonymous, message })
    }

    /// 403 unless the caller may write (401 when anonymous).
    pub fn require_write(&self, caller: &Caller) -> ApiResult<()> {
        self.require(caller, Access::Write, "write access to")
    }

    /// 403 unless the caller administers the repository (settings, moves, deletion).
    pub fn require_admin(&self, caller: &Caller) -> ApiResult<()> {
        self.require(caller, Access::Admin, "admin rights on")
    }

    fn require(&self, caller: &Caller, needed: Access, what: &str) -> ApiResult<()> {
        if self.access >= needed {
            Ok(())
        } else if caller.is_anonymous() {
            Err(ApiError::Unauthenticated(format!(
                "You must be authenticated to do this: it needs {what} this repository"
            )))
        } else {
            Err(ApiError::Forbidden(format!(
                "You don't have {what} {}/{}",
                self.repo.namespace, self.repo.name
            )))
        }
    }

    /// 403 unless the caller may contribute: upload files for a pull request and open one.
    /// Any signed-in reader with a write-capable token may (401 when anonymous).
    pub fn require_contribute(&self, caller: &Caller) -> ApiResult<()> {
        if Access::may_contribute(caller, &self.repo, self.access) {
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

pub fn repo_url(state: &Context, repo_type: RepoType, namespace: &str, name: &str) -> String {
    format!(
        "{}/{}{namespace}/{name}",
        state.public_url(),
        repo_type.url_prefix()
    )
}

/// Finds a repository the caller may at least see (`Access::Gated` or more). A repository
/// that does not exist and one the caller may not see answer the same `RepoNotFound`, so
/// private repos never leak. An old name of a moved repository answers `RepoMoved` (a 307
/// to the new name) — only to callers who may see it.
pub async fn find_readable(
    state: &Context,
    caller: &Caller,
    repo_type: RepoType,
    namespace: &str,
    name: &str,
) -> ApiResult<RepoRef> {
    find(state, caller, repo_type, namespace, name, true).await
}

/// Like [`find_readable`] but an old name is not followed: for requests that name the
/// repository in their body (delete, move), where a redirect cannot work.
pub async fn find_readable_exact(
    state: &Context,
    caller: &Caller,
    repo_type: RepoType,
    namespace: &str,
    name: &str,
) -> ApiResult<RepoRef> {
    find(state, caller, repo_type, namespace, name, false).await
}

async fn find(
    state: &Context,
    caller: &Caller,
    repo_type: RepoType,
    namespace: &str,
    name: &str,
    follow_moves: bool,
) -> ApiResult<RepoRef> {
    let (Ok(namespace), Ok(name)) = (RepoName::parse(namespace), RepoName::parse(name)) else {
        return Err(ApiError::RepoNotFound {
            anonymous: caller.is_anonymous(),
        });
    };
    find_id(
        state,
        caller,
        repo_type,
        &RepoId::new(namespace, name),
        follow_moves,
        None,
        state.db.epochs(),
    )
    .await
}

/// [`find_readable`] for a parsed name, given the repository's row when it was read already
/// in this request (with the caller's token: `auth::caller_and_repo`); without one it is
/// read here, an old name followed.
pub async fn find_readable_id(
    state: &Context,
    caller: &Caller,
    repo_type: RepoType,
    id: &RepoId,
    row: Option<Repo>,
    epochs: Option<trove_db::Epochs>,
) -> ApiResult<RepoRef> {
    find_id(state, caller, repo_type, id, true, row, epochs).await
}

async fn find_id(
    state: &Context,
    caller: &Caller,
    repo_type: RepoType,
    id: &RepoId,
    follow_moves: bool,
    row: Option<Repo>,
    epochs: Option<trove_db::Epochs>,
) -> ApiResult<RepoRef> {
    let not_found = ApiError::RepoNotFound {
        anonymous: caller.is_anonymous(),
    };
    // `epochs` was read before the lookup: a row is kept only if no write completed in
    // between (see throttle/repo_cache.rs).
    let rows = &state.auth.repos;
    let epoch = RepoRowCache::epoch(epochs);
    let now = std::time::Instant::now();
    let found = if let Some(row) = row {
        Ok(Some((row, false)))
    } else if let Some(row) = rows.get(repo_type, id, epoch, now) {
        Ok(Some((row, false)))
    } else {
        let found = if follow_moves {
            state.db.repo_by_name_or_redirect(repo_type, id).await
        } else {
            state
                .db
                .repo_by_name(repo_type, id)
                .await
                .map(|r| r.map(|r| (r, false)))
        };
        if let Ok(Some((row, false))) = &found {
            rows.put(repo_type, id, epoch, row.clone(), now);
        }
        found
    };
    let Some((repo, moved)) = found? else {
        return Err(not_found);
    };
    let access = access_to(state, caller, &repo).await?;
    if access == Access::None {
        return Err(not_found);
    }
    if moved {
        return Err(ApiError::RepoMoved {
            from: format!("{}/{}", id.namespace.as_str(), id.name.as_str()),
            to: format!("{}/{}", repo.namespace, repo.name),
        });
    }
    Ok(RepoRef {
        page_url: repo_url(state, repo_type, &repo.namespace, &repo.name),
        repo,
        access,
        repo_type,
        epochs,
    })
}

/// The caller's access to a repository row: [`Access::for_repo`], with the facts it needs
/// loaded (whether the caller passed the repository's gate).
pub async fn access_to(state: &Context, caller: &Caller, repo: &Repo) -> ApiResult<Access> {
    let gate_passed = match caller {
        Caller::User { user, .. } if repo.gated.is_gated() && !repo.private => {
            state.db.access_request_status(repo.id, user.id).await?
                == Some(trove_db::RequestStatus::Accepted)
        }
        _ => false,
    };
    Ok(Access::for_repo(caller, repo, gate_passed))
}

/// Runs blocking git work on the repository's bare repo off the async threads. `f` gets
/// the repository to read and to write objects, not to move refs: that is [`write_git`].
pub async fn with_git<T, F>(state: &Context, repo: &RepoRef, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&GitRepo) -> ApiResult<T> + Send + 'static,
{
    crate::repos::reconcile::with_repo(state, repo.repo.id, move |git: &mut GitRepo| f(git)).await
}

/// [`with_git`] for work that moves refs (every `trove_git` method that moves one takes
/// the repository mutably, and only this hands it out so): the listing epoch moves once
/// `f` has returned, on the blocking thread that ran it, before the caller can answer
/// ([`trove_db::Db::moving_refs`]) — also when the request was abandoned meanwhile — so
/// that no cache of what a revision names (`throttle::rev_cache`) outlives the move.
pub async fn write_git<T, F>(state: &Context, repo: &RepoRef, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut GitRepo) -> ApiResult<T> + Send + 'static,
{
    let moving = state.db.moving_refs();
    crate::repos::reconcile::with_repo(state, repo.repo.id, move |git: &mut GitRepo| {
        let done = f(git);
        drop(moving);
        done
    })
    .await
}

/// [`with_git`] for work that only reads: the handle may be one kept from an earlier read
/// (see `reconcile::read_repo`), which spares downloads an open of the repository each.
pub async fn read_git<T, F>(state: &Context, repo: &RepoRef, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&GitRepo) -> ApiResult<T> + Send + 'static,
{
    crate::repos::reconcile::read_repo(state, &repo.repo, f).await
}

/// [`read_git`] on the calling thread — the async runtime's — when a handle on the
/// repository is idle (`Ok(None)` when none is: then nothing ran). Only for `f` that is
/// short and bounded whatever the repository holds: a ref or two resolved and lookups in
/// memory (a ref is a small file or a line of `packed-refs`, a commit's header a read in a
/// pack already mapped), never a tree walk or a blob read, which go through [`read_git`].
/// What it saves: the hand-off to a blocking thread and back, two thread wake-ups.
pub async fn read_git_inline<T>(
    state: &Context,
    repo: &RepoRef,
    f: impl FnOnce(&GitRepo) -> ApiResult<T>,
) -> ApiResult<Option<T>> {
    crate::repos::reconcile::read_repo_inline(state, &repo.repo, f).await
}

/// Resolves a revision to its commit, or `RevisionNotFound`.
pub fn resolve(git: &GitRepo, revision: &str) -> ApiResult<GitOid> {
    git.resolve_revision(revision)?
        .ok_or_else(|| ApiError::RevisionNotFound {
            revision: revision.to_owned(),
        })
}
