//! Gated repositories: asking for access, and the admins' side (`list_pending_access_requests`,
//! `accept_access_request`, `reject_access_request`, `cancel_access_request`, `grant_access`),
//! plus `auth-check`.

use super::Empty;
use crate::accounts::profile::{avatar_url, display_name};
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, RepoAt};
use crate::repos::gating;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use trove_db::RequestStatus;

#[derive(Serialize)]
pub struct AskAnswer {
    status: &'static str,
}

/// The `{status}` of `/user-access-request/{status}`.
#[derive(Deserialize)]
pub struct StatusParam {
    status: String,
}

/// An access request as `list_pending_access_requests` and friends read it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestJson {
    /// One request per user and repository: the user's id names it.
    request_id: String,
    user: RequestUser,
    status: &'static str,
    timestamp: String,
    /// The form the user filled in; `null` without one.
    fields: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestUser {
    user: String,
    fullname: String,
    email: Option<String>,
    avatar_url: String,
}

#[derive(Serialize)]
pub struct GrantAnswer {
    user: String,
    status: &'static str,
}

/// `POST /api/{T}/{repo}/ask-access`, with the form's fields (any JSON object) as the body.
pub async fn ask(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    body: axum::body::Bytes,
) -> ApiResult<Json<AskAnswer>> {
    let fields = if body.is_empty() {
        None
    } else {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))?;
        Some(value.to_string())
    };
    let status = gating::ask(&state, &caller, &repo, fields.as_deref()).await?;
    Ok(Json(AskAnswer {
        status: status.as_str(),
    }))
}

/// `GET /api/{T}/{repo}/user-access-request/{status}`.
/// The status is checked before the repository is looked up, as it always was.
pub async fn list(
    State(state): State<AppState>,
    ApiPath(StatusParam { status }): ApiPath<StatusParam>,
    repo_at: ApiResult<RepoAt>,
) -> ApiResult<Json<Vec<AccessRequestJson>>> {
    let status = RequestStatus::parse(&status)
        .ok_or_else(|| ApiError::NotFound(format!("No such request status {status:?}")))?;
    let RepoAt { repo, caller } = repo_at?;
    let requests = gating::list(&state, &caller, &repo, status).await?;
    Ok(Json(
        requests
            .into_iter()
            .map(|r| AccessRequestJson {
                request_id: r.user.id.to_string(),
                user: RequestUser {
                    fullname: display_name(&r.user),
                    avatar_url: avatar_url(state.public_url(), &r.user.name),
                    user: r.user.name,
                    email: r.user.email,
                },
                status: r.status.as_str(),
                timestamp: format_ms(r.updated_at_ms),
                fields: r
                    .fields
                    .as_deref()
                    .and_then(|f| serde_json::from_str::<Value>(f).ok()),
            })
            .collect(),
    ))
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
    repo_at: ApiResult<RepoAt>,
    ApiJson(body): ApiJson<HandleBody>,
) -> ApiResult<Json<Empty>> {
    let status = RequestStatus::parse(&body.status)
        .ok_or_else(|| ApiError::bad_request("status must be accepted, rejected or pending"))?;
    let RepoAt { repo, caller } = repo_at?;
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
    Ok(Json(Empty {}))
}

#[derive(Deserialize)]
pub struct GrantBody {
    user: String,
}

/// `POST /api/{T}/{repo}/user-access-request/grant`.
pub async fn grant(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiJson(body): ApiJson<GrantBody>,
) -> ApiResult<Json<GrantAnswer>> {
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
    Ok(Json(GrantAnswer {
        user: body.user,
        status: RequestStatus::Accepted.as_str(),
    }))
}

/// `GET /api/{T}/{repo}/auth-check`: 200 when the caller may download the files.
pub async fn auth_check(RepoAt { repo, caller }: RepoAt) -> ApiResult<Json<Empty>> {
    repo.require_content(&caller)?;
    Ok(Json(Empty {}))
}

/// `GET /api/{T}/{repo}/auth-check/write`.
pub async fn auth_check_write(RepoAt { repo, caller }: RepoAt) -> ApiResult<Json<Empty>> {
    repo.require_write(&caller)?;
    Ok(Json(Empty {}))
}
