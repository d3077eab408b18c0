//! Git over HTTP: clone, fetch and push of every repository with git's smart HTTP protocol
//! (v0, v1 and v2), served by git's own `upload-pack` and `receive-pack` in `--stateless-rpc`
//! mode.
//!
//! A request is parsed into a [`GitEndpoint`] (what it asks, hence the access it needs),
//! authorized once through `repos::find_readable` (HTTP Basic with any user name and a token
//! as password, or a bearer token), then served by one subprocess streamed both ways
//! ([`process`]). Pushes are checked by git's `pre-receive` hook, which runs this binary
//! ([`hook`]) against the objects git holds in quarantine: nothing is visible until every rule
//! passed and git moved the refs by compare-and-swap.
//!
//! Errors answer `text/plain`, which git prints as `remote: …`; a 401 carries
//! `WWW-Authenticate: Basic` so git asks its credential helpers (or the user) for a token.

pub mod endpoint;
pub mod hook;
pub mod hook_server;
mod process;

use crate::auth::{Access, Caller};
use crate::error::ApiError;
use crate::http::body_limit::declared_length;
use crate::repos::push::{self, Pusher, push_settings};
use crate::repos::{RepoRef, find_readable};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use endpoint::{EndpointError, GitAction, GitEndpoint};
use futures_util::StreamExt;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;
use trove_git::smart_http::{self, GitProtocol, Service};

/// How long a request waits for a free git process slot before answering 503.
const SLOT_WAIT: Duration = Duration::from_secs(60);

/// An error as git shows it: plain text, which git prints after `remote: `.
pub(crate) fn git_error(err: ApiError) -> Response {
    if err.keeps_json_answer() {
        return err.into_response();
    }
    let parts = err.public_parts();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if parts.status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Trove\""),
        );
    }
    let mut response = (parts.status, headers, format!("{}\n", parts.message)).into_response();
    err.attach_to(&mut response);
    response
}

fn no_cache(headers: &mut HeaderMap) {
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=0, must-revalidate"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::EXPIRES,
        HeaderValue::from_static("Fri, 01 Jan 1980 00:00:00 GMT"),
    );
}

/// The parsed request, its repository and the caller, or the answer that refuses it.
struct Authorized {
    endpoint: GitEndpoint,
    repo: RepoRef,
    caller: Caller,
    protocol: Option<GitProtocol>,
}

async fn authorize(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Authorized, ApiError> {
    let endpoint = GitEndpoint::parse(uri.path(), uri.query()).map_err(|e| match e {
        EndpointError::DumbProtocol => ApiError::Forbidden(
            "Only git's smart HTTP protocol is served; please upgrade your git client".into(),
        ),
        EndpointError::NotGit => ApiError::bad_request("Not a git smart HTTP request"),
    })?;
    let protocol = match headers.get("git-protocol") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(GitProtocol::parse)
                .ok_or_else(|| ApiError::bad_request("Invalid Git-Protocol header"))?,
        ),
    };
    let caller = caller?;
    let repo = find_readable(
        state,
        &caller,
        endpoint.repo_type,
        &endpoint.namespace,
        &endpoint.name,
    )
    .await?;
    if endpoint.needs() == Access::Write {
        // Contributors may push to the pull requests they opened; the pre-receive hook
        // holds them to exactly that.
        if !Access::may_contribute(&caller, &repo.repo, repo.access) {
            repo.require_write(&caller)?;
        }
    } else {
        repo.require_content(&caller)?;
    }
    Ok(Authorized {
        endpoint,
        repo,
        caller,
        protocol,
    })
}

async fn slot(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let semaphore = state.git.processes.clone();
    match tokio::time::timeout(SLOT_WAIT, semaphore.acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::Unavailable(format!(
            "The server is busy with other git operations; please retry (no slot within {}s)",
            SLOT_WAIT.as_secs()
        ))),
    }
}

/// `GET {repo}/info/refs?service=…`: the refs advertisement.
pub async fn info_refs(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match advertise(&state, caller, &uri, &headers).await {
        Ok(response) => response,
        Err(e) => git_error(e),
    }
}

