//! The progress bar of `apply` and `demo` on a terminal (`indicatif`): the count, the action
//! being sent, an ETA from the remaining actions and bunq's windows, and a note while the client
//! waits for a rate-limit window, so a long apply never looks hung.
//!
//! No bar when stdout or stderr is not a terminal (scripts, journald, CI logs), with
//! `--output json`, or with `--quiet` ([`decide`]). `NO_COLOR` (set and not empty) keeps the
//! bar free of colour, as it keeps the log lines ([`no_color`]).
//!
//! Log lines go to stderr too: while a bar is drawn, [`LogWriter`] lifts it for each line, so
//! the two never garble each other.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::bunq::{ApiObserver, RateLimits};
use crate::cli::args::OutputFormat;
use crate::reconcile::plan::Action;
use crate::reconcile::progress::{self, ApplyProgress};

/// Whether, and how, progress is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// No bar: not a terminal, JSON output, or `--quiet`.
    Off,
    /// A bar without colour (`NO_COLOR`).
    Plain,
    /// A bar with colour.
    Coloured,
}

/// The bar or not: only when both stdout and stderr are terminals (a redirected stdout is a
/// script reading the result), the output is text, and `--quiet` is not given; `no_color`
/// leaves the bar but takes its colour.
pub fn decide(
    stdout_terminal: bool,
    stderr_terminal: bool,
    output: OutputFormat,
    quiet: bool,
    no_color: bool,
) -> ProgressMode {
    if !stdout_terminal || !stderr_terminal || output == OutputFormat::Json || quiet {
        ProgressMode::Off
    } else if no_color {
        ProgressMode::Plain
    } else {
        ProgressMode::Coloured
    }
}

/// [`decide`] for this process's stdout, stderr and environment.
pub fn mode(output: OutputFormat, quiet: bool) -> ProgressMode {
    decide(
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
        output,
        quiet,
        no_color(),
    )
}

/// `NO_COLOR` is set and not empty (<https://no-color.org>).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty())
}

/// The bar currently drawn, for [`LogWriter`]; at most one per process.
fn drawn() -> MutexGuard<'static, Option<ProgressBar>> {
    static DRAWN: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();
    DRAWN
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// stderr for the log layer: each write lifts the bar (if one is drawn) for its line.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let bar = drawn().clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write(bytes)),
            None => std::io::stderr().write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// What the bar counts down.
#[derive(Debug, Default)]
struct Remaining {
    creates: usize,
    status_changes: usize,
    /// The action being sent, or the window being waited for.
    doing: String,
    /// The rate-limit wait under way, which comes before the remaining windows.
    waiting: Duration,
}

/// The progress display of one or more applies: an [`ApplyProgress`] for the executor's
/// events and an [`ApiObserver`] for the client's window waits. Draws only between
/// [`ApplyProgress::begin`] and [`ApplyBar::finish`].
#[derive(Debug)]
pub struct ApplyBar {
    mode: ProgressMode,
    limits: RateLimits,
    remaining: Mutex<Remaining>,
}

impl ApplyBar {
    /// A display in `mode`, whose ETA uses the windows the client keeps to.
    pub fn new(mode: ProgressMode) -> Arc<ApplyBar> {
        Arc::new(ApplyBar {
            mode,
            limits: RateLimits::client_default(),
            remaining: Mutex::new(Remaining::default()),
        })
    }

    /// Removes the bar of the last apply (the report follows on stdout).
    pub fn finish(&self) {
        if let Some(bar) = drawn().take() {
            bar.finish_and_clear();
        }
    }

    fn remaining(&self) -> MutexGuard<'_, Remaining> {
        self.remaining
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Redraws the message: what is being done and the ETA.
    fn show(&self, remaining: &Remaining) {
        let eta = progress::eta(remaining.creates, remaining.status_changes, &self.limits)
            + remaining.waiting;
        if let Some(bar) = drawn().as_ref() {
            bar.set_message(format!("{} · ETA {}", remaining.doing, clock(eta)));
        }
    }

    fn style(&self) -> ProgressStyle {
        let template = match self.mode {
            ProgressMode::Coloured => "{spinner:.green} [{bar:30.cyan/blue}] {pos}/{len} {msg}",
            _ => "{spinner} [{bar:30}] {pos}/{len} {msg}",
        };
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }
}

