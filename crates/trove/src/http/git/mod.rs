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
mod process;

use crate::auth::{Access, Caller};
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::git_runtime::GitRuntime;
use crate::repos::{RepoRef, find_readable};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use endpoint::{EndpointError, GitAction, GitEndpoint};
use futures_util::StreamExt;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;
use trove_git::GitRepo;
use trove_git::smart_http::{self, GitCommandSettings, GitProtocol, Service};

/// How long a request waits for a free git process slot before answering 503.
const SLOT_WAIT: Duration = Duration::from_secs(60);

/// The settings of a push by `caller` to `repo`: the hook learns who pushes where from
/// these variables, set here and nowhere else.
fn push_settings(runtime: &GitRuntime, caller: &Caller, repo: &RepoRef) -> GitCommandSettings {
    let mut settings = runtime.settings.clone();
    let (user_id, user_name, site_admin) = match caller {
        Caller::User { user, .. } => (user.id.to_string(), user.name.clone(), user.is_admin),
        Caller::Anonymous => (String::new(), String::new(), false),
    };
    // Rewriting `main` stays a site administrator's act (as before organizations), and
    // only through a credential that administers this repository.
    let is_admin = site_admin && repo.access >= Access::Admin;
    let vars: [(&str, OsString); 7] = [
        ("TROVE_HOOK_EXE", runtime.hook_exe.clone().into_os_string()),
        ("TROVE_DATA_DIR", runtime.data_dir.clone().into_os_string()),
        (hook::ENV_REPO_ID, repo.repo.id.to_string().into()),
        (hook::ENV_USER_ID, user_id.into()),
        (hook::ENV_USER_NAME, user_name.into()),
        (
            hook::ENV_ACCESS,
            if repo.access >= Access::Write {
                "write"
            } else if Access::may_contribute(caller, &repo.repo, repo.access) {
                "contribute"
            } else {
                "read"
            }
            .into(),
        ),
        (hook::ENV_ADMIN, if is_admin { "1" } else { "0" }.into()),
    ];
    settings.hook_env = vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    settings
}

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
    let git_dir = state.git_dir(auth.repo.repo.id);
    let settings = match service {
        Service::UploadPack => state.git.settings.clone(),
        Service::ReceivePack => push_settings(&state.git, &auth.caller, &auth.repo),
    };
    let command =
        smart_http::rpc_command(&settings, service, &git_dir, true, auth.protocol.as_ref());
    let body = process::spawn(process::GitRun {
        command: command.into(),
        preamble: smart_http::advertisement_preamble(service, auth.protocol.as_ref()),
        input: None,
        timeout: state.git.timeout,
        after_exit: None,
        permit: slot(state).await?,
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
    body: Body,
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
    let repo_id = auth.repo.repo.id;
    let git_dir = state.git_dir(repo_id);
    let (settings, limit, after_exit) = match service {
        Service::UploadPack => (
            state.git.settings.clone(),
            state.git.max_fetch_request_bytes,
            None,
        ),
        Service::ReceivePack => {
            let before = ref_targets(&git_dir).await?;
            // Room for the ref update commands before the pack, which git limits itself.
            let limit = state.git.max_push_bytes.saturating_add(16 << 20);
            (
                push_settings(&state.git, &auth.caller, &auth.repo),
                limit,
                Some(after_push(
                    state.clone(),
                    auth.repo.repo.clone(),
                    git_dir.clone(),
                    before,
                    auth.caller.clone(),
                )),
            )
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|declared| declared > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let body = check_start(body).await?;
    let command =
        smart_http::rpc_command(&settings, service, &git_dir, false, auth.protocol.as_ref());
    let body = process::spawn(process::GitRun {
        command: command.into(),
        preamble: Vec::new(),
        input: Some((body, limit)),
        timeout: state.git.timeout,
        after_exit,
        permit: slot(state).await?,
        what: format!("{} repo.id={repo_id}", service.name()),
    })?;
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(service.result_content_type()),
    );
    no_cache(&mut response_headers);
    Ok((StatusCode::OK, response_headers, body).into_response())
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

async fn ref_targets(git_dir: &Path) -> Result<Vec<(String, trove_types::GitOid)>, ApiError> {
    let git_dir = git_dir.to_owned();
    tokio::task::spawn_blocking(move || {
        GitRepo::open(&git_dir)
            .and_then(|git| git.ref_targets())
            .map_err(ApiError::internal)
    })
    .await?
}

/// After receive-pack: when refs moved, the repository was modified (lastModified), its
/// card and files are reindexed for search, and the push is logged with what it changed.
/// A push that moved `refs/pr/N` adds a `commit` event to pull request N (a draft opens),
/// as an API commit to it does.
async fn record_pull_request_commits(
    state: &AppState,
    repo: &trove_db::Repo,
    git_dir: &Path,
    before: &[(String, trove_types::GitOid)],
    after: &[(String, trove_types::GitOid)],
    caller: &Caller,
) {
    let repo_ref = RepoRef {
        repo: repo.clone(),
        access: Access::Read,
        repo_type: repo.repo_type,
    };
    for (name, oid) in after.iter().filter(|r| !before.contains(r)) {
        let Some(num) = crate::repos::discussions::pr_number(name) else {
            continue;
        };
        let result = async {
            let discussion = crate::repos::discussions::find(state, &repo_ref, num).await?;
            let dir = git_dir.to_owned();
            let commit = oid.clone();
            let title = tokio::task::spawn_blocking(move || {
                trove_git::GitRepo::open(&dir)
                    .and_then(|git| git.commit_info(&commit))
                    .map(|info| info.title)
            })
            .await??;
            crate::repos::discussions::record_commit(
                state, caller, &repo_ref, discussion, oid, &title,
            )
            .await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(repo.id = repo.id, pr = num, error = %e, "pull request commit not recorded");
        }
    }
}

fn after_push(
    state: AppState,
    repo: trove_db::Repo,
    git_dir: PathBuf,
    before: Vec<(String, trove_types::GitOid)>,
    caller: Caller,
) -> process::AfterExit {
    let repo_id = repo.id;
    Box::new(move |_success| {
        Box::pin(async move {
            let after = match ref_targets(&git_dir).await {
                Ok(after) => after,
                Err(e) => {
                    tracing::error!(repo.id = repo_id, error = %e, "reading refs after a push");
                    return;
                }
            };
            if after == before {
                return;
            }
            let changed: Vec<&str> = after
                .iter()
                .filter(|r| !before.contains(r))
                .map(|(name, _)| name.as_str())
                .chain(
                    before
                        .iter()
                        .filter(|(name, _)| !after.iter().any(|(n, _)| n == name))
                        .map(|(name, _)| name.as_str()),
                )
                .collect();
            if let Err(e) = state.db.touch_repo(repo_id, now_ms()).await {
                tracing::error!(repo.id = repo_id, error = %e, "recording a push");
            }
            crate::repos::index::reindex_after_write(&state, &repo).await;
            record_pull_request_commits(&state, &repo, &git_dir, &before, &after, &caller).await;
            tracing::info!(
                repo.id = repo_id,
                user = caller.user().map(|u| u.name.as_str()).unwrap_or(""),
                refs = ?changed,
                "push accepted"
            );
        })
    })
}
