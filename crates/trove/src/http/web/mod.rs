//! The web UI: server-rendered HTML pages (askama templates in `crates/trove/templates/`,
//! compiled into the binary) that call the same use cases as the API.
//!
//! Today: the browsing pages `/models`, `/datasets` and `/spaces` (search, facets, sorts,
//! pages), each repository's page (card, tags, files at `main`), and signing in and out
//! (`/login`, `/logout`); `/` shows the models.

pub mod collections;
pub mod listing;
pub mod repo;
pub mod session;

use crate::error::ApiError;
use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Renders a template into a response; a rendering failure is an internal error.
pub fn render(template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    section: &'static str,
    signed_in: Option<String>,
    status: String,
    message: String,
    suggest_login: bool,
}

/// A refusal as a page: the API error's status and headers (`X-Error-Code`,
/// `X-Error-Message`…) with an HTML body, so a hidden repository's page is still exactly a
/// missing one's (the page names neither).
pub fn error_page(error: ApiError) -> Response {
    let suggest_login = matches!(error, ApiError::RepoNotFound { anonymous: true });
    let parts = error.public_parts();
    let status = parts.status;
    let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
        "Something went wrong on the server.".to_owned()
    } else {
        crate::error::header_text(&parts.message)
    };
    let page = ErrorPage {
        section: "",
        signed_in: None,
        status: format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default()
        ),
        message,
        suggest_login,
    };
    // The page's headers are the API's, so scripts and tests read the same codes.
    let mut response = error.into_response();
    let Ok(html) = page.render() else {
        return response;
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response.headers_mut().remove(header::CONTENT_LENGTH);
    *response.body_mut() = axum::body::Body::from(html);
    response
}
