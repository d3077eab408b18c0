//! The CAS service under `{public}/xet`: what `hf_xet` calls with the token the Hub gave it.
//!
//! - `POST /v1/xorbs/default/{hash}`: validate and store a xorb.
//! - `POST /v1/shards` (and `/v2/shards`, streaming progress): register files whose every term checks out against stored xorbs,
//!   after rebuilding each new file and computing its SHA-256 ourselves.
//! - `GET /v1|v2/reconstructions/{file}`: the terms and signed fetch URLs for a file (or a
//!   `Range` of it) the token's repository may read.
//! - `GET /fetch/{xorb}`: stored xorb bytes, only within the signed range.
//! - `HEAD` on xorbs and files; the global-dedup query answers 404 (not offered yet).

use super::token::CasGrant;
use crate::clock::{now_ms, now_secs};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, QueryParams};
use crate::http::resolve::parse_range;
use crate::repos::rebuild::{self, plan_file};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io;
use std::time::Duration;
use tokio::io::AsyncSeekExt;
use trove_db::{XetFile, XorbRecord};
use trove_store::StoreError;
use trove_types::Sha256Hex;
use trove_xet::XetHash;
use trove_xet::plan::{self, Plan};
use trove_xet::shard::{self, ShardError, ShardFile};
use trove_xet::xorb::{self, XorbError, XorbIndex};

/// How long a signed fetch URL in a reconstruction stays valid.
const FETCH_URL_TTL_SECS: u64 = 3600;
/// The only key prefix the protocol uses.
const PREFIX: &str = "default";

fn parse_hash(hex: &str) -> ApiResult<XetHash> {
    XetHash::parse(hex).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn check_prefix(prefix: &str) -> ApiResult<()> {
    if prefix == PREFIX {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Unknown key prefix {prefix:?}"
        )))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)
}

/// `POST /v1/xorbs/default/{hash}`.
pub async fn upload_xorb(
    State(state): State<AppState>,
    grant: CasGrant,
    ApiPath((prefix, hash)): ApiPath<(String, String)>,
    body: Body,
) -> ApiResult<Json<Value>> {
    grant.require_write()?;
    check_prefix(&prefix)?;
    let hash = parse_hash(&hash)?;
    let raw = hash.to_bytes();
    if state.db.xorb_stored_bytes(&raw).await?.is_some() {
        return Ok(Json(json!({ "was_inserted": false })));
    }
    let staged = state
        .store
        .stage_xorb(
            body.into_data_stream().map_err(io::Error::other),
            xorb::MAX_XORB_UPLOAD_BYTES,
        )
        .await
        .map_err(|e| match e {
            StoreError::TooLarge { limit } => ApiError::PayloadTooLarge { limit },
            StoreError::Body(e) => {
                ApiError::bad_request(format!("The upload was interrupted: {e}"))
            }
            other => ApiError::internal(other),
        })?;
    let path = staged.path().to_owned();
    let index = blocking(move || -> Result<XorbIndex, XorbError> {
        xorb::validate(std::fs::File::open(&path)?, &hash)
    })
    .await?
    .map_err(|e| match e {
        XorbError::Io(e) => ApiError::internal(e),
        refused => {
            tracing::warn!(xorb = %hash, error = %refused, "xet.xorb_refused");
            ApiError::bad_request(format!("Invalid xorb: {refused}"))
        }
    })?;
    state
        .store
        .publish_xorb(staged, &hash.hex(), index.stored_len())
        .await?;
    let record = XorbRecord {
        stored_bytes: index.stored_len(),
        raw_bytes: index.raw_len(),
        num_chunks: index.num_chunks(),
        chunk_index: index.encode(),
    };
    let inserted = state.db.record_xorb(&raw, &record, now_ms()).await?;
    tracing::info!(xorb = %hash, chunks = record.num_chunks, bytes = record.stored_bytes, inserted, "xet.xorb_stored");
    Ok(Json(json!({ "was_inserted": inserted })))
}

