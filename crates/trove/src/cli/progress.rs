//! Progress of long admin runs (`trove gc`, `fsck`, `storage migrate`): a spinner with a
//! running summary when stderr is a terminal, otherwise one plain line every
//! [`LOG_EVERY`] (logs and scripts get a trace of a run that takes hours, not a redraw per
//! item).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a run not watched on a terminal writes a line.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    what: &'static str,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// A progress report for a run named `what` (`gc`, `fsck`, …).
    pub fn new(what: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(what);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Progress {
            what,
            bar,
            started: now,
            last_line: now,
        }
    }

    /// The run's state now, as one line.
    pub fn update(&mut self, summary: impl FnOnce() -> String) {
        match &self.bar {
            Some(bar) => bar.set_message(summary()),
            None if self.last_line.elapsed() >= LOG_EVERY => {
                self.last_line = Instant::now();
                eprintln!(
                    "{} [{:.0}s] {}",
                    self.what,
                    self.started.elapsed().as_secs_f64(),
                    summary()
                );
            }
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "{} done in {:.1}s",
            self.what,
            self.started.elapsed().as_secs_f64()
        );
    }
}
