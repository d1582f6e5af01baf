//! The single executor: the only code in bunq-ipsync that writes to bunq.
//!
//! It takes a [`Plan`] and applies its applicable actions: the creates (POST) and the status
//! changes (PUT: activations, then deactivations) as two streams side by side, each paced by its
//! own bunq window, a credential's deactivations only after every create and activation of that
//! credential was confirmed. Every planned action, applied or not, ends in exactly one
//! [`Outcome`] and one audit log line, in the plan's order, so nothing is skipped silently.
//!
//! Rules of the road:
//! * a failure of one action does not stop the others: the next run repairs what is left;
//! * if a create or activation on a credential failed, that credential's deactivations wait for
//!   the next run, so access never shrinks before the desired IPs are in;
//! * a response-signature failure stops the run at once: nothing after it is acted on (a call
//!   the other stream already has in flight finishes; nothing new is sent);
//! * a create is never retried blindly: after an unclear failure (the connection broke, the
//!   request timed out, bunq answered 5xx, or a 200 whose body is not the expected answer; bunq
//!   may or may not have created the entry, see [`BunqError::is_unclear_write`]) the credential
//!   is listed again to find out, and an entry the re-read does not show is recorded as
//!   unconfirmed, so the next run does not report it as drift if bunq committed it after all.
//!
//! Dry-run is not a flag in here: plan-only callers never reach this module (see
//! [`crate::reconcile::run`]).

use std::net::Ipv4Addr;

use tokio_util::sync::CancellationToken;

use crate::bunq::BunqError;
use crate::bunq::model::{EntryId, IpStatus};
use crate::reconcile::ledger::{GrantEffect, Ledger};
pub use crate::reconcile::outcome::{ActionResult, ApplyReport, Outcome, OutcomeKind};
use crate::reconcile::plan::{Action, Change, Plan};
use crate::reconcile::port::{AllowlistWriter, EntryRef};
use crate::reconcile::progress::{ApplyProgress, NoProgress, is_create};
pub use crate::reconcile::tally::Tally;

/// Applies `plan` through `writer`. Never returns early on an action's failure: every action
/// gets an outcome. When `stop` is cancelled (shutdown), the calls in flight finish and the
/// remaining actions are skipped, so a run is never left half-way through one write.
///
/// The creates (POST) and the status changes (PUT) run as two streams side by side: bunq counts
/// its windows per endpoint and method, and the client's rate limiter paces each stream by its
/// own window. A credential's deactivations wait until every grant on that credential has
/// settled (see [`Ledger`]); results and audit lines come out in the plan's order.
pub async fn apply<W: AllowlistWriter>(
    writer: &W,
    plan: &Plan,
    run_id: &str,
    stop: &CancellationToken,
) -> ApplyReport {
    apply_with_progress(writer, plan, run_id, stop, &NoProgress).await
}

/// [`apply`], telling `progress` about every applicable action: when it is sent, and how it
/// ended (once per action, in the plan's order, with its audit line).
pub async fn apply_with_progress<W: AllowlistWriter>(
    writer: &W,
    plan: &Plan,
    run_id: &str,
    stop: &CancellationToken,
    progress: &dyn ApplyProgress,
) -> ApplyReport {
    let mut report = ApplyReport::default();
    for credential in &plan.credentials {
        for blocked in &credential.blocked {
            let outcome = Outcome::Blocked(blocked.rule);
            record(
                &mut report,
                run_id,
                ActionResult::not_attempted(&blocked.action, outcome),
            );
        }
    }
    // `observe` credentials are never written: each planned action is reported as pending.
    for action in plan.observed_actions() {
        record(
            &mut report,
            run_id,
            ActionResult::not_attempted(action, Outcome::Observed),
        );
    }
    if let Some(run_block) = &plan.run_block {
        for action in plan.writable_actions() {
            let outcome = Outcome::Blocked(run_block.rule);
            record(
                &mut report,
                run_id,
                ActionResult::not_attempted(action, outcome),
            );
        }
        return report;
    }

    let actions = plan.applicable_actions();
    let grants = actions
        .iter()
        .filter(|action| !action.change.is_deactivation());
    let ledger = Ledger::new(actions.len(), grants.map(|action| action.credential));
    let (posts, puts): (Vec<_>, Vec<_>) = actions
        .iter()
        .copied()
        .enumerate()
        .partition(|(_, action)| is_create(action));
    progress.begin(posts.len(), puts.len());
    let run = Stream {
        writer,
        ledger: &ledger,
        run_id,
        stop,
        progress,
    };
    tokio::join!(run.drain(posts), run.drain(puts));
    let (results, security_failure) = ledger.into_results();
    report.results.extend(results);
    report.security_failure = security_failure;
    report
}

