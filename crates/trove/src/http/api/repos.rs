//! `POST /api/repos/create` and `DELETE /api/repos/delete`.

use super::Empty;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiJson;
use crate::repos::{find_readable_exact, lifecycle};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use trove_types::RepoType;

#[derive(Deserialize)]
pub struct CreateRepo {
    name: String,
    /// The namespace; null or absent means the caller's own.
    organization: Option<String>,
    /// Absent means model.
    #[serde(rename = "type")]
    repo_type: Option<String>,
    visibility: Option<String>,
    /// Older clients send `private: bool` instead of `visibility`.
    private: Option<bool>,
    sdk: Option<String>,
}

fn parse_type(t: Option<&str>) -> ApiResult<RepoType> {
    match t {
        None => Ok(RepoType::Model),
        Some(t) => RepoType::from_singular(t)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid repo type {t:?}"))),
    }
}

/// The created repository, as `create_repo` reads it.
#[derive(Serialize)]
pub struct Created {
    url: String,
    name: String,
    id: String,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateRepo>,
) -> ApiResult<Json<Created>> {
    let repo_type = parse_type(body.repo_type.as_deref())?;
    let private = match body.visibility.as_deref() {
        Some("private") => true,
        Some("public") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid visibility {other:?}"
            )));
        }
        None => body.private.unwrap_or(false),
    };
    if repo_type == RepoType::Space {
        match body.sdk.as_deref() {
            Some("gradio" | "streamlit" | "docker" | "static") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid Space SDK {other:?}"
                )));
            }
            None => {
                return Err(ApiError::bad_request(
                    "A Space needs an SDK: gradio, streamlit, docker or static",
                ));
            }
        }
    }
    let user_name = caller.require_user()?.name.clone();
    let namespace = body.organization.unwrap_or(user_name);
    let space_sdk = body.sdk.as_deref().filter(|_| repo_type == RepoType::Space);
    let created = lifecycle::create_seeded(
        &state, &caller, repo_type, &namespace, &body.name, private, space_sdk,
    )
    .await?;
    Ok(Json(Created {
        name: format!("{}/{}", created.repo.namespace, created.repo.name),
        id: created.repo.id.to_string(),
        url: created.url,
    }))
}

#[derive(Deserialize)]
pub struct DeleteRepo {
    name: String,
    organization: Option<String>,
    #[serde(rename = "type")]
    repo_type: Option<String>,
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<DeleteRepo>,
) -> ApiResult<Json<Empty>> {
    let repo_type = parse_type(body.repo_type.as_deref())?;
    let namespace = match body.organization {
        Some(ns) => ns,
        None => caller.require_user()?.name.clone(),
    };
    let repo = find_readable_exact(&state, &caller, repo_type, &namespace, &body.name).await?;
    lifecycle::delete(&state, &caller, &repo).await?;
    Ok(Json(Empty {}))
}
