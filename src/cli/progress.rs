//! `swarm run`'s progress bar: on stderr, and only when stderr is a terminal.

use std::io::IsTerminal;
use std::time::Instant;

/// Documents done of those to do, pages done and their rate.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl Progress {
    /// A bar for `documents` documents, if stderr is a terminal.
    pub(super) fn new(documents: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(documents);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} documents, {msg} [{elapsed_precise}, ETA {eta}]",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Self {
            bar,
            started: Instant::now(),
        }
    }

    /// After each document.
    pub(super) fn update(&self, documents: u64, pages: u64) {
        if let Some(b) = &self.bar {
            b.set_position(documents);
            let rate = pages as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            b.set_message(format!("{pages} pages, {rate:.0} pages/s"));
        }
    }

    /// Takes the bar off the terminal.
    pub(super) fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
