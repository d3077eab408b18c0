//! The one error type of the HTTP boundary and its mapping to the Hub's wire format:
//! status code, `X-Error-Code`, `X-Error-Message` and a JSON `{"error": ...}` body.
//!
//! The client classifies failures by these headers (hub-api.md §1.3), so every variant
//! maps to exactly what `huggingface_hub` expects. [`ApiError::public_parts`] is that
//! mapping; the renderers of each surface (JSON here, LFS JSON, git's plain text, the web's
//! HTML pages) format it. Internal errors are shown to the user only as "Internal Error";
//! their cause travels in the response's [`ErrorReport`] to the router's middleware, which
//! logs it once with the request id.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use trove_types::GitOid;

/// The `X-Error-Message` the client recognises as "your token is bad" (not "repo missing").
pub const INVALID_CREDENTIALS: &str = "Invalid credentials in Authorization header";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The repo does not exist or the caller may not read it; 401 for anonymous callers, 404 otherwise.
    #[error("Repository not found")]
    RepoNotFound { anonymous: bool },
    /// A gated repository whose gate the caller has not passed; 401 anonymous, 403 otherwise.
    /// `message` names the repository and where to ask for access, as the Hub's does.
    #[error("{message}")]
    GatedRepo { anonymous: bool, message: String },
    /// The repository was moved: 307 to the same URL with its new name
    /// (`http::every_request` writes `Location` from the request's path).
    #[error("This repository was moved to {to}")]
    RepoMoved { from: String, to: String },
    /// Too many failed authentications from this address.
    #[error("Too many failed authentication attempts; retry in {retry_after_secs} seconds")]
    TooManyRequests { retry_after_secs: u64 },
    /// An address out of budget for a costly anonymous endpoint.
    #[error("{message}; retry in {retry_after_secs} seconds")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    #[error("Invalid rev id: {revision}")]
    RevisionNotFound { revision: String },
    /// `commit` goes into `X-Repo-Commit` so the client caches the absence at that commit.
    #[error("{message}")]
    EntryNotFound {
        message: String,
        commit: Option<GitOid>,
    },
    #[error("{}", INVALID_CREDENTIALS)]
    InvalidCredentials,
    /// A write or a private resource was asked for without any token.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    /// A webhook URL naming an address deliveries may not go to (loopback, private…): 400
    /// with `X-Error-Code: WebhookTargetNotAllowed`.
    #[error("{0}")]
    WebhookTargetNotAllowed(String),
    /// 409; `url` is echoed in the body (create_repo's exist_ok reads it from there).
    #[error("{message}")]
    Conflict {
        message: String,
        url: Option<String>,
    },
    #[error("The branch was updated since you opened this page. Please refresh and try again.")]
    StaleParentCommit,
    #[error("Payload too large: the limit is {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("Requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    UnprocessableEntity(String),
    /// The server is at capacity (e.g. every git process slot is busy); retrying later works.
    #[error("{0}")]
    Unavailable(String),
    /// A model's queue is full (inference): 503 with `Retry-After`.
    #[error("{message}")]
    ModelBusy {
        message: String,
        retry_after_secs: u64,
    },
    /// A model is loading and the request asked not to wait (inference): 503 with the
    /// Hub's `estimated_time` (seconds) in the body and `Retry-After`.
    #[error("{message}")]
    ModelLoading {
        message: String,
        estimated_time: f64,
    },
    /// A model larger than the inference memory budget, in the Hub's words (403).
    #[error("{0}")]
    ModelTooLarge(String),
    /// An inference request refused: a 400 or a 422 with the `X-Error-Code` of `refusal`.
    #[error("{message}")]
    InferenceRefused { refusal: Refusal, message: String },
    /// The work did not finish in the time allowed (504, as a gateway says it).
    #[error("{0}")]
    Timeout(String),
    /// A request head (request line and headers) over the server's budget (431).
    #[error("Request header fields too large: the limit is {limit} bytes")]
    RequestHeadTooLarge { limit: usize },
    /// A request head, or a body the driver reads, not received in the time allowed (408).
    #[error("Request timeout: the request did not arrive within the {secs} seconds allowed")]
    RequestTimeout { secs: u64 },
    /// Something other than a repository, revision or file does not exist (a user…).
    #[error("{0}")]
    NotFound(String),
    /// A path served, but not with this method (405; the router adds `Allow`).
    #[error("{method} is not allowed on this path")]
    MethodNotAllowed { method: String },
    /// Endpoints we do not serve (yet); never a silent 404.
    #[error("{0}")]
    NotImplemented(String),
    #[error("Internal Error")]
    Internal(#[from] anyhow::Error),
    /// 409 for a collection title its namespace already uses; `slug` is echoed in the body
    /// (`create_collection(exists_ok=True)` reads it from there).
    #[error("A collection with this title already exists: {slug}")]
    CollectionExists { slug: String },
}

