//! The plan for people: a table per credential, its blocked and drift lines, and a summary line.

use std::fmt::Write as _;

use crate::bunq::model::{EntryId, IpStatus};
use crate::reconcile::plan::{Action, CredentialPlan, Plan};

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
    let rows = rows(plan);
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
        render_sources(out, plan);
        return;
    }
    let _ = writeln!(
        out,
        "Credential {}, policy {}: {in_sync}",
        plan.label(),
        plan.policy
    );
    if !rows.is_empty() {
        render_table(out, &rows);
    }
    render_blocked_and_drift(out, plan);
}

/// The table rows of a credential: its actions, then the entries it keeps.
fn rows(plan: &CredentialPlan) -> Vec<[String; 4]> {
    let mut rows: Vec<[String; 4]> = plan
        .actions
        .iter()
        .map(|action| {
            let reason = action.reason.description();
            let reason = match plan.source_of(&action.change.ip()) {
                Some(source) => format!("{reason} (from {source})"),
                None => reason.to_owned(),
            };
            let transition = if plan.writes() {
                transition(action)
            } else {
                format!("{} (observe)", transition(action))
            };
            [
                action.change.ip(),
                entry_text(action.change.entry()),
                transition,
                reason,
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
    rows
}

/// `rows` under a header, each column as wide as its widest cell (the last one unpadded).
fn render_table(out: &mut String, rows: &[[String; 4]]) {
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

/// Where the desired IPs of sources came from, one line per source, and each failed source.
fn render_sources(out: &mut String, plan: &CredentialPlan) {
    let mut by_source: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (ip, source) in &plan.sources.provenance {
        by_source.entry(source).or_default().push(ip.to_string());
    }
    for (source, ips) in by_source {
        let _ = writeln!(out, "  FROM {source}: {}", ips.join(", "));
    }
    for failed in &plan.sources.failed {
        let _ = writeln!(
            out,
            "  SOURCE FAILED {}: {}; deactivations on this credential are held back",
            failed.source, failed.error
        );
    }
}

/// The sources' lines, one line per refused action, then one per drifted IP.
fn render_blocked_and_drift(out: &mut String, plan: &CredentialPlan) {
    render_sources(out, plan);
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
    if summary.observe > 0 {
        let _ = write!(line, ", {} observe only (not written)", summary.observe);
    }
    if summary.kept > 0 {
        let _ = write!(line, ", {} kept", summary.kept);
    }
    if summary.drift > 0 {
        let _ = write!(line, ", {} drifted", summary.drift);
    }
    line
}
