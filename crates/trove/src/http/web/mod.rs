//! The web UI: server-rendered HTML pages (askama templates in `crates/trove/templates/`,
//! compiled into the binary) that call the same use cases and the same authorization as
//! the API. Every page is routed in [`routes`]; refusals render as HTML with the API's
//! status and error headers ([`error_page`]).
//!
//! Pages: browsing (`/models`, `/datasets`, `/spaces`), a repository (card, files at
//! `main`), its folders (`tree/`), files (`blob/`, `raw/`), history (`commits/`, `commit/`),
//! discussions and pull requests, signing in and out, the signed-in user's tokens
//! (`/settings/tokens`) and user and organization pages (`/{name}`).

pub mod assets;
pub mod browse;
pub mod collections;
pub mod committing;
pub mod csrf;
pub mod discussions;
pub mod edit;
pub mod head;
pub mod history;
pub mod listing;
pub mod new_repo;
pub mod preview;
pub mod profile;
pub mod profile_settings;
pub mod refusals;
pub mod repo;
pub mod session;
pub mod settings;
pub mod space;
pub mod tokens;
pub mod upload;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

/// Every page of the web UI, for models and under the `datasets/` and `spaces/` prefixes,
/// exactly as the Hub spells them (the client prints these URLs).
pub fn routes() -> Router<AppState> {
    let mut web = Router::new()
        .route("/models", get(listing::models))
        .route("/datasets", get(listing::datasets))
        .route("/spaces", get(listing::spaces))
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/models") }),
        )
        .route("/login", get(session::form).post(session::login))
        .route("/login/token", post(session::login_with_token))
        .route("/signup", get(session::signup_form).post(session::signup))
        .route("/logout", post(session::logout))
        .route("/new", get(new_repo::form).post(new_repo::create))
        .route("/settings/tokens", get(tokens::page).post(tokens::create))
        .route("/settings/tokens/revoke", post(tokens::revoke))
        .route(
            "/settings/profile",
            get(profile_settings::page).post(profile_settings::save),
        )
        .route("/{name}", get(profile::page))
        .route("/collections/{owner}", get(collections::owner_page))
        .route("/collections/{ns}/{slug}", get(collections::page))
        .route("/favicon.ico", get(assets::favicon))
        .route("/static/{version}/{file}", get(assets::serve));
    for prefix in ["", "/datasets", "/spaces"] {
        let base = format!("{prefix}/{{ns}}/{{name}}");
        web = web
            .route(&base, get(repo::page))
            .route(&format!("{base}/like"), post(repo::like))
            .route(&format!("{base}/ask-access"), post(repo::ask_access))
            .route(
                &format!("{base}/settings"),
                get(settings::page).post(settings::act),
            )
            .route(&format!("{base}/tree/{{rev}}"), get(browse::tree_root))
            .route(&format!("{base}/tree/{{rev}}/{{*path}}"), get(browse::tree))
            .route(&format!("{base}/blob/{{rev}}/{{*path}}"), get(browse::blob))
            .route(&format!("{base}/raw/{{rev}}/{{*path}}"), get(browse::raw))
            .route(
                &format!("{base}/edit/{{rev}}/{{*path}}"),
                get(edit::edit_form).post(edit::edit),
            )
            .route(
                &format!("{base}/new/{{rev}}"),
                get(edit::new_form).post(edit::create),
            )
            .route(&format!("{base}/commits/{{rev}}"), get(history::commits))
            .route(&format!("{base}/commit/{{sha}}"), get(history::commit))
            .route(&format!("{base}/discussions"), get(discussions::list))
            .route(
                &format!("{base}/discussions/{{num}}"),
                get(discussions::page).post(discussions::act),
            );
    }
    web = web
        .route("/datasets/{ns}/{name}/viewer", get(preview::viewer))
        .route(
            "/datasets/{ns}/{name}/viewer/{config}/{split}",
            get(preview::viewer),
        );
    web
}

