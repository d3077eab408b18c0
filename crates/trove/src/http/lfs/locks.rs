//! The Git LFS locking API under `{repo}.git/info/lfs/locks`, so that `git lfs lock`,
//! `git lfs locks`, `git lfs unlock` and the lock check git-lfs makes before a push work.
//!
//! Locks are advisory, as git-lfs uses them: the client refuses to push changes to files
//! someone else holds; the server keeps the list. Reading the list needs read access;
//! locking, unlocking and the pre-push verification need write access (the spec's "push
//! access"). Breaking another user's lock takes `--force`.
//!
//! Answers and errors are `application/vnd.git-lfs+json` with a `message`, which git-lfs prints.

use crate::auth::Caller;
use crate::clock::{format_ms, now_ms};
use crate::error::{ApiError, ApiResult, LFS_JSON};
use crate::http::extract::{ApiPath, QueryParams, RepoAt};
use crate::repos::RepoRef;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use trove_db::{LfsLock, LockOutcome, LockQuery};
use trove_types::RepoPath;

/// Locks per page when the client does not say.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// The answer of a handler, errors rendered in git-lfs's shape.
fn lfs_answer(result: ApiResult<Response>) -> Response {
    result.unwrap_or_else(ApiError::into_lfs_response)
}

fn lfs_json(status: StatusCode, value: &impl Serialize) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, LFS_JSON)],
        axum::Json(value),
    )
        .into_response()
}

#[derive(Serialize)]
struct LockOwner {
    name: String,
}

/// A lock as git-lfs reads it.
#[derive(Serialize)]
struct LockJson {
    id: String,
    path: String,
    locked_at: String,
    owner: LockOwner,
}

impl From<&LfsLock> for LockJson {
    fn from(lock: &LfsLock) -> Self {
        LockJson {
            id: lock.id.to_string(),
            path: lock.path.clone(),
            locked_at: format_ms(lock.locked_at_ms),
            owner: LockOwner {
                name: lock.owner_name.clone(),
            },
        }
    }
}

/// `{"lock": …}`, with a `message` when the path was already locked.
#[derive(Serialize)]
struct LockAnswer {
    lock: LockJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
}

#[derive(Serialize)]
struct LockList {
    locks: Vec<LockJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct VerifyAnswer {
    ours: Vec<LockJson>,
    theirs: Vec<LockJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// The `{id}` of `/locks/{id}/unlock`.
#[derive(Deserialize)]
pub struct LockIdParam {
    id: String,
}

/// A body that may be empty (git-lfs sends `{}` or nothing for some calls).
fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
}

#[derive(Deserialize, Default)]
struct RefSpec {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct CreateRequest {
    path: String,
    #[serde(rename = "ref")]
    refspec: Option<RefSpec>,
}

#[derive(Deserialize, Default)]
pub struct VerifyRequest {
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Deserialize, Default)]
pub struct UnlockRequest {
    #[serde(default)]
    force: bool,
}

/// The repository, which the caller must be able to write (the spec's "push access").
fn writable(repo_at: ApiResult<RepoAt>) -> ApiResult<(RepoRef, Caller)> {
    let RepoAt { repo, caller } = repo_at?;
    repo.require_write(&caller)?;
    Ok((repo, caller))
}

fn page(cursor: Option<&str>, limit: Option<u32>) -> Result<(Option<i64>, u32), ApiError> {
    let after = match cursor.filter(|c| !c.is_empty()) {
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("Invalid cursor {c:?}")))?,
        ),
        None => None,
    };
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    Ok((after, limit))
}

/// One page plus the cursor of the next: a page is fetched one lock longer to know.
fn paginate(mut locks: Vec<LfsLock>, limit: u32) -> (Vec<LfsLock>, Option<String>) {
    let next = if locks.len() > limit as usize {
        locks.truncate(limit as usize);
        locks.last().map(|l| l.id.to_string())
    } else {
        None
    };
    (locks, next)
}

/// `POST /locks`: lock a file. 201 with the lock, or 409 with the lock that holds the path.
pub async fn create(
    State(state): State<AppState>,
    repo_at: ApiResult<RepoAt>,
    body: Bytes,
) -> Response {
    lfs_answer(create_lock(&state, repo_at, &body).await)
}

async fn create_lock(
    state: &AppState,
    repo_at: ApiResult<RepoAt>,
    body: &[u8],
) -> ApiResult<Response> {
    let (repo, caller) = writable(repo_at)?;
    let user = caller.require_user()?;
    let req: CreateRequest = parse_body(body)?;
    let path = RepoPath::parse(&req.path)
        .map_err(|e| ApiError::UnprocessableEntity(format!("Invalid path: {e}")))?;
    let ref_name = req.refspec.and_then(|r| r.name);
    let outcome = state
        .db
        .create_lfs_lock(
            repo.repo.id,
            path.as_str(),
            ref_name.as_deref(),
            user.id,
            now_ms(),
        )
        .await?;
    Ok(match outcome {
        LockOutcome::Created(lock) => {
            tracing::info!(repo.id = repo.repo.id, lock.id = lock.id, path = %lock.path, user = %user.name, "lfs lock created");
            lfs_json(
                StatusCode::CREATED,
                &LockAnswer {
                    lock: (&lock).into(),
                    message: None,
                },
            )
        }
        LockOutcome::AlreadyLocked(lock) => lfs_json(
            StatusCode::CONFLICT,
            &LockAnswer {
                lock: (&lock).into(),
                message: Some("already created lock"),
            },
        ),
    })
}

