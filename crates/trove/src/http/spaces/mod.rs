//! Spaces over HTTP: the app under `/spaces/{ns}/{name}/app/…` (static files, or the
//! reverse proxy to its process), the runtime API of `huggingface_hub` (runtime, restart,
//! pause, sleep time, secrets, variables) and the build and run logs as Server-Sent Events.

pub mod proxy;
pub mod sandbox;
pub mod subdomain;

use crate::error::{ApiError, ApiResult};
use crate::http::api::repo_json::Runtime;
use crate::http::extract::{ApiJson, QueryParams, RepoAt};
use crate::repos::RepoRef;
use crate::spaces::subdomain::PassKind;
use crate::spaces::{self, AppAnswer, Target};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use trove_db::{EnvKind, SpaceEnvEntry};
use trove_types::RepoType;

/// Longest variable or secret name, and value.
const MAX_KEY_LEN: usize = 128;
const MAX_VALUE_BYTES: usize = 64 << 10;
const MAX_DESCRIPTION_LEN: usize = 1000;
/// Longest sleep time one may ask for: a week.
const MAX_SLEEP_SECS: i64 = 7 * 24 * 3600;

fn space(repo: &RepoRef) -> ApiResult<()> {
    if repo.repo_type == RepoType::Space {
        Ok(())
    } else {
        Err(ApiError::NotFound("Only Spaces have a runtime".into()))
    }
}

/// `GET /api/spaces/{repo}/runtime`.
pub async fn runtime(
    State(state): State<AppState>,
    RepoAt { repo, .. }: RepoAt,
) -> ApiResult<Json<Runtime>> {
    space(&repo)?;
    Ok(Json(Runtime::current(&state.spaces, repo.repo.id)))
}

/// `POST /api/spaces/{repo}/restart[?factory=true]`: unpause (admins only) and rebuild.
pub async fn restart(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    query: QueryParams,
) -> ApiResult<Json<Runtime>> {
    space(&repo)?;
    repo.require_write(&caller)?;
    if state.db.space_settings(repo.repo.id).await?.paused {
        repo.require_admin(&caller)?;
    }
    spaces::restart(&state.space_host(), &repo.repo, query.flag("factory")).await?;
    Ok(Json(Runtime::current(&state.spaces, repo.repo.id)))
}

/// `POST /api/spaces/{repo}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
) -> ApiResult<Json<Runtime>> {
    space(&repo)?;
    repo.require_write(&caller)?;
    spaces::pause(&state.space_host(), &repo.repo).await?;
    Ok(Json(Runtime::current(&state.spaces, repo.repo.id)))
}

#[derive(Deserialize)]
pub struct SleepTime {
    seconds: i64,
}

/// `POST /api/spaces/{repo}/sleeptime` `{"seconds": n}`; `-1` (or 0): never sleep.
pub async fn sleeptime(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiJson(body): ApiJson<SleepTime>,
) -> ApiResult<Json<Runtime>> {
    space(&repo)?;
    repo.require_write(&caller)?;
    let seconds = match body.seconds {
        -1 | 0 => None,
        s if (1..=MAX_SLEEP_SECS).contains(&s) => Some(s),
        s => {
            return Err(ApiError::bad_request(format!(
                "seconds must be -1 (never) or between 1 and {MAX_SLEEP_SECS}, not {s}"
            )));
        }
    };
    spaces::set_sleep_time(&state.space_host(), &repo.repo, seconds).await?;
    Ok(Json(Runtime::current(&state.spaces, repo.repo.id)))
}

#[derive(Deserialize)]
pub struct NewEntry {
    key: String,
    value: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
pub struct EntryKey {
    key: String,
}

/// A variable as listed: its value is shown.
#[derive(Serialize)]
pub struct VariableJson {
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(rename = "updatedAt")]
    updated_at: String,
}

/// A secret as listed: never its value.
#[derive(Serialize)]
pub struct SecretJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(rename = "updatedAt")]
    updated_at: String,
}