/// `HEAD /v1/xorbs/default/{hash}`.
pub async fn head_xorb(
    State(state): State<AppState>,
    _grant: CasGrant,
    ApiPath((prefix, hash)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    check_prefix(&prefix)?;
    let hash = parse_hash(&hash)?;
    match state.db.xorb_stored_bytes(&hash.to_bytes()).await? {
        Some(n) => Ok(([(header::CONTENT_LENGTH, n.to_string())], StatusCode::OK).into_response()),
        None => Ok(StatusCode::NOT_FOUND.into_response()),
    }
}

/// `POST /v1/shards`: register every file of the shard, or none.
pub async fn upload_shard(
    State(state): State<AppState>,
    grant: CasGrant,
    body: Body,
) -> ApiResult<Json<Value>> {
    grant.require_write()?;
    let bytes = read_shard_body(body).await?;
    let inserted = register_shard(&state, &grant, bytes).await?;
    Ok(Json(json!({ "result": if inserted { 1 } else { 0 } })))
}

/// How often `/v2/shards` repeats its last progress frame while a long check runs.
const SHARD_HEARTBEAT: Duration = Duration::from_secs(15);

/// `POST /v2/shards`: the same registration, answered at once with an NDJSON progress stream
/// (`validating`, repeated as a heartbeat, then `committing` and a terminal `result` or
/// `error`), so checking a shard of very large files never looks like a stalled connection.
/// Auth, size and body errors still come back as plain HTTP statuses.
pub async fn upload_shard_v2(
    State(state): State<AppState>,
    grant: CasGrant,
    body: Body,
) -> ApiResult<Response> {
    grant.require_write()?;
    let bytes = read_shard_body(body).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(4);
    tokio::spawn(async move {
        let frame = |v: Value| Ok(Bytes::from(format!("{v}\n")));
        let validating = json!({ "type": "validating", "verified": 0, "total": 1 });
        if tx.send(frame(validating.clone())).await.is_err() {
            return;
        }
        let work = register_shard(&state, &grant, bytes);
        tokio::pin!(work);
        let mut heartbeat = tokio::time::interval(SHARD_HEARTBEAT);
        heartbeat.tick().await;
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                _ = heartbeat.tick() => {
                    // A client that went away does not stop the registration: it is
                    // idempotent and the client will retry.
                    let _ = tx.send(frame(validating.clone())).await;
                }
            }
        };
        let last = match outcome {
            Ok(_) => {
                let _ = tx
                    .send(frame(json!({ "type": "committing", "stage": "syncing" })))
                    .await;
                json!({ "type": "result" })
            }
            Err(ApiError::Internal(e)) => {
                tracing::error!(error = format!("{e:#}"), "xet.shard_v2_failed");
                json!({ "type": "error", "message": "Internal Error", "retryable": true })
            }
            Err(refused) => {
                json!({ "type": "error", "message": refused.to_string(), "retryable": false })
            }
        };
        let _ = tx.send(frame(last)).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn read_shard_body(body: Body) -> ApiResult<Bytes> {
    let limit = shard::MAX_SHARD_BYTES;
    axum::body::to_bytes(body, limit as usize)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit })
}

/// Check every file of a shard against the stored xorbs, rebuild and hash the new ones, then
/// record them all as LFS objects of the token's repo. Nothing is recorded unless every file
/// checks out. Returns whether any file was new.
async fn register_shard(state: &AppState, grant: &CasGrant, bytes: Bytes) -> ApiResult<bool> {
    let files = blocking(move || shard::parse(&bytes))
        .await?
        .map_err(shard_error)?;
    let all_terms: Vec<shard::Term> = files.iter().flat_map(|f| f.terms.iter().copied()).collect();
    let xorbs = rebuild::load_indices(state, &all_terms).await?;
    let mut new_files = Vec::new();
    let mut known_files = Vec::new();
    for file in &files {
        let size = shard::check_file(file, |h| xorbs.get(h)).map_err(shard_error)?;
        match state.db.xet_file(&file.file_hash.to_bytes()).await? {
            Some(known) => known_files.push(known),
            None => new_files.push((file.clone(), size)),
        }
    }
    let mut verified = Vec::with_capacity(new_files.len());
    for (file, size) in new_files {
        verified.push(verify_file(state, file, size, &xorbs).await?);
    }
    let now = now_ms();
    for file in verified.iter().chain(&known_files) {
        state.db.record_xet_file(grant.repo_id, file, now).await?;
    }
    tracing::info!(
        repo_id = grant.repo_id,
        new = verified.len(),
        known = known_files.len(),
        "xet.shard_registered"
    );
    Ok(!verified.is_empty())
}

