//! Progress on stderr unless `--quiet`: a bar on a terminal, and one plain line per step of
//! the plan when stderr is a file or pipe (a CI log), so a long run is never silent.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar on a terminal, plain lines elsewhere, nothing with `--quiet`.
pub struct Progress {
    bar: ProgressBar,
    /// Print one line per message (stderr is not a terminal and not `--quiet`).
    lines: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let visible = !quiet && terminal;
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let template = if colour {
            "{spinner:.cyan} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self {
            bar,
            lines: !quiet && !terminal,
        }
    }

    /// A progress bar that never draws (tests, library use).
    pub fn hidden() -> Self {
        Self {
            bar: ProgressBar::hidden(),
            lines: false,
        }
    }

    pub fn set_length(&self, length: u64) {
        self.bar.set_length(length);
    }

    pub fn set_message(&self, message: &str) {
        self.bar.set_message(message.to_string());
        if self.lines {
            match (self.bar.position(), self.bar.length().unwrap_or(0)) {
                (_, 0) => eprintln!("progress: {message}"),
                (done, total) => eprintln!("progress: {message} ({done} of {total} batches done)"),
            }
        }
    }

    pub fn advance(&self, steps: u64) {
        self.bar.inc(steps);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
