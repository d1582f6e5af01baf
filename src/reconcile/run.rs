//! One reconcile run: observe bunq, plan, and (only in apply mode) hand the plan to the single
//! executor, then remember what the run left so the next run can tell drift from its own work.
//!
//! Dry-run is enforced here by types: [`plan_run`] takes an [`AllowlistReader`], which has no
//! write methods, so plan-only code cannot reach the write path; only [`apply_run`] and
//! [`apply_run_gated`] take an [`AllowlistWriter`], and they alone reach [`apply::apply`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::bunq::BunqError;
use crate::bunq::model::{CredentialId, CredentialPasswordIp, IpStatus, PermittedIp};
use crate::config::Config;
use crate::reconcile::apply::{self, ApplyReport, Outcome};
use crate::reconcile::desired::{desired_of, resolve_sources, source_reports};
pub use crate::reconcile::port::{AllowlistReader, AllowlistWriter, EntryRef};
use tokio_util::sync::CancellationToken;

use crate::reconcile::plan::{self, CredentialState, IpStates, OwnAccess, Plan, PlanInput};
use crate::reconcile::progress::{ApplyProgress, NoProgress};
use crate::reconcile::record::RunRecord;
use crate::reconcile::saved_plan::{PlanGate, Stale};
use crate::sources::Resolutions;

/// Why a run could not produce a plan.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A bunq call failed while reading the actual state. Nothing was written.
    #[error("reading the allowlists failed: {0}")]
    Read(#[from] BunqError),
    /// The config names a credential the user does not have.
    #[error(
        "credential {id} is not among this user's credentials ({known}); check credentials[].id"
    )]
    UnknownCredential {
        /// The configured id.
        id: CredentialId,
        /// The ids bunq listed, for the operator.
        known: String,
    },
    /// A gated apply (`apply --plan`, `apply --checksum`) found that bunq now calls for other
    /// actions than the reviewed ones, or the saved plan is too old. Nothing was written.
    #[error(transparent)]
    Stale(#[from] Stale),
}

impl RunError {
    /// Metric label for a failed run.
    pub fn metric_label(&self) -> &'static str {
        match self {
            RunError::Read(err) => err.metric_label(),
            RunError::UnknownCredential { .. } => "unknown_credential",
            RunError::Stale(_) => "stale_plan",
        }
    }
}

/// What bunq holds right now, for the configured credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// Entries of each configured credential.
    pub entries: BTreeMap<CredentialId, Vec<PermittedIp>>,
    /// Where the daemon itself signs in from (its device's credential and IP), read from the
    /// credentials listing only when the plan wants a deactivation. `None`: not read; empty: the
    /// own credential is unknown. Either way the planner blocks every deactivation.
    pub own_access: Option<Vec<OwnAccess>>,
    /// What each dynamic source yielded, resolved before bunq was read.
    pub resolutions: Resolutions,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// Correlates every log line of the run.
    pub run_id: String,
    /// What was decided.
    pub plan: Plan,
    /// What the executor did; `None` for plan-only runs.
    pub applied: Option<ApplyReport>,
    /// What each source yielded in this run (the daemon follows sources from here).
    pub resolutions: Resolutions,
}

impl RunReport {
    /// Per planned credential, the changes its desired state needs that this run did not make:
    /// its planned and refused actions less the applied ones. Every credential is there, 0 when
    /// it converged; under `observe` and in plan-only runs nothing is applied, so all of them.
    pub fn pending_changes(&self) -> BTreeMap<CredentialId, usize> {
        let mut pending: BTreeMap<CredentialId, usize> = self
            .plan
            .credentials
            .iter()
            .map(|plan| (plan.credential, plan.actions.len() + plan.blocked.len()))
            .collect();
        let applied = self.applied.iter().flat_map(|applied| &applied.results);
        for result in applied.filter(|result| result.outcome == Outcome::Applied) {
            if let Some(count) = pending.get_mut(&result.action.credential) {
                *count = count.saturating_sub(1);
            }
        }
        pending
    }

    /// Out-of-band changes found in this run.
    pub fn drift_count(&self) -> usize {
        self.plan
            .credentials
            .iter()
            .map(|plan| plan.drift.len())
            .sum()
    }
}

