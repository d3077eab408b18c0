//! Git LFS for the Hugging Face client and git-lfs: the batch API at
//! `/{prefix}{repo}.git/info/lfs/objects/batch`, verify, and the self-authenticating transfer
//! URLs under `/_lfs/` (basic PUT, multipart parts + completion, download GET); the locking
//! API is in [`locks`].
//!
//! An object becomes referenceable from a repo only after bytes that hash to its oid were
//! received for that repo: knowing a hash never grants another repo's content.

pub mod locks;

use crate::auth::Caller;
use crate::clock::{now_ms, now_secs};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, QueryParams};
use crate::repos::{RepoRef, find_readable};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use trove_store::{PutOutcome, StoreError};
use trove_types::{RepoType, Sha256Hex};

pub(crate) const LFS_JSON: &str = "application/vnd.git-lfs+json";
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

pub(crate) fn strip_git(name: &str) -> &str {
    name.strip_suffix(".git").unwrap_or(name)
}

async fn find_repo(
    state: &AppState,
    caller: &Caller,
    repo_type: RepoType,
    ns: &str,
    name: &str,
) -> ApiResult<RepoRef> {
    find_readable(state, caller, repo_type, ns, strip_git(name)).await
}

fn lfs_json(value: Value) -> Response {
    ([(header::CONTENT_TYPE, LFS_JSON)], Json(value)).into_response()
}

pub async fn batch_model(
    state: State<AppState>,
    caller: Caller,
    ApiPath((ns, name)): ApiPath<(String, String)>,
    body: ApiJson<BatchRequest>,
) -> ApiResult<Response> {
    batch(state, caller, RepoType::Model, ns, name, body).await
}

pub async fn batch_dataset(
    state: State<AppState>,
    caller: Caller,
    ApiPath((ns, name)): ApiPath<(String, String)>,
    body: ApiJson<BatchRequest>,
) -> ApiResult<Response> {
    batch(state, caller, RepoType::Dataset, ns, name, body).await
}

pub async fn batch_space(
    state: State<AppState>,
    caller: Caller,
    ApiPath((ns, name)): ApiPath<(String, String)>,
    body: ApiJson<BatchRequest>,
) -> ApiResult<Response> {
    batch(state, caller, RepoType::Space, ns, name, body).await
}

async fn batch(
    State(state): State<AppState>,
    caller: Caller,
    repo_type: RepoType,
    ns: String,
    name: String,
    ApiJson(req): ApiJson<BatchRequest>,
) -> ApiResult<Response> {
    let repo = find_repo(&state, &caller, repo_type, &ns, &name).await?;
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
    let transfer = if objects
        .iter()
        .any(|o| o["actions"]["upload"]["header"]["chunk_size"].is_string())
    {
        "multipart"
    } else {
        "basic"
    };
    Ok(lfs_json(
        json!({ "transfer": transfer, "objects": objects, "hash_algo": "sha256" }),
    ))
}

fn object_error(oid: &str, size: i64, code: u16, message: String) -> Value {
    json!({ "oid": oid, "size": size, "error": { "code": code, "message": message } })
}

