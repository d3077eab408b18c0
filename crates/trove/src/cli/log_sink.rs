//! Where the server's log lines go: stderr, with the access log's lines written in batches.
//!
//! Every request ends in one `trove::access` line. Written as it comes, that is one
//! `write(2)` per request on the runtime's threads, a fair part of a small download's CPU
//! (docs/benchmarks.md, "small files against an nginx that logs too"). Here an access line
//! is appended to a buffer in memory and a thread of its own writes what has gathered, at
//! most [`LINGER`] after the first line of a batch: under load, one `write(2)` for many
//! requests; idle, nothing wakes. Every other line (start-up, warnings, errors, the use
//! cases' events) is written at once, after whatever access lines are still waiting, so the
//! file keeps the order in which lines were made and nothing but an access line is ever
//! late. If stderr cannot keep up, the buffer stops at [`MAX_PENDING`] and the line that
//! would pass it writes the batch itself, as an unbuffered log would have: memory stays
//! bounded and a slow reader of stderr slows the server as before, no more.
//!
//! What a crash loses: the access lines of the last [`LINGER`] (a kill -9, an abort). A
//! panic's message is preceded by what waits (the panic hook writes it first), and a clean
//! stop writes everything before the process exits ([`LogSink::finish`]).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread lets access lines gather after the first of a batch.
pub const LINGER: Duration = Duration::from_millis(2);

/// The most bytes of access lines held in memory: past it, lines are written by the
/// thread that makes them.
pub const MAX_PENDING: usize = 256 * 1024;

/// The log's destination, shared by the subscriber and the writer thread.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
    /// Which lines wait for the writer thread (None: every line is written at once).
    batched_target: Option<&'static str>,
}

struct Shared {
    state: Mutex<Pending>,
    wake: Condvar,
    /// Where lines go (stderr). Taken while `state` is held, never the other way round.
    out: Mutex<Box<dyn Write + Send>>,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// The writer thread sleeps until a line arrives: the one that makes the buffer
    /// non-empty wakes it, and no other.
    writer_asleep: bool,
    finished: bool,
}

impl LogSink {
    /// Every line written to stderr at once, as it is made (the CLI's verbs and the hook).
    pub fn immediate() -> Self {
        Self::new(Box::new(std::io::stderr()), None)
    }

    /// Lines of `target` gathered and written to stderr by a thread of their own; the rest
    /// at once. The thread stops at [`LogSink::finish`].
    pub fn batching(target: &'static str) -> std::io::Result<Self> {
        Self::batching_to(Box::new(std::io::stderr()), target)
    }

    fn new(out: Box<dyn Write + Send>, batched_target: Option<&'static str>) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(Pending::default()),
                wake: Condvar::new(),
                out: Mutex::new(out),
            }),
            batched_target,
        }
    }

    fn batching_to(out: Box<dyn Write + Send>, target: &'static str) -> std::io::Result<Self> {
        let sink = Self::new(out, Some(target));
        let shared = Arc::clone(&sink.shared);
        std::thread::Builder::new()
            .name("trove-log".to_owned())
            .spawn(move || shared.write_batches())?;
        Ok(sink)
    }

    /// Writes what waits and stops the writer thread; lines made later are written at once.
    pub fn finish(&self) {
        let mut pending = self.shared.lock();
        pending.finished = true;
        self.shared.write_out(&mut pending.bytes);
        self.shared.wake.notify_one();
    }

    /// Writes what waits, unless the buffer is held (a panic inside a write must not wait
    /// for itself): for the panic hook.
    pub fn flush_if_free(&self) {
        if let Ok(mut pending) = self.shared.state.try_lock()
            && let Ok(mut out) = self.shared.out.try_lock()
        {
            drain_into(out.as_mut(), &mut pending.bytes);
        }
    }

    fn append(&self, line: &[u8], batched: bool) {
        let mut pending = self.shared.lock();
        pending.bytes.extend_from_slice(line);
        if !batched || pending.finished || pending.bytes.len() >= MAX_PENDING {
            self.shared.write_out(&mut pending.bytes);
        } else if pending.writer_asleep {
            pending.writer_asleep = false;
            self.shared.wake.notify_one();
        }
    }
}

impl Shared {
    /// A poisoned lock only means a thread panicked while it held the buffer; the bytes in
    /// it are whole lines or nothing, so logging goes on.
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn out(&self) -> MutexGuard<'_, Box<dyn Write + Send>> {
        self.out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `bytes` out and empties it ([`drain_into`]); the output is not even taken for
    /// nothing.
    fn write_out(&self, bytes: &mut Vec<u8>) {
        if !bytes.is_empty() {
            drain_into(self.out().as_mut(), bytes);
        }
    }

