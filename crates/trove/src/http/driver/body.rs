//! Request bodies the driver reads itself: an LFS transfer's `PUT` with a `Content-Length`
//! (see [`takes_body`]). The router gets an ordinary [`Body`] whose frames are read from the
//! socket straight into buffers of [`PIECE`] bytes — the size the upload path hashes and
//! chunks in one go (`repos::ingest`'s batch) — so a batch is one contiguous buffer that
//! nobody copies again, and one wake-up of the handler carries a MiB rather than whatever
//! one `read` returned. Every handler, middleware and refusal sees the same request as it
//! would from hyper: only where the bytes come from differs.
//!
//! The socket lends itself to the body for the request's life: the body holds it while the
//! router runs, and gives it back (with what it did not read of the head's buffer) when it
//! is dropped, whoever drops it. The driver then knows whether the body was read to its end
//! (the connection can carry another request) or not (refused early, the client went away,
//! or it stalled past [`HeadBudget::body_idle`]): the answer then says `Connection: close`.
//!
//! `Expect: 100-continue` is answered when the body is first read, as hyper does: a request
//! refused before its body is wanted (a bad signature, a size over the limit) gets its final
//! answer without the client having sent a byte.

use crate::error::BodyStalled;
use axum::body::Body;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes of one frame of a body read from the socket (the last one is shorter): the batch
/// `repos::ingest` hashes and chunks at once.
pub const PIECE: usize = crate::repos::ingest::BATCH;
/// Frames kept for reuse once nobody points into them: enough for those the upload path
/// holds at once (batches queued for its packing stage, chunks waiting for their lookup,
/// the batch being hashed), so that a long upload allocates no fresh memory after its
/// first few MiB (a fresh buffer costs a page fault and a zeroed page per 4 KiB).
const POOL: usize = 16;

/// Whether the driver reads the body of a request with this method and path: the LFS
/// transfers (`/_lfs/upload/…`, `/_lfs/multipart/…`), the largest bodies the hub takes.
pub fn takes_body(method: &http::Method, path: &str) -> bool {
    *method == http::Method::PUT && path.starts_with("/_lfs/")
}

/// What the head said about the body that follows it.
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    /// `Content-Length`.
    pub len: u64,
    /// The client waits for `100 Continue` before sending it.
    pub expect_continue: bool,
}

/// The connection while a body owns it.
struct Lent {
    tcp: TcpStream,
    /// What was read past the head: the body's first bytes, perhaps the next request's.
    buf: BytesMut,
    /// Body bytes not yet read.
    left: u64,
    expect_continue: bool,
    /// A read failed or timed out: the connection is not usable any more.
    broken: bool,
    idle: Duration,
}

/// Where the connection goes back to once the body is dropped.
#[derive(Clone)]
struct Home(Arc<Mutex<Option<Lent>>>);

impl Home {
    fn put(&self, lent: Lent) {
        // A poisoned lock means a panic while the slot was held; the connection is lost
        // then, which the driver treats as "the body kept it".
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(lent);
        }
    }
}

/// The driver's claim on a connection lent to a request's body.
pub struct Lease {
    home: Home,
}

/// The connection given back by the body.
pub struct Returned {
    pub tcp: TcpStream,
    pub buf: BytesMut,
    /// The body was read to its end and the connection can carry another request.
    pub reusable: bool,
}

impl Lease {
    /// The connection back, once the body is dropped; `None` if something still holds the
    /// body (a handler that kept it past its answer), and the connection is lost.
    pub fn reclaim(self) -> Option<Returned> {
        let lent = self.home.0.lock().ok()?.take()?;
        Some(Returned {
            reusable: lent.left == 0 && !lent.broken,
            tcp: lent.tcp,
            buf: lent.buf,
        })
    }
}

/// Lends `tcp` (and `buf`, what was read past the head) to a body of `declared` bytes that
/// fails with [`BodyStalled`] when no byte arrives for `idle` (`HeadBudget::body_idle`).
pub fn lend(tcp: TcpStream, buf: BytesMut, declared: Declared, idle: Duration) -> (Body, Lease) {
    let home = Home(Arc::new(Mutex::new(None)));
    let reader = Reader {
        lent: Some(Lent {
            tcp,
            buf,
            left: declared.len,
            expect_continue: declared.expect_continue,
            broken: false,
            idle,
        }),
        home: home.clone(),
        pool: VecDeque::new(),
    };
    let frames = futures_util::stream::unfold(reader, |mut reader| async move {
        let frame = reader.next().await?;
        Some((frame, reader))
    });
    (Body::from_stream(frames), Lease { home })
}

/// Reads a body's frames; gives the connection back when dropped.
struct Reader {
    lent: Option<Lent>,
    home: Home,
    /// Frames handed out, oldest first, for reuse once nobody points into them.
    pool: VecDeque<Bytes>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(lent) = self.lent.take() {
            self.home.put(lent);
        }
    }
}

impl Reader {
    /// The next frame; `None` at the end of the body (or after a failure, reported once).
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        let lent = self.lent.as_mut()?;
        if lent.left == 0 || lent.broken {
            return None;
        }
        let want = usize::try_from(lent.left).map_or(PIECE, |left| left.min(PIECE));
        let mut frame = take_buffer(&mut self.pool, want);
        match fill(lent, &mut frame, want).await {
            Ok(()) => {
                lent.left -= want as u64;
                let frame = Bytes::from(frame);
                if self.pool.len() == POOL {
                    self.pool.pop_front();
                }
                self.pool.push_back(frame.clone());
                Some(Ok(frame))
            }
            Err(e) => {
                lent.broken = true;
                Some(Err(e))
            }
        }
    }
}

/// An empty buffer of at least `want` bytes: the oldest frame handed out if nobody points
/// into it any more, else a new one.
fn take_buffer(pool: &mut VecDeque<Bytes>, want: usize) -> Vec<u8> {
    if let Some(oldest) = pool.pop_front() {
        match oldest.try_into_mut() {
            Ok(free) if free.capacity() >= want => {
                let mut free = Vec::from(free);
                free.clear();
                return free;
            }
            Ok(_) => {}
            Err(still_used) => pool.push_front(still_used),
        }
    }
    Vec::with_capacity(want)
}

/// Fills `frame` with the body's next `want` bytes: first what was read with the head, then
/// from the socket, never past the body's end (what follows is the next request's).
async fn fill(lent: &mut Lent, frame: &mut Vec<u8>, want: usize) -> io::Result<()> {
    if lent.expect_continue {
        lent.expect_continue = false;
        // Only if the client has not started sending anyway.
        if lent.buf.is_empty() {
            let sent = tokio::time::timeout(
                lent.idle,
                lent.tcp.write_all(b"HTTP/1.1 100 Continue\r\n\r\n"),
            )
            .await;
            match sent {
                Ok(result) => result?,
                Err(_) => return Err(stalled(lent.idle)),
            }
        }
    }
    let early = lent.buf.len().min(want);
    frame.extend_from_slice(&lent.buf.split_to(early));
    while frame.len() < want {
        let room = want - frame.len();
        let read = tokio::time::timeout(
            lent.idle,
            lent.tcp
                .read_buf(&mut bytes::BufMut::limit(&mut *frame, room)),
        )
        .await;
        match read {
            Ok(Ok(0)) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the client closed the connection {} bytes before the body's end",
                        lent.left - frame.len() as u64
                    ),
                ));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_elapsed) => return Err(stalled(lent.idle)),
        }
    }
    Ok(())
}

fn stalled(idle: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        BodyStalled {
            secs: idle.as_secs(),
        },
    )
}
