//! Small endpoints: health, validate-yaml, the client's housekeeping calls
//! and the 501 answer for everything else we do not implement.

use super::ApiJson;
use crate::error::ApiError;
use crate::repos::card::parse_card;
use axum::Json;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

pub async fn healthz() -> &'static str {
    "ok"
}

/// Silences the client's once-a-day agent registry fetch (it retries every process on 404).
pub async fn agent_harnesses() -> Json<Value> {
    Json(json!({ "standardEnvVars": [], "harnesses": {} }))
}

/// Telemetry pings are accepted and dropped: nothing leaves an air-gapped site.
pub async fn telemetry() -> StatusCode {
    StatusCode::OK
}

#[derive(Deserialize)]
pub struct ValidateYaml {
    content: String,
    #[serde(rename = "repoType")]
    #[allow(
        dead_code,
        reason = "part of the wire format; card rules per type come with search"
    )]
    repo_type: Option<String>,
}

/// `POST /api/validate-yaml`: always JSON `{errors, warnings}`; 400 when the front matter is
/// not a YAML mapping (the client then refuses to upload the card).
pub async fn validate_yaml(ApiJson(body): ApiJson<ValidateYaml>) -> Response {
    match parse_card(&body.content) {
        Ok(_) => Json(json!({ "errors": [], "warnings": [] })).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "errors": [{ "message": e.to_string() }], "warnings": [] })),
        )
            .into_response(),
    }
}

/// No route matched: under `/api/` that is an endpoint we do not serve (501, never a 404 the
/// client would read as "no such repo"); elsewhere a plain 404.
pub async fn fallback(uri: Uri) -> ApiError {
    if uri.path().starts_with("/api/") {
        ApiError::NotImplemented(format!("{} is not implemented by this server", uri.path()))
    } else {
        ApiError::EntryNotFound {
            message: format!("Not found: {}", uri.path()),
            commit: None,
        }
    }
}
