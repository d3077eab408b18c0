//! Small endpoints: health, validate-yaml, the client's housekeeping calls
//! and the 501 answer for everything else we do not implement.

use crate::auth::{Caller, client_ip};
use crate::error::ApiError;
use crate::http::extract::ApiJson;
use crate::repos::card::read_card;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;
use trove_types::RepoType;

pub async fn healthz() -> &'static str {
    "ok"
}

/// An empty agent registry.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentHarnesses {
    standard_env_vars: [(); 0],
    harnesses: BTreeMap<String, ()>,
}

/// Silences the client's once-a-day agent registry fetch (it retries every process on 404).
pub async fn agent_harnesses() -> Json<AgentHarnesses> {
    Json(AgentHarnesses {
        standard_env_vars: [],
        harnesses: BTreeMap::new(),
    })
}

/// A problem with a card, as the client prints it.
#[derive(Serialize)]
struct YamlMessage {
    message: String,
}

/// The answer of validate-yaml.
#[derive(Serialize)]
struct Validation {
    errors: Vec<YamlMessage>,
    warnings: Vec<YamlMessage>,
}

/// Telemetry pings are accepted and dropped: nothing leaves an air-gapped site.
pub async fn telemetry() -> StatusCode {
    StatusCode::OK
}

#[derive(Deserialize)]
pub struct ValidateYaml {
    content: String,
    #[serde(rename = "repoType")]
    repo_type: Option<String>,
}

/// `POST /api/validate-yaml`: always JSON `{errors, warnings}`. Trove never refuses a card
/// (a malformed card must not block a commit): every problem, from YAML that does not parse
/// to a field of the wrong type, comes back as a warning, which the client prints before
/// uploading. Only an unknown `repoType` is an error. Anonymous callers are limited per
/// address (429 with `Retry-After`): the parse is bounded, but free for anyone to repeat.
pub async fn validate_yaml(
    State(state): State<AppState>,
    caller: Caller,
    parts: Parts,
    ApiJson(body): ApiJson<ValidateYaml>,
) -> Response {
    if caller.is_anonymous()
        && let Some(retry_after_secs) = state
            .auth
            .anonymous_validate
            .spend(client_ip(&parts), Instant::now())
    {
        return ApiError::RateLimited {
            message: "Too many anonymous YAML validations from this address; \
                      pass a token (HF_TOKEN)"
                .into(),
            retry_after_secs,
        }
        .into_response();
    }
    let repo_type = match body.repo_type.as_deref() {
        None => RepoType::Model,
        Some(t) => match RepoType::from_singular(t) {
            Some(t) => t,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(Validation {
                        errors: vec![YamlMessage {
                            message: format!("Unknown repoType {t:?}"),
                        }],
                        warnings: Vec::new(),
                    }),
                )
                    .into_response();
            }
        },
    };
    // Bounded (about 30 ms at worst), but CPU work all the same: off the async threads.
    let card = match tokio::task::spawn_blocking(move || read_card(repo_type, &body.content)).await
    {
        Ok(card) => card,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let warnings = card
        .warnings
        .into_iter()
        .map(|message| YamlMessage { message })
        .collect();
    Json(Validation {
        errors: Vec::new(),
        warnings,
    })
    .into_response()
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
