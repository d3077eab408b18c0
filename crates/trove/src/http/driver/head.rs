//! Reading one request head within the budget (bytes, time) and deciding who serves it: the
//! driver (a request without a body, one whose `Content-Length` body is small enough to read
//! whole first, or an LFS transfer's `PUT` with a `Content-Length`, see `body`) or hyper
//! (everything else: chunked or large bodies, `Expect`, upgrades, HTTP/2).

use super::body::{self, Declared};
use bytes::BytesMut;
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What the driver allows a request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadBudget {
    /// Request line and headers together, in bytes.
    pub max_bytes: usize,
    /// Headers in one head.
    pub max_headers: usize,
    /// From the head's first byte to its end.
    pub max_time: Duration,
    /// Waiting for the first byte of a request on an open connection.
    pub idle: Duration,
    /// Waiting for the next byte of a body the driver reads (`body::takes_body`): a client
    /// that stalls longer gets 408 and the connection closes.
    pub body_idle: Duration,
}

impl Default for HeadBudget {
    fn default() -> Self {
        HeadBudget {
            max_bytes: 64 * 1024,
            max_headers: 100,
            max_time: Duration::from_secs(30),
            idle: Duration::from_secs(75),
            body_idle: Duration::from_secs(60),
        }
    }
}

/// What reading a head came to.
pub enum Head {
    /// The connection ended (or stayed idle past the budget, or the server is stopping)
    /// before a request began: close it without a word.
    Closed,
    /// A request without a body, for the driver; its `len` bytes are consumed from the
    /// buffer (what follows is the next request).
    Plain(Request<()>, Meta),
    /// A request with a `Content-Length` body of at most [`body::SMALL`] bytes, which the
    /// driver reads whole before the router runs (`body::read_small`); the head is consumed
    /// from the buffer, the body's first bytes may follow it there.
    Small(Request<()>, Meta, usize),
    /// A request whose body the driver reads itself (`body::takes_body`), with a
    /// `Content-Length`; the head is consumed from the buffer, the body's first bytes may
    /// follow it there.
    WithBody(Request<()>, Meta, Declared),
    /// Anything else: hyper serves the connection from the bytes already read on.
    HandOff,
    /// A head that is malformed, too large or too slow: this answer, then close.
    Refuse(crate::error::ApiError),
}

/// What the driver needs to know of a request beyond `http::Request`.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// The client asked to keep the connection open (HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
}

/// What a connection waits on while it reads a head, made once for the connection: one timer,
/// moved for each wait (moving a registered deadline later costs an atomic store, where a
/// timer made for each read is registered with the runtime's wheel and removed again under
/// its lock), and the server's stop signal, watched by one future for the connection's life.
pub struct Waits {
    timer: Pin<Box<tokio::time::Sleep>>,
    /// `None` once the server has begun to stop.
    stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Waits {
    /// The waits of a connection opened now; `stopping` turns `true` when the server stops.
    pub fn new(stopping: &tokio::sync::watch::Receiver<bool>, budget: HeadBudget) -> Waits {
        let mut stopping = stopping.clone();
        Waits {
            timer: Box::pin(tokio::time::sleep(budget.idle)),
            // A closed channel means the server is gone: stopping too.
            stop: Some(Box::pin(async move {
                let _ = stopping.wait_for(|s| *s).await;
            })),
        }
    }
}

/// Ready once the server has begun to stop (and from then on).
fn stopped(
    stop: &mut Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
) -> impl Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| {
        let Some(watching) = stop.as_mut() else {
            return Poll::Ready(());
        };
        let now = watching.as_mut().poll(cx);
        if now.is_ready() {
            *stop = None;
        }
        now
    })
}

