//! Likes (E47–E49): `POST|DELETE /api/{T}/{repo}/like`, `GET /api/{T}/{repo}/likers` and
//! `GET /api/users/{user}/likes`, the lists paginated with `Link`.

use super::search::{page_response, page_size, parse_cursor};
use crate::auth::Caller;
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, QueryParams, repo_type_from_plural};
use crate::repos::{find_readable, likes};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};
use trove_db::Cursor;

const PAGE: u32 = 1000;

fn cursor(query: &QueryParams) -> ApiResult<Option<Cursor>> {
    query.get("cursor").map(parse_cursor).transpose()
}

pub async fn like(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    likes::like(&state, &caller, &repo).await?;
    Ok(Json(json!({})))
}

pub async fn unlike(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    likes::unlike(&state, &caller, &repo).await?;
    Ok(Json(json!({})))
}

/// An item of `likers`: all three keys are required by the client.
#[derive(Serialize)]
struct Liker {
    user: String,
    fullname: String,
    #[serde(rename = "avatarUrl")]
    avatar_url: String,
}

pub async fn likers(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name)): ApiPath<(String, String, String)>,
    uri: Uri,
    query: QueryParams,
) -> ApiResult<Response> {
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    let page = likes::likers(&state, &repo, cursor(&query)?, page_size(&query, PAGE)?).await?;
    let items = page
        .items
        .into_iter()
        .map(|(user, _)| {
            serde_json::to_value(Liker {
                fullname: user.name.clone(),
                user: user.name,
                avatar_url: String::new(),
            })
            .map_err(ApiError::internal)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(page_response(&state, &uri, items, page.next))
}

pub async fn user_likes(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
    uri: Uri,
    query: QueryParams,
) -> ApiResult<Response> {
    let page = likes::liked_by(
        &state,
        &caller,
        &user,
        cursor(&query)?,
        page_size(&query, PAGE)?,
    )
    .await?;
    let items = page
        .items
        .into_iter()
        .map(|(repo, liked_at)| {
            json!({
                "createdAt": format_ms(liked_at),
                "repo": {
                    "name": format!("{}/{}", repo.namespace, repo.name),
                    "type": repo.repo_type.as_str(),
                },
            })
        })
        .collect();
    Ok(page_response(&state, &uri, items, page.next))
}
