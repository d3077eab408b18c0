//! Running one git subprocess for one request, streamed both ways with bounded memory.
//!
//! The request body is copied into the child's stdin as it arrives (already gunzipped by
//! the router's decompression layer), counted against a limit; the child's stdout becomes
//! the response body through a small channel. Neither side is ever held whole.
//!
//! The child is owned by a task of its own, not by the response: when the client goes away
//! its output is drained and dropped, so the child finishes (or fails on its closed input)
//! on its own terms — a push either completes its atomic ref update or leaves the repository
//! as it was. Only the deadline kills it.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

/// Bytes read from the child per chunk of the response.
const READ_CHUNK: usize = 64 * 1024;
/// Chunks waiting for a slow client before the child is made to wait (bounds memory).
const CHANNEL_CHUNKS: usize = 16;
/// How much of the child's stderr is kept for the log.
const STDERR_KEPT: usize = 16 * 1024;

/// Work to do once the child has exited, before the response ends (e.g. recording that a
/// push moved refs, so that a client reading the API right after its push sees it).
pub type AfterExit = Box<dyn FnOnce(bool) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What answers a push's hook: given the child's process id and the signal that the
/// request body has been handed to it whole.
pub type ServeHook = Box<
    dyn FnOnce(Option<u32>, oneshot::Receiver<()>) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send,
>;

/// The server's side of a push's `pre-receive` hook: the end of its socket pair the child
/// inherits, and what answers on the other end once the child runs.
pub struct HookChannel {
    /// Inherited by the child under the same number (the hook finds it in its environment).
    pub child_end: OwnedFd,
    /// Started with the child's process id and a signal that the request body has been
    /// handed to the child whole.
    pub serve: ServeHook,
}

/// One subprocess to run for a request.
pub struct GitRun {
    pub command: tokio::process::Command,
    /// Written before the child's output (the `# service=` preamble of an advertisement).
    pub preamble: Vec<u8>,
    /// The request body to feed to stdin, and the most bytes of it accepted.
    pub input: Option<(Body, u64)>,
    pub timeout: Duration,
    pub after_exit: Option<AfterExit>,
    /// For a push: the hook's channel to the server.
    pub hook: Option<HookChannel>,
    /// Held until the child has exited: limits concurrent git processes.
    pub permit: OwnedSemaphorePermit,
    /// Set if the child has to be killed ([`crate::git_runtime::GitRuntime::killed`]).
    pub killed: Arc<AtomicBool>,
    /// For the log: what is being served.
    pub what: String,
}