    /// The writer thread: sleeps until an access line arrives, lets others gather for
    /// [`LINGER`], writes them in one go.
    fn write_batches(&self) {
        let mut spare = Vec::new();
        loop {
            let mut pending = self.lock();
            while pending.bytes.is_empty() && !pending.finished {
                pending.writer_asleep = true;
                pending = self
                    .wake
                    .wait(pending)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            pending.writer_asleep = false;
            if pending.finished {
                return;
            }
            drop(pending);
            std::thread::sleep(LINGER);
            let mut pending = self.lock();
            std::mem::swap(&mut pending.bytes, &mut spare);
            // The output is taken before the buffer is let go: a line written at once (not
            // an access line) waits for this batch, so the log keeps the order of the lines;
            // access lines keep arriving in the buffer meanwhile.
            let mut out = self.out();
            drop(pending);
            drain_into(out.as_mut(), &mut spare);
        }
    }
}

/// Writes `bytes` to `out` and empties it. A log that cannot be written is not an error of
/// the request that made the line (as with `tracing`'s own writer): the bytes are dropped.
fn drain_into(out: &mut dyn Write, bytes: &mut Vec<u8>) {
    let _ = out.write_all(bytes);
    let _ = out.flush();
    bytes.clear();
}

/// One line's writer: `tracing`'s formatter writes each line whole, in one `write_all`.
pub struct LineWriter<'a> {
    sink: &'a LogSink,
    batched: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sink.append(buf, self.batched);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            sink: self,
            batched: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            sink: self,
            batched: self.batched_target == Some(meta.target()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A log file in memory, readable while the sink writes to it.
    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Vec<u8>>>);

    impl Write for Memory {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("memory log").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Memory {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("memory log")).into_owned()
        }
    }

    fn sink(memory: &Memory) -> LogSink {
        LogSink::batching_to(Box::new(memory.clone()), "trove::access").expect("log thread")
    }

    fn line(sink: &LogSink, batched: bool, text: &str) {
        let mut writer = LineWriter { sink, batched };
        writer.write_all(text.as_bytes()).expect("in memory");
    }

    /// Polls `memory` until it holds `want` (bounded: 5 s).
    fn eventually(memory: &Memory, want: &str) {
        let started = Instant::now();
        while memory.text() != want {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                memory.text()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn access_lines_wait_for_the_writer_thread_and_others_do_not() {
        let memory = Memory::default();
        let sink = sink(&memory);
        line(&sink, true, "a1\n");
        line(&sink, true, "a2\n");
        eventually(&memory, "a1\na2\n");
        // Another line is written by its own thread, after the access lines still waiting.
        line(&sink, true, "a3\n");
        line(&sink, false, "warn\n");
        assert_eq!(memory.text(), "a1\na2\na3\nwarn\n");
        line(&sink, true, "a4\n");
        sink.finish();
        assert_eq!(memory.text(), "a1\na2\na3\nwarn\na4\n");
        // After the stop, every line is written at once.
        line(&sink, true, "late\n");
        assert_eq!(memory.text(), "a1\na2\na3\nwarn\na4\nlate\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_line_that_fills_it() {
        let memory = Memory::default();
        let sink = sink(&memory);
        let long = format!("{}\n", "x".repeat(MAX_PENDING / 4));
        let mut want = String::new();
        for _ in 0..4 {
            line(&sink, true, &long);
            want.push_str(&long);
        }
        // The fourth line took the buffer to its bound: all four are out, without the thread.
        assert_eq!(memory.text().len(), want.len());
        sink.finish();
    }

    #[test]
    fn the_target_decides_which_lines_wait() {
        let memory = Memory::default();
        let sink = sink(&memory);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "trove::access", "served");
            tracing::warn!(target: "trove::other", "warned");
        });
        // The warning is written at once, after the access line made before it.
        let text = memory.text();
        let (served, warned) = (text.find("served"), text.find("warned"));
        assert!(served.is_some() && served < warned, "{text}");
        sink.finish();
    }

    #[test]
    fn an_idle_sink_writes_a_lone_access_line_within_its_linger() {
        let memory = Memory::default();
        let sink = sink(&memory);
        line(&sink, true, "alone\n");
        // No other line comes to push it out, and no stop: the thread writes it.
        eventually(&memory, "alone\n");
        sink.finish();
    }
}