/// One write stream's view of the run: it takes its actions in the plan's order, except that a
/// deactivation whose credential still has grants open lets the stream's later actions pass.
struct Stream<'a, W> {
    writer: &'a W,
    ledger: &'a Ledger<ActionResult>,
    run_id: &'a str,
    stop: &'a CancellationToken,
    progress: &'a dyn ApplyProgress,
}

impl<W: AllowlistWriter> Stream<'_, W> {
    /// Handles every action of the stream (`(plan position, action)`), one call at a time.
    async fn drain(&self, mut pending: Vec<(usize, &Action)>) {
        while !pending.is_empty() {
            let next = self
                .ledger
                .wait_for(|ledger| self.next(ledger, &pending))
                .await;
            let (index, action) = pending.remove(next);
            let (result, halt) = match skip_reason(self.ledger, self.stop, action) {
                Some(reason) => (
                    ActionResult::not_attempted(action, Outcome::Skipped(reason)),
                    None,
                ),
                None => match self.send(action).await {
                    Attempt::Done(result) => (result, None),
                    Attempt::SecurityStop { error, result } => (result, Some(error)),
                },
            };
            let effect = match (&result.outcome, action.change.is_deactivation()) {
                (_, true) => GrantEffect::None,
                (Outcome::Failed(_), false) => GrantEffect::Failed,
                (_, false) => GrantEffect::Settled,
            };
            self.ledger
                .record(index, action.credential, result, effect, halt, |result| {
                    audit(self.run_id, result);
                    self.progress
                        .action_finished(&result.action, result.outcome.label());
                });
        }
    }

    /// Carries `action` out, telling the progress display first.
    async fn send(&self, action: &Action) -> Attempt {
        self.progress.action_started(action);
        execute(self.writer, action).await
    }

    /// The position in `pending` of the first action that may be handled now: a grant always,
    /// a deactivation once its credential's grants have settled, anything once the run stops
    /// (it is skipped).
    fn next(&self, ledger: &Ledger<ActionResult>, pending: &[(usize, &Action)]) -> Option<usize> {
        if self.stop.is_cancelled() || ledger.halted().is_some() {
            return Some(0);
        }
        pending.iter().position(|(_, action)| {
            !action.change.is_deactivation() || ledger.grants_settled(action.credential)
        })
    }
}

/// Why `action` is not attempted, if it is not: the run was stopped for security or is shutting
/// down, or it is a deactivation on a credential where a create or activation failed, so access
/// never shrinks before the desired IPs are in.
fn skip_reason(
    ledger: &Ledger<ActionResult>,
    stop: &CancellationToken,
    action: &Action,
) -> Option<String> {
    if let Some(reason) = ledger.halted() {
        Some(format!("run stopped after a security error: {reason}"))
    } else if stop.is_cancelled() {
        Some("shutting down; the next run continues".into())
    } else if action.change.is_deactivation() && ledger.grants_failed(action.credential) {
        Some(
            "a create or activation on this credential failed; deactivations wait for the next \
             run"
            .into(),
        )
    } else {
        None
    }
}

/// How one attempted action went.
enum Attempt {
    /// The action has its result; the run goes on.
    Done(ActionResult),
    /// A response-signature failure: the run stops acting. The action still gets its result:
    /// a write was sent and answered, only the answer could not be trusted, so it is
    /// unconfirmed.
    SecurityStop { error: String, result: ActionResult },
}

fn failed(action: &Action, err: BunqError, entry: Option<EntryId>) -> Attempt {
    if err.is_security() {
        let error = err.to_string();
        let result = ActionResult::failed(action, error.clone(), entry, true);
        Attempt::SecurityStop { error, result }
    } else {
        // No answer at all: the write may have happened.
        let unconfirmed = matches!(err, BunqError::Transport { .. });
        Attempt::Done(ActionResult::failed(
            action,
            err.to_string(),
            entry,
            unconfirmed,
        ))
    }
}