/// Reads into `buf` until it holds a whole head, then parses it. A connection waiting for a
/// request closes when the server stops (`waits`).
pub async fn read(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    budget: HeadBudget,
    waits: &mut Waits,
) -> Head {
    let idle_until = Instant::now() + budget.idle;
    let mut head_until: Option<Instant> = None;
    let Waits { timer, stop } = waits;
    loop {
        if !buf.is_empty() {
            head_until.get_or_insert_with(|| Instant::now() + budget.max_time);
            match parse(buf, budget) {
                None if buf.len() >= budget.max_bytes => {
                    return Head::Refuse(crate::error::ApiError::RequestHeadTooLarge {
                        limit: budget.max_bytes,
                    });
                }
                None => {}
                Some(head) => return head,
            }
        }
        timer.as_mut().reset(head_until.unwrap_or(idle_until));
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(8192);
        }
        let read = tokio::select! {
            // The bytes first: when they are there, nothing else is looked at.
            biased;
            read = tcp.read_buf(buf) => read,
            () = timer.as_mut() => match head_until {
                None => return Head::Closed,
                Some(_) => {
                    return Head::Refuse(crate::error::ApiError::RequestTimeout {
                        secs: budget.max_time.as_secs(),
                    });
                }
            },
            // Only between requests: a head already begun is read to its end.
            () = stopped(stop), if head_until.is_none() => return Head::Closed,
        };
        match read {
            Ok(0) | Err(_) => return Head::Closed,
            Ok(_) => {}
        }
    }
}

