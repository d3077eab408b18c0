//! Git LFS for the Hugging Face client and git-lfs: the batch API at
//! `/{prefix}{repo}.git/info/lfs/objects/batch`, verify, and the self-authenticating transfer
//! URLs under `/_lfs/` (basic PUT, multipart parts + completion, download GET); the locking
//! API is in [`locks`].
//!
//! An object becomes referenceable from a repo only after bytes that hash to its oid were
//! received for that repo: knowing a hash never grants another repo's content.

pub mod locks;

use crate::clock::now_secs;
use crate::error::{ApiError, ApiResult, LFS_JSON};
use crate::http::body_limit::declared_length;
use crate::http::extract::{ApiJson, ApiPath, QueryParams, RepoAt};
use crate::http::range;
use crate::repos::content::{self, FileBytes};
use crate::repos::file_ranges::CanSendFiles;
use crate::repos::{RepoRef, lfs as lfs_objects};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use trove_types::Sha256Hex;

/// Objects per batch call (the client sends up to 256).
const MAX_BATCH_OBJECTS: usize = 1000;

#[derive(Deserialize)]
pub struct BatchRequest {
    operation: String,
    #[serde(default)]
    transfers: Vec<String>,
    objects: Vec<BatchObject>,
    hash_algo: Option<String>,
}

#[derive(Deserialize)]
struct BatchObject {
    oid: String,
    size: i64,
}

// The wire types below list their fields in alphabetical order: the order the answers had
// when they were assembled as JSON maps, kept so the bytes on the wire do not change.

/// The answer to a batch request.
#[derive(Serialize)]
pub struct BatchResponse {
    hash_algo: &'static str,
    objects: Vec<ObjectAnswer>,
    transfer: &'static str,
}

/// One object of a batch answer: actions to take, none (the server holds it already), or
/// an error of that object alone.
#[derive(Serialize)]
struct ObjectAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    actions: Option<Actions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ObjectError>,
    /// As the client sent it when it is not a valid oid (in an error).
    oid: String,
    /// As the client sent it in an error, the stored size otherwise.
    size: serde_json::Number,
}

#[derive(Serialize)]
struct ObjectError {
    code: u16,
    message: String,
}

#[derive(Serialize)]
struct Actions {
    #[serde(skip_serializing_if = "Option::is_none")]
    download: Option<Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upload: Option<Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<Action>,
}

/// A request the client makes next. `header` is absent on basic uploads and downloads,
/// `{}` on verify, and for a multipart upload carries `chunk_size` and one URL per part
/// (keyed by part number).
#[derive(Serialize)]
struct Action {
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<BTreeMap<String, String>>,
    href: String,
    /// Seconds the link stays valid (git-lfs asks the batch again for an expired one).
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in: Option<u64>,
}

/// The longest a download link lives, whatever `lfs.signed_url_ttl_secs` says: it is a
/// bearer capability, and one handed out before the repository went private (or its reader
/// lost access) must not outlive the change by long. Uploads keep the configured lifetime
/// (a multipart upload's parts may take hours).
const DOWNLOAD_URL_TTL_SECS: u64 = 3600;

/// The answer to a verify call.
#[derive(Serialize)]
pub struct VerifyResponse {
    oid: Sha256Hex,
    size: u64,
}

/// The (empty) answer to a multipart completion.
#[derive(Serialize)]
pub struct Completed {}

impl ObjectAnswer {
    fn error(oid: &str, size: i64, code: u16, message: String) -> Self {
        ObjectAnswer {
            actions: None,
            error: Some(ObjectError { code, message }),
            oid: oid.to_owned(),
            size: size.into(),
        }
    }

    fn held(oid: &Sha256Hex, size: u64, actions: Option<Actions>) -> Self {
        ObjectAnswer {
            actions,
            error: None,
            oid: oid.to_string(),
            size: size.into(),
        }
    }
}

fn lfs_json<T: Serialize>(value: T) -> Response {
    ([(header::CONTENT_TYPE, LFS_JSON)], Json(value)).into_response()
}

