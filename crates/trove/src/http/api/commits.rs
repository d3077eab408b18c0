//! `GET /api/{T}/{repo}/commits/{rev}`: history, newest first, paginated through `Link`.

use super::{link_header, next_page_url};
use crate::accounts::profile::avatar_url;
use crate::clock::format_secs;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, QueryParams, RepoAt, RevParam};
use crate::repos::{resolve, with_git};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use trove_types::GitOid;

const PAGE_SIZE: usize = 50;

/// A commit as `list_repo_commits` reads it into a `GitCommitInfo`.
#[derive(Serialize)]
pub struct CommitJson {
    id: String,
    title: String,
    message: String,
    date: String,
    authors: Vec<CommitAuthor>,
    /// With `expand[]=formatted`: title and message as HTML-escaped text.
    #[serde(skip_serializing_if = "Option::is_none")]
    formatted: Option<Formatted>,
}

/// A commit's author; `avatar` only when the name is a user of this hub.
#[derive(Serialize)]
pub struct CommitAuthor {
    user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar: Option<String>,
}

#[derive(Serialize)]
pub struct Formatted {
    title: String,
    message: String,
}

pub async fn list(
    State(state): State<AppState>,
    RepoAt { repo, .. }: RepoAt,
    ApiPath(RevParam { rev }): ApiPath<RevParam>,
    query: QueryParams,
    uri: Uri,
) -> ApiResult<Response> {
    let formatted =
        query.all("expand[]").contains(&"formatted") || query.all("expand").contains(&"formatted");
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request("Invalid limit"))?
            .clamp(1, 1000),
        None => PAGE_SIZE,
    };
    let cursor = match query.get("cursor") {
        Some(c) => {
            let (commit, skip) = c
                .split_once(':')
                .ok_or_else(|| ApiError::bad_request("Invalid cursor"))?;
            let commit =
                GitOid::parse(commit).map_err(|_| ApiError::bad_request("Invalid cursor"))?;
            Some((
                commit,
                skip.parse::<usize>()
                    .map_err(|_| ApiError::bad_request("Invalid cursor"))?,
            ))
        }
        None => None,
    };
    let (commits, head, skip, more) = with_git(&state, &repo, move |git| {
        let (head, skip) = match cursor {
            Some(c) => c,
            None => (resolve(git, rev.as_str())?, 0),
        };
        let (commits, more) = git.log(&head, skip, limit)?;
        Ok((commits, head, skip, more))
    })
    .await?;
    let mut names: Vec<String> = commits.iter().map(|c| c.author_name.clone()).collect();
    names.sort_unstable();
    names.dedup();
    let users = state.db.users_by_names(&names).await?;
    let avatar = |name: &str| {
        users
            .iter()
            .any(|u| u.name.eq_ignore_ascii_case(name))
            .then(|| avatar_url(state.public_url(), name))
    };
    let items: Vec<CommitJson> = commits
        .into_iter()
        .map(|c| CommitJson {
            id: c.id.to_string(),
            formatted: formatted.then(|| Formatted {
                title: html_escape(&c.title),
                message: html_escape(&c.message),
            }),
            title: c.title,
            message: c.message,
            date: format_secs(c.time_unix),
            authors: vec![CommitAuthor {
                avatar: avatar(&c.author_name),
                user: c.author_name,
            }],
        })
        .collect();
    let mut headers = HeaderMap::new();
    if more {
        let cursor = format!("{head}:{}", skip + limit);
        let (name, value) = link_header(&next_page_url(&state, &uri, &cursor));
        headers.insert(name, value.parse()?);
    }
    Ok((headers, Json(items)).into_response())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
