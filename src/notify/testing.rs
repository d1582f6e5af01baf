//! Fixtures of the notify unit tests: one run report with an action of every outcome the
//! formats show, built once.

use chrono::TimeZone as _;

use super::SecretUrl;
use super::event::Origin;
use crate::bunq::model::IpStatus;
use crate::config::Policy as SyncPolicy;
use crate::reconcile::apply::{ActionResult, ApplyReport, Outcome};
use crate::reconcile::plan::{
    Action, BlockReason, BlockedAction, Change, CredentialPlan, Drift, Plan, Reason, Rule,
};
use crate::reconcile::run::RunReport;
use crate::reconcile::verdict::Verdict;

/// A webhook or heartbeat URL from a literal.
pub(super) fn secret_url(text: &str) -> SecretUrl {
    SecretUrl::new(reqwest::Url::parse(text).unwrap())
}

/// `host-a` at 2026-12-02 10:00:00 UTC.
pub(super) fn origin() -> Origin {
    Origin {
        host: "host-a".into(),
        time: chrono::Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap(),
    }
}

/// The `applied` event of [`applied_report`], as both formats' tests render it.
pub(super) fn applied_event() -> super::event::Event {
    let (report, verdict) = applied_report();
    super::event::Event::of_run(
        super::event::EventKind::Applied,
        &report,
        &verdict,
        &origin(),
    )
}

/// Credential 4242 (`ci`): 192.0.2.1 created (entry 17), the deactivation of 192.0.2.9
/// refused by own-ip, 192.0.2.5 found re-activated by hand.
pub(super) fn applied_report() -> (RunReport, Verdict) {
    let create = Action {
        credential: 4242,
        change: Change::Create {
            ip: "192.0.2.1".parse().unwrap(),
        },
        reason: Reason::DesiredMissing,
    };
    let deactivate = Action {
        credential: 4242,
        change: Change::Deactivate {
            entry: 9,
            ip: "192.0.2.9".into(),
        },
        reason: Reason::NotDesired,
    };
    let plan = CredentialPlan {
        credential: 4242,
        name: Some("ci".into()),
        policy: SyncPolicy::Sync,
        actions: vec![create.clone()],
        blocked: vec![BlockedAction {
            action: deactivate.clone(),
            rule: Rule::OwnIp,
            why: BlockReason::RegistrationIp,
        }],
        kept: Vec::new(),
        in_sync: Vec::new(),
        drift: vec![Drift {
            ip: "192.0.2.5".into(),
            before: Some(IpStatus::Inactive),
            now: Some(IpStatus::Active),
        }],
        sources: Default::default(),
    };
    let results = vec![
        ActionResult {
            action: create,
            outcome: Outcome::Applied,
            entry: Some(17),
            unconfirmed: false,
        },
        ActionResult {
            action: deactivate,
            outcome: Outcome::Blocked(Rule::OwnIp),
            entry: Some(9),
            unconfirmed: false,
        },
    ];
    let report = RunReport {
        run_id: "run-1".into(),
        plan: Plan {
            credentials: vec![plan],
            max_changes: 10,
            run_block: None,
            sources: Vec::new(),
        },
        applied: Some(ApplyReport {
            results,
            security_failure: None,
        }),
        resolutions: Default::default(),
    };
    let mut verdict = report.verdict();
    // Blocked by the verdict's rules; the formats only need a summary that says changes.
    verdict.summary = "changes applied: 1 applied, 0 failed, 0 skipped, 1 blocked, 1 drift".into();
    (report, verdict)
}