/// Rebuild a new file from its xorbs and hash it; refuse it if the client claimed another
/// SHA-256. What we record is always our own hash of the real bytes.
async fn verify_file(
    state: &AppState,
    file: ShardFile,
    size: u64,
    xorbs: &HashMap<XetHash, XorbIndex>,
) -> ApiResult<XetFile> {
    let plan = plan::plan(&file.terms, xorbs, None).map_err(ApiError::internal)?;
    let store = (*state.store).clone();
    let digest = blocking(move || -> io::Result<[u8; 32]> {
        let mut hasher = Sha256::new();
        rebuild::write_plan(&store, &plan, &mut hasher)?;
        Ok(hasher.finalize().into())
    })
    .await??;
    if let Some(claimed) = file.sha256
        && claimed != digest
    {
        tracing::warn!(file = %file.file_hash, claimed = %hex::encode(claimed), actual = %hex::encode(digest), "xet.shard_sha256_mismatch");
        return Err(ApiError::bad_request(format!(
            "File {}: the shard claims SHA-256 {}, its bytes hash to {}",
            file.file_hash,
            hex::encode(claimed),
            hex::encode(digest)
        )));
    }
    Ok(XetFile {
        file_hash: file.file_hash.to_bytes(),
        size,
        sha256: Sha256Hex::from_digest(&digest),
        terms: shard::encode_terms(&file.terms),
    })
}

fn shard_error(e: ShardError) -> ApiError {
    tracing::warn!(error = %e, "xet.shard_refused");
    match e {
        ShardError::TooLarge => ApiError::PayloadTooLarge {
            limit: shard::MAX_SHARD_BYTES,
        },
        other => ApiError::bad_request(format!("Invalid shard: {other}")),
    }
}

/// A file the grant's repository may read, or 404 (never 403: unreadable and unknown look
/// the same).
async fn readable_file(state: &AppState, grant: &CasGrant, file_id: &str) -> ApiResult<XetFile> {
    let not_found = || ApiError::EntryNotFound {
        message: format!("File {file_id} not found"),
        commit: None,
    };
    let hash = parse_hash(file_id)?.to_bytes();
    let file = state.db.xet_file(&hash).await?.ok_or_else(not_found)?;
    if !state
        .db
        .repo_may_read_xet_file(grant.repo_id, &hash)
        .await?
    {
        return Err(not_found());
    }
    Ok(file)
}

/// `HEAD /v1/files/{file_id}`.
pub async fn head_file(
    State(state): State<AppState>,
    grant: CasGrant,
    ApiPath(file_id): ApiPath<String>,
) -> ApiResult<Response> {
    let file = readable_file(&state, &grant, &file_id).await?;
    Ok((
        [(header::CONTENT_LENGTH, file.size.to_string())],
        StatusCode::OK,
    )
        .into_response())
}

/// The plan for a reconstruction request, honouring its `Range` header.
async fn requested_plan(
    state: &AppState,
    grant: &CasGrant,
    file_id: &str,
    headers: &HeaderMap,
) -> ApiResult<(Plan, HashMap<XetHash, XorbIndex>)> {
    let file = readable_file(state, grant, file_id).await?;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) => parse_range(spec, file.size)?,
        None => None,
    };
    let planned = plan_file(state, &file, range).await?;
    tracing::info!(file = %file_id, terms = planned.0.terms.len(), bytes = planned.0.length, "xet.reconstruction");
    Ok(planned)
}

fn terms_json(plan: &Plan) -> Vec<Value> {
    plan.terms
        .iter()
        .map(|t| {
            json!({
                "hash": t.xorb.hex(),
                "unpacked_length": t.unpacked_len,
                "range": { "start": t.chunk_start, "end": t.chunk_end },
            })
        })
        .collect()
}

/// A URL for the stored bytes `[start, end]` (inclusive) of a xorb, signed so it fetches
/// nothing else: xorbs are shared across repositories through dedup.
fn fetch_url(state: &AppState, xorb: &XetHash, start: u64, end_inclusive: u64, exp: u64) -> String {
    let hex = xorb.hex();
    let range = format!("{start}-{end_inclusive}");
    let sig = state.signer.sign(&["xet-fetch", &hex, &range], exp);
    format!(
        "{}/xet/fetch/{hex}?range={range}&exp={exp}&sig={sig}",
        state.public_url()
    )
}

/// The reconstruction answer v1 and v2 share; they differ only in the name of the fetch map
/// and in how one fetch (a signed URL for an inclusive stored byte range) is described.
fn reconstruction_body(
    state: &AppState,
    plan: &Plan,
    xorbs: &HashMap<XetHash, XorbIndex>,
    fetch_key: &str,
    describe: impl Fn(String, &plan::Fetch) -> Value,
) -> Value {
    let exp = now_secs() + FETCH_URL_TTL_SECS;
    let mut fetch_map = Map::new();
    for (xorb, fetches) in plan::fetches(plan, xorbs) {
        let entries = fetches
            .iter()
            .map(|f| {
                describe(
                    fetch_url(state, &xorb, f.stored_start, f.stored_end - 1, exp),
                    f,
                )
            })
            .collect();
        fetch_map.insert(xorb.hex(), Value::Array(entries));
    }
    json!({
        "offset_into_first_range": plan.offset_into_first,
        "terms": terms_json(plan),
        fetch_key: fetch_map,
    })
}

