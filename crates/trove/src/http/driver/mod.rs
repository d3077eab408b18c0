//! The connection driver in front of hyper: every accepted connection starts here. It reads
//! request heads itself (within [`HeadBudget`]) and serves requests without a body or with
//! a small `Content-Length` one (read whole first, [`body::read_small`]) — no upgrade, no
//! `Expect`, no chunks — by calling the same router as hyper does (every layer: request id,
//! access log, errors, auth), then writing the response itself, so that a download whose
//! bytes are file ranges (`repos::file_ranges`) goes out with `sendfile(2)` instead of being
//! read into memory and written back. Keep-alive sequences of such requests stay here; the
//! first request of any other kind hands the connection, with the bytes already read, to
//! hyper (through `axum::serve`) for the rest of its life — except the LFS transfers'
//! uploads (`PUT` with a `Content-Length`), whose bodies the driver reads itself, straight
//! from the socket into the buffers the upload path hashes and chunks ([`body`]). So an
//! upload's whole exchange (preupload, batch, `PUT`, verify, commit) stays on the driver.
//!
//! Why a loop of our own: hyper owns its connections and has no way to hand the kernel a
//! file range for a plain 200 (docs/benchmarks.md, "Where a 10 MiB GET's time goes"), nor a
//! way to receive a body into buffers of the caller's choosing.

pub mod body;
mod head;
mod reuse;
mod write;

pub use head::HeadBudget;

use crate::http::router::App;
use crate::repos::file_ranges::CanSendFiles;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::{Buf, Bytes, BytesMut};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Serves `app` on `listener` until `shutdown` resolves, then lets the requests in flight
/// finish (the caller bounds how long), hyper's connections and the driver's alike.
pub async fn serve<F>(
    listener: TcpListener,
    app: App,
    budget: HeadBudget,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let (handoff_tx, handoff_rx) = mpsc::channel(64);
    let drivers = TaskTracker::new();
    let front = Front {
        listener,
        handoffs: handoff_rx,
        handoff_tx,
        app: app.clone(),
        drivers: drivers.clone(),
        stop: stop_rx.clone(),
        budget,
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stopped = stop_rx;
    let served = axum::serve(front, WithPeer(app))
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await;
    drivers.close();
    drivers.wait().await;
    served
}

/// The listener axum serves: it accepts TCP connections and gives each to a driver task,
/// and yields to hyper only the connections the drivers hand back.
struct Front {
    listener: TcpListener,
    handoffs: mpsc::Receiver<(Rewind, SocketAddr)>,
    handoff_tx: mpsc::Sender<(Rewind, SocketAddr)>,
    app: App,
    drivers: TaskTracker,
    stop: watch::Receiver<bool>,
    budget: HeadBudget,
}

impl axum::serve::Listener for Front {
    type Io = Rewind;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                Some(handed) = self.handoffs.recv() => return handed,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, addr)) => {
                        if let Err(e) = tcp.set_nodelay(true) {
                            tracing::debug!(error = %e, "setting TCP_NODELAY failed");
                        }
                        let connection = Connection {
                            tcp,
                            addr,
                            app: self.app.clone(),
                            handoff: self.handoff_tx.clone(),
                            stop: self.stop.clone(),
                            budget: self.budget,
                        };
                        self.drivers.spawn(connection.drive());
                    }
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: the next accept may work.
                    Err(e) => {
                        tracing::debug!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// One client connection while the driver serves it.
struct Connection {
    tcp: TcpStream,
    addr: SocketAddr,
    app: App,
    handoff: mpsc::Sender<(Rewind, SocketAddr)>,
    stop: watch::Receiver<bool>,
    budget: HeadBudget,
}

impl Connection {
    async fn drive(self) {
        let Connection {
            mut tcp,
            addr,
            app,
            handoff,
            stop,
            budget,
        } = self;
        let mut buf = BytesMut::with_capacity(8 * 1024);
        let mut waits = head::Waits::new(&stop, budget);
        loop {
            let (request, meta, incoming) =
                match head::read(&mut tcp, &mut buf, budget, &mut waits).await {
                    head::Head::Closed => return,
                    head::Head::Plain(request, meta) => (request, meta, Incoming::Empty),
                    head::Head::Small(request, meta, len) => {
                        let read = body::read_small(
                            &mut tcp,
                            &mut buf,
                            len,
                            budget.body_idle,
                            budget.max_time,
                        )
                        .await;
                        match read {
                            Ok(bytes) => (request, meta, Incoming::Whole(bytes)),
                            Err(body::Cut::Closed) => return,
                            Err(body::Cut::Late { secs }) => {
                                refuse(tcp, addr, crate::error::ApiError::RequestTimeout { secs })
                                    .await;
                                return;
                            }
                        }
                    }
                    head::Head::WithBody(request, meta, declared) => {
                        (request, meta, Incoming::Streamed(declared))
                    }
                    head::Head::HandOff => {
                        let handed = Rewind {
                            prefix: buf.freeze(),
                            io: tcp,
                        };
                        // Refused only once the server has stopped accepting: the
                        // connection closes, as a new one would be refused.
                        let _ = handoff.send((handed, addr)).await;
                        return;
                    }
                    head::Head::Refuse(error) => {
                        refuse(tcp, addr, error).await;
                        return;
                    }
                };
            let method = request.method().clone();
            let version = request.version();
            // A request without a body may be one answered before (`reuse`).
            let reuse_key = match incoming {
                Incoming::Empty => reuse::key_of(app.state(), &request),
                _ => None,
            };
            if let Some(found) = reuse_key
                .as_deref()
                .and_then(|k| reuse::find(app.state(), k))
            {
                let started = std::time::Instant::now();
                let keep_alive = meta.keep_alive && !*stop.borrow();
                let sent =
                    reuse::answer(&mut tcp, app.state(), &request, found, keep_alive, started)
                        .await;
                match sent {
                    Ok(write::Sent::KeepAlive) => continue,
                    Ok(write::Sent::Close) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, client.addr = %addr, "response cut short");
                        return;
                    }
                }
            }
            let mut reusable = true;
            let mut response = match incoming {
                Incoming::Empty => route(&app, request.map(|()| Body::empty()), addr).await,
                Incoming::Whole(bytes) => {
                    route(&app, request.map(|()| Body::from(bytes)), addr).await
                }
                Incoming::Streamed(declared) => {
                    // The socket goes with the body while the router runs, and comes back
                    // when the body is dropped.
                    let (body, lease) =
                        body::lend(tcp, std::mem::take(&mut buf), declared, budget.body_idle);
                    let response = route(&app, request.map(|()| body), addr).await;
                    let Some(returned) = lease.reclaim() else {
                        tracing::debug!(client.addr = %addr, "the request body outlived its answer");
                        return;
                    };
                    tcp = returned.tcp;
                    buf = returned.buf;
                    reusable = returned.reusable;
                    response
                }
            };
            if let Some(key) = reuse_key {
                reuse::keep(app.state(), key, &mut response);
            }
            let keep_alive = reusable && meta.keep_alive && !*stop.borrow();
            let sent = write::response(&mut tcp, &method, version, keep_alive, response).await;
            if !reusable {
                // A body not read to its end: what the client still sends is dropped for a
                // moment so that the close does not destroy the answer.
                linger(tcp).await;
                return;
            }
            match sent {
                Ok(write::Sent::KeepAlive) => {}
                Ok(write::Sent::Close) => return,
                Err(e) => {
                    tracing::debug!(error = %e, client.addr = %addr, "response cut short");
                    return;
                }
            }
        }
    }
}

