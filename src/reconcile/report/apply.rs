//! What the executor did, for `apply`: one line per action and a tally, or JSON with the plan
//! document and one object per result.

use serde::Serialize;

use super::json::PlanDocument;
use crate::reconcile::apply::{ApplyReport, Outcome};
use crate::reconcile::exit::ExitStatus;
use crate::reconcile::plan::Plan;

/// What the executor did, one line per action and a summary, for `apply`'s text output.
pub fn render_apply_text(report: &ApplyReport) -> String {
    let mut out = String::new();
    for result in &report.results {
        let change = &result.action.change;
        let detail = match &result.outcome {
            Outcome::Applied => String::new(),
            Outcome::Failed(reason) | Outcome::Skipped(reason) => format!(": {reason}"),
            Outcome::Blocked(rule) => format!(": {rule} ({})", rule.description()),
            Outcome::Observed => ": policy observe, not written".to_owned(),
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
    report: &ApplyReport,
    status: ExitStatus,
) -> Result<String, serde_json::Error> {
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