async fn upload_object(
    state: &AppState,
    repo: &RepoRef,
    object: BatchObject,
    multipart_ok: bool,
) -> ApiResult<Value> {
    let Ok(oid) = Sha256Hex::parse(&object.oid) else {
        return Ok(object_error(
            &object.oid,
            object.size,
            422,
            format!("Invalid oid {:?}", object.oid),
        ));
    };
    let Ok(size) = u64::try_from(object.size) else {
        return Ok(object_error(
            &object.oid,
            object.size,
            422,
            "Invalid size".into(),
        ));
    };
    let max = state.config.limits.max_lfs_object_bytes;
    if size > max {
        return Ok(object_error(
            oid.as_str(),
            object.size,
            422,
            format!("Object too large: the limit is {max} bytes"),
        ));
    }
    if state.db.repo_object_size(repo.repo.id, &oid).await? == Some(size) {
        // Already stored and verified for this repo: no actions means "skip the upload".
        return Ok(json!({ "oid": oid, "size": size }));
    }
    let base = state.public_url();
    let expires = now_secs() + state.config.lfs.signed_url_ttl_secs;
    let repo_id = repo.repo.id.to_string();
    let size_s = size.to_string();
    let verify =
        json!({ "href": format!("{}.git/info/lfs/verify", repo.url(state)), "header": {} });
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
        let mut header = serde_json::Map::new();
        header.insert("chunk_size".into(), json!(part_size.to_string()));
        let parts = size.div_ceil(part_size);
        for n in 1..=parts {
            header.insert(
                n.to_string(),
                json!(format!(
                    "{base}/_lfs/multipart/{upload_id}/{n}?{query}&sig={part_sig}"
                )),
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
        return Ok(json!({
            "oid": oid, "size": size,
            "actions": {
                "upload": { "href": format!("{base}/_lfs/multipart/{upload_id}?{query}&sig={complete_sig}"), "header": header },
                "verify": verify,
            }
        }));
    }
    let sig = state.signer.sign(
        &["upload", repo_id.as_str(), oid.as_str(), size_s.as_str()],
        expires,
    );
    Ok(json!({
        "oid": oid, "size": size,
        "actions": {
            "upload": { "href": format!("{base}/_lfs/upload/{oid}?repo={repo_id}&size={size}&exp={expires}&sig={sig}") },
            "verify": verify,
        }
    }))
}

async fn download_object(
    state: &AppState,
    repo: &RepoRef,
    object: BatchObject,
) -> ApiResult<Value> {
    let Ok(oid) = Sha256Hex::parse(&object.oid) else {
        return Ok(object_error(
            &object.oid,
            object.size,
            422,
            format!("Invalid oid {:?}", object.oid),
        ));
    };
    let Some(size) = state.db.repo_object_size(repo.repo.id, &oid).await? else {
        return Ok(object_error(
            oid.as_str(),
            object.size,
            404,
            "Object does not exist".into(),
        ));
    };
    let expires = now_secs() + state.config.lfs.signed_url_ttl_secs;
    let repo_id = repo.repo.id.to_string();
    let sig = state
        .signer
        .sign(&["download", repo_id.as_str(), oid.as_str()], expires);
    Ok(json!({
        "oid": oid, "size": size,
        "actions": { "download": {
            "href": format!("{}/_lfs/objects/{oid}?repo={repo_id}&exp={expires}&sig={sig}", state.public_url()),
        } }
    }))
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

fn store_error(e: StoreError) -> ApiError {
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
        StoreError::Body(_) => ApiError::bad_request(format!("The upload was interrupted: {e}")),
        other => ApiError::internal(other),
    }
}

fn body_stream(
    body: Body,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Unpin {
    body.into_data_stream().map_err(std::io::Error::other)
}

/// Records a verified object and links it to the repo it was uploaded for.
async fn publish(state: &AppState, repo_id: i64, oid: &Sha256Hex, size: u64) -> ApiResult<()> {
    let now = now_ms();
    state.db.record_lfs_object(oid, size, now).await?;
    state.db.link_repo_object(repo_id, oid, now).await?;
    Ok(())
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
    let oid = Sha256Hex::parse(&oid).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len != size
    {
        return Err(ApiError::bad_request(format!(
            "Expected {size} bytes, the request declares {len}"
        )));
    }
    let outcome = state
        .store
        .put(&oid, size, body_stream(body))
        .await
        .map_err(store_error)?;
    publish(&state, repo_id as i64, &oid, size).await?;
    tracing::info!(oid = %oid, size_bytes = size, new = matches!(outcome, PutOutcome::Stored), "lfs object uploaded");
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
        .await
        .map_err(store_error)?;
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
    let oid = Sha256Hex::parse(&oid_text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    state
        .store
        .multipart_complete(&upload_id)
        .await
        .map_err(store_error)?;
    publish(&state, repo_id as i64, &oid, size).await?;
    tracing::info!(oid = %oid, size_bytes = size, "lfs multipart upload completed");
    Ok(lfs_json(json!({})))
}

#[derive(Deserialize)]
pub struct VerifyRequest {
    oid: String,
    size: u64,
}

pub async fn verify_model(
    state: State<AppState>,
    caller: Caller,
    ApiPath((ns, name)): ApiPath<(String, String)>,
    body: ApiJson<VerifyRequest>,
) -> ApiResult<Response> {
    verify(state, caller, RepoType::Model, ns, name, body).await
}

pub async fn verify_dataset(
    state: State<AppState>,
    caller: Caller,
    ApiPath((ns, name)): ApiPath<(String, String)>,
    body: ApiJson<VerifyRequest>,
) -> ApiResult<Response> {
    verify(state, caller, RepoType::Dataset, ns, name, body).await
}

pub async fn verify_space(
    state: State<AppState>,
    caller: Caller,
    ApiPath((ns, name)): ApiPath<(String, String)>,
    body: ApiJson<VerifyRequest>,
) -> ApiResult<Response> {
    verify(state, caller, RepoType::Space, ns, name, body).await
}

/// `POST {repo}.git/info/lfs/verify`: 200 only when this repo holds the verified object.
async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    repo_type: RepoType,
    ns: String,
    name: String,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<Response> {
    let repo = find_repo(&state, &caller, repo_type, &ns, &name).await?;
    repo.require_contribute(&caller)?;
    let oid = Sha256Hex::parse(&req.oid).map_err(|e| ApiError::bad_request(e.to_string()))?;
    match state.db.repo_object_size(repo.repo.id, &oid).await? {
        Some(size) if size == req.size => Ok(lfs_json(json!({ "oid": oid, "size": size }))),
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

/// `GET /_lfs/objects/{oid}?repo&exp&sig`: the download action of the batch API.
pub async fn download(
    State(state): State<AppState>,
    ApiPath(oid): ApiPath<String>,
    query: QueryParams,
) -> ApiResult<Response> {
    let repo_id = query_u64(&query, "repo")?;
    check_signature(&state, &query, &["download", &repo_id.to_string(), &oid])?;
    let oid = Sha256Hex::parse(&oid).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Some(size) = state.db.repo_object_size(repo_id as i64, &oid).await? else {
        return Err(ApiError::EntryNotFound {
            message: format!("Object {oid} does not exist"),
            commit: None,
        });
    };
    let (body, len) = match state.store.open_range(&oid, 0, size).await? {
        Some((file, len)) => (Body::from_stream(trove_store::read_chunks(file, len)), len),
        // Held as xorbs only (uploaded through Xet): rebuild the bytes as they stream.
        None => match state.db.xet_file_by_sha256(&oid).await? {
            Some(file) => {
                let (plan, _) = crate::repos::rebuild::plan_file(&state, &file, None).await?;
                let len = plan.length;
                (
                    Body::from_stream(crate::repos::rebuild::stream_plan(
                        (*state.store).clone(),
                        plan,
                    )),
                    len,
                )
            }
            None => {
                return Err(ApiError::EntryNotFound {
                    message: format!("Object {oid} is missing from the store"),
                    commit: None,
                });
            }
        },
    };
    Ok((
        [
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        ],
        body,
    )
        .into_response())
}
