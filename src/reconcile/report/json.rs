//! The plan for programs: the stable JSON document of `--output json` (format in
//! [`crate::reconcile::report`]).

use serde::Serialize;

use super::FORMAT_VERSION;
use crate::bunq::model::{CredentialId, EntryId, IpStatus};
use crate::config::Policy;
use crate::reconcile::exit::ExitStatus;
use crate::reconcile::plan::{
    Action, CredentialPlan, Drift, FailedSource, Plan, PlanOutcome, SourceReport,
};
use crate::reconcile::saved_plan;

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
    /// The SHA-256 of the plan's actions, what `apply --checksum` accepts
    /// ([`crate::reconcile::saved_plan`]).
    pub checksum: String,
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
    /// What every distinct dynamic source yielded this run (empty without sources).
    pub sources: Vec<SourceDocument>,
}

/// One element of `sources`.
#[derive(Clone, Debug, Serialize)]
pub struct SourceDocument {
    /// `dns:home.example.org`, `file:/…`, `url:https://host/path` (no secret parts).
    pub source: String,
    /// Whether it resolved.
    pub ok: bool,
    /// What it yielded, sorted.
    pub addresses: Vec<String>,
    /// Why it failed, `null` when it resolved.
    pub error: Option<String>,
    /// The DNS answer's TTL in seconds, `null` for files and URLs.
    pub ttl: Option<u64>,
}

impl From<&SourceReport> for SourceDocument {
    fn from(report: &SourceReport) -> Self {
        SourceDocument {
            source: report.source.clone(),
            ok: report.error.is_none(),
            addresses: report.addresses.iter().map(ToString::to_string).collect(),
            error: report.error.clone(),
            ttl: report.ttl_secs,
        }
    }
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
    /// Planned actions (counted above too) of `observe` credentials: pending, never written.
    pub observe: usize,
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
    pub drift: Vec<Drift>,
    /// The credential's sources that failed this run: its deactivations are held back.
    pub failed_sources: Vec<FailedSource>,
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
    /// The source the IP came from (`dns:home.example.org`), `null` for a static item or an
    /// IP that is not desired.
    pub source: Option<String>,
    /// The credential's policy is `observe`: the action is reported as pending and never
    /// applied.
    pub observe: bool,
}

impl ActionDocument {
    /// The document of `action`, one of `plan`'s.
    fn of(action: &Action, plan: &CredentialPlan) -> Self {
        ActionDocument {
            source: plan.source_of(&action.change.ip()).map(str::to_owned),
            observe: !plan.writes(),
            ..ActionDocument::from(action)
        }
    }
}

impl From<&Action> for ActionDocument {
    fn from(action: &Action) -> Self {
        ActionDocument {
            source: None,
            observe: false,
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
    /// The source the IP came from, `null` for a static item.
    pub source: Option<String>,
}

impl From<&Plan> for PlanDocument {
    fn from(plan: &Plan) -> Self {
        let summary = plan.summary();
        PlanDocument {
            format_version: FORMAT_VERSION,
            outcome: plan.outcome(),
            checksum: saved_plan::checksum(plan),
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
                observe: summary.observe,
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
            sources: plan.sources.iter().map(SourceDocument::from).collect(),
        }
    }
}

impl From<&CredentialPlan> for CredentialDocument {
    fn from(plan: &CredentialPlan) -> Self {
        CredentialDocument {
            id: plan.credential,
            name: plan.name.clone(),
            policy: plan.policy,
            actions: plan
                .actions
                .iter()
                .map(|action| ActionDocument::of(action, plan))
                .collect(),
            blocked: plan
                .blocked
                .iter()
                .map(|blocked| BlockedDocument {
                    action: ActionDocument::of(&blocked.action, plan),
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
                    source: plan.sources.provenance.get(&in_sync.ip).cloned(),
                })
                .collect(),
            drift: plan.drift.clone(),
            failed_sources: plan.sources.failed.clone(),
        }
    }
}