/// Carries out one action; resolves ambiguity for creates.
async fn execute<W: AllowlistWriter>(writer: &W, action: &Action) -> Attempt {
    let (entry, status) = match &action.change {
        Change::Create { ip } => {
            return match writer.create_ip(action.credential, *ip).await {
                Ok(entry) => Attempt::Done(ActionResult::applied(action, entry)),
                Err(err) if err.is_unclear_write() => {
                    resolve_ambiguous_create(writer, action, *ip, err).await
                }
                Err(err) => failed(action, err, None),
            };
        }
        Change::Activate { entry, .. } => (*entry, IpStatus::Active),
        Change::Deactivate { entry, .. } => (*entry, IpStatus::Inactive),
    };
    let at = EntryRef {
        credential: action.credential,
        entry,
    };
    match writer.set_ip_status(at, status).await {
        Ok(()) => Attempt::Done(ActionResult::applied(action, entry)),
        Err(err) => failed(action, err, Some(entry)),
    }
}

/// The POST got no clear answer: bunq may have created the entry. Look before anyone tries
/// again, so a retry can never make a duplicate. When the re-read shows no entry, the failure
/// stays unconfirmed: a bunq that answered 5xx or timed out may still commit the entry after
/// the re-read, and the next run must then not take the daemon's own entry for drift.
async fn resolve_ambiguous_create<W: AllowlistWriter>(
    writer: &W,
    action: &Action,
    ip: Ipv4Addr,
    err: BunqError,
) -> Attempt {
    let wanted = ip.to_string();
    match writer.list_ips(action.credential).await {
        Ok(entries) => {
            let created = entries
                .iter()
                .filter(|entry| entry.ip == wanted && entry.status == IpStatus::Active)
                .map(|entry| entry.id)
                .max();
            Attempt::Done(match created {
                Some(entry) => ActionResult::applied(action, entry),
                None => ActionResult::failed(
                    action,
                    format!("{err}; re-read shows no entry for {ip}, the next run creates it"),
                    None,
                    true,
                ),
            })
        }
        Err(list_err) if list_err.is_security() => failed(action, list_err, None),
        Err(list_err) => Attempt::Done(ActionResult::failed(
            action,
            format!(
                "{err}; re-read failed too ({list_err}): outcome unknown, the next run re-reads \
                 and repairs"
            ),
            None,
            true,
        )),
    }
}

/// Writes the result's audit line and stores it.
fn record(report: &mut ApplyReport, run_id: &str, result: ActionResult) {
    audit(run_id, &result);
    report.results.push(result);
}

/// The audit line of one result: every planned action gets exactly one.
fn audit(run_id: &str, result: &ActionResult) {
    let ActionResult {
        action, outcome, ..
    } = result;
    let from = action.change.current().map(|status| status.to_string());
    // An applied change needs no explanation: no `detail` field then, rather than an empty one.
    let detail = match outcome {
        Outcome::Applied => None,
        Outcome::Failed(reason) | Outcome::Skipped(reason) => Some(reason.clone()),
        Outcome::Blocked(rule) => Some(format!("{rule}: {}", rule.description())),
        Outcome::Observed => Some("policy observe: reported, never written".into()),
    };
    let fields = (
        action.credential,
        action.change.ip(),
        result
            .entry
            .map(|id| id.to_string())
            .unwrap_or_else(|| "-".into()),
        from.unwrap_or_else(|| "-".into()),
        action.change.wanted().to_string(),
    );
    match outcome {
        Outcome::Applied | Outcome::Blocked(_) | Outcome::Skipped(_) | Outcome::Observed => {
            tracing::info!(
                target: "audit", run_id, credential = fields.0, ip = %fields.1, entry = %fields.2,
                from = %fields.3, to = %fields.4, action = action.change.kind().as_str(),
                reason = action.reason.code(), outcome = outcome.label(),
                detail = detail.as_deref(), "change {}", outcome.label()
            )
        }
        Outcome::Failed(_) => tracing::warn!(
            target: "audit", run_id, credential = fields.0, ip = %fields.1, entry = %fields.2,
            from = %fields.3, to = %fields.4, action = action.change.kind().as_str(),
            reason = action.reason.code(), outcome = outcome.label(), detail = detail.as_deref(),
            "change failed"
        ),
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