/// `POST {prefix}{repo}.git/info/lfs/objects/batch`, mounted for the three repo types.
pub async fn batch(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiJson(req): ApiJson<BatchRequest>,
) -> ApiResult<Response> {
    if req.hash_algo.as_deref().is_some_and(|a| a != "sha256") {
        return Err(ApiError::bad_request(
            "Only the sha256 hash algorithm is supported",
        ));
    }
    if req.objects.len() > MAX_BATCH_OBJECTS {
        return Err(ApiError::bad_request(format!(
            "At most {MAX_BATCH_OBJECTS} objects per batch"
        )));
    }
    let multipart_ok = req.transfers.iter().any(|t| t == "multipart");
    let objects = match req.operation.as_str() {
        "upload" => {
            // Contributors upload the files of the pull requests they open; what reaches a
            // branch is checked at commit or push time.
            repo.require_contribute(&caller)?;
            let mut out = Vec::with_capacity(req.objects.len());
            for object in req.objects {
                out.push(upload_object(&state, &repo, object, multipart_ok).await?);
            }
            out
        }
        "download" => {
            repo.require_content(&caller)?;
            let mut out = Vec::with_capacity(req.objects.len());
            for object in req.objects {
                out.push(download_object(&state, &repo, object).await?);
            }
            out
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "Unknown LFS operation {other:?}"
            )));
        }
    };
    let multipart = objects.iter().any(|o| {
        o.actions
            .as_ref()
            .and_then(|a| a.upload.as_ref())
            .and_then(|u| u.header.as_ref())
            .is_some_and(|h| h.contains_key("chunk_size"))
    });
    Ok(lfs_json(BatchResponse {
        hash_algo: "sha256",
        objects,
        transfer: if multipart { "multipart" } else { "basic" },
    }))
}

/// The per-object 422 of an object whose oid is not a SHA-256 (the rest of the batch goes on).
fn invalid_oid(object: &BatchObject) -> ObjectAnswer {
    ObjectAnswer::error(
        &object.oid,
        object.size,
        422,
        format!("Invalid oid {:?}", object.oid),
    )
}

async fn upload_object(
    state: &AppState,
    repo: &RepoRef,
    object: BatchObject,
    multipart_ok: bool,
) -> ApiResult<ObjectAnswer> {
    let Ok(oid) = Sha256Hex::parse(&object.oid) else {
        return Ok(invalid_oid(&object));
    };
    let Ok(size) = u64::try_from(object.size) else {
        return Ok(ObjectAnswer::error(
            &object.oid,
            object.size,
            422,
            "Invalid size".into(),
        ));
    };
    let max = state.config.limits.max_lfs_object_bytes;
    if size > max {
        return Ok(ObjectAnswer::error(
            oid.as_str(),
            object.size,
            422,
            format!("Object too large: the limit is {max} bytes"),
        ));
    }
    if state.db.repo_object_size(repo.repo.id, &oid).await? == Some(size) {
        // Already stored and verified for this repo: no actions means "skip the upload".
        return Ok(ObjectAnswer::held(&oid, size, None));
    }
    let base = state.public_url();
    let expires = now_secs() + state.config.lfs.signed_url_ttl_secs;
    let repo_id = repo.repo.id.to_string();
    let size_s = size.to_string();
    let verify = Action {
        header: Some(BTreeMap::new()),
        href: format!("{}.git/info/lfs/verify", repo.url(state)),
        expires_in: None,
    };
    let part_size = state.config.lfs.part_size;
    if multipart_ok && size > state.config.lfs.multipart_threshold {
        let upload_id = state.store.multipart_begin(&oid, size, part_size).await?;
        let fields = [
            "part",
            upload_id.as_str(),
            repo_id.as_str(),
            oid.as_str(),
            size_s.as_str(),
        ];
        let part_sig = state.signer.sign(&fields, expires);
        let query = format!("repo={repo_id}&oid={oid}&size={size}&exp={expires}");
        let mut header = BTreeMap::new();
        header.insert("chunk_size".to_owned(), part_size.to_string());
        let parts = size.div_ceil(part_size);
        for n in 1..=parts {
            header.insert(
                n.to_string(),
                format!("{base}/_lfs/multipart/{upload_id}/{n}?{query}&sig={part_sig}"),
            );
        }
        let complete_fields = [
            "complete",
            upload_id.as_str(),
            repo_id.as_str(),
            oid.as_str(),
            size_s.as_str(),
        ];
        let complete_sig = state.signer.sign(&complete_fields, expires);
        let upload = Action {
            header: Some(header),
            href: format!("{base}/_lfs/multipart/{upload_id}?{query}&sig={complete_sig}"),
            expires_in: Some(state.config.lfs.signed_url_ttl_secs),
        };
        return Ok(ObjectAnswer::held(
            &oid,
            size,
            Some(Actions {
                download: None,
                upload: Some(upload),
                verify: Some(verify),
            }),
        ));
    }
    let sig = state.signer.sign(
        &["upload", repo_id.as_str(), oid.as_str(), size_s.as_str()],
        expires,
    );
    let upload = Action {
        header: None,
        href: format!(
            "{base}/_lfs/upload/{oid}?repo={repo_id}&size={size}&exp={expires}&sig={sig}"
        ),
        expires_in: Some(state.config.lfs.signed_url_ttl_secs),
    };
    Ok(ObjectAnswer::held(
        &oid,
        size,
        Some(Actions {
            download: None,
            upload: Some(upload),
            verify: Some(verify),
        }),
    ))
}