async fn advertise(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let auth = authorize(state, caller, uri, headers).await?;
    let GitAction::Advertise(service) = auth.endpoint.action else {
        return Err(ApiError::bad_request("Not a refs advertisement request"));
    };
    let git_dir = crate::repos::reconcile::checked_git_dir(state, auth.repo.repo.id).await?;
    let settings = match service {
        Service::UploadPack => state.git.settings.clone(),
        Service::ReceivePack => push_settings(&state.git, None),
    };
    let command =
        smart_http::rpc_command(&settings, service, &git_dir, true, auth.protocol.as_ref());
    let body = process::spawn(process::GitRun {
        command: command.into(),
        preamble: smart_http::advertisement_preamble(service, auth.protocol.as_ref()),
        input: None,
        timeout: state.git.timeout,
        after_exit: None,
        hook: None,
        permit: slot(state).await?,
        killed: state.git.killed.clone(),
        what: format!(
            "{} --advertise-refs repo.id={}",
            service.name(),
            auth.repo.repo.id
        ),
    })?;
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(service.advertisement_content_type()),
    );
    no_cache(&mut response_headers);
    Ok((StatusCode::OK, response_headers, body).into_response())
}

/// `POST {repo}/git-upload-pack` and `POST {repo}/git-receive-pack`.
pub async fn rpc(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match serve_rpc(&state, caller, &uri, &headers, body).await {
        Ok(response) => response,
        Err(e) => git_error(e),
    }
}