/// `1m 05s` / `12s`.
fn clock(duration: Duration) -> String {
    let seconds = duration.as_secs() + u64::from(duration.subsec_millis() >= 500);
    match seconds / 60 {
        0 => format!("{seconds}s"),
        minutes => format!("{minutes}m {:02}s", seconds % 60),
    }
}

impl ApplyProgress for ApplyBar {
    fn begin(&self, creates: usize, status_changes: usize) {
        if self.mode == ProgressMode::Off || creates + status_changes == 0 {
            return;
        }
        let total = u64::try_from(creates + status_changes).unwrap_or(u64::MAX);
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(self.style());
        bar.enable_steady_tick(Duration::from_millis(200));
        *drawn() = Some(bar);
        let mut remaining = self.remaining();
        *remaining = Remaining {
            creates,
            status_changes,
            doing: "starting".into(),
            waiting: Duration::ZERO,
        };
        self.show(&remaining);
    }

    fn action_started(&self, action: &Action) {
        let mut remaining = self.remaining();
        remaining.waiting = Duration::ZERO;
        remaining.doing = format!(
            "{} {} on credential {}",
            action.change.kind().as_str(),
            action.change.ip(),
            action.credential
        );
        self.show(&remaining);
    }

    fn action_finished(&self, action: &Action, _outcome: &'static str) {
        let mut remaining = self.remaining();
        let left = if progress::is_create(action) {
            &mut remaining.creates
        } else {
            &mut remaining.status_changes
        };
        *left = left.saturating_sub(1);
        remaining.waiting = Duration::ZERO;
        if let Some(bar) = drawn().as_ref() {
            bar.inc(1);
        }
        self.show(&remaining);
    }
}

impl ApiObserver for ApplyBar {
    fn waiting_for_window(&self, method: &str, _route_pattern: &str, wait: Duration) {
        let mut remaining = self.remaining();
        remaining.doing = format!(
            "waiting {:.1} s for bunq's {method} rate-limit window",
            wait.as_secs_f64()
        );
        remaining.waiting = wait;
        self.show(&remaining);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_only_on_two_terminals_with_text_output_and_without_quiet() {
        use OutputFormat::{Json, Text};
        assert_eq!(
            decide(true, true, Text, false, false),
            ProgressMode::Coloured
        );
        assert_eq!(decide(true, true, Text, false, true), ProgressMode::Plain);
        assert_eq!(decide(false, true, Text, false, false), ProgressMode::Off);
        assert_eq!(decide(true, false, Text, false, false), ProgressMode::Off);
        assert_eq!(decide(true, true, Json, false, false), ProgressMode::Off);
        assert_eq!(decide(true, true, Text, true, false), ProgressMode::Off);
        assert_eq!(decide(true, true, Json, true, true), ProgressMode::Off);
    }

    #[test]
    fn a_wait_for_a_window_counts_in_the_eta_until_the_next_action() {
        let bar = ApplyBar::new(ProgressMode::Off);
        bar.begin(2, 0);
        *bar.remaining() = Remaining {
            creates: 2,
            ..Remaining::default()
        };
        bar.waiting_for_window("POST", "/x", Duration::from_secs(3));
        assert_eq!(bar.remaining().waiting, Duration::from_secs(3));
        assert!(bar.remaining().doing.contains("POST rate-limit window"));
        bar.action_finished(&create_action(), "applied");
        assert_eq!(bar.remaining().waiting, Duration::ZERO);
        assert_eq!(bar.remaining().creates, 1);
    }

    fn create_action() -> Action {
        Action {
            credential: 1,
            change: crate::reconcile::plan::Change::Create {
                ip: std::net::Ipv4Addr::new(192, 0, 2, 1),
            },
            reason: crate::reconcile::plan::Reason::DesiredMissing,
        }
    }

    #[test]
    fn the_eta_reads_as_minutes_and_seconds() {
        assert_eq!(clock(Duration::from_millis(3250)), "3s");
        assert_eq!(clock(Duration::from_secs(65)), "1m 05s");
        assert_eq!(clock(Duration::ZERO), "0s");
    }
}