/// A fresh run id (a UUID), put on every log line of the run.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Resolves every source, then reads every configured credential's entries: one listing per
/// credential, the whole of a steady-state run's reads. Nothing is written. The credentials
/// listing (for the own-IP facts) is read later, and only if the plan deactivates something
/// ([`own_access`]); a configured credential bunq does not know answers 404, and only then is the
/// listing read to name the ones it does know.
pub async fn observe<R: AllowlistReader>(
    reader: &R,
    config: &Config,
) -> Result<Observation, RunError> {
    let resolutions = resolve_sources(config).await;
    let mut entries = BTreeMap::new();
    for spec in &config.credentials {
        let listed = match reader.list_ips(spec.id).await {
            Ok(listed) => listed,
            Err(err) if err.is_not_found() => {
                return Err(unknown_credential(reader, spec.id, err).await);
            }
            Err(err) => return Err(err.into()),
        };
        entries.insert(spec.id, listed);
    }
    Ok(Observation {
        entries,
        own_access: None,
        resolutions,
    })
}

/// A 404 for `id`'s entries: [`RunError::UnknownCredential`] with the ids bunq does know, when
/// the listing confirms `id` is not among them; otherwise the 404 itself.
async fn unknown_credential<R: AllowlistReader>(
    reader: &R,
    id: CredentialId,
    not_found: BunqError,
) -> RunError {
    let credentials = match reader.list_credentials().await {
        Ok(credentials) => credentials,
        Err(err) => return err.into(),
    };
    if credentials.iter().any(|credential| credential.id == id) {
        return not_found.into();
    }
    let known: Vec<String> = credentials
        .iter()
        .map(|credential| credential.id.to_string())
        .collect();
    RunError::UnknownCredential {
        id,
        known: if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        },
    }
}

/// Reads the credentials listing and finds the daemon's own access paths in it: the facts of
/// the own-IP rule, needed only when a deactivation is planned.
pub async fn own_access<R: AllowlistReader>(
    reader: &R,
    config: &Config,
) -> Result<Vec<OwnAccess>, RunError> {
    let credentials: Vec<CredentialPasswordIp> = reader.list_credentials().await?;
    let description = reader
        .registered_device_description()
        .unwrap_or_else(|| config.bunq.device_description.clone());
    let own_access = plan::own_access(&credentials, &description);
    if own_access.is_empty() {
        tracing::warn!(
            device_description = %description,
            "no credential is bound to a device with this description, so the daemon's own \
             credential is unknown: every deactivation is blocked (own-ip) until \
             bunq.device_description names the registered device"
        );
    }
    Ok(own_access)
}

/// Plans from an observation (pure).
pub fn plan_from(config: &Config, observation: &Observation, previous: Option<&RunRecord>) -> Plan {
    let empty = Vec::new();
    let actual_of = |id: &CredentialId| observation.entries.get(id).unwrap_or(&empty);
    let previous_states: Vec<Option<Cow<'_, IpStates>>> = config
        .credentials
        .iter()
        .map(|spec| {
            previous.and_then(|record| previous_states(record, spec.id, actual_of(&spec.id)))
        })
        .collect();
    let desired: Vec<_> = config
        .credentials
        .iter()
        .map(|spec| desired_of(spec, &observation.resolutions))
        .collect();
    let credentials = config
        .credentials
        .iter()
        .zip(&previous_states)
        .zip(&desired)
        .map(|((spec, previous), (desired, facts))| {
            let state = CredentialState::new(spec, actual_of(&spec.id), previous.as_deref());
            match facts {
                Some(facts) => state.with_sources(desired, facts),
                None => state,
            }
        })
        .collect();
    plan::plan(&PlanInput {
        credentials,
        max_changes: config.sync.max_changes,
        own_access: observation.own_access.clone().unwrap_or_default(),
        // Not read, or no credential showed the daemon's device: fail closed.
        own_credential_known: observation
            .own_access
            .as_ref()
            .is_some_and(|own| !own.is_empty()),
        egress_ips: config.bunq.egress_ips.as_ref(),
        sources: source_reports(&observation.resolutions),
    })
}