/// The head at the start of `buf`, or `None` while it is incomplete.
fn parse(buf: &mut BytesMut, budget: HeadBudget) -> Option<Head> {
    let mut headers = vec![httparse::EMPTY_HEADER; budget.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => {
            return Some(Head::Refuse(crate::error::ApiError::bad_request(format!(
                "Bad request: more than {} header fields",
                budget.max_headers
            ))));
        }
        // HTTP/2 with prior knowledge: hyper speaks it.
        Err(_) if buf.starts_with(b"PRI * HTTP/2.0") => return Some(Head::HandOff),
        Err(e) => {
            return Some(Head::Refuse(crate::error::ApiError::bad_request(format!(
                "Bad request: malformed HTTP request head ({e})"
            ))));
        }
    };
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        Some("PUT") => Method::PUT,
        Some("POST") => Method::POST,
        Some("PATCH") => Method::PATCH,
        Some("DELETE") => Method::DELETE,
        _ => return Some(Head::HandOff),
    };
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Some(Head::HandOff),
    };
    let Some(path) = req.path.filter(|p| p.starts_with('/')) else {
        // Absolute-form and the like: hyper's business.
        return Some(Head::HandOff);
    };
    // A body the driver streams to the handler (an LFS transfer's, a xorb), or one it reads
    // whole when small; GET and HEAD with a body are hyper's.
    let streamed = body::takes_body(&method, path);
    let with_body = method != Method::GET && method != Method::HEAD;
    let Ok(uri) = path.parse::<Uri>() else {
        return Some(Head::Refuse(crate::error::ApiError::bad_request(
            "Bad request: invalid request target",
        )));
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    let mut close = false;
    let mut keep = false;
    let mut length: Option<u64> = None;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Some(Head::Refuse(crate::error::ApiError::bad_request(
                "Bad request: invalid header name",
            )));
        };
        let Ok(value) = HeaderValue::from_bytes(h.value) else {
            return Some(Head::Refuse(crate::error::ApiError::bad_request(
                "Bad request: invalid header value",
            )));
        };
        // A body of a known length, for a request the driver reads the body of; any other
        // body, an upgrade, chunks or an expectation: hyper knows how.
        if with_body && name == http::header::CONTENT_LENGTH && length.is_none() {
            let digits = h.value.trim_ascii();
            let parsed = std::str::from_utf8(digits)
                .ok()
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u64>().ok());
            let Some(len) = parsed else {
                return Some(Head::HandOff);
            };
            length = Some(len);
        } else if streamed.is_some()
            && name == http::header::EXPECT
            && h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue")
        {
            expect_continue = version == Version::HTTP_11;
        } else if name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
            || name == http::header::UPGRADE
            || name == http::header::EXPECT
        {
            return Some(Head::HandOff);
        }
        if name == http::header::CONNECTION {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        request.headers_mut().append(name, value);
    }
    let keep_alive = match version {
        Version::HTTP_10 => keep && !close,
        _ => !close,
    };
    let meta = Meta { keep_alive };
    let head = if let Some(frame) = streamed {
        // Streamed only with a known length.
        let Some(len) = length else {
            return Some(Head::HandOff);
        };
        Head::WithBody(
            request,
            meta,
            Declared {
                len,
                expect_continue,
                frame,
            },
        )
    } else {
        match length {
            // No `Content-Length` nor `Transfer-Encoding`: no body (RFC 9112, 6.3).
            None | Some(0) => Head::Plain(request, meta),
            Some(n) => match usize::try_from(n) {
                Ok(n) if n <= body::SMALL => Head::Small(request, meta, n),
                _ => return Some(Head::HandOff),
            },
        }
    };
    let _ = buf.split_to(len);
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(raw: &str) -> &'static str {
        let mut buf = BytesMut::from(raw.as_bytes());
        match parse(&mut buf, HeadBudget::default()) {
            None => "partial",
            Some(Head::Closed) => "closed",
            Some(Head::Plain(..)) => "plain",
            Some(Head::Small(_, _, len)) => {
                // The head is consumed; what is left is (the start of) the body.
                assert!(buf.len() <= len && !buf.starts_with(b"POST"));
                "small"
            }
            Some(Head::WithBody(..)) => "streamed",
            Some(Head::HandOff) => "hyper",
            Some(Head::Refuse(_)) => "refused",
        }
    }

    fn post(headers: &str, body: &str) -> String {
        format!("POST /api/repos/create HTTP/1.1\r\nHost: hub\r\n{headers}\r\n{body}")
    }

    #[test]
    fn who_serves_a_request_follows_its_method_and_its_body() {
        assert_eq!(classify("GET / HTTP/1.1\r\nHost: hub\r\n\r\n"), "plain");
        assert_eq!(classify("GET / HTTP/1.1\r\nHost: hub\r\n"), "partial");
        // A body on a GET, an upgrade, another method, HTTP/2: hyper's.
        assert_eq!(
            classify("GET / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
            "hyper"
        );
        assert_eq!(
            classify("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
            "hyper"
        );
        assert_eq!(classify("OPTIONS / HTTP/1.1\r\n\r\n"), "hyper");
        assert_eq!(classify("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "hyper");

        // Small bodies with a length are read whole; none at all is a plain request.
        assert_eq!(classify(&post("Content-Length: 2\r\n", "{}")), "small");
        assert_eq!(classify(&post("", "")), "plain");
        assert_eq!(classify(&post("Content-Length: 0\r\n", "")), "plain");
        let at_most = format!("Content-Length: {}\r\n", body::SMALL);
        assert_eq!(classify(&post(&at_most, "")), "small");
        assert_eq!(
            classify("DELETE /api/repos/delete HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"),
            "small"
        );
        // Too large, chunked, two lengths, a length that is no number, an expectation.
        let over = format!("Content-Length: {}\r\n", body::SMALL + 1);
        for (headers, body) in [
            (over.as_str(), ""),
            ("Transfer-Encoding: chunked\r\n", "0\r\n\r\n"),
            ("Content-Length: 2\r\nContent-Length: 2\r\n", "{}"),
            ("Content-Length: +2\r\n", "{}"),
            ("Content-Length: 99999999999999999999999\r\n", ""),
            ("Content-Length: 2\r\nExpect: 100-continue\r\n", ""),
        ] {
            assert_eq!(classify(&post(headers, body)), "hyper", "{headers:?}");
        }

        // An LFS transfer's PUT is streamed at any size, with an expectation too; without a
        // length it is hyper's.
        let lfs = "PUT /_lfs/upload/x HTTP/1.1\r\n";
        assert_eq!(
            classify(&format!("{lfs}Content-Length: 9999999999\r\n\r\n")),
            "streamed"
        );
        assert_eq!(
            classify(&format!(
                "{lfs}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
            )),
            "streamed"
        );
        assert_eq!(
            classify(&format!("{lfs}Transfer-Encoding: chunked\r\n\r\n")),
            "hyper"
        );
        // A xorb's POST is streamed; a shard's, or a xorb sent in chunks, is not.
        let xorb = format!("POST /xet/v1/xorbs/default/{} HTTP/1.1\r\n", "a".repeat(64));
        assert_eq!(
            classify(&format!("{xorb}Content-Length: 67108864\r\n\r\n")),
            "streamed"
        );
        assert_eq!(
            classify(&format!("{xorb}Transfer-Encoding: chunked\r\n\r\n")),
            "hyper"
        );
        assert_eq!(
            classify("POST /xet/v2/shards HTTP/1.1\r\nContent-Length: 99999\r\n\r\n"),
            "hyper"
        );
        assert_eq!(
            classify(&format!(
                "PUT /xet/v1/xorbs/default/{} HTTP/1.1\r\nContent-Length: 99999\r\n\r\n",
                "a".repeat(64)
            )),
            "hyper"
        );
        // Any other PUT is a small body or hyper's.
        assert_eq!(
            classify("PUT /api/x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"),
            "small"
        );
    }
}
