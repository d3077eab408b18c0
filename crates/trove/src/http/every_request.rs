//! What every request goes through around the routed router, as one service with one future:
//! its request id, its access line, a Space's own origin answered by the Space, panics
//! answered as 500, the hub's framing rule, browsers' refusals as pages, a moved
//! repository's new place, `Connection: close` after a refused body, and the error a
//! response was made from logged once.
//!
//! One service rather than a middleware per rule: each `from_fn` layer boxes its future and
//! the service it wraps on every request (two allocations and a copy of the whole future
//! chain per layer); written as one `async fn`, the rules also read in the order they apply.

use crate::error::{ApiError, ErrorReport, MovedRepo};
use crate::http::body_limit::declared_length;
use crate::http::request_id::{self, RequestId};
use crate::http::{access_log, spaces, web};
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use tracing::Instrument;

/// The layer of [`EveryRequest`].
#[derive(Clone)]
pub struct EveryRequestLayer {
    state: AppState,
}

/// Every request's rules (see the module docs) around `state`'s routes.
pub fn layer(state: AppState) -> EveryRequestLayer {
    EveryRequestLayer { state }
}

impl<S> tower::Layer<S> for EveryRequestLayer {
    type Service = EveryRequest<S>;

    fn layer(&self, inner: S) -> EveryRequest<S> {
        EveryRequest {
            extractors_limit: DefaultBodyLimit::max(self.state.config.limits.max_json_body_bytes),
            state: self.state.clone(),
            inner,
        }
    }
}

/// The service of [`layer`] around `S` (the routed router).
#[derive(Clone)]
pub struct EveryRequest<S> {
    state: AppState,
    /// What the extractors that read a whole body (JSON, forms, bytes) take at most, unless
    /// a route group sets its own: the JSON limit.
    extractors_limit: DefaultBodyLimit,
    inner: S,
}

impl<S> EveryRequest<S> {
    /// The application state the requests are served with.
    pub fn state(&self) -> &AppState {
        &self.state
    }
}

impl<S> tower::Service<Request> for EveryRequest<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service made ready is the one called; a clone stays behind for the next call.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        // Set on the request as it goes in (the layer only marks the request: no box).
        let routes = tower::Layer::layer(&self.extractors_limit, ready);
        let state = self.state.clone();
        Box::pin(async move { Ok(serve(state, routes, request).await) })
    }
}

/// The rules, outermost first: what is known of the request is taken before it goes in,
/// and the answer is amended on its way out in the reverse order.
async fn serve<S>(state: AppState, mut inner: S, mut request: Request) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    let id = request_id::choose(request.headers());
    request.extensions_mut().insert(RequestId(id.clone()));
    let access = access_log::begin(&state, &mut request);
    let method = request.method().clone();
    // The path and query, owned once: the moved-repository rule reads both, the log lines
    // the path alone (never the query: signed URLs carry their signature there).
    let mut target = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let path_len = request.uri().path().len().min(target.len());
    let announced_body = announces_body(request.headers());
    let page_view = web::refusals::is_page_view(&request);

    // Lines logged while the request is handled name it, when debugging (`RUST_LOG=debug`):
    // its id, method and path (never the query, as below).
    let span = tracing::debug_span!(
        "request",
        id = id.to_str().unwrap_or(""),
        method = %method,
        path = target.get(..path_len).unwrap_or(""),
    );
    let routed = async {
        let mut response = match spaces::subdomain::space_label(&state, &request) {
            Some(label) => spaces::subdomain::serve_space(&state, &label, request).await,
            None => match inner.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
        };
        framed_by_the_hub_only(response.headers_mut());
        response
    };
    let mut response = match AssertUnwindSafe(routed.instrument(span))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(payload) => panic_answer(payload),
    };

    if page_view {
        response = web::refusals::as_page(response);
    }
    if let Some(moved) = response.extensions_mut().remove::<MovedRepo>() {
        point_to_new_place(&target, &moved, response.headers_mut());
    }
    if announced_body && !response.status().is_success() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    target.truncate(path_len);
    if let Some(report) = response.extensions_mut().remove::<ErrorReport>() {
        log_error(&report, &id, &method, &target);
    }
    let mut response = match access {
        Some(begun) => access_log::finish(begun, method, target, id.clone(), response),
        None => response,
    };
    response.headers_mut().insert(request_id::HEADER, id);
    response
}

/// A panic in a handler answered as a 500 in the Hub's error format (logged like any
/// internal error) instead of a dropped connection.
pub fn panic_answer(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    ApiError::internal(anyhow::anyhow!("panic: {what}")).into_response()
}

