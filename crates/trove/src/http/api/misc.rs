//! Small endpoints: health, validate-yaml, the client's housekeeping calls
//! and the 501 answer for everything else we do not implement.

use crate::auth::{Caller, client_ip};
use crate::error::ApiError;
use crate::http::extract::ApiJson;
use crate::repos::card::validate::{Validation, validate};
use crate::state::AppState;
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;
use trove_types::RepoType;

/// `GET /healthz`: the process is alive (load balancers' liveness check).
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the process can serve: the database answers and the store takes writes.
/// 503 naming what is not ready otherwise (the cause is logged, not shown).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let mut not_ready = Vec::new();
    // A draining node (SIGTERM) tells its load balancer at once to send nothing new.
    if state.node.is_draining() {
        not_ready.push("draining");
    }
    // Both asked at once: each is bounded (the pool's acquire time, the store's probe
    // timeout), so the answer comes within the longer of the two.
    let (db, store) = tokio::join!(state.db.ping(), state.store.probe());
    if let Err(e) = db {
        tracing::warn!(error = %e, "readyz: the database does not answer");
        not_ready.push("database");
    }
    if let Err(e) = store {
        tracing::warn!(error = %e, "readyz: the store does not take writes");
        not_ready.push("store");
    }
    if not_ready.is_empty() {
        return "ready".into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        format!("not ready: {}", not_ready.join(", ")),
    )
        .into_response()
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
struct ValidationJson {
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

/// `POST /api/validate-yaml`: the card checked by the Hub's rules
/// (`repos::card::validate`): an unreadable front matter, an unknown `license`, a malformed
/// `model-index` or a field of the wrong type answer 400 with `errors`; a card without
/// metadata gets a warning. `Accept: text/plain` (what `RepoCard.validate` sends) answers
/// the same as bullets (`- Error: …`), JSON otherwise. Commits never go through this: a
/// card refused here is still indexed around its problems. Anonymous callers are limited
/// per address (429 with `Retry-After`): the parse is bounded, but free for anyone to
/// repeat.
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
    let as_text = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/plain"));
    let validation = match body.repo_type.as_deref() {
        None => run_validation(RepoType::Model, body.content).await,
        Some(t) => match RepoType::from_singular(t) {
            Some(t) => run_validation(t, body.content).await,
            None => Ok(Validation {
                errors: vec![format!("Unknown repoType {t:?}")],
                warnings: Vec::new(),
            }),
        },
    };
    let validation = match validation {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let status = if validation.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    if as_text {
        return (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            validation.to_text(),
        )
            .into_response();
    }
    let messages = |list: Vec<String>| -> Vec<YamlMessage> {
        list.into_iter()
            .map(|message| YamlMessage { message })
            .collect()
    };
    (
        status,
        Json(ValidationJson {
            errors: messages(validation.errors),
            warnings: messages(validation.warnings),
        }),
    )
        .into_response()
}

/// Bounded (about 30 ms at worst), but CPU work all the same: off the async threads.
async fn run_validation(repo_type: RepoType, content: String) -> Result<Validation, ApiError> {
    Ok(tokio::task::spawn_blocking(move || validate(repo_type, &content)).await?)
}

/// No route matched: a repo id without a namespace (`gpt2`) is a repository that cannot
/// exist here (`RepoNotFound`, so `repo_exists` and `hf_hub_download` raise the right
/// error); other paths under `/api/` are endpoints we do not serve (501, never a 404 the
/// client would read as "no such repo"); elsewhere a plain 404.
pub async fn fallback(State(state): State<AppState>, mut parts: Parts) -> ApiError {
    let uri = parts.uri.clone();
    if names_repo_without_namespace(uri.path()) {
        return repo_not_found(&state, &mut parts).await;
    }
    if uri.path().starts_with("/api/") {
        ApiError::NotImplemented(format!("{} is not implemented by this server", uri.path()))
    } else {
        ApiError::EntryNotFound {
            message: format!("Not found: {}", uri.path()),
            commit: None,
        }
    }
}

/// A path matched by a route but not by its method: a repo id without a namespace is
/// `RepoNotFound` (`DELETE /api/models/gpt2/like`); anything else a 405 in the Hub's error
/// shape (`X-Error-Message`, `{"error": …}`), with the router's `Allow`.
pub async fn method_not_allowed(State(state): State<AppState>, mut parts: Parts) -> Response {
    if names_repo_without_namespace(parts.uri.path()) {
        return repo_not_found(&state, &mut parts).await.into_response();
    }
    ApiError::MethodNotAllowed {
        method: parts.method.to_string(),
    }
    .into_response()
}

/// `RepoNotFound` as `find_readable` answers it: 401 anonymous, 404 signed in, and a bad
/// token's 401 first.
async fn repo_not_found(state: &AppState, parts: &mut Parts) -> ApiError {
    match Caller::from_request_parts(parts, state).await {
        Ok(caller) => ApiError::RepoNotFound {
            anonymous: caller.is_anonymous(),
        },
        Err(e) => e,
    }
}

/// What follows a repo id in the per-repository routes (API) and file URLs.
const REPO_API_ROUTES: &[&str] = &[
    "revision",
    "commits",
    "commit",
    "tree",
    "paths-info",
    "preupload",
    "refs",
    "branch",
    "tag",
    "like",
    "likers",
    "settings",
    "discussions",
    "ask-access",
    "user-access-request",
    "auth-check",
    "safetensors-metadata",
    "xet-read-token",
    "xet-write-token",
    "lfs-files",
    "super-squash",
];

/// Whether `path` addresses a repository by a bare name: `/api/{t}/{name}`,
/// `/api/{t}/{name}/{route}/…`, or `/{prefix}{name}/resolve/…`.
fn names_repo_without_namespace(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", t, name, rest @ ..] if RepoType::from_plural(t).is_some() && !name.is_empty() => {
            match rest {
                [] => true,
                [route, ..] => REPO_API_ROUTES.contains(route),
            }
        }
        ["datasets" | "spaces", name, "resolve", _, ..] | [name, "resolve", _, ..] => {
            !name.is_empty() && *name != "api"
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::names_repo_without_namespace;

    #[test]
    fn bare_repo_names_are_recognised() {
        for path in [
            "/api/models/gpt2",
            "/api/datasets/squad/revision/main",
            "/api/models/gpt2/commits/main",
            "/api/models/gpt2/like",
            "/api/spaces/demo/tree/main/sub",
            "/gpt2/resolve/main/config.json",
            "/datasets/squad/resolve/main/data.csv",
        ] {
            assert!(names_repo_without_namespace(path), "{path}");
        }
        for path in [
            "/api/whoami-v2",
            "/api/models",
            "/api/models/ns/name/unknown",
            "/api/collections/x",
            "/api/unknown/gpt2",
            "/favicon.ico",
            "/ns/name/resolve/main/f",
        ] {
            assert!(!names_repo_without_namespace(path), "{path}");
        }
    }
}
