//! What the executor tells a progress display while it applies a plan, and how long the rest
//! will take at bunq's windows.
//!
//! `apply` of many changes takes minutes at bunq's rate limits (200 creates ≈ 2 min). The
//! executor ([`crate::reconcile::apply`]) reports every action through [`ApplyProgress`]: when
//! it is sent, and how it ended, the latter once per action and in the plan's order (the order
//! of the audit lines). The waits for a rate-limit window come from the client instead
//! ([`crate::bunq::ApiObserver::waiting_for_window`]); a display implements both.
//!
//! Kept apart from the executor so that the display depends on this seam, not on the executor.

use std::time::Duration;

use crate::bunq::RateLimits;
use crate::reconcile::plan::{Action, Change};

/// Receives the executor's progress. Called inline from the run: keep it cheap, never block.
pub trait ApplyProgress: Sync {
    /// The executor is about to handle `creates` creates (POST) and `status_changes`
    /// activations and deactivations (PUT).
    fn begin(&self, creates: usize, status_changes: usize) {
        let _ = (creates, status_changes);
    }

    /// `action` is being sent to bunq now.
    fn action_started(&self, action: &Action) {
        let _ = action;
    }

    /// `action` ended as `outcome` (`applied`, `failed`, `skipped`, `blocked`). Called exactly
    /// once per action the executor handles, in the plan's order.
    fn action_finished(&self, action: &Action, outcome: &'static str) {
        let _ = (action, outcome);
    }
}

/// The progress receiver of runs nobody watches (the daemon, tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl ApplyProgress for NoProgress {}

/// Whether `action` is a create (sent as POST) rather than a status change (PUT): the two
/// streams the executor runs side by side.
pub fn is_create(action: &Action) -> bool {
    matches!(action.change, Change::Create { .. })
}

/// How long `creates` more creates and `status_changes` more status changes take at `limits`
/// when the two streams run side by side from empty windows: each stream's full windows after
/// its first one, the slower stream decides. Request latency is not counted.
pub fn eta(creates: usize, status_changes: usize, limits: &RateLimits) -> Duration {
    let stream = |count: usize, limit: crate::bunq::ratelimit::Limit| {
        let windows = count.div_ceil(limit.max_requests.max(1)).saturating_sub(1);
        limit
            .window
            .saturating_mul(u32::try_from(windows).unwrap_or(u32::MAX))
    };
    stream(creates, limits.post).max(stream(status_changes, limits.put))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_is_the_slower_streams_windows_after_the_first() {
        let bunq = RateLimits::bunq();
        assert_eq!(eta(0, 0, &bunq), Duration::ZERO);
        assert_eq!(
            eta(5, 2, &bunq),
            Duration::ZERO,
            "each fits its first window"
        );
        assert_eq!(eta(6, 0, &bunq), Duration::from_secs(3));
        // 100 creates: 19 more POST windows; 100 status changes: 49 more PUT windows.
        assert_eq!(eta(100, 100, &bunq), Duration::from_secs(147));
        assert_eq!(eta(200, 0, &bunq), Duration::from_secs(117));
        let margin = RateLimits::client_default();
        assert_eq!(eta(0, 3, &margin), Duration::from_millis(3250));
    }
}