/// `X-Frame-Options: SAMEORIGIN` on every answer of the hub's origin that does not set its
/// own: a page of the hub shows in a frame only when every frame around it is the hub's, so
/// a Space's app (sandboxed, opaque origin) cannot frame the hub's pages to trick a click.
fn framed_by_the_hub_only(headers: &mut HeaderMap) {
    if !headers.contains_key(header::X_FRAME_OPTIONS) {
        headers.insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
    }
}

/// Whether the request announces a body. One that is answered with anything but success
/// may not have had its body read (a refusal comes first: 401, 403, 404, 413, a redirect…),
/// and the connection closes after the answer; `Connection: close` says so, so that a
/// client's pool does not send its next request into a socket about to close (seen as
/// "Server disconnected without sending a response").
fn announces_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || declared_length(headers).is_some_and(|n| n > 0)
}

/// The error a response was made from, logged once with the request id: internal errors
/// (their cause, never shown to the client) at ERROR, refusals (the client's doing, but the
/// reason helps whoever runs the server) at INFO.
fn log_error(report: &ErrorReport, id: &HeaderValue, method: &Method, path: &str) {
    let request_id = id.to_str().unwrap_or("");
    match &report.internal {
        Some(cause) => tracing::error!(
            request.id = %request_id,
            http.method = %method,
            http.path = %path,
            status = report.status.as_u16(),
            error = %cause,
            "internal error"
        ),
        None => tracing::info!(
            request.id = %request_id,
            http.method = %method,
            http.path = %path,
            status = report.status.as_u16(),
            message = %report.message,
            "request refused"
        ),
    }
}

/// A request that named a moved repository by its old name gets `Location`: the same path
/// and query with the old `namespace/name` replaced by the new one (relative, so clients
/// follow it on the same origin; 307 keeps the method and body).
fn point_to_new_place(path_and_query: &str, moved: &MovedRepo, headers: &mut HeaderMap) {
    if let Some(location) = moved_location(path_and_query, moved)
        && let Ok(value) = HeaderValue::from_str(&location)
    {
        headers.insert(header::LOCATION, value);
    }
}

/// Replaces the first `/{from}` path segment pair (ASCII case ignored, as names are) that
/// ends at `/`, `.git`, `?` or the end. `None` if the path does not contain it.
fn moved_location(path_and_query: &str, moved: &MovedRepo) -> Option<String> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let needle = format!("/{}", moved.from).to_ascii_lowercase();
    let lower = path.to_ascii_lowercase();
    let mut start = 0;
    while let Some(found) = lower[start..].find(&needle) {
        let at = start + found;
        let end = at + needle.len();
        let rest = &path[end..];
        if rest.is_empty() || rest.starts_with('/') || rest.starts_with(".git") {
            let mut out = format!("{}/{}{}", &path[..at], moved.to, rest);
            if let Some(q) = query {
                out.push('?');
                out.push_str(q);
            }
            return Some(out);
        }
        start = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_locations_keep_the_rest_of_the_url() {
        let m = MovedRepo {
            from: "acme/detector".into(),
            to: "acme/detector-v2".into(),
        };
        let cases = [
            (
                "/api/models/acme/detector",
                Some("/api/models/acme/detector-v2"),
            ),
            (
                "/api/models/ACME/Detector/tree/main?recursive=1",
                Some("/api/models/acme/detector-v2/tree/main?recursive=1"),
            ),
            (
                "/acme/detector/resolve/main/acme/detector/x",
                Some("/acme/detector-v2/resolve/main/acme/detector/x"),
            ),
            (
                "/acme/detector.git/info/refs?service=git-upload-pack",
                Some("/acme/detector-v2.git/info/refs?service=git-upload-pack"),
            ),
            ("/acme/detectorx/resolve/main/f", None),
        ];
        for (path, want) in cases {
            assert_eq!(moved_location(path, &m).as_deref(), want, "{path}");
        }
    }

    #[test]
    fn a_body_is_announced_by_a_length_over_zero_or_chunks() {
        let with = |name: header::HeaderName, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_str(value).expect("header"));
            announces_body(&h)
        };
        assert!(with(header::CONTENT_LENGTH, "12"));
        assert!(with(header::TRANSFER_ENCODING, "chunked"));
        assert!(!with(header::CONTENT_LENGTH, "0"));
        assert!(!with(header::CONTENT_LENGTH, "twelve"));
        assert!(!announces_body(&HeaderMap::new()));
    }
}
