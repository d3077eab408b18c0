//! The web UI's static files — stylesheet, script, favicon — compiled into the binary (the
//! hub may be air-gapped: nothing comes from a CDN). They are served under
//! `/static/{version}/{file}`, where the version is a hash of the build's assets, with a
//! year-long immutable cache: a new build changes every URL.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const CSS: &str = include_str!("../../../static/trove.css");
const JS: &str = include_str!("../../../static/trove.js");
const FAVICON: &str = include_str!("../../../static/favicon.svg");

/// The first 12 hex digits of the SHA-256 of every asset.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    for asset in [CSS, JS, FAVICON] {
        hash.update((asset.len() as u64).to_be_bytes());
        hash.update(asset.as_bytes());
    }
    hex::encode(hash.finalize())[..12].to_owned()
});

pub fn stylesheet_url() -> String {
    format!("/static/{}/trove.css", *VERSION)
}

pub fn script_url() -> String {
    format!("/static/{}/trove.js", *VERSION)
}

fn asset(file: &str) -> Option<(&'static str, &'static str)> {
    match file {
        "trove.css" => Some((CSS, "text/css; charset=utf-8")),
        "trove.js" => Some((JS, "text/javascript; charset=utf-8")),
        "favicon.svg" => Some((FAVICON, "image/svg+xml")),
        _ => None,
    }
}

/// `GET /static/{version}/{file}`. Another build's version is not served (it would be
/// cached for a year under a URL whose content it does not match).
pub async fn serve(Path((version, file)): Path<(String, String)>) -> Response {
    match asset(&file) {
        Some((body, content_type)) if version == *VERSION => {
            with_headers(body, content_type, "public, max-age=31536000, immutable")
        }
        _ => (StatusCode::NOT_FOUND, "Not found").into_response(),
    }
}

/// `GET /favicon.ico`, where browsers look without being told.
pub async fn favicon() -> Response {
    with_headers(FAVICON, "image/svg+xml", "public, max-age=86400")
}

fn with_headers(body: &'static str, content_type: &'static str, cache: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