/// Starts the child and returns the response body that streams its output.
pub fn spawn(run: GitRun) -> io::Result<Body> {
    let GitRun {
        mut command,
        preamble,
        input,
        timeout,
        after_exit,
        hook,
        permit,
        killed,
        what,
    } = run;
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(hook) = &hook {
        inherit(&mut command, hook.child_end.as_raw_fd());
    }
    let mut child = command.spawn()?;
    let (input_done, input_done_rx) = oneshot::channel();
    if let Some(HookChannel { child_end, serve }) = hook {
        // The child has its copy; the server keeps only its own end, so that the socket
        // closes once the child and its own children (the hook) have exited.
        drop(child_end);
        tokio::spawn(serve(child.id(), input_done_rx));
    }
    let stdin = child.stdin.take();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("no stderr"))?;

    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    tokio::spawn(async move {
        let _permit = permit;
        if !preamble.is_empty() {
            // The receiver is alive: it was created just above and not yet handed out.
            let _ = tx.send(Ok(Bytes::from(preamble))).await;
        }
        let feed = async {
            let feed = match (stdin, input) {
                (Some(stdin), Some((body, limit))) => feed_stdin(stdin, body, limit).await,
                _ => Feed::Complete,
            };
            if feed == Feed::Complete {
                // Nobody waits for it when the run has no hook.
                let _ = input_done.send(());
            }
            feed
        };
        let work = async {
            let (feed, (), stderr_text) =
                tokio::join!(feed, pump_stdout(stdout, &tx), read_stderr(stderr));
            let status = child.wait().await;
            (feed, status, stderr_text)
        };
        let outcome = tokio::time::timeout(timeout, work).await;
        let success = match outcome {
            Ok((feed, status, stderr_text)) => {
                // A child that stopped reading early (a pack over its size limit) has told the
                // client why in its own answer; a body cut short or too large has not.
                let ok = matches!(&status, Ok(s) if s.success())
                    && matches!(feed, Feed::Complete | Feed::ChildClosed);
                if ok {
                    tracing::debug!(git.what = %what, stderr = %stderr_text, "git finished");
                } else {
                    tracing::warn!(
                        git.what = %what,
                        status = ?status,
                        input = ?feed,
                        stderr = %stderr_text,
                        "git failed"
                    );
                }
                ok
            }
            Err(_) => {
                killed.store(true, Ordering::Release);
                let _ = child.start_kill();
                let _ = child.wait().await;
                tracing::warn!(git.what = %what, timeout_secs = timeout.as_secs(), "git timed out; killed");
                false
            }
        };
        if let Some(after) = after_exit {
            after(success).await;
        }
        if !success {
            // Ends the response with an error, so the client cannot take a truncated answer
            // for a complete one.
            let _ = tx.send(Err(io::Error::other("git failed"))).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(Body::from_stream(stream))
}

/// Makes descriptor `fd` (close-on-exec, as the standard library opens everything) survive
/// into the child, under the same number, without leaking into other children started at
/// the same time: the flag is cleared in the forked child only, just before it runs git.
#[expect(
    unsafe_code,
    reason = "the only way to keep one descriptor open across exec in one child"
)]
fn inherit(command: &mut tokio::process::Command, fd: RawFd) {
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // functions may be called: it calls `fcntl` alone (no allocation, no lock), on `fd`,
    // which the parent keeps open until `spawn` returned, so the child has it under the same
    // number; the standard streams were set up before and are other numbers (the caller's
    // descriptor is 3 or above, `hook_server::socket_pair`).
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// How feeding the request body to the child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feed {
    Complete,
    /// The body went past its limit; the child saw its input end early.
    TooLarge,
    /// The client's body failed (connection cut); the child saw its input end early.
    BodyError,
    /// The child stopped reading (it exited, or decided it had read enough).
    ChildClosed,
}

async fn feed_stdin(mut stdin: tokio::process::ChildStdin, body: Body, limit: u64) -> Feed {
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    let outcome = loop {
        match stream.next().await {
            None => break Feed::Complete,
            Some(Err(e)) => {
                tracing::info!(error = %e, "git request body ended early");
                break Feed::BodyError;
            }
            Some(Ok(chunk)) => {
                total += chunk.len() as u64;
                if total > limit {
                    break Feed::TooLarge;
                }
                if stdin.write_all(&chunk).await.is_err() {
                    break Feed::ChildClosed;
                }
            }
        }
    };
    // Closing stdin is how the child learns the request is over (or cut short).
    drop(stdin);
    outcome
}

/// Copies the child's stdout into the response channel; once the client is gone, keeps
/// reading and discarding so the child is never stuck on a full pipe.
async fn pump_stdout(mut stdout: impl AsyncRead + Unpin, tx: &mpsc::Sender<io::Result<Bytes>>) {
    let mut client_gone = false;
    loop {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        match stdout.read_buf(&mut buf).await {
            Ok(0) => return,
            Ok(_) => {
                if !client_gone && tx.send(Ok(buf.freeze())).await.is_err() {
                    client_gone = true;
                    tracing::info!("git client went away; draining the rest of the output");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading git output");
                return;
            }
        }
    }
}

/// The child's stderr, up to [`STDERR_KEPT`] bytes kept for the log; the rest is drained.
async fn read_stderr(mut stderr: impl AsyncRead + Unpin) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).trim().to_owned()
}
