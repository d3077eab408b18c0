//! A route group's body limit: a request whose `Content-Length` exceeds it is refused with
//! 413 before a byte of its body is read — a client that announces a body it never sends
//! would otherwise hold the request open — answered in the group's own error format (the
//! Hub's JSON, git's text, git-lfs's JSON). Bodies without a length are capped as they are
//! read: by `DefaultBodyLimit` for the extractors, by the streaming handlers' own counts.
//!
//! A tower layer of its own rather than axum's `from_fn`: that boxes its future, clones the
//! service it wraps into a box, and boxes the check's future again on every request; this one
//! answers a refusal at once and otherwise hands the request on, its future the route's own.

use crate::error::ApiError;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_LENGTH;
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use std::convert::Infallible;
use std::future::Ready;
use std::task::{Context, Poll};

/// A route group's body limit and how its surface renders the refusal.
#[derive(Clone, Copy)]
pub struct BodyLimit {
    pub limit: u64,
    pub render: fn(ApiError) -> Response,
}

/// The limit `limit`, refused in the Hub's JSON.
pub fn body_limit(limit: u64) -> BodyLimit {
    BodyLimit {
        limit,
        render: IntoResponse::into_response,
    }
}

/// The length `headers` declare (`Content-Length`); `None` when there is none or it is not a
/// number (a body without a length is capped as it is read).
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

impl BodyLimit {
    /// The refusal of a request whose headers declare more than the limit; `None` when it
    /// may go on (no length declared, or one within the limit).
    fn refusal(&self, request: &Request) -> Option<Response> {
        let declared = declared_length(request.headers())?;
        (declared > self.limit)
            .then(|| (self.render)(ApiError::PayloadTooLarge { limit: self.limit }))
    }
}

impl<S> tower::Layer<S> for BodyLimit {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            limit: *self,
            inner,
        }
    }
}

/// A route's service behind its group's [`BodyLimit`].
#[derive(Clone)]
pub struct Limited<S> {
    limit: BodyLimit,
    inner: S,
}

impl<S> tower::Service<Request> for Limited<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    /// The refusal, ready at once, or the route's own future.
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.limit.refusal(&request) {
            Some(refused) => Either::Left(std::future::ready(Ok(refused))),
            None => Either::Right(self.inner.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn answer_of(limit: u64, request: Request) -> (u16, usize) {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        let route = tower::service_fn(move |_request: Request| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, Infallible>(Response::new(Body::from("routed")))
            }
        });
        let response = tower::Layer::layer(&body_limit(limit), route)
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        (
            response.status().as_u16(),
            calls.load(std::sync::atomic::Ordering::SeqCst),
        )
    }

    fn with_length(length: &str) -> Request {
        Request::builder()
            .method("POST")
            .uri("/api/x")
            .header(CONTENT_LENGTH, length)
            .body(Body::empty())
            .expect("request")
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_the_route() {
        assert_eq!(answer_of(10, with_length("11")).await, (413, 0));
        assert_eq!(answer_of(10, with_length(" 11 ")).await, (413, 0));
    }

    #[tokio::test]
    async fn a_length_within_the_limit_or_none_or_unreadable_goes_to_the_route() {
        assert_eq!(answer_of(10, with_length("10")).await, (200, 1));
        assert_eq!(answer_of(10, with_length("ten")).await, (200, 1));
        let without = Request::builder()
            .uri("/api/x")
            .body(Body::empty())
            .expect("request");
        assert_eq!(answer_of(10, without).await, (200, 1));
    }
}
