//! `sync.schedule`: a cron expression, checked and measured once, when the config is read.
//!
//! The expression is parsed with the scheduler's own parser (tokio-cron-scheduler, seconds
//! first), so an expression the config accepts is one the daemon can schedule, and `check`
//! refuses what `run` would refuse. The period (the longest gap between firings) is measured here
//! too: the scheduler's fallback timer takes it from the validated config instead of parsing the
//! expression again.

use std::time::Duration;

/// How many firings ahead [`CronSchedule::period`] looks: enough to see a month-based schedule's
/// longest gap.
const FIRINGS_MEASURED: usize = 32;

/// A cron expression that parses and keeps firing, with its period.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    /// The expression as written, trimmed: `0 */5 * * * *`.
    expression: String,
    /// The longest gap between consecutive firings among the next [`FIRINGS_MEASURED`].
    period: Duration,
}

impl CronSchedule {
    /// Parses `text` (6 or 7 fields, seconds first) and measures its period from now. The
    /// error is the message for `sync.schedule`.
    pub fn parse(text: &str) -> Result<CronSchedule, String> {
        let expression = text.trim();
        let fields = expression.split_whitespace().count();
        if !(6..=7).contains(&fields) {
            return Err(format!(
                "{text:?} has {fields} fields; write sec min hour day-of-month month \
                 day-of-week [year], e.g. \"0 */5 * * * *\""
            ));
        }
        let invalid = || format!("{text:?} is not a valid cron expression");
        let mut job =
            tokio_cron_scheduler::Job::new(expression, |_, _| {}).map_err(|_| invalid())?;
        let schedule = job
            .job_data()
            .ok()
            .and_then(|data| data.schedule())
            .ok_or_else(invalid)?;
        let never = || {
            format!(
                "{text:?} does not fire repeatedly from now on; the daemon needs a \
                 schedule that keeps firing"
            )
        };
        let mut at = schedule
            .find_next_occurrence(&chrono::Utc::now(), false)
            .map_err(|_| never())?;
        let mut period = Duration::ZERO;
        for _ in 0..FIRINGS_MEASURED {
            let Ok(next) = schedule.find_next_occurrence(&at, false) else {
                break;
            };
            period = period.max((next - at).to_std().unwrap_or(Duration::ZERO));
            at = next;
        }
        if period.is_zero() {
            return Err(never());
        }
        Ok(CronSchedule {
            expression: expression.to_owned(),
            period,
        })
    }

    /// The expression, trimmed, for the cron scheduler and for messages.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The longest gap between firings: how long the daemon may go without a tick while the
    /// schedule is healthy.
    pub fn period(&self) -> Duration {
        self.period
    }
}

/// Two schedules are the same when their expressions are: the period is measured from the moment
/// of parsing, and a reload must not count a re-measured period as a changed schedule.
impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl Eq for CronSchedule {}

impl std::fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn period_of_every_five_minutes() {
        assert_eq!(
            CronSchedule::parse("0 */5 * * * *").unwrap().period(),
            5 * MIN
        );
    }

    #[test]
    fn period_is_the_longest_gap() {
        // 09:00 and 17:00 daily: gaps of 8 h and 16 h.
        assert_eq!(
            CronSchedule::parse("0 0 9,17 * * *").unwrap().period(),
            Duration::from_secs(16 * 3600)
        );
    }

    #[test]
    fn expression_is_kept_trimmed() {
        let schedule = CronSchedule::parse("  0 */5 * * * * ").unwrap();
        assert_eq!(schedule.expression(), "0 */5 * * * *");
    }

    #[test]
    fn five_fields_are_refused_with_a_hint() {
        let err = CronSchedule::parse("*/5 * * * *").unwrap_err();
        assert!(err.contains("has 5 fields; write sec min hour"), "{err}");
    }

    #[test]
    fn a_bad_field_is_refused() {
        let err = CronSchedule::parse("0 */10 * * * Funday").unwrap_err();
        assert!(err.ends_with("is not a valid cron expression"), "{err}");
    }

    #[test]
    fn a_schedule_in_the_past_is_refused() {
        let err = CronSchedule::parse("0 0 0 1 1 * 2001").unwrap_err();
        assert!(err.contains("does not fire repeatedly"), "{err}");
    }
}
