//! The CAS service under `{public}/xet`: what `hf_xet` calls with the token the Hub gave it.
//!
//! - `POST /v1/xorbs/default/{hash}`: validate and store a xorb.
//! - `POST /v1/shards` (and `/v2/shards`, streaming progress): register files whose every term checks out against stored xorbs,
//!   after rebuilding each new file and computing its SHA-256 ourselves.
//! - `GET /v1|v2/reconstructions/{file}`: the terms and signed fetch URLs for a file (or a
//!   `Range` of it) the token's repository may read.
//! - `GET /fetch/{xorb}`: stored xorb bytes, only within the signed range.
//! - `HEAD` on xorbs and files, answered only about what the token's repository's namespace
//!   references or its user uploaded (`repos::xet`).
//! - `GET /v1/chunks/default/{hash}` (or `default-merkledb`): global dedup, scoped the same way
//!   (`storage::dedup`).

use super::token::CasGrant;
use crate::clock::now_secs;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, QueryParams};
use crate::http::range;
use crate::http::resolve::download_response;
use crate::repos::content::Opened;
use crate::repos::file_ranges::{CanSendFiles, FileRanges};
use crate::repos::rebuild::plan_file;
use crate::repos::xet as xet_store;
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use trove_db::XetFile;
use trove_xet::XetHash;
use trove_xet::plan::{self, Plan};
use trove_xet::shard;
use trove_xet::xorb::XorbIndex;

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

/// The answer to a xorb upload: whether the token's repository did not reference it before.
#[derive(Serialize)]
pub struct XorbUploaded {
    was_inserted: bool,
}

/// `POST /v1/xorbs/default/{hash}`.
pub async fn upload_xorb(
    State(state): State<AppState>,
    grant: CasGrant,
    ApiPath((prefix, hash)): ApiPath<(String, String)>,
    body: Body,
) -> ApiResult<Json<XorbUploaded>> {
    grant.require_write()?;
    check_prefix(&prefix)?;
    let hash = parse_hash(&hash)?;
    let body = body.into_data_stream().map_err(io::Error::other);
    let was_inserted = xet_store::store_xorb(&state, grant.viewer(), hash, body).await?;
    Ok(Json(XorbUploaded { was_inserted }))
}

