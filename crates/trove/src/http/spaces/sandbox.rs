//! What keeps a Space's app from acting as the hub when it is served on the hub's own origin
//! (`/spaces/{ns}/{name}/app/…`): every answer there is sandboxed (`Content-Security-Policy:
//! sandbox` without `allow-same-origin`, and the Space page's frame carries the same
//! `sandbox`), so the app's documents run in an opaque origin. From there the app's script
//! cannot read the hub's pages, and its requests to the hub carry `Origin: null` and none of
//! the hub's `SameSite` cookies: it cannot act as the person looking at it.
//!
//! The app's own requests (Gradio's frontend fetching its config and API) are then
//! cross-origin: the hub answers their CORS preflights and lets `Origin: null` read answers
//! made without credentials. Nothing a cookie unlocks becomes readable that way.

use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// The sandbox of an app's documents on the hub's origin: everything an app needs except the
/// hub's origin (no `allow-same-origin`, no `allow-top-navigation`).
pub const APP_SANDBOX: &str = "sandbox allow-scripts allow-forms allow-popups \
    allow-popups-to-escape-sandbox allow-modals allow-downloads";

/// The `sandbox` attribute of the frame the Space page shows the app in: the same flags.
pub const FRAME_SANDBOX: &str = "allow-scripts allow-forms allow-popups \
    allow-popups-to-escape-sandbox allow-modals allow-downloads";

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE_SECS: &str = "600";

/// Whether a request comes from an opaque origin (a sandboxed app's document).
fn from_sandbox(headers: &HeaderMap) -> bool {
    headers
        .get(header::ORIGIN)
        .is_some_and(|o| o.as_bytes() == b"null")
}

/// The answer to a CORS preflight a sandboxed app sends for its own API, `None` for any
/// other request. It is answered before the caller is checked: a preflight never carries
/// credentials, and this one says the same for every Space, existing or not.
pub fn preflight(method: &Method, headers: &HeaderMap) -> Option<Response> {
    if method != Method::OPTIONS
        || !from_sandbox(headers)
        || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return None;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("null"),
    );
    if let Some(m) = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD) {
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m.clone());
    }
    if let Some(h) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone());
    }
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS),
    );
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    Some(response)
}

/// Confines an answer served on the hub's origin for a Space's app: sandboxed, never
/// sniffed into another type, and readable by the sandboxed app itself (`Origin: null`,
/// without credentials) when that is who asked.
pub fn confine(request_headers: &HeaderMap, response: &mut Response) {
    let sandboxed = from_sandbox(request_headers);
    let out = response.headers_mut();
    // Appended: a policy the app sets itself still holds as well.
    out.append(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(APP_SANDBOX),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // An app's own CORS answer is not the hub's to keep: credentials are never allowed.
    out.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
    if sandboxed {
        out.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("null"),
        );
        out.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The path segments that carry a path pass: `/.trove/{pass}`.
const PASS_SEGMENT: &str = "/.trove/";

/// `/.trove/{pass}`, what goes between a private Space's app prefix and the rest of a path.
pub fn pass_segment(pass: &str) -> String {
    format!("{PASS_SEGMENT}{pass}")
}

/// A path from the app's root that starts with a pass: the pass and the path after it
/// (`/` when nothing follows). `None` for any other path.
pub fn split_pass(rest: &str) -> Option<(&str, &str)> {
    let after = rest.strip_prefix(PASS_SEGMENT)?;
    match after.find('/') {
        Some(0) => None,
        Some(i) => Some((&after[..i], &after[i..])),
        None if after.is_empty() => None,
        None => Some((after, "/")),
    }
}

/// Whether a request is a browser opening a document (a page or a frame), which may be sent
/// elsewhere; `Sec-Fetch-Mode` says so where browsers send it (secure contexts), `Accept`
/// where they do not (plain http to another host).
pub fn is_navigation(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-mode") {
        Some(mode) => mode.as_bytes() == b"navigate",
        None => headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html")),
    }
}

/// The one header every app answer gets, on its own origin too.
pub fn nosniff(response: &mut Response) {
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn every_answer_is_sandboxed_without_the_hubs_origin() {
        let mut response = Response::new(axum::body::Body::empty());
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'"),
        );
        response.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        confine(&HeaderMap::new(), &mut response);
        let csp: Vec<&str> = response
            .headers()
            .get_all(header::CONTENT_SECURITY_POLICY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(csp, ["default-src 'self'", APP_SANDBOX]);
        assert!(!APP_SANDBOX.contains("allow-same-origin"));
        assert!(!APP_SANDBOX.contains("allow-top-navigation"));
        assert_eq!(FRAME_SANDBOX, APP_SANDBOX.trim_start_matches("sandbox "));
        assert_eq!(
            response.headers().get(header::X_CONTENT_TYPE_OPTIONS),
            Some(&HeaderValue::from_static("nosniff"))
        );
        assert!(
            response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
                .is_none()
        );
        // Not asked from the sandbox: no CORS.
        assert!(
            response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none()
        );
    }

    #[test]
    fn the_sandboxed_app_reads_its_own_answers() {
        let mut response = Response::new(axum::body::Body::empty());
        confine(&headers(&[("origin", "null")]), &mut response);
        assert_eq!(
            response.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some(&HeaderValue::from_static("null"))
        );
        let mut other = Response::new(axum::body::Body::empty());
        confine(&headers(&[("origin", "https://evil.example")]), &mut other);
        assert!(
            other
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none()
        );
    }

    #[test]
    fn a_pass_is_the_segment_after_dot_trove() {
        assert_eq!(
            split_pass("/.trove/1.2.3.sig/a/b"),
            Some(("1.2.3.sig", "/a/b"))
        );
        assert_eq!(split_pass("/.trove/1.2.3.sig/"), Some(("1.2.3.sig", "/")));
        assert_eq!(split_pass("/.trove/1.2.3.sig"), Some(("1.2.3.sig", "/")));
        assert_eq!(split_pass("/.trove/"), None);
        assert_eq!(split_pass("/.trove//x"), None);
        assert_eq!(split_pass("/assets/.trove/x/y"), None);
        assert_eq!(split_pass("/"), None);
        let segment = pass_segment("p");
        assert_eq!(split_pass(&format!("{segment}/x")), Some(("p", "/x")));
    }

    #[test]
    fn navigations_are_told_by_fetch_metadata_or_accept() {
        assert!(is_navigation(&headers(&[("sec-fetch-mode", "navigate")])));
        assert!(!is_navigation(&headers(&[
            ("sec-fetch-mode", "cors"),
            ("accept", "text/html")
        ])));
        assert!(is_navigation(&headers(&[("accept", "text/html,*/*")])));
        assert!(!is_navigation(&headers(&[("accept", "application/json")])));
        assert!(!is_navigation(&HeaderMap::new()));
    }

    #[test]
    fn only_preflights_from_the_sandbox_are_answered() {
        let asked = headers(&[
            ("origin", "null"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ]);
        let answer = preflight(&Method::OPTIONS, &asked).expect("a preflight");
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            answer.headers().get(header::ACCESS_CONTROL_ALLOW_HEADERS),
            Some(&HeaderValue::from_static("content-type"))
        );
        assert!(
            answer
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
                .is_none()
        );
        assert!(preflight(&Method::POST, &asked).is_none());
        let elsewhere = headers(&[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ]);
        assert!(preflight(&Method::OPTIONS, &elsewhere).is_none());
        assert!(preflight(&Method::OPTIONS, &headers(&[("origin", "null")])).is_none());
    }
}