/// The body of a request the driver serves.
enum Incoming {
    Empty,
    /// A small body, read whole (`body::read_small`).
    Whole(Bytes),
    /// An LFS transfer's body, read from the socket as the handler asks for it.
    Streamed(body::Declared),
}

/// Answers a request refused before the router (a bad or late head, a late small body) and
/// closes the connection; the refusal's request id and log line are made here.
async fn refuse(mut tcp: TcpStream, addr: SocketAddr, error: crate::error::ApiError) {
    let id = crate::http::request_id::fresh_id().to_string();
    tracing::info!(
        client.addr = %addr,
        request_id = %id,
        reason = %error,
        "request refused before routing"
    );
    let mut response = axum::response::IntoResponse::into_response(error);
    if let Ok(id) = http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", id);
    }
    let _ = write::response(
        &mut tcp,
        &http::Method::GET,
        http::Version::HTTP_11,
        false,
        response,
    )
    .await;
    linger(tcp).await;
}

/// One request through the router, as hyper would call it (with the peer's address), and
/// marked as served by the driver.
async fn route(
    app: &App,
    mut request: http::Request<Body>,
    addr: SocketAddr,
) -> axum::response::Response {
    request.extensions_mut().insert(ConnectInfo(addr));
    request.extensions_mut().insert(CanSendFiles);
    match app.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Closes a connection after a refusal: the answer first, then the end of our side, then
/// what the client still sends is read and dropped for a moment (bounded), so that the close
/// does not turn into a reset that could destroy the answer before the client reads it.
async fn linger(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if tcp.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 8192];
    let mut left: usize = 256 * 1024;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while left > 0 {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// What axum makes a service per connection from: the router, with the peer's address as
/// `ConnectInfo` (it keys the failed-authentication limiter), as the driver does for its own
/// requests.
#[derive(Clone)]
struct WithPeer(App);

impl<'a> tower::Service<axum::serve::IncomingStream<'a, Front>> for WithPeer {
    type Response = AddPeer;
    type Error = Infallible;
    type Future = std::future::Ready<Result<AddPeer, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: axum::serve::IncomingStream<'a, Front>) -> Self::Future {
        std::future::ready(Ok(AddPeer {
            app: self.0.clone(),
            addr: *incoming.remote_addr(),
        }))
    }
}

/// The router for one connection handed to hyper.
#[derive(Clone)]
struct AddPeer {
    app: App,
    addr: SocketAddr,
}

impl tower::Service<axum::extract::Request> for AddPeer {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = <App as tower::Service<axum::extract::Request>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<axum::extract::Request>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, mut request: axum::extract::Request) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.addr));
        self.app.call(request)
    }
}

/// A connection handed to hyper: the bytes the driver read first, then the socket.
pub struct Rewind {
    prefix: Bytes,
    io: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
