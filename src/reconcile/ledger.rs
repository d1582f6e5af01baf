//! What the executor's two write streams share while they run side by side: the results in the
//! plan's order, and per credential the grants (creates, activations) not yet settled.
//!
//! bunq counts its windows per endpoint and method, so the executor ([`crate::reconcile::apply`])
//! sends the POSTs (creates) and the PUTs (activations, deactivations) concurrently. Two facts
//! make that safe, and both live here:
//!
//! * a credential's deactivation may start only once every grant of that credential has
//!   settled ([`Ledger::grants_settled`]), and not at all if one of them failed
//!   ([`Ledger::grants_failed`]): access never shrinks before the desired IPs are in;
//! * results are released (audit line, progress) strictly in the plan's order, whatever order
//!   the calls complete in, so logs and reports are deterministic.
//!
//! Generic over the result type so that it does not depend on the executor that uses it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::bunq::model::CredentialId;

/// How a recorded result bears on its credential's grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantEffect {
    /// Not a grant (a deactivation): changes nothing.
    None,
    /// A grant that bunq confirmed, or that was not attempted (stop, security): settled.
    Settled,
    /// A grant that failed: settled, and the credential's deactivations are held back.
    Failed,
}

/// The shared state of one executor run; see the module documentation.
#[derive(Debug)]
pub struct Ledger<T> {
    state: Mutex<State<T>>,
    /// Woken whenever a result is recorded: a waiting stream looks again.
    changed: Notify,
}

#[derive(Debug)]
struct State<T> {
    /// One slot per applicable action, by its position in the plan.
    slots: Vec<Option<T>>,
    /// Slots before this one have been released.
    released: usize,
    /// Grants not yet settled, per credential.
    open_grants: BTreeMap<CredentialId, usize>,
    /// Credentials where a grant failed.
    failed_grants: BTreeSet<CredentialId>,
    /// Why the run stopped acting (a response-signature failure), once it has.
    halted: Option<String>,
}

impl<T> Ledger<T> {
    /// A ledger for `len` actions, whose grants are on `grant_credentials` (one item per grant).
    pub fn new(len: usize, grant_credentials: impl IntoIterator<Item = CredentialId>) -> Self {
        let mut open_grants = BTreeMap::new();
        for credential in grant_credentials {
            *open_grants.entry(credential).or_insert(0) += 1;
        }
        Ledger {
            state: Mutex::new(State {
                slots: std::iter::repeat_with(|| None).take(len).collect(),
                released: 0,
                open_grants,
                failed_grants: BTreeSet::new(),
                halted: None,
            }),
            changed: Notify::new(),
        }
    }

    /// Whether every grant on `credential` has settled (confirmed, failed or skipped).
    pub fn grants_settled(&self, credential: CredentialId) -> bool {
        self.lock()
            .open_grants
            .get(&credential)
            .is_none_or(|open| *open == 0)
    }

    /// Whether a grant on `credential` failed.
    pub fn grants_failed(&self, credential: CredentialId) -> bool {
        self.lock().failed_grants.contains(&credential)
    }

    /// Why the run stopped acting, if it has.
    pub fn halted(&self) -> Option<String> {
        self.lock().halted.clone()
    }

    /// Waits until `ready` picks an item, looking again after every recorded result. `ready`
    /// must pick one once the results it waits for are in, or this waits for ever.
    pub async fn wait_for<R>(&self, mut ready: impl FnMut(&Self) -> Option<R>) -> R {
        loop {
            // Registered before looking, so a result recorded between the look and the wait
            // is not missed.
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if let Some(picked) = ready(self) {
                return picked;
            }
            changed.await;
        }
    }

    /// Records the result of the action at `index`: its effect on its credential's grants and,
    /// for a security failure, why the run halts. Then hands every result whose predecessors
    /// are all in to `release`, in the plan's order, and wakes the waiting streams.
    pub fn record(
        &self,
        index: usize,
        credential: CredentialId,
        result: T,
        effect: GrantEffect,
        halt: Option<String>,
        mut release: impl FnMut(&T),
    ) {
        {
            let mut state = self.lock();
            state.slots[index] = Some(result);
            if effect != GrantEffect::None
                && let Some(open) = state.open_grants.get_mut(&credential)
            {
                *open = open.saturating_sub(1);
            }
            if effect == GrantEffect::Failed {
                state.failed_grants.insert(credential);
            }
            if state.halted.is_none() {
                state.halted = halt;
            }
            while let Some(Some(next)) = state.slots.get(state.released) {
                release(next);
                state.released += 1;
            }
        }
        self.changed.notify_waiters();
    }

    /// Every result in the plan's order, and why the run halted. Slots never recorded (which
    /// the executor does not leave) are dropped.
    pub fn into_results(self) -> (Vec<T>, Option<String>) {
        let state = self
            .state
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (state.slots.into_iter().flatten().collect(), state.halted)
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_released_in_index_order_whatever_order_they_are_recorded_in() {
        let ledger = Ledger::new(3, []);
        let mut released = Vec::new();
        ledger.record(2, 1, "c", GrantEffect::None, None, |r| released.push(*r));
        ledger.record(1, 1, "b", GrantEffect::None, None, |r| released.push(*r));
        assert!(released.is_empty(), "nothing before the first is in");
        ledger.record(0, 1, "a", GrantEffect::None, None, |r| released.push(*r));
        assert_eq!(released, ["a", "b", "c"]);
        assert_eq!(ledger.into_results().0, ["a", "b", "c"]);
    }

    #[test]
    fn a_credential_settles_when_its_last_grant_is_recorded_and_remembers_a_failure() {
        let ledger = Ledger::new(3, [7, 7]);
        assert!(!ledger.grants_settled(7));
        assert!(
            ledger.grants_settled(8),
            "no grants: settled from the start"
        );
        ledger.record(0, 7, (), GrantEffect::Failed, None, |_| {});
        assert!(!ledger.grants_settled(7));
        ledger.record(1, 7, (), GrantEffect::Settled, None, |_| {});
        assert!(ledger.grants_settled(7));
        assert!(ledger.grants_failed(7) && !ledger.grants_failed(8));
    }

    #[test]
    fn the_first_halt_reason_is_kept() {
        let ledger = Ledger::new(2, []);
        ledger.record(0, 1, (), GrantEffect::None, Some("first".into()), |_| {});
        ledger.record(1, 1, (), GrantEffect::None, Some("second".into()), |_| {});
        assert_eq!(ledger.into_results().1.as_deref(), Some("first"));
    }
}