/// Environment variable names: a letter or `_`, then letters, digits and `_`.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn checked_entry(kind: EnvKind, body: NewEntry) -> ApiResult<SpaceEnvEntry> {
    if !valid_key(&body.key) {
        return Err(ApiError::bad_request(format!(
            "key must be a letter or _ followed by letters, digits or _ (at most {MAX_KEY_LEN})"
        )));
    }
    let value = body.value.unwrap_or_default();
    if value.len() > MAX_VALUE_BYTES || value.contains('\0') {
        return Err(ApiError::bad_request(format!(
            "value must be at most {MAX_VALUE_BYTES} bytes, without NUL"
        )));
    }
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_LEN)
    {
        return Err(ApiError::bad_request(format!(
            "description must be at most {MAX_DESCRIPTION_LEN} characters"
        )));
    }
    Ok(SpaceEnvEntry {
        kind,
        key: body.key,
        value,
        description: body.description,
        updated_at_ms: crate::clock::now_ms(),
    })
}

async fn variables_of(state: &AppState, repo_id: i64) -> ApiResult<BTreeMap<String, VariableJson>> {
    Ok(state
        .db
        .space_env(repo_id)
        .await?
        .into_iter()
        .filter(|e| e.kind == EnvKind::Variable)
        .map(|e| {
            (
                e.key,
                VariableJson {
                    value: e.value,
                    description: e.description,
                    updated_at: crate::clock::format_ms(e.updated_at_ms),
                },
            )
        })
        .collect())
}

/// `GET /api/spaces/{repo}/variables`.
pub async fn get_variables(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
) -> ApiResult<Json<BTreeMap<String, VariableJson>>> {
    space(&repo)?;
    repo.require_write(&caller)?;
    Ok(Json(variables_of(&state, repo.repo.id).await?))
}

/// `POST /api/spaces/{repo}/variables` `{key, value, description?}`; the app restarts.
pub async fn add_variable(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiJson(body): ApiJson<NewEntry>,
) -> ApiResult<Json<BTreeMap<String, VariableJson>>> {
    space(&repo)?;
    repo.require_write(&caller)?;
    let entry = checked_entry(EnvKind::Variable, body)?;
    state.db.put_space_env(repo.repo.id, &entry).await?;
    spaces::schedule_build(&state.space_host(), &repo.repo);
    Ok(Json(variables_of(&state, repo.repo.id).await?))
}

/// `DELETE /api/spaces/{repo}/variables` `{key}`.
pub async fn delete_variable(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiJson(body): ApiJson<EntryKey>,
) -> ApiResult<Json<BTreeMap<String, VariableJson>>> {
    space(&repo)?;
    repo.require_write(&caller)?;
    if state
        .db
        .delete_space_env(repo.repo.id, EnvKind::Variable, &body.key)
        .await?
    {
        spaces::schedule_build(&state.space_host(), &repo.repo);
    }
    Ok(Json(variables_of(&state, repo.repo.id).await?))
}

/// `GET /api/spaces/{repo}/secrets`: names and descriptions, never values.
pub async fn get_secrets(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
) -> ApiResult<Json<BTreeMap<String, SecretJson>>> {
    space(&repo)?;
    repo.require_write(&caller)?;
    Ok(Json(
        state
            .db
            .space_env(repo.repo.id)
            .await?
            .into_iter()
            .filter(|e| e.kind == EnvKind::Secret)
            .map(|e| {
                (
                    e.key,
                    SecretJson {
                        description: e.description,
                        updated_at: crate::clock::format_ms(e.updated_at_ms),
                    },
                )
            })
            .collect(),
    ))
}

/// `POST /api/spaces/{repo}/secrets` `{key, value, description?}`; the app restarts.
pub async fn add_secret(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiJson(body): ApiJson<NewEntry>,
) -> ApiResult<Json<crate::http::api::Empty>> {
    space(&repo)?;
    repo.require_write(&caller)?;
    let entry = checked_entry(EnvKind::Secret, body)?;
    state.db.put_space_env(repo.repo.id, &entry).await?;
    spaces::schedule_build(&state.space_host(), &repo.repo);
    Ok(Json(crate::http::api::Empty {}))
}