/// Why the inference API refuses a request, each with its status and `X-Error-Code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The body is not JSON (400 `InvalidJson`).
    InvalidJson,
    /// A header or parameter this API does not take in this form: `x-wait-for-model: maybe`,
    /// an `aggregation_strategy` the pipeline does not know, a streamed text generation, a
    /// GGUF file that is not there (400 `InvalidRequest`).
    InvalidRequest,
    /// A task this hub does not run, or one the model does not do (400 `UnsupportedTask`).
    UnsupportedTask,
    /// The card or the repository's setting turns inference off (400 `InferenceDisabled`).
    InferenceDisabled,
    /// The repository's files do not make a model: missing, unreadable, or refused when the
    /// model loads (400 `ModelLoadFailed`; remembered for the commit, see `inference`).
    ModelLoadFailed,
    /// `inputs` or a parameter of the wrong type or value, too many tokens or texts
    /// (422 `InvalidInput`, TGI's "Input validation error").
    InvalidInput,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::InvalidJson
            | Refusal::InvalidRequest
            | Refusal::UnsupportedTask
            | Refusal::InferenceDisabled
            | Refusal::ModelLoadFailed => StatusCode::BAD_REQUEST,
            Refusal::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Refusal::InvalidJson => "InvalidJson",
            Refusal::InvalidRequest => "InvalidRequest",
            Refusal::UnsupportedTask => "UnsupportedTask",
            Refusal::InferenceDisabled => "InferenceDisabled",
            Refusal::ModelLoadFailed => "ModelLoadFailed",
            Refusal::InvalidInput => "InvalidInput",
        }
    }
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    /// An inference refusal (see [`Refusal`]).
    pub fn refused(refusal: Refusal, message: impl Into<String>) -> Self {
        ApiError::InferenceRefused {
            refusal,
            message: message.into(),
        }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(err.into())
    }

    /// What the client reads: the error's own text, but for an internal error caused by an
    /// outage of the server's surroundings ([`Outage`]), what to do about it.
    fn public_message(&self) -> String {
        match self {
            ApiError::Internal(err) => match Outage::behind(err) {
                Some(outage) => outage.message().into(),
                None => self.to_string(),
            },
            _ => self.to_string(),
        }
    }

    pub fn entry_not_found(path: &str, commit: Option<GitOid>) -> Self {
        ApiError::EntryNotFound {
            message: format!("Entry not found: {path}"),
            commit,
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::RepoNotFound { anonymous: true } => StatusCode::UNAUTHORIZED,
            ApiError::RepoNotFound { anonymous: false } => StatusCode::NOT_FOUND,
            ApiError::GatedRepo {
                anonymous: true, ..
            } => StatusCode::UNAUTHORIZED,
            ApiError::GatedRepo {
                anonymous: false, ..
            } => StatusCode::FORBIDDEN,
            ApiError::RepoMoved { .. } => StatusCode::TEMPORARY_REDIRECT,
            ApiError::TooManyRequests { .. } | ApiError::RateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::RevisionNotFound { .. } | ApiError::EntryNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            ApiError::InvalidCredentials | ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) | ApiError::WebhookTargetNotAllowed(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::StaleParentCommit => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::UnprocessableEntity(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_)
            | ApiError::ModelBusy { .. }
            | ApiError::ModelLoading { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ModelTooLarge(_) => StatusCode::FORBIDDEN,
            ApiError::InferenceRefused { refusal, .. } => refusal.status(),
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::RequestHeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(err) => match Outage::behind(err) {
                Some(outage) => outage.status(),
                None => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::CollectionExists { .. } => StatusCode::CONFLICT,
        }
    }

    fn error_code(&self) -> Option<&'static str> {
        match self {
            ApiError::RepoNotFound { .. } => Some("RepoNotFound"),
            ApiError::GatedRepo { .. } => Some("GatedRepo"),
            ApiError::RevisionNotFound { .. } => Some("RevisionNotFound"),
            ApiError::EntryNotFound { .. } => Some("EntryNotFound"),
            ApiError::NotImplemented(_) => Some("NotImplemented"),
            ApiError::ModelBusy { .. } => Some("ModelOverloaded"),
            ApiError::ModelTooLarge(_) => Some("ModelTooLarge"),
            ApiError::ModelLoading { .. } => Some("ModelLoading"),
            ApiError::InferenceRefused { refusal, .. } => Some(refusal.code()),
            ApiError::WebhookTargetNotAllowed(_) => Some("WebhookTargetNotAllowed"),
            _ => None,
        }
    }
}

