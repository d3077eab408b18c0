//! A Space's build or run log: the last lines in memory for the page and the API, every
//! line appended to a file beside the Space's revisions, and a broadcast for live readers.
//!
//! The broadcast channel exists only while someone follows the log: a channel holds its 256
//! slots from the start (~24 KiB), and a hub has two logs per Space, most of them never
//! followed (5,000 Spaces held ~240 MiB of empty channels at start-up).

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Lines kept in memory; older ones remain only in the file.
const RING_LINES: usize = 2000;
/// Longest line kept; a longer one is cut (an app printing without newlines).
const MAX_LINE_BYTES: usize = 8 << 10;

/// One log line with the time it was written (RFC 3339).
#[derive(Clone, Debug)]
pub struct LogLine {
    pub timestamp: String,
    pub text: String,
}

/// Lines a slow live reader may fall behind by before it misses some.
const LIVE_BACKLOG: usize = 256;

pub struct LogBuffer {
    inner: Mutex<Inner>,
}

struct Inner {
    lines: VecDeque<LogLine>,
    file: Option<std::fs::File>,
    /// The live readers' channel, while there are any.
    live: Option<broadcast::Sender<LogLine>>,
}

impl Default for LogBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LogBuffer {
    pub fn new() -> Self {
        LogBuffer {
            inner: Mutex::new(Inner {
                lines: VecDeque::new(),
                file: None,
                live: None,
            }),
        }
    }

    /// Starts a new log (a new build or a new start of the app), written to `file` too.
    pub fn restart(&self, file: Option<PathBuf>) {
        let file = file.and_then(|path| {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).ok()?;
            }
            std::fs::File::create(&path)
                .inspect_err(|e| {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write a space log")
                })
                .ok()
        });
        let mut inner = self.lock();
        inner.lines.clear();
        inner.file = file;
    }

    pub fn push(&self, text: &str) {
        let mut text = text.trim_end_matches(['\n', '\r']).to_owned();
        if text.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let line = LogLine {
            timestamp: crate::clock::format_ms(crate::clock::now_ms()),
            text,
        };
        let mut inner = self.lock();
        if let Some(file) = &mut inner.file
            && writeln!(file, "{} {}", line.timestamp, line.text).is_err()
        {
            inner.file = None;
        }
        if inner.lines.len() == RING_LINES {
            inner.lines.pop_front();
        }
        inner.lines.push_back(line.clone());
        // Nobody listening is the usual case; the channel goes with its last reader.
        if let Some(live) = &inner.live
            && live.send(line).is_err()
        {
            inner.live = None;
        }
    }

    /// The lines kept so far, and a receiver of the next ones (no line lost in between).
    pub fn follow(&self) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let mut inner = self.lock();
        let lines = inner.lines.iter().cloned().collect();
        let live = inner
            .live
            .get_or_insert_with(|| broadcast::channel(LIVE_BACKLOG).0)
            .subscribe();
        (lines, live)
    }

    /// The last `n` lines, joined.
    pub fn tail(&self, n: usize) -> String {
        let inner = self.lock();
        let skip = inner.lines.len().saturating_sub(n);
        inner
            .lines
            .iter()
            .skip(skip)
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_lines_and_the_file_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogBuffer::new();
        log.restart(Some(dir.path().join("x/build.log")));
        for i in 0..RING_LINES + 5 {
            log.push(&format!("line {i}\n"));
        }
        let (lines, _) = log.follow();
        assert_eq!(lines.len(), RING_LINES);
        assert_eq!(lines[0].text, "line 5");
        let file = std::fs::read_to_string(dir.path().join("x/build.log")).expect("file");
        assert_eq!(file.lines().count(), RING_LINES + 5);
        assert_eq!(log.tail(1), format!("line {}", RING_LINES + 4));
    }

    #[test]
    fn the_live_channel_exists_only_while_followed_and_loses_no_line() {
        let log = LogBuffer::new();
        log.push("before");
        assert!(
            log.lock().live.is_none(),
            "no channel before anyone follows"
        );
        let (lines, mut first) = log.follow();
        assert_eq!(lines.len(), 1);
        let (_, mut second) = log.follow();
        log.push("after");
        assert_eq!(first.try_recv().expect("first reader").text, "after");
        assert_eq!(second.try_recv().expect("second reader").text, "after");
        drop(first);
        log.push("one reader left");
        assert_eq!(
            second.try_recv().expect("still followed").text,
            "one reader left"
        );
        drop(second);
        log.push("nobody");
        assert!(
            log.lock().live.is_none(),
            "the channel goes with its last reader"
        );
        let (lines, mut again) = log.follow();
        assert_eq!(lines.len(), 4);
        log.push("new reader");
        assert_eq!(again.try_recv().expect("a new channel").text, "new reader");
    }
}