async fn download_object(
    state: &AppState,
    repo: &RepoRef,
    object: BatchObject,
) -> ApiResult<ObjectAnswer> {
    let Ok(oid) = Sha256Hex::parse(&object.oid) else {
        return Ok(invalid_oid(&object));
    };
    let Some(size) = state.db.repo_object_size(repo.repo.id, &oid).await? else {
        return Ok(ObjectAnswer::error(
            oid.as_str(),
            object.size,
            404,
            "Object does not exist".into(),
        ));
    };
    let download = match crate::repos::content::direct_url(state, repo.repo.id, &oid).await? {
        // Redirect mode: the bucket's presigned URL, handed out after the batch's own check.
        Some(href) => Action {
            header: None,
            href,
            expires_in: None,
        },
        None => {
            let ttl = state
                .config
                .lfs
                .signed_url_ttl_secs
                .min(DOWNLOAD_URL_TTL_SECS);
            let expires = now_secs() + ttl;
            let repo_id = repo.repo.id.to_string();
            let sig = state
                .signer
                .sign(&["download", repo_id.as_str(), oid.as_str()], expires);
            Action {
                header: None,
                href: format!(
                    "{}/_lfs/objects/{oid}?repo={repo_id}&exp={expires}&sig={sig}",
                    state.public_url()
                ),
                expires_in: Some(ttl),
            }
        }
    };
    Ok(ObjectAnswer::held(
        &oid,
        size,
        Some(Actions {
            download: Some(download),
            upload: None,
            verify: None,
        }),
    ))
}

/// The signed query of a transfer URL; `fields` must be what was signed.
fn check_signature(state: &AppState, query: &QueryParams, fields: &[&str]) -> ApiResult<()> {
    let denied = || {
        ApiError::Forbidden(
            "This transfer URL is invalid or has expired; ask the batch API for a new one".into(),
        )
    };
    let expires: u64 = query
        .get("exp")
        .and_then(|e| e.parse().ok())
        .ok_or_else(denied)?;
    let sig = query.get("sig").ok_or_else(denied)?;
    if state.signer.verify(fields, expires, sig, now_secs()) {
        Ok(())
    } else {
        Err(denied())
    }
}

fn query_u64(query: &QueryParams, key: &str) -> ApiResult<u64> {
    query
        .get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::bad_request(format!("Missing {key}")))
}

