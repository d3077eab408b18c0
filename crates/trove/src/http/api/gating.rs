//! Gated repositories: asking for access, and the admins' side (`list_pending_access_requests`,
//! `accept_access_request`, `reject_access_request`, `cancel_access_request`, `grant_access`),
//! plus `auth-check`.

use crate::auth::Caller;
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, repo_type_from_plural};
use crate::repos::{find_readable, gating};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use trove_db::RequestStatus;

type RepoPath = ApiPath<(String, String, String)>;

/// `POST /api/{T}/{repo}/ask-access`, with the form's fields (any JSON object) as the body.
pub async fn ask(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name)): RepoPath,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    let fields = if body.is_empty() {
        None
    } else {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))?;
        Some(value.to_string())
    };
    let status = gating::ask(&state, &caller, &repo, fields.as_deref()).await?;
    Ok(Json(json!({ "status": status.as_str() })))
}

/// `GET /api/{T}/{repo}/user-access-request/{status}`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name, status)): ApiPath<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let status = RequestStatus::parse(&status)
        .ok_or_else(|| ApiError::NotFound(format!("No such request status {status:?}")))?;
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    let requests = gating::list(&state, &caller, &repo, status).await?;
    Ok(Json(Value::Array(
        requests
            .into_iter()
            .map(|r| {
                json!({
                    // One request per user and repository: the user's id names it.
                    "requestId": r.user.id.to_string(),
                    "user": {
                        "user": r.user.name,
                        "fullname": r.user.name,
                        "email": r.user.email,
                        "avatarUrl": "",
                    },
                    "status": r.status.as_str(),
                    "timestamp": format_ms(r.updated_at_ms),
                    "fields": r.fields.as_deref().and_then(|f| serde_json::from_str::<Value>(f).ok()),
                })
            })
            .collect(),
    )))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandleBody {
    user: Option<String>,
    request_id: Option<String>,
    status: String,
    rejection_reason: Option<String>,
}

/// `POST /api/{T}/{repo}/user-access-request/handle`.
pub async fn handle(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name)): RepoPath,
    ApiJson(body): ApiJson<HandleBody>,
) -> ApiResult<Json<Value>> {
    let status = RequestStatus::parse(&body.status)
        .ok_or_else(|| ApiError::bad_request("status must be accepted, rejected or pending"))?;
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    let who = match (body.user, body.request_id) {
        (Some(user), None) => gating::Who::Name(user),
        (None, Some(id)) => gating::Who::Id(
            id.parse()
                .map_err(|_| ApiError::NotFound(format!("No access request {id:?}")))?,
        ),
        _ => return Err(ApiError::bad_request("Give one of user or requestId")),
    };
    gating::decide(
        &state,
        &caller,
        &repo,
        who,
        status,
        body.rejection_reason.as_deref(),
        false,
    )
    .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct GrantBody {
    user: String,
}

/// `POST /api/{T}/{repo}/user-access-request/grant`.
pub async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name)): RepoPath,
    ApiJson(body): ApiJson<GrantBody>,
) -> ApiResult<Json<Value>> {
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    gating::decide(
        &state,
        &caller,
        &repo,
        gating::Who::Name(body.user.clone()),
        RequestStatus::Accepted,
        None,
        true,
    )
    .await?;
    Ok(Json(json!({ "user": body.user, "status": "accepted" })))
}

/// `GET /api/{T}/{repo}/auth-check`: 200 when the caller may download the files.
pub async fn auth_check(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name)): RepoPath,
) -> ApiResult<Json<Value>> {
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    repo.require_content(&caller)?;
    Ok(Json(json!({})))
}

/// `GET /api/{T}/{repo}/auth-check/write`.
pub async fn auth_check_write(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name)): RepoPath,
) -> ApiResult<Json<Value>> {
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    repo.require_write(&caller)?;
    Ok(Json(json!({})))
}
