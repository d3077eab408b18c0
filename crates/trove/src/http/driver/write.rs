//! Writing one response on the socket: the head, then the body as file ranges through
//! `sendfile(2)`, as frames with a `Content-Length`, chunked, or (HTTP/1.0 without a
//! length) up to the close.

use crate::http::body_limit::declared_length;
use crate::repos::file_ranges::{FileRange, FileRanges};
use axum::body::Body;
use axum::response::Response;
use bytes::{Buf, Bytes};
use futures_util::FutureExt;
use http::{HeaderValue, Method, StatusCode, Version, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::io;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Bytes handed to one `sendfile` call at most; the socket's buffer bounds each call anyway.
const SENDFILE_MAX: usize = 1 << 30;

/// How a response went out: whether the connection can carry another request.
pub enum Sent {
    KeepAlive,
    Close,
}

/// Writes `response` to a request of `method`/`version`; `keep_alive` is what the request
/// and the server allow. An error means the connection is unusable (the client went away,
/// or a body failed midway): close it.
pub async fn response(
    tcp: &mut TcpStream,
    method: &Method,
    version: Version,
    mut keep_alive: bool,
    response: Response,
) -> io::Result<Sent> {
    let (mut parts, body) = response.into_parts();
    let headers = &mut parts.headers;
    if headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    {
        keep_alive = false;
    }
    if !headers.contains_key(header::DATE)
        && let Some(date) = date_now()
    {
        headers.insert(header::DATE, date);
    }
    let status = parts.status;
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let declared = declared_length(headers);
    if *method == Method::HEAD || bodiless {
        if declared.is_none()
            && !bodiless
            && !headers.contains_key(header::TRANSFER_ENCODING)
            && let Some(n) = body.size_hint().exact()
        {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        set_connection(headers, version, keep_alive);
        send_head(tcp, status, headers, false).await?;
        drop(body);
        return Ok(sent(keep_alive));
    }
    headers.remove(header::TRANSFER_ENCODING);
    let files = parts.extensions.get::<FileRanges>().cloned();
    let length = declared.or_else(|| body.size_hint().exact());
    // The ranges stand for the body only if nothing between the handler and here changed
    // it (a length that differs, an encoding).
    if let Some(files) =
        files.filter(|f| Some(f.len()) == length && !headers.contains_key(header::CONTENT_ENCODING))
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(files.len()));
        set_connection(headers, version, keep_alive);
        send_head(tcp, status, headers, !files.is_empty()).await?;
        let mut sent_bytes = 0u64;
        let mut result = Ok(());
        for range in files.ranges() {
            match send_range(tcp, range).await {
                Ok(n) => sent_bytes += n,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        files.report_sent(sent_bytes, result.is_ok());
        // The access log's line is written as the body drops, after the report above.
        drop(body);
        result?;
        return Ok(sent(keep_alive));
    }
    match length {
        Some(len) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            set_connection(headers, version, keep_alive);
            write_counted(tcp, head_bytes(status, headers), body, len).await?;
            Ok(sent(keep_alive))
        }
        None if version == Version::HTTP_11 => {
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            set_connection(headers, version, keep_alive);
            send_head(tcp, status, headers, false).await?;
            write_chunked(tcp, body).await?;
            Ok(sent(keep_alive))
        }
        // HTTP/1.0 has no chunks: the body ends where the connection does.
        None => {
            set_connection(headers, version, false);
            send_head(tcp, status, headers, false).await?;
            write_to_close(tcp, body).await?;
            Ok(Sent::Close)
        }
    }
}

/// The `Date` of a response sent now, written once a second per thread.
pub(super) fn date_now() -> Option<HeaderValue> {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, Option<HeaderValue>)> =
            const { std::cell::RefCell::new((u64::MAX, None)) };
    }
    let now = std::time::SystemTime::now();
    let second = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != second || date.1.is_none() {
            *date = (
                second,
                HeaderValue::from_str(&httpdate::fmt_http_date(now)).ok(),
            );
        }
        date.1.clone()
    })
}

pub(super) fn sent(keep_alive: bool) -> Sent {
    match keep_alive {
        true => Sent::KeepAlive,
        false => Sent::Close,
    }
}

/// `Connection: close` when this is the last response; `keep-alive` to an HTTP/1.0 client
/// that asked for it (HTTP/1.1 keeps connections by default).
fn set_connection(headers: &mut http::HeaderMap, version: Version, keep_alive: bool) {
    if let Some(value) = connection_value(version, keep_alive) {
        headers.insert(header::CONNECTION, HeaderValue::from_static(value));
    }
}