fn parse_oid(oid: &str) -> ApiResult<Sha256Hex> {
    Sha256Hex::parse(oid).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn body_stream(
    body: Body,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Unpin {
    body.into_data_stream().map_err(std::io::Error::other)
}

/// `PUT /_lfs/upload/{oid}?repo&size&exp&sig`: the basic transfer.
pub async fn upload(
    State(state): State<AppState>,
    ApiPath(oid): ApiPath<String>,
    query: QueryParams,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<StatusCode> {
    let repo_id = query_u64(&query, "repo")?;
    let size = query_u64(&query, "size")?;
    check_signature(
        &state,
        &query,
        &["upload", &repo_id.to_string(), &oid, &size.to_string()],
    )?;
    let oid = parse_oid(&oid)?;
    if let Some(len) = declared_length(&headers)
        && len != size
    {
        return Err(ApiError::bad_request(format!(
            "Expected {size} bytes, the request declares {len}"
        )));
    }
    lfs_objects::receive(&state, repo_id as i64, &oid, size, body_stream(body)).await?;
    Ok(StatusCode::OK)
}

/// `PUT /_lfs/multipart/{upload}/{part}?…`: one part; answers its ETag.
pub async fn upload_part(
    State(state): State<AppState>,
    ApiPath((upload_id, part)): ApiPath<(String, u32)>,
    query: QueryParams,
    body: Body,
) -> ApiResult<Response> {
    let repo_id = query_u64(&query, "repo")?.to_string();
    let size = query_u64(&query, "size")?.to_string();
    let oid = query.get("oid").unwrap_or_default().to_owned();
    check_signature(&state, &query, &["part", &upload_id, &repo_id, &oid, &size])?;
    let etag = state
        .store
        .multipart_put_part(&upload_id, part, body_stream(body))
        .await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, HeaderValue::from_str(&etag)?);
    Ok((StatusCode::OK, headers).into_response())
}

/// `POST /_lfs/multipart/{upload}?…`: all parts are in; hash, verify and publish.
pub async fn complete_multipart(
    State(state): State<AppState>,
    ApiPath(upload_id): ApiPath<String>,
    query: QueryParams,
) -> ApiResult<Response> {
    let repo_id = query_u64(&query, "repo")?;
    let size = query_u64(&query, "size")?;
    let oid_text = query.get("oid").unwrap_or_default().to_owned();
    check_signature(
        &state,
        &query,
        &[
            "complete",
            &upload_id,
            &repo_id.to_string(),
            &oid_text,
            &size.to_string(),
        ],
    )?;
    let oid = parse_oid(&oid_text)?;
    lfs_objects::complete_multipart(&state, &upload_id, repo_id as i64, &oid, size).await?;
    Ok(lfs_json(Completed {}))
}

#[derive(Deserialize)]
pub struct VerifyRequest {
    oid: String,
    size: u64,
}

/// `POST {prefix}{repo}.git/info/lfs/verify`, mounted for the three repo types: 200 only
/// when this repo holds the verified object.
pub async fn verify(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<Response> {
    repo.require_contribute(&caller)?;
    let oid = parse_oid(&req.oid)?;
    match state.db.repo_object_size(repo.repo.id, &oid).await? {
        Some(size) if size == req.size => Ok(lfs_json(VerifyResponse { oid, size })),
        Some(size) => Err(ApiError::UnprocessableEntity(format!(
            "Object {oid} has size {size}, not {}",
            req.size
        ))),
        None => Err(ApiError::EntryNotFound {
            message: format!("Object {oid} was not uploaded"),
            commit: None,
        }),
    }
}

/// `GET /_lfs/objects/{oid}?repo&exp&sig`: the download action of the batch API, with the
/// same single-range support as resolve.
pub async fn download(
    State(state): State<AppState>,
    ApiPath(oid): ApiPath<String>,
    query: QueryParams,
    headers: HeaderMap,
    can_send_files: Option<Extension<CanSendFiles>>,
) -> ApiResult<Response> {
    let repo_id = query_u64(&query, "repo")?;
    check_signature(&state, &query, &["download", &repo_id.to_string(), &oid])?;
    let oid = parse_oid(&oid)?;
    let Some(size) = state.db.repo_object_size(repo_id as i64, &oid).await? else {
        return Err(ApiError::EntryNotFound {
            message: format!("Object {oid} does not exist"),
            commit: None,
        });
    };
    let range = range::requested(&headers, size)?;
    let file = FileBytes::Lfs {
        repo_id: repo_id as i64,
        oid: oid.clone(),
        size,
    };
    let wanted = range.map(|r| (r.start, r.end));
    let opened = content::open_with(&state, &file, wanted, None, can_send_files.is_some()).await?;
    let Some(opened) = opened else {
        tracing::error!(oid = %oid, "a linked LFS object is missing from the store");
        return Err(ApiError::EntryNotFound {
            message: format!("Object {oid} is missing from the store"),
            commit: None,
        });
    };
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(opened.len));
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let status = match range {
        Some(r) => {
            out.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&r.content_range(size))?,
            );
            StatusCode::PARTIAL_CONTENT
        }
        None => StatusCode::OK,
    };
    Ok(crate::http::resolve::download_response(status, out, opened))
}
