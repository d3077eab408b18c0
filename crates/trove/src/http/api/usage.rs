//! `GET /api/settings/repositories` and `GET /api/organizations/{org}/settings/repositories`:
//! a namespace's repositories with their storage, as `list_user_repos` and `hf repos ls`
//! read them, paginated with `Link`.

use super::search::{page_response, page_size, parse_cursor};
use crate::accounts::usage;
use crate::auth::Caller;
use crate::clock::format_ms;
use crate::error::ApiResult;
use crate::http::extract::{ApiPath, QueryParams};
use crate::state::AppState;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use serde::Serialize;

const PAGE: u32 = 100;

/// One repository as `RepoStorageInfo` reads it. `storage` counts the bytes of the large
/// files (LFS and Xet) linked to the repository; `storagePercent` is its share of the
/// namespace's.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RepoStorage {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    updated_at: String,
    visibility: &'static str,
    storage: u64,
    storage_percent: f64,
}

pub async fn mine(
    State(state): State<AppState>,
    caller: Caller,
    uri: Uri,
    query: QueryParams,
) -> ApiResult<Response> {
    list(&state, &caller, None, &uri, &query).await
}

pub async fn of_org(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
    uri: Uri,
    query: QueryParams,
) -> ApiResult<Response> {
    list(&state, &caller, Some(&org), &uri, &query).await
}

async fn list(
    state: &AppState,
    caller: &Caller,
    namespace: Option<&str>,
    uri: &Uri,
    query: &QueryParams,
) -> ApiResult<Response> {
    let after = query.get("cursor").map(parse_cursor).transpose()?;
    let limit = page_size(query, PAGE)?;
    let (page, total) = usage::repositories(state, caller, namespace, after, limit).await?;
    let items = page
        .items
        .into_iter()
        .map(|u| RepoStorage {
            id: format!("{}/{}", u.repo.namespace, u.repo.name),
            kind: u.repo.repo_type.as_str(),
            updated_at: format_ms(u.repo.updated_at_ms),
            visibility: if u.repo.private { "private" } else { "public" },
            storage: u.lfs_bytes,
            storage_percent: if total == 0 {
                0.0
            } else {
                (u.lfs_bytes as f64 * 1000.0 / total as f64).round() / 10.0
            },
        })
        .collect();
    Ok(page_response(state, uri, items, page.next))
}