/// What the previous run left for one credential, with the IPs of its unconfirmed writes taken
/// as they are now: whichever way such a write went, it was this daemon's, not drift.
fn previous_states<'a>(
    record: &'a RunRecord,
    credential: CredentialId,
    actual: &[PermittedIp],
) -> Option<Cow<'a, IpStates>> {
    let states = record.credentials.get(&credential)?;
    let Some(unconfirmed) = record
        .unconfirmed
        .get(&credential)
        .filter(|ips| !ips.is_empty())
    else {
        return Some(Cow::Borrowed(states));
    };
    let now = plan::ip_states(actual);
    let mut states = states.clone();
    for ip in unconfirmed {
        match now.get(ip) {
            Some(status) => states.insert(ip.clone(), status.clone()),
            None => states.remove(ip),
        };
    }
    Some(Cow::Owned(states))
}

/// Observes and plans. Cannot write: `R` has no write methods.
pub async fn plan_run<R: AllowlistReader>(
    reader: &R,
    config: &Config,
    previous: Option<&RunRecord>,
) -> Result<(RunReport, Observation), RunError> {
    let run_id = new_run_id();
    let mut observation = observe(reader, config).await?;
    let mut plan = plan_from(config, &observation, previous);
    // The own-IP facts only ever hold a deactivation back, so a plan without one is final; with
    // one, read them and plan again.
    if plan.wants_deactivation() {
        observation.own_access = Some(own_access(reader, config).await?);
        plan = plan_from(config, &observation, previous);
    }
    log_drift(&run_id, &plan);
    Ok((
        RunReport {
            run_id,
            plan,
            applied: None,
            resolutions: observation.resolutions.clone(),
        },
        observation,
    ))
}

/// Observes, plans and applies; returns the report and the record of what the run left.
pub async fn apply_run<W: AllowlistWriter>(
    writer: &W,
    config: &Config,
    previous: Option<&RunRecord>,
    stop: &CancellationToken,
) -> Result<(RunReport, RunRecord), RunError> {
    apply_run_with_progress(writer, config, previous, stop, &NoProgress).await
}

/// [`apply_run`], telling `progress` about every action the executor handles (`apply` on a
/// terminal shows a progress bar with it).
pub async fn apply_run_with_progress<W: AllowlistWriter>(
    writer: &W,
    config: &Config,
    previous: Option<&RunRecord>,
    stop: &CancellationToken,
    progress: &dyn ApplyProgress,
) -> Result<(RunReport, RunRecord), RunError> {
    let (report, observation) = plan_run(writer, config, previous).await?;
    Ok(apply_planned(writer, report, &observation, stop, progress).await)
}

/// [`apply_run_with_progress`] behind a reviewed plan's `gate`: observes and plans afresh, and
/// applies only when the gate passes (the same actions on the same entries, a saved plan not too
/// old, judged at `now`); otherwise [`RunError::Stale`] and nothing is written.
pub async fn apply_run_gated<W: AllowlistWriter>(
    writer: &W,
    config: &Config,
    previous: Option<&RunRecord>,
    stop: &CancellationToken,
    (gate, now): (&PlanGate, chrono::DateTime<chrono::Utc>),
    progress: &dyn ApplyProgress,
) -> Result<(RunReport, RunRecord), RunError> {
    let (report, observation) = plan_run(writer, config, previous).await?;
    gate.check(&report.plan, &observation.entries, now)?;
    Ok(apply_planned(writer, report, &observation, stop, progress).await)
}

/// Hands a run's plan to the executor and records what the run left.
async fn apply_planned<W: AllowlistWriter>(
    writer: &W,
    mut report: RunReport,
    observation: &Observation,
    stop: &CancellationToken,
    progress: &dyn ApplyProgress,
) -> (RunReport, RunRecord) {
    let applied =
        apply::apply_with_progress(writer, &report.plan, &report.run_id, stop, progress).await;
    let record = record_after(observation, &applied);
    report.applied = Some(applied);
    (report, record)
}

/// The states the run left: what it observed, with every applied change on top. Failed and
/// skipped actions change nothing (the next run sees the truth anyway); the IPs of failures
/// that bunq may have carried out all the same are listed as unconfirmed, so the next run does
/// not report the daemon's own write as drift.
pub fn record_after(observation: &Observation, applied: &ApplyReport) -> RunRecord {
    let credentials: BTreeMap<CredentialId, IpStates> = observation
        .entries
        .iter()
        .map(|(id, entries)| {
            let done = applied.results.iter().filter(|result| {
                result.action.credential == *id && result.outcome == Outcome::Applied
            });
            (
                *id,
                plan::states_after(entries, done.map(|result| &result.action)),
            )
        })
        .collect();
    let mut unconfirmed: BTreeMap<CredentialId, BTreeSet<String>> = BTreeMap::new();
    for result in applied.results.iter().filter(|result| result.unconfirmed) {
        unconfirmed
            .entry(result.action.credential)
            .or_default()
            .insert(result.action.change.ip());
    }
    RunRecord {
        credentials,
        unconfirmed,
    }
}

