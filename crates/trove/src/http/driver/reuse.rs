//! Download answers given again from the answer cache (`throttle::answer_cache`): a request
//! the driver reads whole whose key — method, target and every header but those that cannot
//! change the answer — names a kept answer still valid is answered here, without the router:
//! the kept head with this response's own `Date`, `X-Request-Id` and `Connection`, the bytes
//! from the resolve cache, the access line, and the token's use recorded, as the whole way
//! would. Everything else goes the whole way, and an answer its handler marked reusable is
//! kept on its way out ([`keep`]).

use super::write::{self, Sent};
use crate::auth::note_token_use;
use crate::http::{access_log, request_id};
use crate::state::AppState;
use crate::throttle::answer_cache::{Kept, KeptBody, Reusable};
use axum::response::Response;
use bytes::{Buf, Bytes};
use http::{HeaderName, Method, Request, StatusCode, Version, header};
use std::io;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Request headers that cannot change a download's answer: left out of the key, so that a
/// client's changing trace id or its connection's wishes do not make each request new.
/// `X-Amzn-Trace-Id`/`X-Request-Id` name the request (its answer's `X-Request-Id` is made
/// afresh), `Connection` is the driver's.
const IGNORED: [HeaderName; 6] = [
    header::USER_AGENT,
    header::ACCEPT_ENCODING,
    header::ACCEPT_LANGUAGE,
    header::CONNECTION,
    HeaderName::from_static("x-amzn-trace-id"),
    HeaderName::from_static("x-request-id"),
];

/// Response headers made for each response, not kept.
const PER_RESPONSE: [HeaderName; 3] = [header::DATE, request_id::HEADER, header::CONNECTION];

/// The key of `request` in the answer cache: its method, version, target (with its host when
/// in absolute form) and every other header, in order; `None` for a request no kept answer may serve: not a `GET` or a `HEAD`,
/// or one with a cookie (a web session is read from the database every time).
pub fn key_of(state: &AppState, request: &Request<()>) -> Option<Box<[u8]>> {
    if !state.auth.answers.is_on() {
        return None;
    }
    key(request)
}

fn key(request: &Request<()>) -> Option<Box<[u8]>> {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let target = request.uri().path_and_query()?.as_str();
    let mut key = Vec::with_capacity(target.len() + 256);
    key.extend_from_slice(method.as_str().as_bytes());
    key.extend_from_slice(match request.version() {
        Version::HTTP_10 => b" 1.0 ",
        _ => b" 1.1 ",
    });
    // A target in absolute form names its host too (a Space's origin is told by it when
    // the request has no `Host`).
    if let Some(authority) = request.uri().authority() {
        key.extend_from_slice(authority.as_str().as_bytes());
    }
    key.extend_from_slice(target.as_bytes());
    key.push(b'\n');
    for (name, value) in request.headers() {
        if *name == header::COOKIE {
            return None;
        }
        if IGNORED.contains(name) {
            continue;
        }
        // Names hold no `:` and values no line break: the key is read back unambiguously.
        key.extend_from_slice(name.as_str().as_bytes());
        key.push(b':');
        key.extend_from_slice(value.as_bytes());
        key.push(b'\n');
    }
    Some(key.into_boxed_slice())
}

/// An answer found for a request, with its body's bytes.
pub struct Found {
    kept: Arc<Kept>,
    body: Bytes,
}

/// The kept answer for `key` that may serve now, with its bytes — `None` when there is none,
/// or the resolve cache no longer holds them.
pub fn find(state: &AppState, key: &[u8]) -> Option<Found> {
    let kept = state.auth.answers.get(
        key,
        || state.db.epochs(),
        Instant::now(),
        trove_db::unix_now_ms(),
    )?;
    let (bytes, start, end) = match &kept.body {
        KeptBody::Empty => (Bytes::new(), 0, 0),
        KeptBody::Blob { blob, start, end } => (state.resolve_cache.blob(blob)?, *start, *end),
        KeptBody::Lfs { oid, start, end } => (state.resolve_cache.lfs(oid)?, *start, *end),
    };
    let range = usize::try_from(start).ok()?..usize::try_from(end).ok()?;
    if range.start > range.end || range.end > bytes.len() {
        return None;
    }
    let body = bytes.slice(range);
    Some(Found { kept, body })
}

