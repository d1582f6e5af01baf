//! What a notification says: its [`EventKind`] and the [`Event`] built from a run's report, a
//! run's error, a refused reload or a failed connection. Pure: the caller passes the time and
//! the host name in, so the same input always builds the same event.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::bunq::model::{CredentialId, EntryId};
use crate::reconcile::apply::{ActionResult, Outcome};
use crate::reconcile::plan::{CredentialPlan, Drift};
use crate::reconcile::report::{ActionDocument, BlockedDocument, CredentialDocument};
use crate::reconcile::run::RunReport;
use crate::reconcile::verdict::{RunResult, Verdict};

/// What happened, the `event` field of every message and the values of `notify.webhooks[].events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A run changed at least one entry.
    Applied,
    /// A safety rule held something back.
    Blocked,
    /// A run ended in error, or the daemon could not connect or renew its session.
    Failed,
    /// Out-of-band changes were found.
    Drift,
    /// A config reload was refused; the daemon runs on the last good config.
    ConfigRejected,
    /// A run succeeded after failed ones.
    Recovered,
    /// Sent by `notify-test` only; not configurable.
    Test,
}

impl EventKind {
    /// The kinds a webhook may subscribe to (every one but `test`), the default of `events`.
    pub const CONFIGURABLE: [EventKind; 6] = [
        EventKind::Applied,
        EventKind::Blocked,
        EventKind::Failed,
        EventKind::Drift,
        EventKind::ConfigRejected,
        EventKind::Recovered,
    ];

    /// The config and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Applied => "applied",
            EventKind::Blocked => "blocked",
            EventKind::Failed => "failed",
            EventKind::Drift => "drift",
            EventKind::ConfigRejected => "config_rejected",
            EventKind::Recovered => "recovered",
            EventKind::Test => "test",
        }
    }

    /// A configurable kind by its spelling; `test` and unknown names are `None`.
    pub fn configurable(name: &str) -> Option<EventKind> {
        EventKind::CONFIGURABLE
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// Where and when an event happened: the same for every event of one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The machine's host name, so one channel can serve several daemons.
    pub host: String,
    /// When the event happened.
    pub time: DateTime<Utc>,
}

/// One notification, in the form the JSON format serializes (see [`super::json`]).
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// What happened.
    pub event: EventKind,
    /// RFC 3339, UTC.
    pub time: String,
    /// The run this is about, `null` outside a run (a refused reload, a failed connection).
    pub run_id: Option<String>,
    /// The daemon's host name.
    pub host: String,
    /// One line, as in the log and systemd `STATUS=`.
    pub summary: String,
    /// The credentials the run touched, found drift on or held back writes for.
    pub credentials: Vec<CredentialEvent>,
    /// Why it failed, `null` unless it did.
    pub error: Option<String>,
}

/// One credential of an event; field names as in the plan JSON.
#[derive(Clone, Debug, Serialize)]
pub struct CredentialEvent {
    /// Credential id.
    pub id: CredentialId,
    /// Its label.
    pub name: Option<String>,
    /// What the executor did.
    pub actions: Vec<ActionEvent>,
    /// Out-of-band changes.
    pub drift: Vec<Drift>,
    /// Writes a safety rule refused.
    pub blocked: Vec<BlockedDocument>,
}

/// One write the executor attempted or skipped.
#[derive(Clone, Debug, Serialize)]
pub struct ActionEvent {
    /// `create`, `activate` or `deactivate`.
    pub action: &'static str,
    /// Address as text.
    pub ip: String,
    /// The entry written (for a create, the id bunq gave it), `null` when unknown.
    pub entry: Option<EntryId>,
    /// `applied`, `failed` or `skipped`.
    pub outcome: &'static str,
    /// Reason code of the planned action (`desired-missing`, ...).
    pub reason: &'static str,
}

impl Event {
    fn new(event: EventKind, origin: &Origin, summary: String) -> Event {
        Event {
            event,
            time: origin.time.to_rfc3339_opts(SecondsFormat::Secs, true),
            run_id: None,
            host: origin.host.clone(),
            summary,
            credentials: Vec::new(),
            error: None,
        }
    }

    /// The `kind` message of a finished run, with every credential it has something to say
    /// about.
    pub fn of_run(
        kind: EventKind,
        report: &RunReport,
        verdict: &Verdict,
        origin: &Origin,
    ) -> Event {
        let mut event = Event::new(kind, origin, verdict.summary.clone());
        event.run_id = Some(report.run_id.clone());
        event.credentials = credentials_of(report);
        if verdict.result == RunResult::Failed {
            event.error = Some(failure_of(report).unwrap_or_else(|| verdict.summary.clone()));
        }
        event
    }

