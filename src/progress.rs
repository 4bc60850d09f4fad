//! Progress: a live bar with rate and ETA on a terminal, plain periodic log
//! lines when run from cron or a CronJob (where a bar would fill the log
//! with control characters), nothing with `--quiet`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Log,
    Quiet,
}

impl Mode {
    /// Bar on a terminal, log lines otherwise, nothing when quiet.
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Log
        }
    }
}

/// Counts files through decode; safe to share between threads.
pub struct Progress {
    bar: Option<ProgressBar>,
    mode: Mode,
    total: AtomicU64,
    done: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
    every: Duration,
}

impl Progress {
    pub fn new(mode: Mode) -> Self {
        let bar = (mode == Mode::Bar).then(|| {
            let plain = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            let template = if plain {
                "{elapsed_precise} [{bar:40}] {pos}/{len} files  {per_sec}  ETA {eta}  {msg}"
            } else {
                "{elapsed_precise} [{bar:40.cyan/blue}] {pos}/{len} files  {per_sec}  ETA {eta}  {msg}"
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(style);
            bar
        });
        Self {
            bar,
            mode,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
            every: Duration::from_secs(10),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Sets the number of files expected.
    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// One more file done.
    pub fn inc(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            return;
        }
        if self.mode != Mode::Log {
            return;
        }
        let Ok(mut last) = self.last_line.lock() else { return };
        if last.elapsed() >= self.every {
            *last = Instant::now();
            let total = self.total.load(Ordering::Relaxed);
            let secs = self.started.elapsed().as_secs_f64().max(1e-9);
            let rate = done as f64 / secs;
            let eta = if rate > 0.0 { (total.saturating_sub(done)) as f64 / rate } else { 0.0 };
            log::info!("progress: {done}/{total} files, {rate:.1} files/s, ETA {eta:.0} s");
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