/// A fault of the server's surroundings behind an internal error, of which the client is
/// told what to do (the cause itself is logged only, as for any internal error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outage {
    /// The database could not be reached (`DbError::is_unavailable`): 503, retry later.
    Database,
    /// A disk (or a quota) the server writes to is full: 507, until someone frees space.
    StorageFull,
    /// The object store (S3) could not be reached (`StoreError::Unreachable`): 503, retry
    /// later.
    ObjectStore,
}

impl Outage {
    /// The outage behind `err`, found anywhere in its chain of causes (use cases wrap
    /// database and I/O errors in their own context).
    fn behind(err: &anyhow::Error) -> Option<Outage> {
        err.chain().find_map(|cause| {
            if let Some(trove_store::StoreError::Unreachable { .. }) =
                cause.downcast_ref::<trove_store::StoreError>()
            {
                return Some(Outage::ObjectStore);
            }
            if let Some(db) = cause.downcast_ref::<trove_db::DbError>() {
                if db.is_storage_full() {
                    return Some(Outage::StorageFull);
                }
                return db.is_unavailable().then_some(Outage::Database);
            }
            let io = cause.downcast_ref::<std::io::Error>()?;
            trove_db::is_storage_full_io(io).then_some(Outage::StorageFull)
        })
    }

    fn status(self) -> StatusCode {
        match self {
            Outage::Database | Outage::ObjectStore => StatusCode::SERVICE_UNAVAILABLE,
            Outage::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Outage::Database => "The database is not answering; retry in a few seconds",
            Outage::ObjectStore => "The storage service is not answering; retry in a few seconds",
            Outage::StorageFull => {
                "The server's storage is full; nothing was saved. Its administrator must free space"
            }
        }
    }

    /// `Retry-After` for an outage that passes by itself.
    fn retry_after_secs(self) -> Option<u64> {
        match self {
            Outage::Database | Outage::ObjectStore => Some(5),
            Outage::StorageFull => None,
        }
    }
}

/// Database failures: a uniqueness rule refused the write → 409, a row the operation needs is
/// missing → 404; a database out of reach → 503 (see [`Outage`]); anything else is a fault of
/// ours (500).
impl From<trove_db::DbError> for ApiError {
    fn from(e: trove_db::DbError) -> Self {
        match e {
            trove_db::DbError::Conflict { what } => ApiError::Conflict {
                message: format!("{what} already exists"),
                url: None,
            },
            trove_db::DbError::NotFound { what } => ApiError::NotFound(format!("{what} not found")),
            other => ApiError::internal(other),
        }
    }
}

/// Git failures: a missing ref is a revision that does not exist, an existing one a conflict;
/// anything else (a broken repository, I/O) is a fault of ours.
impl From<trove_git::GitError> for ApiError {
    fn from(e: trove_git::GitError) -> Self {
        match e {
            trove_git::GitError::RefNotFound { name } => {
                ApiError::RevisionNotFound { revision: name }
            }
            trove_git::GitError::AlreadyExists { name } => ApiError::Conflict {
                message: format!("{name} already exists"),
                url: None,
            },
            other => ApiError::internal(other),
        }
    }
}

/// Why a commit wrote nothing, as the client should read it.
impl From<trove_git::CommitError> for ApiError {
    fn from(e: trove_git::CommitError) -> Self {
        use trove_git::CommitError;
        match e {
            CommitError::EntryNotFound { path } => ApiError::EntryNotFound {
                message: format!("A file with this name doesn't exist: {path}"),
                commit: None,
            },
            CommitError::PathConflict { path } => ApiError::bad_request(format!(
                "Path conflict at {path}: a file and a folder cannot share a name"
            )),
            CommitError::RefLocked { .. } => ApiError::Conflict {
                message: "Another update of this branch is in progress; please retry".into(),
                url: None,
            },
            CommitError::Git { source } => source.into(),
            other => ApiError::internal(other),
        }
    }
}

