//! A [`Plan`] for people (a table per credential and a summary line) and for programs (a
//! stable JSON document, `--output json`). Both are deterministic: the same plan renders to the
//! same bytes.
//!
//! # JSON format (version 1)
//!
//! ```text
//! {
//!   "format_version": 1,
//!   "outcome": "nothing_to_do" | "changes_pending" | "blocked",
//!   "exit_code": 0 | 2 | 3,
//!   "max_changes": 10,
//!   "run_blocked": null | {"rule": "max-changes", "changes": 12, "limit": 10},
//!   "summary": {"create", "activate", "deactivate", "blocked", "kept", "in_sync", "drift": n,
//!               "blocking_rules": ["own-ip", ...]},
//!   "credentials": [{
//!     "id": 4242, "name": "ci-runners" | null, "policy": "sync" | "additive",
//!     "actions": [{"action": "create" | "activate" | "deactivate", "ip": "192.0.2.1",
//!                  "entry": 17 | null, "current": "INACTIVE" | null, "wanted": "ACTIVE",
//!                  "reason": "desired-missing" | "desired-inactive" | "not-desired",
//!                  "reason_text": "..."}],
//!     "blocked": [{<action fields>, "rule": "own-ip" | "unknown-status", "rule_text": "...",
//!                  "block_reason": "registration-ip" | "egress-ip" | "egress-unknown" |
//!                                  "own-credential-unknown" | "unknown-status",
//!                  "block_reason_text": "what happened and what to fix"}],
//!     "kept": [{"ip", "entry", "status", "reason": "protected" | "additive" |
//!               "duplicate-active" | "unknown-status" | "not-ipv4", "reason_text"}],
//!     "in_sync": [{"ip", "entry"}],
//!     "drift": [{"ip", "before": status | null, "now": status | null}]
//!   }]
//! }
//! ```
//!
//! Fields are only ever added within a format version; `actions` are in application order per
//! credential (creates and activations, then deactivations). `not-ipv4` was an action reason
//! until entries that are not plain IPv4 became kept (bunq does not let the API manage them);
//! it is now a `kept` reason and no action carries it.

use std::fmt::Write as _;

use serde::Serialize;

use super::exit::ExitStatus;
use super::plan::{Action, CredentialPlan, Plan, PlanOutcome};
use crate::bunq::model::{CredentialId, EntryId, IpStatus};
use crate::config::Policy;

/// The JSON format version; bumped only when a field changes meaning or disappears.
pub const FORMAT_VERSION: u32 = 1;

/// Renders the plan as text: per credential a table, blocked and drift lines, then a summary.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    for credential in &plan.credentials {
        render_credential(&mut out, credential);
    }
    if let Some(block) = plan.run_block {
        let _ = writeln!(
            out,
            "BLOCKED [{}]: {} changes, more than sync.max_changes ({}); nothing will be applied",
            block.rule, block.changes, block.limit
        );
    }
    let _ = writeln!(out, "{}", summary_line(plan));
    out
}

fn status_text(status: Option<&IpStatus>) -> &str {
    status.map_or("none", IpStatus::as_str)
}

fn entry_text(entry: Option<EntryId>) -> String {
    entry.map_or_else(|| "-".to_owned(), |entry| entry.to_string())
}

fn transition(action: &Action) -> String {
    format!(
        "{} → {}",
        status_text(action.change.current().as_ref()),
        action.change.wanted()
    )
}

