//! Request bodies the driver reads itself.
//!
//! A small body (a `Content-Length` of at most [`SMALL`] bytes: the LFS batch and verify
//! requests, the Hub API's preupload and commit requests, a clone's negotiation) is read
//! whole before the router runs ([`read_small`]), so that the connection stays with the
//! driver for the requests after it — an upload's `PUT` above all — and no handler can keep
//! the socket past its answer.
//!
//! An LFS transfer's `PUT` with a `Content-Length` (see [`takes_body`]) is streamed: the
//! router gets an ordinary [`Body`] whose frames are read from the
//! socket straight into buffers of [`PIECE`] bytes — the size the upload path hashes and
//! chunks in one go (`repos::ingest`'s batch) — so a batch is one contiguous buffer that
//! nobody copies again, and one wake-up of the handler carries a MiB rather than whatever
//! one `read` returned. A xorb's `POST` is streamed too, in frames of [`XORB_PIECE`].
//! Every handler, middleware and refusal sees the same request as it would from hyper: only
//! where the bytes come from differs.
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
use std::io;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes of one frame of a body read from the socket (the last one is shorter): the batch
/// `repos::ingest` hashes and chunks at once.
pub const PIECE: usize = crate::repos::ingest::BATCH;
/// Free frames a body keeps for its next reads: those the upload path lets go at once. In
/// S3 mode, the chunks of a xorb are slices of the frames they came in, held until the
/// xorb is in the bucket, then all freed together — a xorb's worth (64 MiB) — and read
/// into again over the next xorb, instead of fresh memory (a page fault and a zeroed page
/// per 4 KiB: a tenth of the upload's CPU in a profile). Never more than the body held at
/// once: a frame is only made new when none is free.
const KEEP: usize = crate::repos::ingest::XORB_FRAMES;

/// The largest body read whole before the router runs ([`read_small`]); a larger one on a
/// request the driver does not stream goes to hyper with its connection.
pub const SMALL: usize = 64 * 1024;

/// Why a small body could not be read.
#[derive(Debug)]
pub enum Cut {
    /// The client closed the connection (or it failed) before the body's end.
    Closed,
    /// The body did not arrive within the budget: this many seconds.
    Late { secs: u64 },
}

/// Reads a body of `len` bytes (at most [`SMALL`]) whole: first what followed the head in
/// `buf`, then from the socket, never past the body's end (what follows is the next
/// request's). No byte for `idle`, or not all of it within `total`: [`Cut::Late`].
pub async fn read_small(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    len: usize,
    idle: Duration,
    total: Duration,
) -> Result<Bytes, Cut> {
    let early = buf.len().min(len);
    let mut body = buf.split_to(early);
    body.reserve(len - early);
    let until = tokio::time::Instant::now() + total;
    while body.len() < len {
        let room = len - body.len();
        let deadline = until.min(tokio::time::Instant::now() + idle);
        let read = tokio::time::timeout_at(
            deadline,
            tcp.read_buf(&mut bytes::BufMut::limit(&mut body, room)),
        )
        .await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(Cut::Closed),
            Ok(Ok(_)) => {}
            Err(_elapsed) => {
                let spent = if deadline == until { total } else { idle };
                return Err(Cut::Late {
                    secs: spent.as_secs(),
                });
            }
        }
    }
    Ok(body.freeze())
}

/// Bytes of one frame of a xorb body (`POST /xet/v1/xorbs/…`): the handler validates each
/// frame as it arrives and writes it to the store, and a client sends dozens of xorbs at
/// once, so frames stay the size of a few socket reads rather than a hashing batch.
pub const XORB_PIECE: usize = 256 * 1024;

/// Whether the driver reads the body of a request with this method and path, and in frames
/// of how many bytes: the LFS transfers (`/_lfs/upload/…`, `/_lfs/multipart/…`) in
/// [`PIECE`]s, hf_xet's xorbs in [`XORB_PIECE`]s — the largest bodies the hub takes. A
/// xorb's connection then carries no read buffer while its handler waits to publish it
/// (hyper reads ahead into one of up to ~400 KiB per connection, and an upload keeps dozens
/// of such connections waiting).
pub fn takes_body(method: &http::Method, path: &str) -> Option<usize> {
    if *method == http::Method::PUT && path.starts_with("/_lfs/") {
        Some(PIECE)
    } else if *method == http::Method::POST && path.starts_with("/xet/v1/xorbs/") {
        Some(XORB_PIECE)
    } else {
        None
    }
}

