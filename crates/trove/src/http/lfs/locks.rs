//! The Git LFS locking API under `{repo}.git/info/lfs/locks`, so that `git lfs lock`,
//! `git lfs locks`, `git lfs unlock` and the lock check git-lfs makes before a push work.
//!
//! Locks are advisory, as git-lfs uses them: the client refuses to push changes to files
//! someone else holds; the server keeps the list. Reading the list needs read access;
//! locking, unlocking and the pre-push verification need write access (the spec's "push
//! access"). Breaking another user's lock takes `--force`.
//!
//! Answers and errors are `application/vnd.git-lfs+json` with a `message`, which git-lfs prints.

use super::{LFS_JSON, strip_git};
use crate::auth::Caller;
use crate::clock::{format_ms, now_ms};
use crate::error::ApiError;
use crate::http::extract::{ApiPath, QueryParams, UrlRepoType};
use crate::repos::{RepoRef, find_readable};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use trove_db::{LfsLock, LockOutcome, LockQuery};
use trove_types::RepoPath;

/// Locks per page when the client does not say.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// A result of this API: the value, or an error in git-lfs's shape.
type LockResult = Result<Response, LockError>;

/// An error answered as `{"message": …}`; 401s carry `LFS-Authenticate` so git-lfs asks
/// for credentials.
pub struct LockError(ApiError);

impl From<ApiError> for LockError {
    fn from(e: ApiError) -> Self {
        LockError(e)
    }
}

impl From<trove_db::DbError> for LockError {
    fn from(e: trove_db::DbError) -> Self {
        LockError(e.into())
    }
}

impl IntoResponse for LockError {
    fn into_response(self) -> Response {
        // A redirect (with its Location) and a 429 (with Retry-After) keep the usual answer.
        if matches!(
            self.0,
            ApiError::RepoMoved { .. } | ApiError::TooManyRequests { .. }
        ) {
            return self.0.into_response();
        }
        let status = self.0.status();
        let message = match &self.0 {
            ApiError::RepoNotFound { .. } => "Repository not found".to_owned(),
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error in LFS locks");
                "Internal Error".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = lfs_json(status, json!({ "message": message }));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "lfs-authenticate",
                HeaderValue::from_static("Basic realm=\"Trove\""),
            );
        }
        response
    }
}

fn lfs_json(status: StatusCode, value: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, LFS_JSON)],
        axum::Json(value),
    )
        .into_response()
}

fn lock_json(lock: &LfsLock) -> Value {
    json!({
        "id": lock.id.to_string(),
        "path": lock.path,
        "locked_at": format_ms(lock.locked_at_ms),
        "owner": { "name": lock.owner_name },
    })
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

async fn writable_repo(
    state: &AppState,
    caller: &Caller,
    repo_type: trove_types::RepoType,
    ns: &str,
    name: &str,
) -> Result<RepoRef, ApiError> {
    let repo = find_readable(state, caller, repo_type, ns, strip_git(name)).await?;
    repo.require_write(caller)?;
    Ok(repo)
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
    UrlRepoType(repo_type): UrlRepoType,
    caller: Result<Caller, ApiError>,
    ApiPath((ns, name)): ApiPath<(String, String)>,
    body: Bytes,
) -> LockResult {
    let caller = caller?;
    let repo = writable_repo(&state, &caller, repo_type, &ns, &name).await?;
    let user = caller.require_user()?;
    let req: CreateRequest = parse_body(&body)?;
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
    match outcome {
        LockOutcome::Created(lock) => {
            tracing::info!(repo.id = repo.repo.id, lock.id = lock.id, path = %lock.path, user = %user.name, "lfs lock created");
            Ok(lfs_json(
                StatusCode::CREATED,
                json!({ "lock": lock_json(&lock) }),
            ))
        }
        LockOutcome::AlreadyLocked(lock) => Ok(lfs_json(
            StatusCode::CONFLICT,
            json!({ "lock": lock_json(&lock), "message": "already created lock" }),
        )),
    }
}

/// `GET /locks?path&id&cursor&limit`: list locks (read access).
pub async fn list(
    State(state): State<AppState>,
    UrlRepoType(repo_type): UrlRepoType,
    caller: Result<Caller, ApiError>,
    ApiPath((ns, name)): ApiPath<(String, String)>,
    query: QueryParams,
) -> LockResult {
    let caller = caller?;
    let repo = find_readable(&state, &caller, repo_type, &ns, strip_git(&name)).await?;
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
    let (locks, next) = paginate(locks, limit);
    let mut out = json!({ "locks": locks.iter().map(lock_json).collect::<Vec<_>>() });
    if let Some(next) = next {
        out["next_cursor"] = json!(next);
    }
    Ok(lfs_json(StatusCode::OK, out))
}

/// `POST /locks/verify`: the caller's locks and everyone else's (write access).
pub async fn verify(
    State(state): State<AppState>,
    UrlRepoType(repo_type): UrlRepoType,
    caller: Result<Caller, ApiError>,
    ApiPath((ns, name)): ApiPath<(String, String)>,
    body: Bytes,
) -> LockResult {
    let caller = caller?;
    let repo = writable_repo(&state, &caller, repo_type, &ns, &name).await?;
    let user = caller.require_user()?;
    let req: VerifyRequest = parse_body(&body)?;
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
    let (locks, next) = paginate(locks, limit);
    let (ours, theirs): (Vec<&LfsLock>, Vec<&LfsLock>) =
        locks.iter().partition(|l| l.owner_user_id == user.id);
    let mut out = json!({
        "ours": ours.into_iter().map(lock_json).collect::<Vec<_>>(),
        "theirs": theirs.into_iter().map(lock_json).collect::<Vec<_>>(),
    });
    if let Some(next) = next {
        out["next_cursor"] = json!(next);
    }
    Ok(lfs_json(StatusCode::OK, out))
}

/// `POST /locks/{id}/unlock`: release a lock; someone else's only with `force`.
pub async fn unlock(
    State(state): State<AppState>,
    UrlRepoType(repo_type): UrlRepoType,
    caller: Result<Caller, ApiError>,
    ApiPath((ns, name, id)): ApiPath<(String, String, String)>,
    body: Bytes,
) -> LockResult {
    let caller = caller?;
    let repo = writable_repo(&state, &caller, repo_type, &ns, &name).await?;
    let user = caller.require_user()?;
    let req: UnlockRequest = parse_body(&body)?;
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
        ))
        .into());
    }
    if !state.db.delete_lfs_lock(repo.repo.id, lock_id).await? {
        return Err(not_found().into());
    }
    tracing::info!(repo.id = repo.repo.id, lock.id = lock.id, path = %lock.path, user = %user.name, forced = req.force, "lfs lock released");
    Ok(lfs_json(
        StatusCode::OK,
        json!({ "lock": lock_json(&lock) }),
    ))
}