fn render_credential(out: &mut String, plan: &CredentialPlan) {
    let mut rows: Vec<[String; 4]> = plan
        .actions
        .iter()
        .map(|action| {
            [
                action.change.ip(),
                entry_text(action.change.entry()),
                transition(action),
                action.reason.description().to_owned(),
            ]
        })
        .collect();
    rows.extend(plan.kept.iter().map(|kept| {
        [
            kept.ip.clone(),
            kept.entry.to_string(),
            format!("{} (kept)", kept.status),
            kept.reason.description().to_owned(),
        ]
    }));

    let in_sync = match plan.in_sync.len() {
        1 => "1 desired IP ACTIVE".to_owned(),
        count => format!("{count} desired IPs ACTIVE"),
    };
    if rows.is_empty() && plan.blocked.is_empty() && plan.drift.is_empty() {
        let _ = writeln!(
            out,
            "Credential {}, policy {}: in sync, {in_sync}",
            plan.label(),
            plan.policy
        );
        return;
    }
    let _ = writeln!(
        out,
        "Credential {}, policy {}: {in_sync}",
        plan.label(),
        plan.policy
    );
    if !rows.is_empty() {
        let header = ["IP", "ENTRY", "CURRENT → WANTED", "REASON"].map(str::to_owned);
        let mut widths = [0usize; 3];
        for row in std::iter::once(&header).chain(rows.iter()) {
            for (width, cell) in widths.iter_mut().zip(row.iter()) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(rows.iter()) {
            let _ = writeln!(
                out,
                "  {:<w0$}  {:<w1$}  {:<w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
            );
        }
    }
    for blocked in &plan.blocked {
        let _ = writeln!(
            out,
            "  BLOCKED [{}] {} {} entry {}: {}",
            blocked.rule,
            blocked.action.change.kind().as_str(),
            blocked.action.change.ip(),
            entry_text(blocked.action.change.entry()),
            blocked.why.description()
        );
    }
    for drift in &plan.drift {
        let _ = writeln!(
            out,
            "  DRIFT {}: {} → {} since the last run (changed outside bunq-ipsync)",
            drift.ip,
            status_text(drift.before.as_ref()),
            status_text(drift.now.as_ref())
        );
    }
}

/// `Plan: 2 to create, 1 to activate, 3 to deactivate, 1 blocked (own-ip)`, plus kept and
/// drift counts when there are any.
pub fn summary_line(plan: &Plan) -> String {
    let summary = plan.summary();
    let mut line = format!(
        "Plan: {} to create, {} to activate, {} to deactivate, {} blocked",
        summary.create, summary.activate, summary.deactivate, summary.blocked
    );
    if !summary.blocking_rules.is_empty() {
        let rules: Vec<&str> = summary
            .blocking_rules
            .iter()
            .map(|rule| rule.name())
            .collect();
        let _ = write!(line, " ({})", rules.join(", "));
    }
    if summary.kept > 0 {
        let _ = write!(line, ", {} kept", summary.kept);
    }
    if summary.drift > 0 {
        let _ = write!(line, ", {} drifted", summary.drift);
    }
    line
}

/// The plan as a pretty-printed JSON document (see the module docs), with a trailing newline.
pub fn render_json(plan: &Plan) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(&PlanDocument::from(plan))?;
    text.push('\n');
    Ok(text)
}

/// The JSON document of a plan.
#[derive(Clone, Debug, Serialize)]
pub struct PlanDocument {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// How the plan ends.
    pub outcome: PlanOutcome,
    /// The exit code `plan` returns for this plan.
    pub exit_code: u8,
    /// The limit the run was checked against.
    pub max_changes: usize,
    /// Set when the whole run is blocked.
    pub run_blocked: Option<RunBlockedDocument>,
    /// Counts.
    pub summary: SummaryDocument,
    /// Per credential.
    pub credentials: Vec<CredentialDocument>,
}

/// `run_blocked`.
#[derive(Clone, Debug, Serialize)]
pub struct RunBlockedDocument {
    /// Rule name.
    pub rule: &'static str,
    /// Actions the run would make.
    pub changes: usize,
    /// The limit.
    pub limit: usize,
}

/// `summary`.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryDocument {
    /// Creates planned.
    pub create: usize,
    /// Activations planned.
    pub activate: usize,
    /// Deactivations planned.
    pub deactivate: usize,
    /// Actions refused by a rule.
    pub blocked: usize,
    /// Entries left alone.
    pub kept: usize,
    /// Desired IPs already ACTIVE.
    pub in_sync: usize,
    /// Out-of-band changes.
    pub drift: usize,
    /// Names of the rules that refused something.
    pub blocking_rules: Vec<&'static str>,
}