fn log_drift(run_id: &str, plan: &Plan) {
    for credential in &plan.credentials {
        for drift in &credential.drift {
            // Target `drift`: the demo shows drift in its own words and filters these out.
            tracing::warn!(
                target: "drift",
                run_id,
                credential = credential.credential,
                ip = %drift.ip,
                before = drift.before.as_ref().map(IpStatus::as_str).unwrap_or("absent"),
                now = drift.now.as_ref().map(IpStatus::as_str).unwrap_or("absent"),
                "drift: changed outside bunq-ipsync since the last run; it is repaired if the plan says so"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::reconcile::apply::ActionResult;
    use crate::reconcile::fixtures::active;
    use crate::reconcile::plan::CredentialState;

    /// Credential 1 (`policy`) wants 10.0.0.2 and holds 10.0.0.1: a create and a deactivation;
    /// credential 2 is in sync.
    fn report(policy: Policy) -> RunReport {
        let (one, two) = ([active(1, "10.0.0.1")], [active(2, "10.0.0.9")]);
        let (wanted, in_sync) = (
            ["10.0.0.2".parse().unwrap()].into(),
            ["10.0.0.9".parse().unwrap()].into(),
        );
        let none = BTreeSet::new();
        let state = |id, desired, actual| CredentialState {
            id,
            name: None,
            policy,
            desired,
            protected: &none,
            actual,
            previous: None,
            sources: None,
        };
        let plan = plan::plan(&PlanInput {
            credentials: vec![state(1, &wanted, &one[..]), state(2, &in_sync, &two[..])],
            max_changes: 10,
            own_access: Vec::new(),
            own_credential_known: true,
            egress_ips: Some(&none),
            sources: Vec::new(),
        });
        RunReport {
            run_id: "run".into(),
            plan,
            applied: None,
            resolutions: Default::default(),
        }
    }

    #[test]
    fn pending_changes_are_what_the_run_did_not_write_for_every_credential() {
        let planned = report(Policy::Observe);
        assert_eq!(planned.pending_changes(), [(1, 2), (2, 0)].into());

        let mut applied = report(Policy::Sync);
        let first = applied.plan.credentials[0].actions[0].clone();
        applied.applied = Some(ApplyReport {
            results: vec![ActionResult {
                action: first,
                outcome: Outcome::Applied,
                entry: Some(3),
                unconfirmed: false,
            }],
            security_failure: None,
        });
        assert_eq!(applied.pending_changes(), [(1, 1), (2, 0)].into());
    }

    #[test]
    fn unconfirmed_ips_take_their_current_state_and_the_others_keep_the_record() {
        let record = RunRecord {
            credentials: [(
                1,
                [
                    ("10.0.0.1".to_owned(), IpStatus::Inactive),
                    ("10.0.0.2".to_owned(), IpStatus::Active),
                ]
                .into(),
            )]
            .into(),
            unconfirmed: [(1, ["10.0.0.1".to_owned(), "10.0.0.3".to_owned()].into())].into(),
        };
        let actual = [
            PermittedIp::new(5, "10.0.0.1", IpStatus::Active),
            PermittedIp::new(6, "10.0.0.2", IpStatus::Inactive),
        ];

        let states = previous_states(&record, 1, &actual).unwrap();

        // 10.0.0.1: the daemon's unconfirmed write went through, not drift. 10.0.0.2: changed
        // by someone else, still drift. 10.0.0.3: unconfirmed create that did not happen.
        let expected: IpStates = [
            ("10.0.0.1".to_owned(), IpStatus::Active),
            ("10.0.0.2".to_owned(), IpStatus::Active),
        ]
        .into();
        assert_eq!(*states, expected);
        assert!(previous_states(&record, 2, &actual).is_none());
    }
}