/// Store failures: what the client sent does not match what it announced → 400, a body over
/// its limit → 413, an unknown upload → 404 (ask the batch API again); I/O is ours.
impl From<trove_store::StoreError> for ApiError {
    fn from(e: trove_store::StoreError) -> Self {
        use trove_store::StoreError;
        match e {
            StoreError::HashMismatch { .. }
            | StoreError::SizeMismatch { .. }
            | StoreError::MissingParts { .. }
            | StoreError::InvalidPartNumber { .. }
            | StoreError::InvalidPartSize { .. }
            | StoreError::PartSizeMismatch { .. } => ApiError::bad_request(e.to_string()),
            StoreError::UploadNotFound { .. } => ApiError::EntryNotFound {
                message: format!("{e}; ask the batch API for a new upload"),
                commit: None,
            },
            StoreError::Body(ref body) => match stalled_body(body) {
                Some(secs) => ApiError::RequestTimeout { secs },
                None => ApiError::bad_request(format!("The upload was interrupted: {e}")),
            },
            StoreError::TooLarge { limit } => ApiError::PayloadTooLarge { limit },
            other => ApiError::internal(other),
        }
    }
}

/// No byte of a request body arrived for this long (the connection driver's body reader
/// fails with it; here so that the mapping to 408 below needs nothing from the driver).
#[derive(Debug, thiserror::Error)]
#[error("no byte of the body arrived for {} s", .secs)]
pub struct BodyStalled {
    pub secs: u64,
}

/// The driver's budget of seconds, if a body failed because its client stalled past it
/// ([`BodyStalled`], wrapped in the errors of the layers between).
fn stalled_body(e: &std::io::Error) -> Option<u64> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // Bounded: error chains are a few links long.
    for _ in 0..16 {
        let err = cur?;
        if let Some(stalled) = err.downcast_ref::<BodyStalled>() {
            return Some(stalled.secs);
        }
        // An `io::Error` hides what it wraps from `source()`.
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(e)
    }
}

/// A header value we built is not valid: a fault of ours.
impl From<axum::http::header::InvalidHeaderValue> for ApiError {
    fn from(e: axum::http::header::InvalidHeaderValue) -> Self {
        ApiError::internal(e)
    }
}

/// A blocking task that panicked or was cancelled.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(e)
    }
}