    /// A failure without a report: the run could not plan, or the daemon could not connect or
    /// renew its session. `summary` is the one line the log has; `error` the cause.
    pub fn failure(run_id: Option<&str>, summary: &str, error: &str, origin: &Origin) -> Event {
        let mut event = Event::new(EventKind::Failed, origin, summary.to_owned());
        event.run_id = run_id.map(str::to_owned);
        event.error = Some(error.to_owned());
        event
    }

    /// Failures ended: `summary` is the run that ended them.
    pub fn recovered(run_id: Option<&str>, summary: &str, origin: &Origin) -> Event {
        let mut event = Event::new(EventKind::Recovered, origin, summary.to_owned());
        event.run_id = run_id.map(str::to_owned);
        event
    }

    /// A reload was refused for `error` (the config problems, one per line).
    pub fn config_rejected(error: &str, origin: &Origin) -> Event {
        let summary = "config reload refused; running on the last good config".to_owned();
        let mut event = Event::new(EventKind::ConfigRejected, origin, summary);
        event.error = Some(error.to_owned());
        event
    }

    /// `notify-test`'s message.
    pub fn test(origin: &Origin) -> Event {
        let summary = "test notification from bunq-ipsync notify-test".to_owned();
        Event::new(EventKind::Test, origin, summary)
    }
}

/// The kinds a finished run has something to say about, each once, in a fixed order.
pub fn run_kinds(report: &RunReport, verdict: &Verdict) -> Vec<EventKind> {
    let applied = report.applied.as_ref();
    let wrote = applied.is_some_and(|applied| applied.tally().applied > 0);
    let blocked = applied.is_some_and(|applied| applied.has_blocked());
    [
        (wrote, EventKind::Applied),
        (blocked, EventKind::Blocked),
        (report.drift_count() > 0, EventKind::Drift),
        (verdict.result == RunResult::Failed, EventKind::Failed),
    ]
    .into_iter()
    .filter_map(|(happened, kind)| happened.then_some(kind))
    .collect()
}

/// Every write the run held back, as `credential action ip rule` items in a stable order
/// (`None`: none), so the policy can tell a persisting block from a new one.
pub fn held_back(report: &RunReport) -> Option<String> {
    let applied = report.applied.as_ref()?;
    let mut items: Vec<String> = applied
        .results
        .iter()
        .filter_map(|result| match &result.outcome {
            Outcome::Blocked(rule) => Some(format!(
                "{} {} {} {}",
                result.action.credential,
                result.action.change.kind().as_str(),
                result.action.change.ip(),
                rule.name()
            )),
            _ => None,
        })
        .collect();
    items.sort();
    (!items.is_empty()).then(|| items.join("; "))
}

/// The first reason a run failed: its security stop, else its first failed action.
fn failure_of(report: &RunReport) -> Option<String> {
    let applied = report.applied.as_ref()?;
    applied.security_failure.clone().or_else(|| {
        applied
            .results
            .iter()
            .find_map(|result| match &result.outcome {
                Outcome::Failed(reason) => Some(format!(
                    "{} {}: {reason}",
                    result.action.change.kind().as_str(),
                    result.action.change.ip()
                )),
                _ => None,
            })
    })
}

/// Every credential with an action result, drift or a refused write, in plan order.
fn credentials_of(report: &RunReport) -> Vec<CredentialEvent> {
    let results = report
        .applied
        .as_ref()
        .map_or(&[][..], |applied| &applied.results[..]);
    report
        .plan
        .credentials
        .iter()
        .map(|plan| credential_event(plan, results))
        .filter(|event| {
            !(event.actions.is_empty() && event.drift.is_empty() && event.blocked.is_empty())
        })
        .collect()
}

fn credential_event(plan: &CredentialPlan, results: &[ActionResult]) -> CredentialEvent {
    let document = CredentialDocument::from(plan);
    let mine = || {
        results
            .iter()
            .filter(|result| result.action.credential == plan.credential)
    };
    let actions = mine()
        .filter(|result| !matches!(result.outcome, Outcome::Blocked(_)))
        .map(|result| ActionEvent {
            action: result.action.change.kind().as_str(),
            ip: result.action.change.ip(),
            entry: result.entry,
            outcome: result.outcome.label(),
            reason: result.action.reason.code(),
        })
        .collect();
    let mut blocked = document.blocked;
    // A run-wide block (max-changes) refuses planned actions the plan lists as actions.
    blocked.extend(mine().filter_map(|result| match &result.outcome {
        Outcome::Blocked(rule) if !plan.blocked.iter().any(|b| b.action == result.action) => {
            Some(BlockedDocument {
                action: ActionDocument::from(&result.action),
                rule: rule.name(),
                rule_text: rule.description(),
                block_reason: rule.name(),
                block_reason_text: rule.description(),
            })
        }
        _ => None,
    }));
    CredentialEvent {
        id: plan.credential,
        name: plan.name.clone(),
        actions,
        drift: document.drift,
        blocked,
    }
}
