//! The chunk store's upkeep over HTTP, for site administrators: `GET /api/admin/storage/stats`
//! (a read token suffices), `POST /api/admin/storage/gc` and `POST /api/admin/storage/fsck`
//! (a write token). The same use cases as `trove storage stats`, `trove gc` and `trove fsck`.

use crate::auth::{Access, Caller};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::storage::{fsck, gc, stats};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;

/// 401 for anonymous callers, 403 unless `caller` holds `needed` on the site.
pub fn require_site(caller: &Caller, needed: Access) -> ApiResult<()> {
    if Access::on_site(caller) >= needed {
        return Ok(());
    }
    if caller.is_anonymous() {
        return Err(ApiError::Unauthenticated(
            "You must be authenticated as a site administrator".into(),
        ));
    }
    Err(ApiError::Forbidden(if needed >= Access::Admin {
        "Only site administrators with a write token may do this".into()
    } else {
        "Only site administrators may read this".into()
    }))
}

/// `GET /api/admin/storage/stats`.
pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<stats::StorageStats>> {
    require_site(&caller, Access::Read)?;
    Ok(Json(stats::stats(&state).await?))
}

/// `GET /api/admin/cluster`: the node that answers, and which node holds each lease of the
/// background work (a site admin's read token suffices).
pub async fn cluster(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<crate::cluster::ClusterStatus>> {
    require_site(&caller, Access::Read)?;
    Ok(Json(crate::cluster::status(&state.db, &state.node).await?))
}

/// The body of `POST /api/admin/storage/gc`; every field optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GcBody {
    #[serde(default)]
    dry_run: bool,
    /// `0s`, `90m`, `12h`, `28d`, …; the default grace period when absent.
    grace: Option<String>,
}

/// `POST /api/admin/storage/gc`: one collection, answered with its report once done.
pub async fn gc(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<gc::GcReport>> {
    require_site(&caller, Access::Admin)?;
    let body: GcBody = if body.iter().all(u8::is_ascii_whitespace) {
        GcBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))?
    };
    let grace_ms = match body.grace.as_deref() {
        Some(g) => gc::parse_grace_ms(g).map_err(ApiError::bad_request)?,
        None => gc::DEFAULT_GRACE_MS,
    };
    Ok(Json(gc::collect(&state, grace_ms, body.dry_run).await?))
}

/// `POST /api/admin/storage/fsck`: the check, answered with its report (200 either way;
/// damage is listed in `damaged_xorbs` and `damaged_files`).
pub async fn fsck(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<fsck::FsckReport>> {
    require_site(&caller, Access::Admin)?;
    Ok(Json(fsck::check(&state).await?))
}