/// `text` as a header value may carry it: visible ASCII and spaces, anything else replaced
/// by `?`, at most 1000 characters.
pub fn header_text(text: &str) -> String {
    text.chars()
        .take(1000)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn header_safe(message: &str) -> HeaderValue {
    HeaderValue::from_str(&header_text(message))
        .unwrap_or_else(|_| HeaderValue::from_static("error"))
}

/// What a client may learn of an error, whatever the format it is rendered in: the status,
/// the Hub's `X-Error-Code`, the message (never an internal cause), the headers that go
/// with some answers (`X-Repo-Commit`, `Retry-After`, `Content-Range`) and the URL a 409
/// echoes.
#[derive(Debug)]
pub struct PublicParts {
    pub status: StatusCode,
    pub code: Option<&'static str>,
    pub message: String,
    pub headers: HeaderMap,
    pub url: Option<String>,
}

/// An error a response was made from, kept in the response's extensions for the router's
/// logging middleware (which logs it with the request id and removes it): every renderer
/// attaches one, none logs.
#[derive(Clone, Debug)]
pub struct ErrorReport {
    pub status: StatusCode,
    pub message: String,
    /// The cause of an internal error, for the log only.
    pub internal: Option<String>,
}

impl ApiError {
    /// The one mapping of an error to what its client sees; the renderers (JSON below,
    /// [`ApiError::into_lfs_response`], git's text, the web's HTML page) only format it.
    pub fn public_parts(&self) -> PublicParts {
        let mut headers = HeaderMap::new();
        match self {
            ApiError::EntryNotFound {
                commit: Some(commit),
                ..
            } => {
                if let Ok(v) = HeaderValue::from_str(commit.as_str()) {
                    headers.insert(HeaderName::from_static("x-repo-commit"), v);
                }
            }
            ApiError::TooManyRequests { retry_after_secs }
            | ApiError::RateLimited {
                retry_after_secs, ..
            }
            | ApiError::ModelBusy {
                retry_after_secs, ..
            } => {
                headers.insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from(*retry_after_secs),
                );
            }
            ApiError::ModelLoading { estimated_time, .. } => {
                headers.insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from(estimated_time.ceil().max(1.0) as u64),
                );
            }
            ApiError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(axum::http::header::CONTENT_RANGE, v);
                }
            }
            ApiError::Internal(err) => {
                if let Some(secs) = Outage::behind(err).and_then(Outage::retry_after_secs) {
                    headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
                }
            }
            _ => {}
        }
        PublicParts {
            status: self.status(),
            code: self.error_code(),
            message: self.public_message(),
            headers,
            url: match self {
                ApiError::Conflict { url, .. } => url.clone(),
                _ => None,
            },
        }
    }

    /// Whether a surface with its own error format (git, git-lfs) still answers this one as
    /// the JSON API does: a redirect (clients follow its `Location`) and a 429 (with
    /// `Retry-After`).
    pub fn keeps_json_answer(&self) -> bool {
        matches!(
            self,
            ApiError::RepoMoved { .. } | ApiError::TooManyRequests { .. }
        )
    }

    /// The report the logging middleware writes for this error.
    pub fn report(&self) -> ErrorReport {
        ErrorReport {
            status: self.status(),
            message: self.public_message(),
            internal: match self {
                ApiError::Internal(err) => Some(format!("{err:#}")),
                _ => None,
            },
        }
    }

    /// Attaches what the router needs after a renderer made `response`: the report to log
    /// and, for a moved repository, where it moved (see [`MovedRepo`]).
    pub fn attach_to(self, response: &mut Response) {
        response.extensions_mut().insert(self.report());
        if let ApiError::RepoMoved { from, to } = self {
            response.extensions_mut().insert(MovedRepo { from, to });
        }
    }

    /// The Git LFS rendering: `{"message": …}` as `application/vnd.git-lfs+json` (git-lfs
    /// prints the message), with `LFS-Authenticate` on a 401 so git-lfs asks for
    /// credentials.
    pub fn into_lfs_response(self) -> Response {
        if self.keeps_json_answer() {
            return self.into_response();
        }
        let parts = self.public_parts();
        let mut response = (
            parts.status,
            [(axum::http::header::CONTENT_TYPE, LFS_JSON)],
            axum::Json(LfsErrorBody {
                message: &parts.message,
            }),
        )
            .into_response();
        if parts.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                HeaderName::from_static("lfs-authenticate"),
                HeaderValue::from_static("Basic realm=\"Trove\""),
            );
        }
        self.attach_to(&mut response);
        response
    }
}

/// The media type of Git LFS API bodies, answers and errors alike.
pub const LFS_JSON: &str = "application/vnd.git-lfs+json";

/// Git LFS's error body: git-lfs prints `message`.
#[derive(serde::Serialize)]
struct LfsErrorBody<'a> {
    message: &'a str,
}

/// The Hub's JSON error body.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slug: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_time: Option<f64>,
}

/// The Hub API rendering: the status, `X-Error-Message`, `X-Error-Code` when there is one,
/// and `{"error": …}` (plus `url` for a 409 that names the existing repository).
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut parts = self.public_parts();
        parts.headers.insert(
            HeaderName::from_static("x-error-message"),
            header_safe(&parts.message),
        );
        if let Some(code) = parts.code {
            parts.headers.insert(
                HeaderName::from_static("x-error-code"),
                HeaderValue::from_static(code),
            );
        }
        let body = ErrorBody {
            error: &parts.message,
            url: parts.url.as_deref(),
            slug: match &self {
                ApiError::CollectionExists { slug } => Some(slug),
                _ => None,
            },
            estimated_time: match &self {
                ApiError::ModelLoading { estimated_time, .. } => Some(*estimated_time),
                _ => None,
            },
        };
        let mut response = (parts.status, parts.headers, axum::Json(body)).into_response();
        self.attach_to(&mut response);
        response
    }
}

