//! Refusals a browser sees as pages: a response that is an error and not already HTML —
//! the router's fallback (an unknown page), a 405, a body-limit 413, a panic's 500 — is
//! re-rendered as the web's error page when the request is a page view. Status and headers
//! (`X-Error-Code`, `X-Error-Message`, `WWW-Authenticate`…) stay the API's; only the body
//! changes. The client's surfaces (`/api/`, file downloads, git, LFS, Xet, a Space's app)
//! and requests that do not prefer HTML are never touched, so their bytes stay the Hub's.

use super::{ErrorPage, Nav};
use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

/// Whether the request is a browser's page view whose refusals [`as_page`] re-renders.
/// The `Accept` header first: clients' requests (which do not prefer HTML) stop there.
pub fn is_page_view(request: &Request) -> bool {
    prefers_html(request.headers()) && is_page_path(request.uri().path())
}

/// A page view's answer (see the module docs): an error that is not already HTML gets the
/// web's error page as its body.
pub fn as_page(mut response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        return response;
    }
    let message = match response
        .headers()
        .get("x-error-message")
        .and_then(|v| v.to_str().ok())
    {
        Some(text) if status != StatusCode::INTERNAL_SERVER_ERROR => text.to_owned(),
        _ => default_message(status).to_owned(),
    };
    let page = ErrorPage {
        nav: Nav::anonymous(),
        status: status_line(status),
        message,
        suggest_login: status == StatusCode::UNAUTHORIZED,
    };
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

/// `404 Not Found`.
pub fn status_line(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    )
}

fn default_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "There is no page here.",
        StatusCode::METHOD_NOT_ALLOWED => "This page does not take that kind of request.",
        StatusCode::PAYLOAD_TOO_LARGE => "What you sent is larger than this hub accepts.",
        s if s.is_server_error() => "Something went wrong on the server.",
        _ => "This request was refused.",
    }
}

/// Whether `path` can be a page: not one of the paths a client other than a browser calls
/// (the API, file downloads, git and LFS under a repository, LFS transfers, Xet, a Space's
/// app, health and telemetry).
fn is_page_path(path: &str) -> bool {
    const CLIENT_ROOTS: &[&str] = &["api", "_lfs", "xet", "v1", "healthz", "readyz"];
    const CLIENT_ROUTES: &[&str] = &["resolve", "info", "git-upload-pack", "git-receive-pack"];
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.first().is_some_and(|s| CLIENT_ROOTS.contains(s)) {
        return false;
    }
    let repo_rest = match segments.as_slice() {
        ["spaces", _, _, "app", ..] => return false,
        ["datasets" | "spaces", _, _, rest @ ..] => rest,
        [_, _, rest @ ..] => rest,
        _ => &[],
    };
    !repo_rest.first().is_some_and(|s| CLIENT_ROUTES.contains(s))
}

/// Whether the request's `Accept` ranks `text/html` above JSON and anything else it names
/// (a browser's page request does; `huggingface_hub`, curl and scripts do not).
fn prefers_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut html: Option<f32> = None;
    let mut best_other = 0.0f32;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "text/html" | "application/xhtml+xml" => html = Some(html.unwrap_or(0.0).max(q)),
            "*/*" | "text/*" => {}
            _ => best_other = best_other.max(q),
        }
    }
    html.is_some_and(|q| q > 0.0 && q >= best_other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_browser_paths_are_pages() {
        for page in [
            "/",
            "/nowhere",
            "/acme/model/blob/main/x",
            "/datasets/acme/d/tree/main",
            "/spaces/acme/s/settings",
            "/acme/model/unknown/thing",
        ] {
            assert!(is_page_path(page), "{page}");
        }
        for client in [
            "/api/models/acme/m",
            "/api/unknown",
            "/acme/m/resolve/main/config.json",
            "/datasets/acme/d/resolve/main/x.csv",
            "/acme/m.git/info/refs",
            "/acme/m/info/lfs/objects/batch",
            "/acme/m/git-upload-pack",
            "/_lfs/objects/abc",
            "/xet/v1/xorbs/default/x",
            "/spaces/acme/s/app/missing",
            "/healthz",
        ] {
            assert!(!is_page_path(client), "{client}");
        }
    }

    #[test]
    fn browsers_prefer_html_and_clients_do_not() {
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(v).expect("header"));
            prefers_html(&h)
        };
        assert!(accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(accept("text/html"));
        assert!(!accept("*/*"));
        assert!(!accept("application/json"));
        assert!(!accept("application/json, text/html;q=0.5"));
        assert!(!accept("text/html;q=0"));
        assert!(!prefers_html(&HeaderMap::new()));
    }
}