async fn serve_rpc(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    uri: &Uri,
    headers: &HeaderMap,
    mut body: Body,
) -> Result<Response, ApiError> {
    let auth = authorize(state, caller, uri, headers).await?;
    let GitAction::Rpc(service) = auth.endpoint.action else {
        return Err(ApiError::bad_request("Not a git RPC request"));
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != service.request_content_type() {
        return Err(ApiError::UnprocessableEntity(format!(
            "Expected Content-Type {}",
            service.request_content_type()
        )));
    }
    if service == Service::ReceivePack && announces_lone_flush(headers) {
        // Before a push larger than its buffer (`http.postBuffer`, 1 MiB by default), git
        // posts a lone flush-pkt to learn whether its credentials are accepted before it
        // streams the pack. receive-pack reads no command from it, runs no hook and writes
        // nothing, so the answer is that empty result, without starting git or reading refs.
        let bytes = axum::body::to_bytes(body, LONE_FLUSH.len())
            .await
            .map_err(|e| ApiError::bad_request(format!("Could not read the request body: {e}")))?;
        if bytes.as_ref() == LONE_FLUSH {
            return Ok(rpc_answer(service, Body::empty()));
        }
        body = Body::from(bytes);
    }
    let repo_id = auth.repo.repo.id;
    let git_dir = crate::repos::reconcile::checked_git_dir(state, repo_id).await?;
    let (settings, limit, after_exit, hook) = match service {
        Service::UploadPack => (
            state.git.settings.clone(),
            state.git.max_fetch_request_bytes,
            None,
            None,
        ),
        Service::ReceivePack => {
            let before = push::ref_targets(&git_dir).await?;
            // Room for the ref update commands before the pack, which git limits itself.
            let limit = state.git.max_push_bytes.saturating_add(16 << 20);
            let socket = hook_server::socket_pair()?;
            let (watched, commands) = hook_server::watch_commands(body);
            body = watched;
            let check = hook_server::HookCheck {
                commands,
                context: state.context.clone(),
                repo_id,
                pusher: Pusher::of(&auth.caller, &auth.repo),
                git_dir: git_dir.clone(),
                git_checks: trove_git::GitChecks {
                    git_bin: state.git.settings.git_bin.clone(),
                    path_env: state.git.settings.path_env.clone(),
                    scratch: state.git.data_dir.join("tmp"),
                },
                timeout: state.git.timeout,
            };
            let server_end = socket.server;
            let hook = process::HookChannel {
                serve: Box::new(move |pid, input_done| {
                    Box::pin(check.serve(server_end, pid, input_done))
                }),
                child_end: socket.child,
            };
            (
                push_settings(&state.git, Some(hook.child_end.as_raw_fd())),
                limit,
                Some(after_push(
                    state.clone(),
                    auth.repo.repo.clone(),
                    git_dir.clone(),
                    before,
                    auth.caller.clone(),
                )),
                Some(hook),
            )
        }
    };
    if declared_length(headers).is_some_and(|declared| declared > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let body = check_start(body).await?;
    // A fetch request is read whole before git starts, so that one too large once
    // decompressed (a gzip bomb) is a 413 rather than a 200 cut short. A push is streamed:
    // receive-pack bounds the pack itself and reports in its own answer.
    let body = match service {
        Service::UploadPack => spool_request(body, limit, &state.git.data_dir.join("tmp")).await?,
        Service::ReceivePack => body,
    };
    let command =
        smart_http::rpc_command(&settings, service, &git_dir, false, auth.protocol.as_ref());
    let body = process::spawn(process::GitRun {
        command: command.into(),
        preamble: Vec::new(),
        input: Some((body, limit)),
        timeout: state.git.timeout,
        after_exit,
        hook,
        permit: slot(state).await?,
        killed: state.git.killed.clone(),
        what: format!("{} repo.id={repo_id}", service.name()),
    })?;
    Ok(rpc_answer(service, body))
}

/// A flush-pkt: the end of a list of commands, here of an empty one.
const LONE_FLUSH: &[u8] = b"0000";

/// Whether the request declares a plain (not compressed) body of a flush-pkt's length: git's
/// credential probe before a large push.
fn announces_lone_flush(headers: &HeaderMap) -> bool {
    declared_length(headers) == Some(LONE_FLUSH.len() as u64)
        && headers
            .get(header::CONTENT_ENCODING)
            .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// The successful answer of an RPC, streaming `body`.
fn rpc_answer(service: Service, body: Body) -> Response {
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(service.result_content_type()),
    );
    no_cache(&mut response_headers);
    (StatusCode::OK, response_headers, body).into_response()
}

/// Reads the first chunk of a request body before git is started, so that a body that is
/// not a pkt-line stream, or not the gzip it claims to be, gets a clean 400 rather than a
/// broken answer; then hands back the whole body, still streaming.
async fn check_start(body: Body) -> Result<Body, ApiError> {
    let mut data = body.into_data_stream();
    // The four hex digits of the first pkt-line length may arrive split across chunks.
    let mut first = bytes::BytesMut::new();
    while first.len() < 4 {
        match data.next().await {
            None => break,
            Some(Ok(chunk)) => first.extend_from_slice(&chunk),
            Some(Err(e)) => {
                return Err(ApiError::bad_request(format!(
                    "Could not read the request body: {e}"
                )));
            }
        }
    }
    let first = first.freeze();
    let looks_like_pkt_line = first.len() >= 4 && first[..4].iter().all(u8::is_ascii_hexdigit);
    if !looks_like_pkt_line {
        return Err(ApiError::bad_request(
            "The request body is not a git protocol (pkt-line) stream",
        ));
    }
    let rest = futures_util::stream::once(async move { Ok::<_, axum::Error>(first) }).chain(data);
    Ok(Body::from_stream(rest))
}

/// Request bodies up to this size are held in memory; larger ones go to a file.
const SPOOL_IN_MEMORY: usize = 1 << 20;

/// Reads `body` to its end, failing with 413 past `limit` bytes, and hands it back as a new
/// body. Beyond [`SPOOL_IN_MEMORY`] the bytes go to an unnamed file under `spool_dir`
/// (created, then unlinked at once: it disappears with the last handle, even on a crash).
async fn spool_request(body: Body, limit: u64, spool_dir: &Path) -> Result<Body, ApiError> {
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let mut data = body.into_data_stream();
    let mut memory = bytes::BytesMut::new();
    let mut file: Option<tokio::fs::File> = None;
    let mut total: u64 = 0;
    while let Some(chunk) = data.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("Could not read the request body: {e}")))?;
        total += chunk.len() as u64;
        if total > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        match &mut file {
            Some(file) => file.write_all(&chunk).await?,
            None if memory.len() + chunk.len() <= SPOOL_IN_MEMORY => {
                memory.extend_from_slice(&chunk)
            }
            None => {
                tokio::fs::create_dir_all(spool_dir).await?;
                let path = spool_dir.join(format!("git-request-{}", uuid::Uuid::new_v4()));
                let mut opened = tokio::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .await?;
                tokio::fs::remove_file(&path).await?;
                opened.write_all(&memory).await?;
                opened.write_all(&chunk).await?;
                memory.clear();
                file = Some(opened);
            }
        }
    }
    Ok(match file {
        None => Body::from(memory.freeze()),
        Some(mut file) => {
            file.flush().await?;
            file.rewind().await?;
            Body::from_stream(tokio_util::io::ReaderStream::new(file))
        }
    })
}

fn after_push(
    state: AppState,
    repo: trove_db::Repo,
    git_dir: PathBuf,
    before: Vec<(String, trove_types::GitOid)>,
    caller: Caller,
) -> process::AfterExit {
    Box::new(move |_success| {
        Box::pin(async move {
            push::after_push(&state, &repo, &git_dir, &before, &caller).await;
        })
    })
}
