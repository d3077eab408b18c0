//! `PUT /api/{T}/{repo}/settings` (visibility, gating, discussions) and
//! `POST /api/repos/move` (rename, transfer between namespaces). Both need admin rights on
//! the repository; each change is audited.

use super::repo_json::GatedJson;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, RepoAt};
use crate::repos::{find_readable_exact, settings};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use trove_db::Gating;
use trove_types::RepoType;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsBody {
    /// `"auto"`, `"manual"` or `false`.
    gated: Option<Value>,
    private: Option<bool>,
    visibility: Option<String>,
    discussions_disabled: Option<bool>,
    /// Turns hosted inference off (`true`) or back on (`false`) for the repository.
    inference_disabled: Option<bool>,
}

fn parse_gated(value: &Value) -> ApiResult<Gating> {
    match value {
        Value::Bool(false) => Ok(Gating::Off),
        Value::String(s) if s == "auto" => Ok(Gating::Auto),
        Value::String(s) if s == "manual" => Ok(Gating::Manual),
        other => Err(ApiError::bad_request(format!(
            "Invalid gated value {other}: expected \"auto\", \"manual\" or false"
        ))),
    }
}

/// The settings after the change.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsAnswer {
    private: bool,
    gated: GatedJson,
    discussions_disabled: bool,
    inference_disabled: bool,
}

pub async fn update(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiJson(body): ApiJson<SettingsBody>,
) -> ApiResult<Json<SettingsAnswer>> {
    let private = match (body.visibility.as_deref(), body.private) {
        (Some("private"), _) => Some(true),
        (Some("public"), _) => Some(false),
        (Some(other), _) => {
            return Err(ApiError::bad_request(format!(
                "Invalid visibility {other:?}: expected public or private"
            )));
        }
        (None, private) => private,
    };
    let gated = body.gated.as_ref().map(parse_gated).transpose()?;
    let change = settings::Change {
        private,
        gated,
        discussions_disabled: body.discussions_disabled,
        inference_disabled: body.inference_disabled,
    };
    let updated = settings::update(&state, &caller, &repo, change).await?;
    Ok(Json(SettingsAnswer {
        private: updated.private,
        gated: GatedJson::from(updated.gated),
        discussions_disabled: updated.discussions_disabled,
        inference_disabled: updated.inference_disabled,
    }))
}

/// Where the repository now lives.
#[derive(Serialize)]
pub struct Moved {
    url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveBody {
    from_repo: String,
    to_repo: String,
    #[serde(rename = "type")]
    repo_type: Option<String>,
}

pub async fn move_repo(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<MoveBody>,
) -> ApiResult<Json<Moved>> {
    let repo_type = match body.repo_type.as_deref() {
        None => RepoType::Model,
        Some(t) => RepoType::from_singular(t)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid repo type {t:?}")))?,
    };
    let (ns, name) = body
        .from_repo
        .split_once('/')
        .ok_or_else(|| ApiError::bad_request("fromRepo must be namespace/name"))?;
    let repo = find_readable_exact(&state, &caller, repo_type, ns, name).await?;
    let moved = settings::move_repo(&state, &caller, &repo, &body.to_repo).await?;
    Ok(Json(Moved { url: moved }))
}