/// The upload form's target, which takes files as large as an LFS object (the router gives
/// it that body limit instead of the JSON one).
pub fn upload_routes() -> Router<AppState> {
    let mut uploads = Router::new();
    for prefix in ["", "/datasets", "/spaces"] {
        uploads = uploads.route(
            &format!("{prefix}/{{ns}}/{{name}}/upload/{{rev}}"),
            get(upload::page).post(upload::upload),
        );
    }
    uploads
}

/// What every page's frame shows: the current section, who is signed in, and the CSRF
/// token the frame's forms (log out) carry.
pub struct Nav {
    pub section: &'static str,
    pub user: Option<String>,
    pub csrf: String,
    pub css: String,
    pub js: String,
}

impl Nav {
    pub fn new(section: &'static str, caller: &Caller, csrf: &csrf::CsrfToken) -> Nav {
        Nav {
            section,
            user: caller.user().map(|u| u.name.clone()),
            csrf: csrf.0.clone(),
            css: assets::stylesheet_url(),
            js: assets::script_url(),
        }
    }

    /// The frame of a page shown to nobody in particular (errors).
    pub fn anonymous() -> Nav {
        Nav {
            section: "",
            user: None,
            csrf: String::new(),
            css: assets::stylesheet_url(),
            js: assets::script_url(),
        }
    }
}

/// A posted form's fields, or the one 400 every page answers for a form it cannot read.
pub fn form_fields<T>(
    form: Result<axum::extract::Form<T>, axum::extract::rejection::FormRejection>,
) -> crate::error::ApiResult<T> {
    form.map(|axum::extract::Form(fields)| fields)
        .map_err(|e| ApiError::bad_request(format!("Invalid form: {e}")))
}

/// Renders a template into a response; a rendering failure is an internal error.
pub fn render(template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub nav: Nav,
    pub status: String,
    pub message: String,
    pub suggest_login: bool,
}

/// A refusal as a page: the API error's status and headers (`X-Error-Code`,
/// `X-Error-Message`…) with an HTML body, so a hidden repository's page is still exactly a
/// missing one's (the page names neither).
pub fn error_page(error: ApiError) -> Response {
    let suggest_login = matches!(
        error,
        ApiError::RepoNotFound { anonymous: true }
            | ApiError::GatedRepo {
                anonymous: true,
                ..
            }
    ) || matches!(error, ApiError::Unauthenticated(_));
    let parts = error.public_parts();
    let status = parts.status;
    let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
        "Something went wrong on the server.".to_owned()
    } else {
        crate::error::header_text(&parts.message)
    };
    let page = ErrorPage {
        nav: Nav::anonymous(),
        status: refusals::status_line(status),
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

/// `1536` → `1.5 KiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What a path segment keeps unescaped in a link (RFC 3986 unreserved characters).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A revision as one URL segment (`refs/pr/1` → `refs%2Fpr%2F1`, as the Hub writes it).
pub fn rev_segment(rev: &str) -> String {
    percent_encoding::utf8_percent_encode(rev, SEGMENT).to_string()
}

/// A file path in a URL: each segment escaped, the slashes kept.
pub fn path_segments(path: &str) -> String {
    path.split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// The section a repository type's pages belong to, and its name in headings.
pub fn section_of(repo_type: trove_types::RepoType) -> (&'static str, &'static str) {
    match repo_type {
        trove_types::RepoType::Model => ("models", "Model"),
        trove_types::RepoType::Dataset => ("datasets", "Dataset"),
        trove_types::RepoType::Space => ("spaces", "Space"),
    }
}

/// `/{prefix}{ns}/{name}`: a repository's pages, relative to this hub.
pub fn repo_path(repo: &crate::repos::RepoRef) -> String {
    format!(
        "/{}{}/{}",
        repo.repo_type.url_prefix(),
        repo.repo.namespace,
        repo.repo.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_file_browser() {
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn links_escape_revisions_and_paths() {
        assert_eq!(rev_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(path_segments("a b/c#d.txt"), "a%20b/c%23d.txt");
    }
}