/// One element of `credentials`.
#[derive(Clone, Debug, Serialize)]
pub struct CredentialDocument {
    /// Credential id.
    pub id: CredentialId,
    /// Label.
    pub name: Option<String>,
    /// Policy applied.
    pub policy: Policy,
    /// Planned writes.
    pub actions: Vec<ActionDocument>,
    /// Refused writes.
    pub blocked: Vec<BlockedDocument>,
    /// Entries left alone.
    pub kept: Vec<KeptDocument>,
    /// Desired IPs already ACTIVE.
    pub in_sync: Vec<InSyncDocument>,
    /// Out-of-band changes.
    pub drift: Vec<DriftDocument>,
}

/// One planned write.
#[derive(Clone, Debug, Serialize)]
pub struct ActionDocument {
    /// `create`, `activate` or `deactivate`.
    pub action: &'static str,
    /// Address as text.
    pub ip: String,
    /// Entry id, `null` for a create.
    pub entry: Option<EntryId>,
    /// Status before, `null` for a create.
    pub current: Option<IpStatus>,
    /// Status after.
    pub wanted: IpStatus,
    /// Reason code.
    pub reason: &'static str,
    /// Reason for humans.
    pub reason_text: &'static str,
}

impl From<&Action> for ActionDocument {
    fn from(action: &Action) -> Self {
        ActionDocument {
            action: action.change.kind().as_str(),
            ip: action.change.ip(),
            entry: action.change.entry(),
            current: action.change.current(),
            wanted: action.change.wanted(),
            reason: action.reason.code(),
            reason_text: action.reason.description(),
        }
    }
}

/// One refused write.
#[derive(Clone, Debug, Serialize)]
pub struct BlockedDocument {
    /// The write.
    #[serde(flatten)]
    pub action: ActionDocument,
    /// Rule name.
    pub rule: &'static str,
    /// Rule for humans.
    pub rule_text: &'static str,
    /// The exact case of the rule (several reasons share `own-ip`).
    pub block_reason: &'static str,
    /// That case for humans, with what to fix.
    pub block_reason_text: &'static str,
}

/// One entry left alone.
#[derive(Clone, Debug, Serialize)]
pub struct KeptDocument {
    /// Address as text.
    pub ip: String,
    /// Entry id.
    pub entry: EntryId,
    /// Its status.
    pub status: IpStatus,
    /// Reason code.
    pub reason: &'static str,
    /// Reason for humans.
    pub reason_text: &'static str,
}

/// One desired IP already ACTIVE.
#[derive(Clone, Debug, Serialize)]
pub struct InSyncDocument {
    /// Address.
    pub ip: String,
    /// The ACTIVE entry.
    pub entry: EntryId,
}

/// One out-of-band change.
#[derive(Clone, Debug, Serialize)]
pub struct DriftDocument {
    /// Address as text.
    pub ip: String,
    /// Status the previous run left, `null`: no entry.
    pub before: Option<IpStatus>,
    /// Status now, `null`: no entry.
    pub now: Option<IpStatus>,
}

impl From<&Plan> for PlanDocument {
    fn from(plan: &Plan) -> Self {
        let summary = plan.summary();
        PlanDocument {
            format_version: FORMAT_VERSION,
            outcome: plan.outcome(),
            exit_code: ExitStatus::from_outcome(plan.outcome()).code(),
            max_changes: plan.max_changes,
            run_blocked: plan.run_block.map(|block| RunBlockedDocument {
                rule: block.rule.name(),
                changes: block.changes,
                limit: block.limit,
            }),
            summary: SummaryDocument {
                create: summary.create,
                activate: summary.activate,
                deactivate: summary.deactivate,
                blocked: summary.blocked,
                kept: summary.kept,
                in_sync: summary.in_sync,
                drift: summary.drift,
                blocking_rules: summary
                    .blocking_rules
                    .iter()
                    .map(|rule| rule.name())
                    .collect(),
            },
            credentials: plan
                .credentials
                .iter()
                .map(CredentialDocument::from)
                .collect(),
        }
    }
}