/// Answers `request` with `found` (begun at `started`); as `write::response` does, an error
/// means the connection is unusable.
pub async fn answer(
    tcp: &mut TcpStream,
    state: &AppState,
    request: &Request<()>,
    found: Found,
    keep_alive: bool,
    started: Instant,
) -> io::Result<Sent> {
    let Found { kept, body } = found;
    state.auth.answers.note_reused();
    if let Some(token) = kept.token {
        note_token_use(state, token.id, Instant::now(), trove_db::unix_now_ms());
    }
    let id = request_id::choose(request.headers());
    let status = kept.status;
    let mut head = Vec::with_capacity(kept.head.len() + 160);
    write::status_line(&mut head, status);
    head.extend_from_slice(&kept.head);
    if let Some(date) = write::date_now() {
        write::header_line(&mut head, header::DATE.as_str(), date.as_bytes());
    }
    write::header_line(&mut head, request_id::HEADER.as_str(), id.as_bytes());
    if let Some(value) = write::connection_value(request.version(), keep_alive) {
        write::header_line(&mut head, header::CONNECTION.as_str(), value.as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let sending = *request.method() == Method::GET && status != StatusCode::NOT_MODIFIED;
    let sent = match sending && !body.is_empty() {
        true => {
            let len = body.len() as u64;
            tcp.write_all_buf(&mut head.as_slice().chain(body))
                .await
                .map(|()| len)
        }
        false => tcp.write_all(&head).await.map(|()| 0),
    };
    if state.config.log.access {
        access_log::write_line(
            request.method(),
            request.uri().path(),
            status.as_u16(),
            *sent.as_ref().unwrap_or(&0),
            started,
            kept.user.as_deref(),
            &id,
            sent.is_ok(),
        );
    }
    sent?;
    Ok(write::sent(keep_alive))
}

/// Keeps `response`'s answer under `key` when its handler marked it [`Reusable`] and it is a
/// success or a `304` whose headers are whole (the mark is taken off either way).
pub fn keep(state: &AppState, key: Box<[u8]>, response: &mut Response) {
    let Some(reusable) = response.extensions_mut().remove::<Reusable>() else {
        return;
    };
    let status = response.status();
    let headers = response.headers();
    if !(status == StatusCode::OK
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED)
        || headers.contains_key(header::CONNECTION)
        || headers.contains_key(header::TRANSFER_ENCODING)
    {
        return;
    }
    let mut head = Vec::with_capacity(512);
    for (name, value) in headers {
        if PER_RESPONSE.contains(name) {
            continue;
        }
        write::header_line(&mut head, name.as_str(), value.as_bytes());
    }
    let Reusable {
        epochs,
        token,
        user,
        body,
    } = reusable;
    let kept = Kept {
        status,
        head: Bytes::from(head),
        token,
        user,
        body,
    };
    state.auth.answers.put(key, epochs, kept, Instant::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(target);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a valid request")
    }

    #[test]
    fn every_header_but_the_ignored_ones_is_in_the_key() {
        let get =
            |headers: &[(&str, &str)]| key(&request(Method::GET, "/a/b/resolve/main/f", headers));
        let base = get(&[("host", "hub"), ("authorization", "Bearer t")]);
        assert!(base.is_some());
        let same = get(&[
            ("host", "hub"),
            ("authorization", "Bearer t"),
            ("user-agent", "x"),
            ("x-amzn-trace-id", "1"),
            ("x-request-id", "2"),
            ("accept-encoding", "identity"),
            ("connection", "keep-alive"),
        ]);
        assert_eq!(base, same);
        for other in [
            get(&[("host", "hub"), ("authorization", "Bearer u")]),
            get(&[("host", "space.hub"), ("authorization", "Bearer t")]),
            get(&[("host", "hub")]),
            get(&[
                ("host", "hub"),
                ("authorization", "Bearer t"),
                ("range", "bytes=0-1"),
            ]),
            get(&[
                ("host", "hub"),
                ("authorization", "Bearer t"),
                ("x-other", "1"),
            ]),
        ] {
            assert!(other.is_some() && other != base);
        }
    }

    #[test]
    fn the_method_version_and_host_of_an_absolute_target_are_in_the_key() {
        let target = "/a/b/resolve/main/f";
        let get = key(&request(Method::GET, target, &[]));
        assert_ne!(get, key(&request(Method::HEAD, target, &[])));
        let mut old = request(Method::GET, target, &[]);
        *old.version_mut() = Version::HTTP_10;
        assert_ne!(get, key(&old));
        let absolute = key(&request(
            Method::GET,
            "http://space.hub/a/b/resolve/main/f",
            &[],
        ));
        assert!(absolute.is_some() && absolute != get);
    }

    #[test]
    fn no_key_for_a_cookie_or_another_method() {
        let target = "/a/b/resolve/main/f";
        assert!(
            key(&request(
                Method::GET,
                target,
                &[("cookie", "trove_session=s")]
            ))
            .is_none()
        );
        assert!(key(&request(Method::POST, target, &[])).is_none());
        assert!(key(&request(Method::PUT, target, &[])).is_none());
    }
}
