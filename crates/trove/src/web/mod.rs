//! The web UI: server-rendered HTML pages (askama templates in `crates/trove/templates/`,
//! compiled into the binary) that call the same use cases as the API.
//!
//! Today: the browsing pages `/models`, `/datasets` and `/spaces` (search, facets, sorts,
//! pages), each repository's page (card, tags, files at `main`), and signing in and out
//! (`/login`, `/logout`); `/` shows the models.

pub mod facets;
pub mod listing;
pub mod repo;
pub mod session;

use crate::error::ApiError;
use axum::response::{Html, IntoResponse, Response};

/// Renders a template into a response; a rendering failure is an internal error.
pub fn render(template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}