/// `DELETE /api/spaces/{repo}/secrets` `{key}`.
pub async fn delete_secret(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiJson(body): ApiJson<EntryKey>,
) -> ApiResult<Json<crate::http::api::Empty>> {
    space(&repo)?;
    repo.require_write(&caller)?;
    if state
        .db
        .delete_space_env(repo.repo.id, EnvKind::Secret, &body.key)
        .await?
    {
        spaces::schedule_build(&state.space_host(), &repo.repo);
    }
    Ok(Json(super::api::Empty {}))
}

/// Most variables or secrets a duplicate may be given.
const MAX_DUPLICATE_ENTRIES: usize = 100;

/// The body of `duplicate_repo` (and of the older `duplicate_space`, which sent `private`).
/// `hardware`, `volumes` and `resourceGroupId` are accepted and ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DuplicateBody {
    repository: String,
    visibility: Option<String>,
    private: Option<bool>,
    sleep_time_seconds: Option<i64>,
    secrets: Option<Vec<NewEntry>>,
    variables: Option<Vec<NewEntry>>,
}

#[derive(Serialize)]
pub struct DuplicatedJson {
    url: String,
}

/// `POST /api/{type}s/{repo}/duplicate`: a copy of the repository (its branches, tags and
/// files; a Space's variables but not its secrets) at `repository`.
pub async fn duplicate(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiJson(body): ApiJson<DuplicateBody>,
) -> ApiResult<Json<DuplicatedJson>> {
    let to = trove_types::RepoId::parse(&body.repository)
        .map_err(|e| ApiError::bad_request(format!("repository: {e}")))?;
    let private = match body.visibility.as_deref() {
        None => body.private,
        Some("public") => Some(false),
        Some("private") => Some(true),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "visibility must be 'public' or 'private', not {other:?}"
            )));
        }
    };
    let is_space = repo.repo_type == RepoType::Space;
    let sleep_time_secs = match body.sleep_time_seconds {
        None => None,
        Some(-1 | 0) => Some(None),
        Some(s) if is_space && (1..=MAX_SLEEP_SECS).contains(&s) => Some(Some(s)),
        Some(s) => {
            return Err(ApiError::bad_request(format!(
                "sleepTimeSeconds must be -1 (never) or between 1 and {MAX_SLEEP_SECS}, not {s}"
            )));
        }
    };
    let entries = |kind: EnvKind, list: Option<Vec<NewEntry>>| -> ApiResult<Vec<SpaceEnvEntry>> {
        let list = list.unwrap_or_default();
        if list.len() > MAX_DUPLICATE_ENTRIES {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_DUPLICATE_ENTRIES} secrets and {MAX_DUPLICATE_ENTRIES} variables"
            )));
        }
        if !list.is_empty() && !is_space {
            return Err(ApiError::bad_request(
                "Only Spaces have secrets and variables",
            ));
        }
        list.into_iter().map(|e| checked_entry(kind, e)).collect()
    };
    let request = spaces::duplicate::DuplicateRequest {
        to,
        private,
        sleep_time_secs,
        variables: entries(EnvKind::Variable, body.variables)?,
        secrets: entries(EnvKind::Secret, body.secrets)?,
    };
    let created = spaces::duplicate::duplicate(&state, &caller, &repo, request).await?;
    Ok(Json(DuplicatedJson { url: created.url }))
}

