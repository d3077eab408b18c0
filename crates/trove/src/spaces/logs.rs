//! A Space's build or run log: the last lines in memory for the page and the API, every
//! line appended to a file beside the Space's revisions, and a broadcast for live readers.

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

pub struct LogBuffer {
    inner: Mutex<Inner>,
    live: broadcast::Sender<LogLine>,
}

struct Inner {
    lines: VecDeque<LogLine>,
    file: Option<std::fs::File>,
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
            }),
            live: broadcast::channel(256).0,
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
        drop(inner);
        // Nobody listening is the usual case.
        let _ = self.live.send(line);
    }

    /// The lines kept so far, and a receiver of the next ones (no line lost in between).
    pub fn follow(&self) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let inner = self.lock();
        (inner.lines.iter().cloned().collect(), self.live.subscribe())
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
}