/// Marks a 307 for a moved repository: `from` and `to` are `namespace/name`; the router's
/// layer turns it into a `Location` header.
#[derive(Clone, Debug)]
pub struct MovedRepo {
    pub from: String,
    pub to: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn header(resp: &Response, name: &str) -> Option<String> {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    #[test]
    fn repo_not_found_is_401_for_anonymous_and_404_otherwise() {
        let anon = ApiError::RepoNotFound { anonymous: true }.into_response();
        assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&anon, "x-error-code").as_deref(),
            Some("RepoNotFound")
        );
        let auth = ApiError::RepoNotFound { anonymous: false }.into_response();
        assert_eq!(auth.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn invalid_credentials_has_the_exact_message_and_no_code() {
        let resp = ApiError::InvalidCredentials.into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&resp, "x-error-message").as_deref(),
            Some(INVALID_CREDENTIALS)
        );
        assert_eq!(header(&resp, "x-error-code"), None);
    }

    #[test]
    fn entry_not_found_carries_the_commit() {
        let commit = GitOid::parse(&"a".repeat(40)).expect("hex");
        let resp = ApiError::entry_not_found("x.txt", Some(commit)).into_response();
        assert_eq!(header(&resp, "x-repo-commit"), Some("a".repeat(40)));
        assert_eq!(
            header(&resp, "x-error-code").as_deref(),
            Some("EntryNotFound")
        );
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let resp =
            ApiError::internal(anyhow::anyhow!("disk on fire at /secret/path")).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            header(&resp, "x-error-message").as_deref(),
            Some("Internal Error")
        );
    }

    #[test]
    fn a_database_out_of_reach_is_503_with_retry_after_and_its_cause_logged_only() {
        let err: ApiError = trove_db::DbError::Sqlx(sqlx_pool_timeout()).into();
        let report = err.report();
        assert_eq!(report.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            report
                .internal
                .as_deref()
                .is_some_and(|c| c.contains("pool"))
        );
        let resp = err.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&resp, "retry-after").as_deref(), Some("5"));
        assert_eq!(
            header(&resp, "x-error-message").as_deref(),
            Some(super::Outage::Database.message())
        );
        // Wrapped in a use case's context, too.
        let wrapped = anyhow::Error::from(trove_db::DbError::Sqlx(sqlx_pool_timeout()))
            .context("creating the repository");
        assert_eq!(
            ApiError::internal(wrapped).into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        // A query that failed otherwise stays a fault of ours.
        let other: ApiError = trove_db::DbError::Corrupt {
            what: "repo",
            detail: "x".into(),
        }
        .into();
        assert_eq!(
            other.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn a_full_disk_is_507_whatever_wraps_it() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let stored = trove_store::StoreError::Io {
            path: "/data/lfs/ab/cd".into(),
            source: full,
        };
        let err = ApiError::internal(anyhow::Error::from(stored).context("storing the upload"));
        assert_eq!(err.report().status, StatusCode::INSUFFICIENT_STORAGE);
        assert!(
            err.report()
                .internal
                .is_some_and(|c| c.contains("/data/lfs"))
        );
        let resp = err.into_response();
        assert_eq!(resp.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert!(resp.headers().get("retry-after").is_none());
        let message = header(&resp, "x-error-message").unwrap_or_default();
        assert!(
            message.contains("storage is full") && !message.contains("/data"),
            "{message}"
        );
        // The errno itself, as the system call returns it.
        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(
            ApiError::internal(enospc).into_response().status(),
            StatusCode::INSUFFICIENT_STORAGE
        );
        // Other I/O failures stay 500.
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            ApiError::internal(denied).into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn an_object_store_out_of_reach_is_503_and_one_that_refuses_is_500() {
        let unreachable = trove_store::StoreError::Unreachable {
            op: "put",
            key: "xorbs/ab".into(),
            message: "connection refused".into(),
        };
        let resp = ApiError::from(unreachable).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&resp, "retry-after").as_deref(), Some("5"));
        assert_eq!(
            header(&resp, "x-error-message").as_deref(),
            Some(super::Outage::ObjectStore.message())
        );
        let refused = trove_store::StoreError::Backend {
            op: "put",
            key: "xorbs/ab".into(),
            message: "403 Forbidden".into(),
        };
        assert_eq!(
            ApiError::from(refused).into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    fn sqlx_pool_timeout() -> sqlx::Error {
        sqlx::Error::PoolTimedOut
    }

    #[test]
    fn non_ascii_messages_stay_valid_headers() {
        let resp = ApiError::bad_request("chemin invalide: é\n").into_response();
        assert_eq!(
            header(&resp, "x-error-message").as_deref(),
            Some("chemin invalide: ??")
        );
    }
}