impl From<&CredentialPlan> for CredentialDocument {
    fn from(plan: &CredentialPlan) -> Self {
        CredentialDocument {
            id: plan.credential,
            name: plan.name.clone(),
            policy: plan.policy,
            actions: plan.actions.iter().map(ActionDocument::from).collect(),
            blocked: plan
                .blocked
                .iter()
                .map(|blocked| BlockedDocument {
                    action: ActionDocument::from(&blocked.action),
                    rule: blocked.rule.name(),
                    rule_text: blocked.rule.description(),
                    block_reason: blocked.why.code(),
                    block_reason_text: blocked.why.description(),
                })
                .collect(),
            kept: plan
                .kept
                .iter()
                .map(|kept| KeptDocument {
                    ip: kept.ip.clone(),
                    entry: kept.entry,
                    status: kept.status.clone(),
                    reason: kept.reason.code(),
                    reason_text: kept.reason.description(),
                })
                .collect(),
            in_sync: plan
                .in_sync
                .iter()
                .map(|in_sync| InSyncDocument {
                    ip: in_sync.ip.to_string(),
                    entry: in_sync.entry,
                })
                .collect(),
            drift: plan
                .drift
                .iter()
                .map(|drift| DriftDocument {
                    ip: drift.ip.clone(),
                    before: drift.before.clone(),
                    now: drift.now.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;

/// What the executor did, one line per action and a summary, for `apply`'s text output.
pub fn render_apply_text(report: &crate::reconcile::apply::ApplyReport) -> String {
    use crate::reconcile::apply::Outcome;
    let mut out = String::new();
    for result in &report.results {
        let change = &result.action.change;
        let detail = match &result.outcome {
            Outcome::Applied => String::new(),
            Outcome::Failed(reason) | Outcome::Skipped(reason) => format!(": {reason}"),
            Outcome::Blocked(rule) => format!(": {rule} ({})", rule.description()),
        };
        let entry = result
            .entry
            .map(|id| format!(" entry {id}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<8} credential {} {} {}{} -> {}{}\n",
            result.outcome.label(),
            result.action.credential,
            change.kind().as_str(),
            change.ip(),
            entry,
            change.wanted(),
            detail
        ));
    }
    out.push_str(&format!("Apply: {}\n", report.tally()));
    if let Some(reason) = &report.security_failure {
        out.push_str(&format!("Stopped: {reason}\n"));
    }
    out
}

/// One result of `apply --output json`.
#[derive(Serialize)]
struct AppliedDocument<'a> {
    credential: u64,
    action: &'static str,
    ip: String,
    entry: Option<u64>,
    outcome: &'static str,
    detail: Option<String>,
    rule: Option<&'a str>,
}

/// `apply --output json`: the apply's own `exit_code` (the nested plan's `exit_code` is what
/// `plan` would have returned before the apply), the plan document, and one object per action
/// result.
pub fn render_apply_json(
    plan: &Plan,
    report: &crate::reconcile::apply::ApplyReport,
    status: ExitStatus,
) -> Result<String, serde_json::Error> {
    use crate::reconcile::apply::Outcome;
    let results: Vec<AppliedDocument<'_>> = report
        .results
        .iter()
        .map(|result| AppliedDocument {
            credential: result.action.credential,
            action: result.action.change.kind().as_str(),
            ip: result.action.change.ip(),
            entry: result.entry,
            outcome: result.outcome.label(),
            detail: match &result.outcome {
                Outcome::Failed(reason) | Outcome::Skipped(reason) => Some(reason.clone()),
                _ => None,
            },
            rule: match &result.outcome {
                Outcome::Blocked(rule) => Some(rule.name()),
                _ => None,
            },
        })
        .collect();
    let document = serde_json::json!({
        "exit_code": status.code(),
        "plan": PlanDocument::from(plan),
        "results": results,
        "security_failure": report.security_failure,
    });
    let mut text = serde_json::to_string_pretty(&document)?;
    text.push('\n');
    Ok(text)
}