/// `HEAD /v1/xorbs/default/{hash}`: 200 only for a xorb the token's repository's namespace
/// references or the token's user uploaded; one held for others alone is 404, exactly like
/// an unknown one.
pub async fn head_xorb(
    State(state): State<AppState>,
    grant: CasGrant,
    ApiPath((prefix, hash)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    check_prefix(&prefix)?;
    let hash = parse_hash(&hash)?;
    match xet_store::xorb_size(&state, grant.viewer(), &hash).await? {
        Some(n) => Ok(([(header::CONTENT_LENGTH, n.to_string())], StatusCode::OK).into_response()),
        None => Ok(StatusCode::NOT_FOUND.into_response()),
    }
}

/// The answer to a v1 shard upload: 1 when a file was new.
#[derive(Serialize)]
pub struct ShardRegistered {
    result: u8,
}

/// `POST /v1/shards`: register every file of the shard, or none.
pub async fn upload_shard(
    State(state): State<AppState>,
    grant: CasGrant,
    body: Body,
) -> ApiResult<Json<ShardRegistered>> {
    grant.require_write()?;
    let bytes = read_shard_body(body).await?;
    let inserted = xet_store::register_shard(&state, grant.viewer(), bytes).await?;
    Ok(Json(ShardRegistered {
        result: u8::from(inserted),
    }))
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
        let work = xet_store::register_shard(&state, grant.viewer(), bytes);
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
) -> ApiResult<(Plan, HashMap<XetHash, Arc<XorbIndex>>)> {
    let file = readable_file(state, grant, file_id).await?;
    let range = range::requested(headers, file.size)?.map(|r| (r.start, r.end));
    let planned = plan_file(state, &file, range).await?;
    tracing::info!(file = %file_id, terms = planned.0.terms.len(), bytes = planned.0.length, "xet.reconstruction");
    Ok(planned)
}

// The wire types below list their fields in alphabetical order: the order the answers had
// when they were assembled as JSON maps, kept so the bytes on the wire do not change.

/// A `[start, end)` chunk range, or an inclusive byte range where the field says so.
#[derive(Serialize)]
struct Span {
    end: u64,
    start: u64,
}

/// One term of a reconstruction: chunks `range` of xorb `hash`, `unpacked_length` bytes.
#[derive(Serialize)]
struct TermOut {
    hash: String,
    range: Span,
    unpacked_length: u64,
}

/// `GET /v1/reconstructions/{file}`.
#[derive(Serialize)]
pub struct ReconstructionV1 {
    fetch_info: BTreeMap<String, Vec<FetchV1>>,
    offset_into_first_range: u64,
    terms: Vec<TermOut>,
}

/// One v1 fetch: chunks `range` of the xorb at `url`, whose stored bytes are `url_range`
/// (inclusive).
#[derive(Serialize)]
struct FetchV1 {
    range: Span,
    url: String,
    url_range: Span,
}

/// `GET /v2/reconstructions/{file}`.
#[derive(Serialize)]
pub struct ReconstructionV2 {
    offset_into_first_range: u64,
    terms: Vec<TermOut>,
    xorbs: BTreeMap<String, Vec<FetchV2>>,
}

/// One v2 fetch: a URL and its single range (chunks, and inclusive stored bytes).
#[derive(Serialize)]
struct FetchV2 {
    ranges: [FetchRange; 1],
    url: String,
}

#[derive(Serialize)]
struct FetchRange {
    bytes: Span,
    chunks: Span,
}

fn terms_out(plan: &Plan) -> Vec<TermOut> {
    plan.terms
        .iter()
        .map(|t| TermOut {
            hash: t.xorb.hex(),
            range: Span {
                end: u64::from(t.chunk_end),
                start: u64::from(t.chunk_start),
            },
            unpacked_length: t.unpacked_len,
        })
        .collect()
}

/// A URL for the stored bytes `[start, end]` (inclusive) of a xorb, signed so it fetches
/// nothing else: xorbs are shared across repositories through dedup. With `[storage]
/// redirect_downloads` on a bucket, a presigned GET of the bucket's object that binds the
/// `Range` header the client sends (`bytes=start-end`, from the fetch's byte range), so it too
/// fetches nothing else; handed out only after the reconstruction's own access check.
async fn fetch_url(
    state: &AppState,
    xorb: &XetHash,
    start: u64,
    end_inclusive: u64,
    exp: u64,
) -> ApiResult<String> {
    let hex = xorb.hex();
    if state.config.storage.redirect_downloads {
        let ttl = Duration::from_secs(state.config.storage.presign_ttl_secs);
        if let Some(url) = state
            .store
            .presign_xorb(&hex, Some((start, end_inclusive)), ttl)
            .await?
        {
            return Ok(url);
        }
    }
    let range = format!("{start}-{end_inclusive}");
    let sig = state.signer.sign(&["xet-fetch", &hex, &range], exp);
    Ok(format!(
        "{}/xet/fetch/{hex}?range={range}&exp={exp}&sig={sig}",
        state.public_url()
    ))
}

/// The fetches of a plan, per xorb, each described by `describe` (given its signed URL); v1
/// and v2 differ only there.
async fn fetch_map<T>(
    state: &AppState,
    plan: &Plan,
    xorbs: &HashMap<XetHash, Arc<XorbIndex>>,
    describe: impl Fn(String, &plan::Fetch) -> T,
) -> ApiResult<BTreeMap<String, Vec<T>>> {
    let exp = now_secs() + FETCH_URL_TTL_SECS;
    let mut out = BTreeMap::new();
    for (xorb, fetches) in plan::fetches(plan, xorbs) {
        let mut entries = Vec::with_capacity(fetches.len());
        for f in &fetches {
            let url = fetch_url(state, &xorb, f.stored_start, f.stored_end - 1, exp).await?;
            entries.push(describe(url, f));
        }
        out.insert(xorb.hex(), entries);
    }
    Ok(out)
}

/// `GET /v1/reconstructions/{file_id}`: one URL per fetch, with its byte range beside it.
pub async fn reconstruction_v1(
    State(state): State<AppState>,
    grant: CasGrant,
    ApiPath(file_id): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Json<ReconstructionV1>> {
    let (plan, xorbs) = requested_plan(&state, &grant, &file_id, &headers).await?;
    Ok(Json(ReconstructionV1 {
        fetch_info: fetch_map(&state, &plan, &xorbs, |url, f| FetchV1 {
            range: Span {
                end: u64::from(f.chunk_end),
                start: u64::from(f.chunk_start),
            },
            url,
            url_range: Span {
                end: f.stored_end - 1,
                start: f.stored_start,
            },
        })
        .await?,
        offset_into_first_range: plan.offset_into_first,
        terms: terms_out(&plan),
    }))
}

/// `GET /v2/reconstructions/{file_id}`: one single-range entry per merged fetch.
pub async fn reconstruction_v2(
    State(state): State<AppState>,
    grant: CasGrant,
    ApiPath(file_id): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Json<ReconstructionV2>> {
    let (plan, xorbs) = requested_plan(&state, &grant, &file_id, &headers).await?;
    Ok(Json(ReconstructionV2 {
        offset_into_first_range: plan.offset_into_first,
        terms: terms_out(&plan),
        xorbs: fetch_map(&state, &plan, &xorbs, |url, f| FetchV2 {
            ranges: [FetchRange {
                bytes: Span {
                    end: f.stored_end - 1,
                    start: f.stored_start,
                },
                chunks: Span {
                    end: u64::from(f.chunk_end),
                    start: u64::from(f.chunk_start),
                },
            }],
            url,
        })
        .await?,
    }))
}

/// `GET /fetch/{xorb}?range=a-b&exp=..&sig=..`: the signed stored bytes of a xorb. The
/// request's `Range` must lie inside the signed range; without one, the signed range is sent.
/// A xorb on this node's disk goes out as a file range (`sendfile`, when the server can):
/// the Xet client sends many of these at once, and each one read through memory held its
/// blocks on the way (idle + 180 MiB under 48 + 16 downloads, docs/benchmarks.md).
pub async fn fetch(
    State(state): State<AppState>,
    ApiPath(xorb_hex): ApiPath<String>,
    query: QueryParams,
    headers: HeaderMap,
    can_send_files: Option<Extension<CanSendFiles>>,
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
    let not_found = || ApiError::EntryNotFound {
        message: "Xorb not found".into(),
        commit: None,
    };
    if XetHash::parse(&xorb_hex).is_err() {
        return Err(not_found());
    }
    let total = state
        .store
        .xorb_size(&xorb_hex)
        .await?
        .ok_or_else(not_found)?;
    // The request's own `Range` (the one rule, against the whole xorb) narrows the signed
    // range; without one, or with one that is ignored, the signed range is sent.
    let (start, end) = match range::requested(&headers, total)? {
        Some(r) => (r.start, r.end - 1),
        None => (signed_start, signed_end),
    };
    if start < signed_start || end > signed_end || start > end {
        return Err(ApiError::Forbidden(
            "The requested range is outside the signed range".into(),
        ));
    }
    if end >= total {
        return Err(ApiError::RangeNotSatisfiable { size: total });
    }
    let len = end - start + 1;
    let files = match can_send_files {
        Some(_) => state
            .store
            .local_xorb_file(&xorb_hex)?
            .map(|file| FileRanges::whole(file, start, end + 1)),
        None => None,
    };
    let stream: trove_store::ByteStream = if files.is_some() {
        // Never polled when the range is sent from the file: it opens the xorb again only
        // for a server path that reads the body.
        let store = Arc::clone(&state.store);
        Box::pin(
            futures_util::stream::once(async move {
                match store.open_xorb_range(&xorb_hex, start, end + 1).await {
                    Ok(Some(stream)) => stream,
                    Ok(None) => gone(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("xorb {xorb_hex} left the store"),
                    )),
                    Err(e) => gone(io::Error::other(e)),
                }
            })
            .flatten(),
        )
    } else {
        state
            .store
            .open_xorb_range(&xorb_hex, start, end + 1)
            .await?
            .ok_or_else(not_found)?
    };
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
    Ok(download_response(
        StatusCode::PARTIAL_CONTENT,
        out,
        Opened { len, stream, files },
    ))
}

/// A body that fails with `e` at once (the client sees it cut short).
fn gone(e: io::Error) -> trove_store::ByteStream {
    Box::pin(futures_util::stream::once(async move { Err(e) }))
}

fn parse_inclusive(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.trim().split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The key prefixes of global-dedup queries: hf_xet asks under `default`, the spec names
/// `default-merkledb`; both mean the one chunk index.
const DEDUP_PREFIXES: [&str; 2] = ["default", "default-merkledb"];

/// `GET /v1/chunks/default/{hash}` (or `default-merkledb`): a keyed shard describing where the store holds
/// this chunk and the rest of the newest file containing it, within the token's scope
/// (`storage::dedup`); 404 ("no match") otherwise.
pub async fn dedup_query(
    State(state): State<AppState>,
    grant: CasGrant,
    ApiPath((prefix, hash)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let hash = parse_hash(&hash)?;
    if !DEDUP_PREFIXES.contains(&prefix.as_str()) {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    match crate::storage::dedup::answer(&state, grant.viewer(), grant.may_write(), &hash).await? {
        Some(shard) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], shard).into_response())
        }
        None => Ok(StatusCode::NOT_FOUND.into_response()),
    }
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