/// `GET /locks?path&id&cursor&limit`: list locks (read access).
pub async fn list(
    State(state): State<AppState>,
    repo_at: ApiResult<RepoAt>,
    query: QueryParams,
) -> Response {
    lfs_answer(list_locks(&state, repo_at, &query).await)
}

async fn list_locks(
    state: &AppState,
    repo_at: ApiResult<RepoAt>,
    query: &QueryParams,
) -> ApiResult<Response> {
    let RepoAt { repo, .. } = repo_at?;
    let limit = match query.get("limit") {
        Some(l) => Some(
            l.parse::<u32>()
                .map_err(|_| ApiError::bad_request(format!("Invalid limit {l:?}")))?,
        ),
        None => None,
    };
    let (after_id, limit) = page(query.get("cursor"), limit)?;
    // An id that is not one of ours (not a number) matches no lock.
    let id = query
        .get("id")
        .filter(|i| !i.is_empty())
        .map(|i| i.parse::<i64>().unwrap_or(-1));
    let locks = state
        .db
        .list_lfs_locks(
            repo.repo.id,
            &LockQuery {
                path: query.get("path").filter(|p| !p.is_empty()),
                id,
                owner_user_id: None,
                after_id,
                limit: limit + 1,
            },
        )
        .await?;
    let (locks, next_cursor) = paginate(locks, limit);
    Ok(lfs_json(
        StatusCode::OK,
        &LockList {
            locks: locks.iter().map(LockJson::from).collect(),
            next_cursor,
        },
    ))
}

/// `POST /locks/verify`: the caller's locks and everyone else's (write access).
pub async fn verify(
    State(state): State<AppState>,
    repo_at: ApiResult<RepoAt>,
    body: Bytes,
) -> Response {
    lfs_answer(verify_locks(&state, repo_at, &body).await)
}

async fn verify_locks(
    state: &AppState,
    repo_at: ApiResult<RepoAt>,
    body: &[u8],
) -> ApiResult<Response> {
    let (repo, caller) = writable(repo_at)?;
    let user = caller.require_user()?;
    let req: VerifyRequest = parse_body(body)?;
    let (after_id, limit) = page(req.cursor.as_deref(), req.limit)?;
    let locks = state
        .db
        .list_lfs_locks(
            repo.repo.id,
            &LockQuery {
                after_id,
                limit: limit + 1,
                ..LockQuery::default()
            },
        )
        .await?;
    let (locks, next_cursor) = paginate(locks, limit);
    let (ours, theirs): (Vec<&LfsLock>, Vec<&LfsLock>) =
        locks.iter().partition(|l| l.owner_user_id == user.id);
    Ok(lfs_json(
        StatusCode::OK,
        &VerifyAnswer {
            ours: ours.into_iter().map(LockJson::from).collect(),
            theirs: theirs.into_iter().map(LockJson::from).collect(),
            next_cursor,
        },
    ))
}

/// `POST /locks/{id}/unlock`: release a lock; someone else's only with `force`.
pub async fn unlock(
    State(state): State<AppState>,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<LockIdParam>>,
    body: Bytes,
) -> Response {
    lfs_answer(unlock_lock(&state, repo_at, path, &body).await)
}

async fn unlock_lock(
    state: &AppState,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<LockIdParam>>,
    body: &[u8],
) -> ApiResult<Response> {
    let (repo, caller) = writable(repo_at)?;
    let ApiPath(LockIdParam { id }) = path?;
    let user = caller.require_user()?;
    let req: UnlockRequest = parse_body(body)?;
    let not_found = || ApiError::EntryNotFound {
        message: format!("Lock {id} not found"),
        commit: None,
    };
    let lock_id: i64 = id.parse().map_err(|_| not_found())?;
    let lock = state
        .db
        .lfs_lock(repo.repo.id, lock_id)
        .await?
        .ok_or_else(not_found)?;
    if lock.owner_user_id != user.id && !req.force {
        return Err(ApiError::Forbidden(format!(
            "{} is locked by {}; unlock with --force to break the lock",
            lock.path, lock.owner_name
        )));
    }
    if !state.db.delete_lfs_lock(repo.repo.id, lock_id).await? {
        return Err(not_found());
    }
    tracing::info!(repo.id = repo.repo.id, lock.id = lock.id, path = %lock.path, user = %user.name, forced = req.force, "lfs lock released");
    Ok(lfs_json(
        StatusCode::OK,
        &LockAnswer {
            lock: (&lock).into(),
            message: None,
        },
    ))
}
