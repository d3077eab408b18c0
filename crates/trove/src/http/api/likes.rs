//! Likes (E47–E49): `POST|DELETE /api/{T}/{repo}/like`, `GET /api/{T}/{repo}/likers` and
//! `GET /api/users/{user}/likes`, the lists paginated with `Link`.

use super::Empty;
use super::repo_json::RepoName;
use super::search::{page_response, page_size, parse_cursor};
use crate::accounts::profile::{avatar_url, display_name};
use crate::auth::Caller;
use crate::clock::format_ms;
use crate::error::ApiResult;
use crate::http::extract::{ApiPath, QueryParams, RepoAt};
use crate::repos::likes;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use trove_db::Cursor;

const PAGE: u32 = 1000;

fn cursor(query: &QueryParams) -> ApiResult<Option<Cursor>> {
    query.get("cursor").map(parse_cursor).transpose()
}

pub async fn like(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
) -> ApiResult<Json<Empty>> {
    likes::like(&state, &caller, &repo).await?;
    Ok(Json(Empty {}))
}

pub async fn unlike(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
) -> ApiResult<Json<Empty>> {
    likes::unlike(&state, &caller, &repo).await?;
    Ok(Json(Empty {}))
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
    RepoAt { repo, .. }: RepoAt,
    uri: Uri,
    query: QueryParams,
) -> ApiResult<Response> {
    let page = likes::likers(&state, &repo, cursor(&query)?, page_size(&query, PAGE)?).await?;
    let items: Vec<Liker> = page
        .items
        .into_iter()
        .map(|(user, _)| Liker {
            fullname: display_name(&user),
            avatar_url: avatar_url(state.public_url(), &user.name),
            user: user.name,
        })
        .collect();
    Ok(page_response(&state, &uri, items, page.next))
}

/// A repository a user liked, as `list_liked_repos` reads it.
#[derive(Serialize)]
struct LikedRepo {
    #[serde(rename = "createdAt")]
    created_at: String,
    repo: RepoName,
}

/// The `{user}` of `/api/users/{user}/likes`.
#[derive(Deserialize)]
pub struct UserParam {
    user: String,
}

pub async fn user_likes(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(UserParam { user }): ApiPath<UserParam>,
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
        .map(|(repo, liked_at)| LikedRepo {
            created_at: format_ms(liked_at),
            repo: RepoName {
                name: format!("{}/{}", repo.namespace, repo.name),
                kind: repo.repo_type.as_str(),
            },
        })
        .collect::<Vec<_>>();
    Ok(page_response(&state, &uri, items, page.next))
}
