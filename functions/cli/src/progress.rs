//! The live progress line: a spinner, the job's state and attempt, and the time since it began.
//! Drawn on stderr, and only when stdout and stderr are terminals: piped or scripted runs get no
//! escape codes.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressState, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Progress {
    /// A progress line for `job_id`, visible only on a terminal.
    pub fn new(job_id: &str, started: Instant) -> Self {
        let visible = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let bar = visible.then(|| {
            let style = ProgressStyle::with_template("{spinner:.cyan} job {prefix}  {msg:.bold}  {secs}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner())
                .with_key("secs", move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1}s", state.elapsed().as_secs_f64());
                });
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                .with_style(style)
                .with_prefix(job_id.to_owned())
                .with_finish(ProgressFinish::AndClear)
                .with_elapsed(started.elapsed());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Self { bar, started }
    }

    /// Shows a state: `processing · attempt 1`.
    pub fn state(&self, status: &str, attempts: u32) {
        self.message(format!("{status} · attempt {attempts}"));
    }

    pub fn message(&self, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        }
    }

    /// Clears the line and, on a terminal, leaves a summary on stderr:
    /// `job <id> succeeded in 1.4s · attempt 1 · 1 image`.
    pub fn finish(&self, outcome: &str, details: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            eprintln!("{outcome} in {:.1}s{details}", self.started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