/// The `Connection` a response to a request of `version` carries: `close` when it is the
/// last, `keep-alive` to an HTTP/1.0 client that keeps it, none otherwise.
pub(super) fn connection_value(version: Version, keep_alive: bool) -> Option<&'static str> {
    match (keep_alive, version) {
        (false, _) => Some("close"),
        (true, Version::HTTP_10) => Some("keep-alive"),
        (true, _) => None,
    }
}

/// Writes the status line and headers; with `more`, the kernel holds them back for the
/// bytes that follow (`MSG_MORE`), so a small file goes out in one segment with its head.
async fn send_head(
    tcp: &mut TcpStream,
    status: StatusCode,
    headers: &http::HeaderMap,
    more: bool,
) -> io::Result<()> {
    let head = head_bytes(status, headers);
    if !more {
        return tcp.write_all(&head).await;
    }
    let flags = rustix::net::SendFlags::MORE | rustix::net::SendFlags::NOSIGNAL;
    let mut at = 0;
    while at < head.len() {
        let rest = &head[at..];
        at += tcp
            .async_io(Interest::WRITABLE, || {
                rustix::net::send(&*tcp, rest, flags).map_err(io::Error::from)
            })
            .await?;
    }
    Ok(())
}

/// The status line and headers, as they go on the wire.
fn head_bytes(status: StatusCode, headers: &http::HeaderMap) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    status_line(&mut head, status);
    for (name, value) in headers {
        header_line(&mut head, name.as_str(), value.as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Appends the status line of a response with `status`.
pub(super) fn status_line(head: &mut Vec<u8>, status: StatusCode) {
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
}

/// Appends one header line.
pub(super) fn header_line(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// `sendfile`s one range to the socket, waiting for room as often as it takes; returns the
/// bytes sent. A file that ends before the range does is an error (the connection closes, the
/// client sees a short body rather than a wrong one).
async fn send_range(tcp: &TcpStream, range: &FileRange) -> io::Result<u64> {
    let end = range.offset + range.len;
    let mut offset = range.offset;
    while offset < end {
        let count = (end - offset).min(SENDFILE_MAX as u64) as usize;
        let n = tcp
            .async_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(tcp, &*range.file, Some(&mut offset), count)
                    .map_err(io::Error::from)
            })
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ended {} bytes early", end - offset),
            ));
        }
    }
    Ok(range.len)
}

/// Writes `head`, then a body of a declared `len`; one that ends short or runs long is an
/// error (the head promised `len`). A first frame the body has ready at once (a small file
/// read whole) goes out with the head in one write, one segment; otherwise the head goes
/// first, so that a client never waits on a slow body for it.
async fn write_counted(
    tcp: &mut TcpStream,
    head: Vec<u8>,
    mut body: Body,
    len: u64,
) -> io::Result<()> {
    let mut written = 0u64;
    let first = body.frame().now_or_never();
    let ended = matches!(first, Some(None));
    match first {
        Some(Some(Err(e))) => {
            // As when the body fails later: the head out, then the connection cut.
            tcp.write_all(&head).await?;
            return Err(io::Error::other(e));
        }
        Some(Some(Ok(frame))) => {
            let data = frame.into_data().unwrap_or_else(|_| Bytes::new());
            written += data.len() as u64;
            if written > len {
                return Err(io::Error::other(format!(
                    "the body runs past its Content-Length of {len}"
                )));
            }
            tcp.write_all_buf(&mut head.as_slice().chain(data)).await?;
        }
        Some(None) | None => tcp.write_all(&head).await?,
    }
    while !ended && let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        written += data.len() as u64;
        if written > len {
            return Err(io::Error::other(format!(
                "the body runs past its Content-Length of {len}"
            )));
        }
        tcp.write_all(&data).await?;
    }
    if written != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the body ended at {written} of {len} bytes"),
        ));
    }
    Ok(())
}

async fn write_chunked(tcp: &mut TcpStream, mut body: Body) -> io::Result<()> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let size = format!("{:x}\r\n", data.len());
        // One vectored write per chunk: size line, bytes, CRLF.
        let mut chunk = size.as_bytes().chain(data).chain(&b"\r\n"[..]);
        tcp.write_all_buf(&mut chunk).await?;
    }
    tcp.write_all(b"0\r\n\r\n").await
}

async fn write_to_close(tcp: &mut TcpStream, mut body: Body) -> io::Result<()> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        if let Ok(data) = frame.into_data() {
            tcp.write_all(&data).await?;
        }
    }
    Ok(())
}
