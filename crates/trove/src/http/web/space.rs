//! The Space parts of the web pages: the stage, app frame and logs shown on a Space's
//! page, and the page a visitor of a Space's app sees while it is not serving.

use crate::repos::RepoRef;
use crate::spaces::RuntimeView;
use crate::state::AppState;
use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use trove_types::RepoType;

#[derive(Template)]
#[template(path = "space_status.html")]
struct StatusPage {
    nav: super::Nav,
    id: String,
    stage: &'static str,
    message: Option<String>,
    waking: bool,
}

pub fn status_page(repo: &RepoRef, view: Option<&RuntimeView>) -> Response {
    let page = StatusPage {
        nav: super::Nav {
            section: "spaces",
            ..super::Nav::anonymous()
        },
        id: format!("{}/{}", repo.repo.namespace, repo.repo.name),
        stage: view.map_or("APP_STARTING", |v| v.stage.as_str()),
        message: view.and_then(|v| v.message.clone()),
        waking: view.is_none(),
    };
    let html = page
        .render()
        .unwrap_or_else(|_| "This Space is not running.".into());
    let mut response =
        (StatusCode::SERVICE_UNAVAILABLE, axum::response::Html(html)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    response
}

#[derive(Template)]
#[template(path = "space_partial.html")]
struct Partial {
    id: String,
    stage: &'static str,
    message: Option<String>,
    running: bool,
    /// The hub serves Spaces on their own subdomains too.
    subdomain: bool,
    /// The frame's `sandbox` flags: the app never runs as the hub's origin.
    sandbox: &'static str,
    build_log: String,
    run_log: String,
}

/// Lines of each log shown in the page (the API streams all that are kept).
const PAGE_LOG_LINES: usize = 200;

/// The Space part of a Space's page: its stage, its app in a frame, its logs. `None` for
/// other repositories.
pub fn page_partial(state: &AppState, repo: &RepoRef) -> Option<String> {
    if repo.repo_type != RepoType::Space {
        return None;
    }
    let view = state.spaces.runtime(repo.repo.id);
    let slot = state.spaces.existing_slot(repo.repo.id);
    let partial = Partial {
        id: format!("{}/{}", repo.repo.namespace, repo.repo.name),
        stage: view.as_ref().map_or("NO_APP_FILE", |v| v.stage.as_str()),
        message: view.as_ref().and_then(|v| v.message.clone()),
        running: view.as_ref().is_some_and(|v| {
            matches!(
                v.stage.as_str(),
                "RUNNING" | "RUNNING_BUILDING" | "SLEEPING"
            )
        }),
        subdomain: state.config.spaces.subdomain_base.is_some(),
        sandbox: crate::http::spaces::sandbox::FRAME_SANDBOX,
        build_log: slot
            .as_ref()
            .map(|s| s.build_log.tail(PAGE_LOG_LINES))
            .unwrap_or_default(),
        run_log: slot
            .as_ref()
            .map(|s| s.run_log.tail(PAGE_LOG_LINES))
            .unwrap_or_default(),
    };
    partial
        .render()
        .inspect_err(|e| tracing::error!(error = %e, "rendering the space partial"))
        .ok()
}
