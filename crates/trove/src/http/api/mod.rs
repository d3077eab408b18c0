//! The JSON API under `/api/`, one module per resource, and the pagination helpers its
//! listings share.

pub mod accounts;
pub mod admin_storage;
pub mod avatars;
pub mod collections;
pub mod commit;
pub mod commits;
pub mod discussions;
pub mod gating;
pub mod inference;
pub mod info;
pub mod lfs_files;
pub mod likes;
pub mod misc;
pub mod preupload;
pub mod refs;
pub mod repo_json;
pub mod repos;
pub mod safetensors;
pub mod search;
pub mod settings;
pub mod tree;
pub mod usage;
pub mod webhooks;
pub mod whoami;

use crate::state::AppState;
use axum::http::Uri;

/// `{}`: what most write endpoints answer.
#[derive(serde::Serialize)]
pub struct Empty {}

/// The absolute URL of the next page: the request URL with every original query parameter
/// and `cursor` replaced (the client follows `Link` verbatim).
pub fn next_page_url(state: &AppState, uri: &Uri, cursor: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        if k != "cursor" {
            query.append_pair(&k, &v);
        }
    }
    query.append_pair("cursor", cursor);
    format!("{}{}?{}", state.public_url(), uri.path(), query.finish())
}

/// `Link: <url>; rel="next"`.
pub fn link_header(url: &str) -> (axum::http::HeaderName, String) {
    (axum::http::header::LINK, format!("<{url}>; rel=\"next\""))
}