/// What the head said about the body that follows it.
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    /// `Content-Length`.
    pub len: u64,
    /// The client waits for `100 Continue` before sending it.
    pub expect_continue: bool,
    /// Bytes of each frame read ([`takes_body`]).
    pub frame: usize,
}

/// The connection while a body owns it.
struct Lent {
    tcp: TcpStream,
    /// What was read past the head: the body's first bytes, perhaps the next request's.
    buf: BytesMut,
    /// Body bytes not yet read.
    left: u64,
    expect_continue: bool,
    /// Bytes of each frame ([`Declared::frame`]).
    frame: usize,
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
            frame: declared.frame,
            broken: false,
            idle,
        }),
        home: home.clone(),
        free: Arc::default(),
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
    /// Frames handed out and let go since, for the next reads (at most [`KEEP`]); they come
    /// back here when the last slice of them is dropped, as long as the body lives.
    free: Arc<FreeList>,
}

/// A body's frames let go of, waiting to be read into again.
type FreeList = Mutex<Vec<Vec<u8>>>;

/// A frame handed out: its buffer goes back to the body's free frames once nobody points
/// into it ([`Bytes::from_owner`]), or to the allocator if the body is gone.
struct Frame {
    bytes: Vec<u8>,
    free: Weak<FreeList>,
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        let Some(free) = self.free.upgrade() else {
            return;
        };
        // A poisoned lock (a panic while it was held) only loses the buffer to the allocator.
        if let Ok(mut free) = free.lock()
            && free.len() < KEEP
        {
            free.push(std::mem::take(&mut self.bytes));
        }
    }
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
        let want = usize::try_from(lent.left).map_or(lent.frame, |left| left.min(lent.frame));
        let mut frame = take_buffer(&self.free, want);
        match fill(lent, &mut frame, want).await {
            Ok(()) => {
                lent.left -= want as u64;
                Some(Ok(Bytes::from_owner(Frame {
                    bytes: frame,
                    free: Arc::downgrade(&self.free),
                })))
            }
            Err(e) => {
                lent.broken = true;
                Some(Err(e))
            }
        }
    }
}

/// An empty buffer of at least `want` bytes: a free frame if there is one, else a new one.
fn take_buffer(free: &FreeList, want: usize) -> Vec<u8> {
    let reused = free.lock().ok().and_then(|mut free| free.pop());
    match reused {
        Some(mut frame) if frame.capacity() >= want => {
            frame.clear();
            frame
        }
        _ => Vec::with_capacity(want),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hand_out(free: &Arc<FreeList>) -> (Bytes, *const u8) {
        let mut buffer = take_buffer(free, PIECE);
        // As `fill` would.
        buffer.resize(PIECE, 7);
        let at = buffer.as_ptr();
        let frame = Bytes::from_owner(Frame {
            bytes: buffer,
            free: Arc::downgrade(free),
        });
        (frame, at)
    }

    fn free_count(free: &FreeList) -> usize {
        free.lock().expect("lock").len()
    }

    #[test]
    fn a_frame_is_read_into_again_once_its_last_slice_is_dropped() {
        let free = Arc::<FreeList>::default();
        let (frame, at) = hand_out(&free);
        let chunk = frame.slice(10..20);
        drop(frame);
        assert_eq!(free_count(&free), 0, "a chunk still points into it");
        drop(chunk);
        assert_eq!(free_count(&free), 1);
        let again = take_buffer(&free, PIECE);
        assert_eq!(again.as_ptr(), at);
        assert!(again.is_empty() && again.capacity() >= PIECE);
        // A frame too small for the read wanted is not used for it.
        let small = Vec::with_capacity(16);
        free.lock().expect("lock").push(small);
        assert!(take_buffer(&free, PIECE).capacity() >= PIECE);
    }

    #[test]
    fn at_most_a_xorb_of_frames_waits_and_none_once_the_body_is_gone() {
        let free = Arc::<FreeList>::default();
        let frames: Vec<Bytes> = (0..KEEP + 3).map(|_| hand_out(&free).0).collect();
        drop(frames);
        assert_eq!(free_count(&free), KEEP);
        let (late, _) = hand_out(&free);
        let weak = Arc::downgrade(&free);
        drop(free);
        // The body is gone: the last frame goes back to the allocator, not to a pool.
        drop(late);
        assert!(weak.upgrade().is_none());
    }
}
