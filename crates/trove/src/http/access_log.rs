//! The access log: one INFO line per request, target `trove::access`, written when the
//! response body has been sent (or the client went away): method, path, status, bytes
//! sent, duration, the signed-in user and the request id. Never the query string (signed
//! URLs carry their signature there) and never a header, so no credential reaches the log.
//! Off with `[log] access = false`.

use crate::auth::CallerSlot;
use crate::repos::file_ranges::FileRanges;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// The target of the access log's lines (the server writes them in batches, `cli::log_sink`;
/// `TROVE_LOG=info,trove::access=off` silences them).
pub const TARGET: &str = "trove::access";

/// What the line of a request being served knows from its start.
pub struct Begun {
    slot: CallerSlot,
    started: Instant,
}

/// Starts the line of `request` (`None` with the access log off): the time, and the slot in
/// which authentication leaves the caller's name.
pub fn begin(state: &AppState, request: &mut Request) -> Option<Begun> {
    if !state.config.log.access {
        return None;
    }
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    Some(Begun {
        slot,
        started: Instant::now(),
    })
}

/// The response whose body writes the line when it has been sent (or is dropped).
pub fn finish(
    begun: Begun,
    method: Method,
    path: String,
    request_id: HeaderValue,
    response: Response,
) -> Response {
    let (parts, body) = response.into_parts();
    let line = Line {
        method,
        path,
        request_id,
        slot: begun.slot,
        started: begun.started,
        status: parts.status.as_u16(),
    };
    // Sent by `http::driver` with `sendfile` instead of through this body: it says how much.
    let files = parts.extensions.get::<FileRanges>().cloned();
    Response::from_parts(
        parts,
        Body::new(Counted {
            inner: body,
            bytes: 0,
            line: Some(line),
            files,
        }),
    )
}

/// What the line says about the request, known before the body is sent.
struct Line {
    /// A standard method's clone is a copy; the request id's, a reference count.
    method: Method,
    path: String,
    request_id: HeaderValue,
    slot: CallerSlot,
    started: Instant,
    status: u16,
}

impl Line {
    fn write(self, bytes: u64, complete: bool) {
        let user = self.slot.user();
        write_line(
            &self.method,
            &self.path,
            self.status,
            bytes,
            self.started,
            user,
            &self.request_id,
            complete,
        );
    }
}

/// Writes one request's line (with the access log on: the caller asks
/// [`crate::config::LogConfig`]'s `access`): `bytes` of the body sent, `complete` unless the
/// client went away first.
#[allow(clippy::too_many_arguments)]
pub fn write_line(
    method: &Method,
    path: &str,
    status: u16,
    bytes: u64,
    started: Instant,
    user: Option<&str>,
    request_id: &HeaderValue,
    complete: bool,
) {
    tracing::info!(
        target: TARGET,
        method = %method,
        path = %path,
        status = status,
        size_bytes = bytes,
        duration_ms = started.elapsed().as_millis() as u64,
        user = user.unwrap_or("-"),
        request_id = %request_id.to_str().unwrap_or(""),
        complete,
        "request"
    );
}

/// A response body that counts what it yields and writes the line at its end, or when
/// dropped before its end (`complete=false`: the client went away). A body whose bytes went
/// out as file ranges is dropped unpolled, after the sender reported them.
struct Counted {
    inner: Body,
    bytes: u64,
    line: Option<Line>,
    files: Option<FileRanges>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(line) = this.line.take() {
                    line.write(this.bytes, true);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            if let Some((bytes, complete)) = self.files.as_ref().and_then(FileRanges::sent) {
                line.write(bytes, complete);
                return;
            }
            // A body that was empty from the start is never polled to its end.
            let complete = self.inner.is_end_stream();
            line.write(self.bytes, complete);
        }
    }
}
