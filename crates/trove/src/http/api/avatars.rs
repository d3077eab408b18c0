//! `GET /api/avatars/{name}`: the avatar of a user or organization, an SVG identicon drawn
//! from the name (the `avatarUrl` of every author field points here).

use crate::accounts::profile::identicon_svg;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiPath;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use trove_types::RepoName;

pub async fn avatar(ApiPath(name): ApiPath<String>) -> ApiResult<Response> {
    let name = RepoName::parse(&name)
        .map_err(|_| ApiError::NotFound(format!("No avatar for {name:?}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        identicon_svg(name.as_str()),
    )
        .into_response())
}