/// `GET /v1/reconstructions/{file_id}`: one URL per fetch, with its byte range beside it.
pub async fn reconstruction_v1(
    State(state): State<AppState>,
    grant: CasGrant,
    ApiPath(file_id): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (plan, xorbs) = requested_plan(&state, &grant, &file_id, &headers).await?;
    Ok(Json(reconstruction_body(
        &state,
        &plan,
        &xorbs,
        "fetch_info",
        |url, f| {
            json!({
                "range": { "start": f.chunk_start, "end": f.chunk_end },
                "url": url,
                "url_range": { "start": f.stored_start, "end": f.stored_end - 1 },
            })
        },
    )))
}

/// `GET /v2/reconstructions/{file_id}`: one single-range entry per merged fetch.
pub async fn reconstruction_v2(
    State(state): State<AppState>,
    grant: CasGrant,
    ApiPath(file_id): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (plan, xorbs) = requested_plan(&state, &grant, &file_id, &headers).await?;
    Ok(Json(reconstruction_body(
        &state,
        &plan,
        &xorbs,
        "xorbs",
        |url, f| {
            json!({
                "url": url,
                "ranges": [{
                    "chunks": { "start": f.chunk_start, "end": f.chunk_end },
                    "bytes": { "start": f.stored_start, "end": f.stored_end - 1 },
                }],
            })
        },
    )))
}

/// `GET /fetch/{xorb}?range=a-b&exp=..&sig=..`: the signed stored bytes of a xorb. The
/// request's `Range` must lie inside the signed range; without one, the signed range is sent.
pub async fn fetch(
    State(state): State<AppState>,
    ApiPath(xorb_hex): ApiPath<String>,
    query: QueryParams,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let forbidden = || ApiError::Forbidden("Invalid or expired fetch URL".into());
    let (Some(range), Some(exp), Some(sig)) =
        (query.get("range"), query.get("exp"), query.get("sig"))
    else {
        return Err(forbidden());
    };
    let exp: u64 = exp.parse().map_err(|_| forbidden())?;
    if !state
        .signer
        .verify(&["xet-fetch", &xorb_hex, range], exp, sig, now_secs())
    {
        return Err(forbidden());
    }
    let (signed_start, signed_end) = parse_inclusive(range).ok_or_else(forbidden)?;
    let (start, end) = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => (signed_start, signed_end),
        Some(spec) => spec
            .strip_prefix("bytes=")
            .and_then(parse_inclusive)
            .ok_or_else(|| ApiError::bad_request("Only a single bytes=a-b range is served here"))?,
    };
    if start < signed_start || end > signed_end || start > end {
        return Err(ApiError::Forbidden(
            "The requested range is outside the signed range".into(),
        ));
    }
    let path = state.store.xorb_path(&xorb_hex);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ApiError::EntryNotFound {
                message: "Xorb not found".into(),
                commit: None,
            },
            _ => ApiError::internal(e),
        })?;
    let total = file.metadata().await?.len();
    if end >= total {
        return Err(ApiError::RangeNotSatisfiable { size: total });
    }
    file.seek(io::SeekFrom::Start(start)).await?;
    let len = end - start + 1;
    let body = Body::from_stream(trove_store::read_chunks(file, len));
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    out.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&format!("bytes {start}-{end}/{total}"))?,
    );
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok((StatusCode::PARTIAL_CONTENT, out, body).into_response())
}

fn parse_inclusive(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.trim().split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// `GET /v1/chunks/default-merkledb/{hash}`: global dedup is not offered yet; 404 tells the
/// client "no match", and it dedups against its own cache only.
pub async fn dedup_query(_grant: CasGrant) -> StatusCode {
    StatusCode::NOT_FOUND
}

/// `POST /v1/telemetry`: accepted and dropped.
pub async fn telemetry() -> StatusCode {
    StatusCode::OK
}

/// Anything else under `/xet`: 404, which the client reads as "use the older endpoint"
/// (v2 shards, xorb upload grants).
pub async fn not_offered() -> StatusCode {
    StatusCode::NOT_FOUND
}