/// `GET /api/spaces/{repo}/logs/{build|run}`: the kept lines, then new ones as they come,
/// as Server-Sent Events `data: {"data": line, "timestamp": …}`.
pub async fn logs(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    axum::extract::Path(params): axum::extract::Path<BTreeMap<String, String>>,
) -> ApiResult<Response> {
    space(&repo)?;
    repo.require_content(&caller)?;
    let which = params.get("kind").map(String::as_str).unwrap_or("");
    let Some(slot) = state.spaces.existing_slot(repo.repo.id) else {
        return Err(ApiError::NotFound("This Space has no logs yet".into()));
    };
    let log = match which {
        "build" => slot.build_log.clone(),
        "run" => slot.run_log.clone(),
        _ => return Err(ApiError::NotFound("Logs are 'build' or 'run'".into())),
    };
    let (kept, live) = log.follow();
    let event = |l: crate::spaces::logs::LogLine| {
        let data = serde_json::json!({"data": l.text, "timestamp": l.timestamp});
        Ok::<_, Infallible>(Event::default().data(data.to_string()))
    };
    let kept = futures_util::stream::iter(kept.into_iter().map(event));
    let live = tokio_stream_of(live).map(event);
    // Followed until the client leaves, or until the hub stops accepting connections: the
    // drain waits for no stream that would never end (EventSource reconnects).
    let closing = state.node.closing().clone().cancelled_owned();
    Ok(Sse::new(kept.chain(live).take_until(closing))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// New log lines as a stream; a reader too slow to keep up skips what it missed.
fn tokio_stream_of(
    rx: tokio::sync::broadcast::Receiver<crate::spaces::logs::LogLine>,
) -> impl futures_util::Stream<Item = crate::spaces::logs::LogLine> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(line) => return Some((line, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// `/spaces/{ns}/{name}/app` → the app's root, with the slash relative URLs need.
pub async fn app_root(RepoAt { repo, .. }: RepoAt) -> ApiResult<Redirect> {
    space(&repo)?;
    Ok(Redirect::temporary(&format!(
        "{}/",
        spaces::app_prefix(&repo.repo)
    )))
}

/// Any request under `/spaces/{ns}/{name}/app/`: the Space's files or its app, for whoever
/// may read the Space's files (a private Space does not exist for anyone else), confined to
/// an opaque origin (see [`sandbox`]): on the hub's origin, an app must not act as the hub.
///
/// A sandboxed app's own requests carry no cookie of the hub, so a member opening a Space
/// only members may read is sent to `…/app/.trove/{pass}/…`: a pass for this Space and this
/// user, read-only, that relative URLs under it carry along.
pub async fn app(
    State(state): State<AppState>,
    found: Result<RepoAt, ApiError>,
    request: Request,
) -> ApiResult<Response> {
    // Before anything about the caller: a preflight carries no credentials, and this answer
    // is the same for every path.
    if let Some(answer) = sandbox::preflight(request.method(), request.headers()) {
        return Ok(answer);
    }
    let path = request.uri().path().to_owned();
    // The route matched `{ns}/{name}` ignoring case; the rest follows the `/app` segment.
    let mut segments = path.splitn(6, '/');
    let (ns, name) = (segments.nth(2), segments.next());
    let rest = segments
        .nth(1)
        .map(|r| format!("/{r}"))
        .unwrap_or_else(|| "/".into());
    let asked = request.headers().clone();
    let (repo, rest) = match (sandbox::split_pass(&rest), ns, name) {
        // A sandboxed app's request: the pass, not the (absent) cookie, says who asks.
        (Some((pass, rest)), Some(ns), Some(name)) => {
            (with_pass(&state, ns, name, pass).await?, rest.to_owned())
        }
        _ => {
            let RepoAt { repo, caller } = found?;
            space(&repo)?;
            repo.require_content(&caller)?;
            if let Some(user) = caller.user()
                && sandbox::is_navigation(&asked)
                && !readable_by_anyone(&state, &repo).await?
            {
                let pass = spaces::subdomain::issue(
                    &state.signer,
                    PassKind::Path,
                    repo.repo.id,
                    user.id,
                    subdomain::now_secs(),
                );
                let query = request
                    .uri()
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                let to = format!(
                    "{}{}{rest}{query}",
                    spaces::app_prefix(&repo.repo),
                    sandbox::pass_segment(&pass)
                );
                let mut response = Redirect::to(&to).into_response();
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return Ok(response);
            }
            (repo, rest)
        }
    };
    let mut response = serve_app(&state, &repo, request, &rest).await?;
    sandbox::confine(&asked, &mut response);
    Ok(response)
}

/// Whether an anonymous visitor may read the Space (then its app needs no pass).
async fn readable_by_anyone(state: &AppState, repo: &RepoRef) -> ApiResult<bool> {
    let access =
        crate::repos::access_to(state, &crate::auth::Caller::Anonymous, &repo.repo).await?;
    Ok(access >= crate::auth::Access::Read)
}

/// The Space `{ns}/{name}` as the user a path pass names sees it: 404 for a pass that is
/// forged, expired, for another Space, or of a user who may no longer read it (asked again
/// on every request).
async fn with_pass(state: &AppState, ns: &str, name: &str, pass: &str) -> ApiResult<RepoRef> {
    let not_found = || ApiError::NotFound("No Space is served at this address".into());
    let space_id = pass
        .split('.')
        .next()
        .and_then(|id| id.parse::<i64>().ok())
        .ok_or_else(not_found)?;
    let now = subdomain::now_secs();
    let user_id = spaces::subdomain::check(&state.signer, PassKind::Path, pass, space_id, now)
        .ok_or_else(not_found)?;
    let caller = subdomain::user_caller(state, user_id).await?;
    let repo = crate::repos::find_readable(state, &caller, RepoType::Space, ns, name)
        .await
        .map_err(|_| not_found())?;
    if repo.repo.id != space_id || repo.require_content(&caller).is_err() {
        return Err(not_found());
    }
    Ok(repo)
}

/// Answers `request` for `rest` (a path from the app's root) of the Space's app: its
/// static files, its proxied process, or the page of a Space that is not serving. The
/// caller's right to read the Space is already checked.
pub async fn serve_app(
    state: &AppState,
    repo: &RepoRef,
    request: Request,
    rest: &str,
) -> ApiResult<Response> {
    let prefix = spaces::app_prefix(&repo.repo);
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    match state.spaces.app_request(&state.space_host(), repo.repo.id) {
        AppAnswer::Serve(Target::Static { dir, index }) => serve_static(&dir, rest, &index).await,
        AppAnswer::Serve(Target::Proxy { port, keep_prefix }) => {
            let upstream = if keep_prefix {
                format!("{prefix}{rest}{query}")
            } else {
                format!("{rest}{query}")
            };
            let proto = if state.public_url().starts_with("https://") {
                "https"
            } else {
                "http"
            };
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            let ends = state.spaces.connection_token(repo.repo.id);
            proxy::forward(request, port, &upstream, peer, proto, ends).await
        }
        AppAnswer::Waking => Ok(crate::http::web::space::status_page(repo, None)),
        AppAnswer::Down(view) => Ok(crate::http::web::space::status_page(repo, Some(&view))),
    }
}

/// A file of a static Space; `index` for the root (and for a folder, its `index.html`).
async fn serve_static(dir: &std::path::Path, rest: &str, index: &str) -> ApiResult<Response> {
    let not_found = || ApiError::NotFound("No such file in this Space".into());
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| not_found())?;
    let mut path = dir.to_path_buf();
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    for segment in &segments {
        if *segment == "." || *segment == ".." || segment.contains('\\') || segment.contains('\0') {
            return Err(not_found());
        }
        path.push(segment);
    }
    if segments.is_empty() {
        path = dir.join(index);
    } else if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir()) {
        path.push("index.html");
    }
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| not_found())?;
    let meta = file.metadata().await?;
    if !meta.is_file() {
        return Err(not_found());
    }
    let mime = content_type(&path);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
    Ok(response)
}

fn content_type(path: &std::path::Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_environment_names() {
        assert!(valid_key("HF_TOKEN"));
        assert!(valid_key("_x1"));
        assert!(!valid_key("1X"));
        assert!(!valid_key("A-B"));
        assert!(!valid_key(""));
        assert!(!valid_key("A=B"));
        assert!(!valid_key(&"A".repeat(MAX_KEY_LEN + 1)));
    }
}
