//! The executor against a fake bunq that records every call and fails on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::bunq::model::{CredentialId, CredentialPasswordIp, PermittedIp};
use crate::config::{CredentialSpec, Policy};
use crate::reconcile::plan::{self, CredentialState, OwnAccess, PlanInput, Rule};
use crate::reconcile::port::{AllowlistReader, EntryRef};

/// What the fake does on a matching call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trouble {
    /// bunq answers HTTP 500 (and did not apply the write).
    ServerError,
    /// bunq answers HTTP 400: it refused the write.
    Refused,
    /// The connection breaks after bunq applied the write.
    ResetAfterApply,
    /// The connection breaks before bunq applied the write.
    ResetBeforeApply,
    /// The response signature does not verify.
    BadSignature,
    /// bunq applied the write, then answered HTTP 500.
    ServerErrorAfterApply,
    /// bunq applied the write; the answer did not arrive within the timeout.
    TimeoutAfterApply,
    /// bunq applied the write and answered 200 with a body that is not the expected answer.
    UnreadableAfterApply,
}

#[derive(Default)]
struct FakeBunq {
    entries: Mutex<BTreeMap<CredentialId, Vec<PermittedIp>>>,
    /// (credential, ip) → what goes wrong on the next write of that IP.
    troubles: Mutex<BTreeMap<(CredentialId, String), Trouble>>,
    /// Every call, as `METHOD credential ip`.
    calls: Mutex<Vec<String>>,
    /// Cancelled by the fake after its first write, to simulate a shutdown mid-run.
    cancel_after_first_write: Option<CancellationToken>,
    /// How long every write takes (with paused time), so that the two streams overlap.
    latency: Option<std::time::Duration>,
    /// How long a PUT takes instead, when set.
    put_latency: Option<std::time::Duration>,
    /// Every write's start and end, as `start METHOD credential ip` / `end …`, in the order
    /// they happened.
    events: Mutex<Vec<String>>,
}

impl FakeBunq {
    fn with(entries: &[(CredentialId, u64, &str, IpStatus)]) -> Self {
        let fake = FakeBunq::default();
        for (credential, id, ip, status) in entries {
            fake.entries
                .lock()
                .unwrap()
                .entry(*credential)
                .or_default()
                .push(PermittedIp::new(*id, *ip, status.clone()));
        }
        fake
    }

    fn trouble(self, credential: CredentialId, ip: &str, trouble: Trouble) -> Self {
        self.troubles
            .lock()
            .unwrap()
            .insert((credential, ip.into()), trouble);
        self
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn writes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|call| !call.starts_with("GET"))
            .collect()
    }

    fn active_ips(&self, credential: CredentialId) -> Vec<String> {
        let entries = self.entries.lock().unwrap();
        let mut ips: Vec<String> = entries
            .get(&credential)
            .into_iter()
            .flatten()
            .filter(|entry| entry.status == IpStatus::Active)
            .map(|entry| entry.ip.clone())
            .collect();
        ips.sort();
        ips
    }

    fn entry_ip(&self, credential: CredentialId, entry: EntryId) -> String {
        self.entries.lock().unwrap()[&credential]
            .iter()
            .find(|candidate| candidate.id == entry)
            .map(|found| found.ip.clone())
            .unwrap_or_default()
    }

    fn take_trouble(&self, credential: CredentialId, ip: &str) -> Option<Trouble> {
        self.troubles
            .lock()
            .unwrap()
            .remove(&(credential, ip.to_string()))
    }

    fn with_latency(mut self, millis: u64) -> Self {
        self.latency = Some(std::time::Duration::from_millis(millis));
        self
    }

    fn with_put_latency(mut self, millis: u64) -> Self {
        self.put_latency = Some(std::time::Duration::from_millis(millis));
        self
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// Logs the start of `call`, then takes the fake's latency.
    async fn begin(&self, call: &str) {
        self.events.lock().unwrap().push(format!("start {call}"));
        let put = self.put_latency.filter(|_| call.starts_with("PUT"));
        if let Some(latency) = put.or(self.latency) {
            tokio::time::sleep(latency).await;
        }
    }

    fn end(&self, call: &str) {
        self.events.lock().unwrap().push(format!("end {call}"));
    }

    fn after_write(&self) {
        if let Some(token) = &self.cancel_after_first_write {
            token.cancel();
        }
    }
}

fn server_error() -> BunqError {
    BunqError::Api {
        status: 500,
        description: "Internal error".into(),
        response_id: None,
        endpoint: "fake".into(),
    }
}

fn reset() -> BunqError {
    BunqError::Transport {
        endpoint: "fake".into(),
        message: "connection reset".into(),
        timeout: false,
    }
}

fn timeout() -> BunqError {
    BunqError::Transport {
        endpoint: "fake".into(),
        message: "timed out".into(),
        timeout: true,
    }
}

fn unreadable() -> BunqError {
    BunqError::Protocol {
        endpoint: "fake".into(),
        message: "no Id in the response".into(),
    }
}

fn refused() -> BunqError {
    BunqError::Api {
        status: 400,
        description: "Invalid IP".into(),
        response_id: None,
        endpoint: "fake".into(),
    }
}

fn bad_signature() -> BunqError {
    BunqError::ResponseSignature {
        endpoint: "fake".into(),
        reason: "does not verify".into(),
    }
}

impl AllowlistReader for FakeBunq {
    async fn list_credentials(&self) -> Result<Vec<CredentialPasswordIp>, BunqError> {
        Ok(Vec::new())
    }

    async fn list_ips(&self, credential: CredentialId) -> Result<Vec<PermittedIp>, BunqError> {
        self.calls.lock().unwrap().push(format!("GET {credential}"));
        Ok(self
            .entries
            .lock()
            .unwrap()
            .get(&credential)
            .cloned()
            .unwrap_or_default())
    }
}

impl AllowlistWriter for FakeBunq {
    async fn create_ip(
        &self,
        credential: CredentialId,
        ip: Ipv4Addr,
    ) -> Result<EntryId, BunqError> {
        let ip = ip.to_string();
        let call = format!("POST {credential} {ip}");
        self.calls.lock().unwrap().push(call.clone());
        self.begin(&call).await;
        let result = self.create_now(credential, &ip);
        self.end(&call);
        result
    }

    async fn set_ip_status(&self, at: EntryRef, status: IpStatus) -> Result<(), BunqError> {
        let EntryRef { credential, entry } = at;
        let ip = self.entry_ip(credential, entry);
        let call = format!("PUT {credential} {ip} {status}");
        self.calls.lock().unwrap().push(call.clone());
        self.begin(&call).await;
        let result = self.set_status_now(credential, entry, &ip, status);
        self.end(&call);
        result
    }
}

impl FakeBunq {
    /// What bunq does with a create, once the latency is over.
    fn create_now(&self, credential: CredentialId, ip: &str) -> Result<EntryId, BunqError> {
        let trouble = self.take_trouble(credential, ip);
        match trouble {
            Some(Trouble::ServerError) => return Err(server_error()),
            Some(Trouble::Refused) => return Err(refused()),
            Some(Trouble::ResetBeforeApply) => return Err(reset()),
            Some(Trouble::BadSignature) => return Err(bad_signature()),
            _ => {}
        }
        let mut entries = self.entries.lock().unwrap();
        let list = entries.entry(credential).or_default();
        let id = list.iter().map(|entry| entry.id).max().unwrap_or(100) + 1;
        list.push(PermittedIp::new(id, ip, IpStatus::Active));
        drop(entries);
        self.after_write();
        match trouble {
            Some(Trouble::ResetAfterApply) => Err(reset()),
            Some(Trouble::ServerErrorAfterApply) => Err(server_error()),
            Some(Trouble::TimeoutAfterApply) => Err(timeout()),
            Some(Trouble::UnreadableAfterApply) => Err(unreadable()),
            _ => Ok(id),
        }
    }

    /// What bunq does with a status change, once the latency is over.
    fn set_status_now(
        &self,
        credential: CredentialId,
        entry: EntryId,
        ip: &str,
        status: IpStatus,
    ) -> Result<(), BunqError> {
        match self.take_trouble(credential, ip) {
            Some(Trouble::ServerError) => return Err(server_error()),
            Some(Trouble::BadSignature) => return Err(bad_signature()),
            Some(Trouble::ResetBeforeApply) => return Err(reset()),
            _ => {}
        }
        for candidate in self.entries.lock().unwrap().entry(credential).or_default() {
            if candidate.id == entry {
                candidate.status = status.clone();
            }
        }
        self.after_write();
        Ok(())
    }
}

fn spec(id: CredentialId, ips: &[&str], policy: Policy) -> CredentialSpec {
    CredentialSpec {
        id,
        name: None,
        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        sources: Vec::new(),
        policy,
        protected: Default::default(),
        allow_empty: true,
    }
}

async fn plan_for(
    fake: &FakeBunq,
    specs: &[CredentialSpec],
    own: &[OwnAccess],
    max: usize,
) -> Plan {
    let mut actual = BTreeMap::new();
    for spec in specs {
        actual.insert(spec.id, fake.list_ips(spec.id).await.unwrap());
    }
    fake.calls.lock().unwrap().clear();
    let credentials = specs
        .iter()
        .map(|spec| CredentialState::new(spec, &actual[&spec.id], None))
        .collect();
    plan::plan(&PlanInput {
        credentials,
        max_changes: max,
        own_access: own.to_vec(),
        own_credential_known: true,
        // Set, adding nothing: these tests are about the executor, so only the registration
        // IP is protected on the own credential.
        egress_ips: Some(&BTreeSet::new()),
        sources: Vec::new(),
    })
}

/// The plan for credential 1 wanting `ips` under `policy`, with no own access and a limit
/// of 10.
async fn plan_one(fake: &FakeBunq, ips: &[&str], policy: Policy) -> Plan {
    plan_for(fake, &[spec(1, ips, policy)], &[], 10).await
}

/// [`plan_for`] applied as run `run-1`, never cancelled.
async fn plan_and_apply(
    fake: &FakeBunq,
    specs: &[CredentialSpec],
    own: &[OwnAccess],
    max: usize,
) -> ApplyReport {
    let plan = plan_for(fake, specs, own, max).await;
    apply(fake, &plan, "run-1", &CancellationToken::new()).await
}

/// [`plan_one`] applied as run `run-1`, never cancelled.
async fn apply_one(fake: &FakeBunq, ips: &[&str], policy: Policy) -> ApplyReport {
    let plan = plan_one(fake, ips, policy).await;
    apply(fake, &plan, "run-1", &CancellationToken::new()).await
}

fn outcomes(report: &ApplyReport) -> Vec<(String, String)> {
    report
        .results
        .iter()
        .map(|result| {
            (
                result.action.change.ip(),
                result.outcome.label().to_string(),
            )
        })
        .collect()
}

const A: IpStatus = IpStatus::Active;
const I: IpStatus = IpStatus::Inactive;

#[tokio::test]
async fn grants_are_written_before_any_deactivation_and_all_are_applied() {
    let fake = FakeBunq::with(&[
        (1, 10, "10.0.0.1", A),
        (1, 11, "10.0.0.2", I),
        (2, 20, "10.0.0.9", A),
    ]);
    let specs = [
        spec(1, &["10.0.0.2", "10.0.0.3"], Policy::Sync),
        spec(2, &["10.0.0.8"], Policy::Sync),
    ];
    let report = plan_and_apply(&fake, &specs, &[], 10).await;

    let writes = fake.writes();
    let first_deactivation = writes
        .iter()
        .position(|call| call.ends_with("INACTIVE"))
        .unwrap();
    assert!(writes[..first_deactivation].len() == 3, "{writes:?}");
    assert_eq!(writes.len(), 5, "{writes:?}");
    assert!(
        report
            .results
            .iter()
            .all(|result| result.outcome == Outcome::Applied)
    );
    assert_eq!(fake.active_ips(1), ["10.0.0.2", "10.0.0.3"]);
    assert_eq!(fake.active_ips(2), ["10.0.0.8"]);
}

#[tokio::test]
async fn a_blocked_run_writes_nothing_and_reports_every_action_blocked() {
    let fake = FakeBunq::with(&[(1, 10, "10.0.0.1", A)]);
    let plan = plan_for(
        &fake,
        &[spec(1, &["10.0.0.2", "10.0.0.3"], Policy::Sync)],
        &[],
        2,
    )
    .await;

    let report = apply(&fake, &plan, "run-1", &CancellationToken::new()).await;

    assert!(fake.writes().is_empty());
    assert_eq!(report.count(OutcomeKind::Blocked), 3);
    assert!(
        report
            .results
            .iter()
            .all(|result| result.outcome == Outcome::Blocked(Rule::MaxChanges))
    );
    assert!(report.has_blocked() && !report.has_failures());
}

#[tokio::test]
async fn own_ip_deactivation_is_blocked_while_the_rest_is_applied() {
    let fake = FakeBunq::with(&[(1, 10, "10.0.0.1", A), (1, 11, "10.0.0.5", A)]);
    let own = [OwnAccess {
        credential: 1,
        ip: "10.0.0.1".parse().unwrap(),
    }];
    let report = plan_and_apply(&fake, &[spec(1, &["10.0.0.2"], Policy::Sync)], &own, 10).await;

    assert_eq!(fake.active_ips(1), ["10.0.0.1", "10.0.0.2"]);
    let blocked: Vec<_> = report
        .results
        .iter()
        .filter(|result| result.outcome == Outcome::Blocked(Rule::OwnIp))
        .map(|result| result.action.change.ip())
        .collect();
    assert_eq!(blocked, ["10.0.0.1"]);
    assert_eq!(report.count(OutcomeKind::Applied), 2);
}

#[tokio::test]
async fn one_failure_does_not_hide_the_other_actions() {
    let fake = FakeBunq::with(&[]).trouble(1, "10.0.0.2", Trouble::ServerError);
    let report = apply_one(&fake, &["10.0.0.1", "10.0.0.2", "10.0.0.3"], Policy::Sync).await;

    assert_eq!(
        outcomes(&report),
        [
            ("10.0.0.1".into(), "applied".into()),
            ("10.0.0.2".into(), "failed".into()),
            ("10.0.0.3".into(), "applied".into()),
        ]
    );
    assert!(report.has_failures());
}

#[tokio::test]
async fn a_failed_grant_holds_back_that_credentials_deactivations_only() {
    let fake = FakeBunq::with(&[(1, 10, "10.0.0.1", A), (2, 20, "10.0.0.9", A)]).trouble(
        1,
        "10.0.0.2",
        Trouble::ServerError,
    );
    let specs = [
        spec(1, &["10.0.0.2"], Policy::Sync),
        spec(2, &["10.0.0.8"], Policy::Sync),
    ];
    let report = plan_and_apply(&fake, &specs, &[], 10).await;

    assert_eq!(
        fake.active_ips(1),
        ["10.0.0.1"],
        "old IP kept while the new one is missing"
    );
    assert_eq!(fake.active_ips(2), ["10.0.0.8"]);
    let skipped: Vec<_> = report
        .results
        .iter()
        .filter(|result| matches!(result.outcome, Outcome::Skipped(_)))
        .map(|result| result.action.change.ip())
        .collect();
    assert_eq!(skipped, ["10.0.0.1"]);
}

#[tokio::test]
async fn an_ambiguous_create_that_bunq_applied_counts_as_applied_without_a_second_post() {
    let fake = FakeBunq::with(&[]).trouble(1, "10.0.0.1", Trouble::ResetAfterApply);
    let report = apply_one(&fake, &["10.0.0.1"], Policy::Sync).await;

    assert_eq!(fake.calls(), ["POST 1 10.0.0.1", "GET 1"]);
    assert_eq!(report.results[0].outcome, Outcome::Applied);
    assert_eq!(report.results[0].entry, Some(101));
    assert_eq!(fake.active_ips(1), ["10.0.0.1"]);
}

#[tokio::test]
async fn an_ambiguous_create_that_bunq_did_not_apply_fails_without_a_retry() {
    let fake = FakeBunq::with(&[]).trouble(1, "10.0.0.1", Trouble::ResetBeforeApply);
    let report = apply_one(&fake, &["10.0.0.1"], Policy::Sync).await;

    assert_eq!(fake.calls(), ["POST 1 10.0.0.1", "GET 1"]);
    assert!(
        matches!(&report.results[0].outcome, Outcome::Failed(reason) if reason.contains("next run creates it"))
    );
    assert!(fake.active_ips(1).is_empty());
}

#[tokio::test]
async fn a_signature_failure_stops_the_run_and_nothing_after_it_is_written() {
    let fake =
        FakeBunq::with(&[(1, 10, "10.0.0.9", A)]).trouble(1, "10.0.0.1", Trouble::BadSignature);
    let report = apply_one(&fake, &["10.0.0.1", "10.0.0.2"], Policy::Sync).await;

    assert_eq!(fake.writes(), ["POST 1 10.0.0.1"]);
    assert!(
        report
            .security_failure
            .as_deref()
            .unwrap()
            .contains("security")
    );
    assert_eq!(
        outcomes(&report),
        [
            ("10.0.0.1".into(), "failed".into()),
            ("10.0.0.2".into(), "skipped".into()),
            ("10.0.0.9".into(), "skipped".into()),
        ]
    );
}

#[tokio::test]
async fn shutdown_lets_the_write_in_flight_finish_and_skips_the_rest() {
    let stop = CancellationToken::new();
    let mut fake = FakeBunq::with(&[(1, 10, "10.0.0.9", A)]);
    fake.cancel_after_first_write = Some(stop.clone());
    let plan = plan_one(&fake, &["10.0.0.1", "10.0.0.2"], Policy::Sync).await;

    let report = apply(&fake, &plan, "run-1", &stop).await;

    assert_eq!(fake.writes(), ["POST 1 10.0.0.1"]);
    assert_eq!(report.count(OutcomeKind::Applied), 1);
    assert_eq!(report.count(OutcomeKind::Skipped), 2);
    assert_eq!(
        fake.active_ips(1),
        ["10.0.0.1", "10.0.0.9"],
        "access never shrank"
    );
}

#[tokio::test]
async fn additive_plans_never_write_a_deactivation() {
    let fake = FakeBunq::with(&[(1, 10, "10.0.0.9", A)]);
    apply_one(&fake, &["10.0.0.1"], Policy::Additive).await;

    assert_eq!(fake.writes(), ["POST 1 10.0.0.1"]);
}

#[tokio::test]
async fn a_failure_without_an_answer_is_unconfirmed_and_an_error_answer_is_not() {
    let fake = FakeBunq::with(&[(1, 10, "10.0.0.2", I)])
        .trouble(1, "10.0.0.1", Trouble::Refused)
        .trouble(1, "10.0.0.2", Trouble::ResetBeforeApply);
    let report = apply_one(&fake, &["10.0.0.1", "10.0.0.2"], Policy::Sync).await;

    let unconfirmed: Vec<(String, bool)> = report
        .results
        .iter()
        .map(|result| (result.action.change.ip(), result.unconfirmed))
        .collect();
    // bunq refused the create (400): it did not happen. The PUT got no answer: it may have.
    assert_eq!(
        unconfirmed,
        [("10.0.0.1".into(), false), ("10.0.0.2".into(), true)]
    );
}

#[tokio::test]
async fn an_unclear_create_that_bunq_applied_is_re_listed_and_counts_as_applied_without_a_second_post()
 {
    for trouble in [
        Trouble::ServerErrorAfterApply,
        Trouble::TimeoutAfterApply,
        Trouble::UnreadableAfterApply,
    ] {
        let fake = FakeBunq::with(&[]).trouble(1, "10.0.0.1", trouble);
        let report = apply_one(&fake, &["10.0.0.1"], Policy::Sync).await;

        assert_eq!(fake.calls(), ["POST 1 10.0.0.1", "GET 1"], "{trouble:?}");
        assert_eq!(report.results[0].outcome, Outcome::Applied, "{trouble:?}");
        assert_eq!(report.results[0].entry, Some(101), "{trouble:?}");
        assert_eq!(fake.active_ips(1), ["10.0.0.1"], "{trouble:?}");
    }
}

#[tokio::test]
async fn a_create_answered_500_that_bunq_did_not_apply_is_re_listed_failed_and_unconfirmed() {
    let fake = FakeBunq::with(&[]).trouble(1, "10.0.0.1", Trouble::ServerError);
    let report = apply_one(&fake, &["10.0.0.1"], Policy::Sync).await;

    assert_eq!(fake.calls(), ["POST 1 10.0.0.1", "GET 1"]);
    assert!(matches!(&report.results[0].outcome, Outcome::Failed(_)));
    // bunq may still commit it after the re-read; the next run must not call that drift.
    assert!(report.results[0].unconfirmed);
    assert!(fake.active_ips(1).is_empty());
}

#[tokio::test]
async fn a_create_refused_by_bunq_is_not_re_listed() {
    let fake = FakeBunq::with(&[]).trouble(1, "10.0.0.1", Trouble::Refused);
    let report = apply_one(&fake, &["10.0.0.1"], Policy::Sync).await;

    assert_eq!(fake.calls(), ["POST 1 10.0.0.1"]);
    assert!(matches!(&report.results[0].outcome, Outcome::Failed(_)));
    assert!(!report.results[0].unconfirmed);
}

#[tokio::test]
async fn a_write_answered_with_a_bad_signature_is_unconfirmed_and_the_skipped_rest_is_not() {
    let fake =
        FakeBunq::with(&[(1, 10, "10.0.0.9", A)]).trouble(1, "10.0.0.1", Trouble::BadSignature);
    let report = apply_one(&fake, &["10.0.0.1"], Policy::Sync).await;

    let unconfirmed: Vec<bool> = report.results.iter().map(|r| r.unconfirmed).collect();
    assert_eq!(unconfirmed, [true, false]);
}

// ---------------------------------------------------------------------------------------------
// The POST and PUT streams side by side (every write takes 1 s of paused time)

fn position(events: &[String], event: &str) -> usize {
    events
        .iter()
        .position(|candidate| candidate == event)
        .unwrap_or_else(|| panic!("{event} missing: {events:?}"))
}

#[tokio::test(start_paused = true)]
async fn a_put_starts_before_the_posts_have_finished() {
    let fake = FakeBunq::with(&[(1, 10, "10.0.0.4", I)]).with_latency(1000);
    let report = apply_one(&fake, &["10.0.0.1", "10.0.0.2", "10.0.0.4"], Policy::Sync).await;

    let events = fake.events();
    assert!(
        position(&events, "start PUT 1 10.0.0.4 ACTIVE") < position(&events, "end POST 1 10.0.0.2"),
        "the activation waited for the creates: {events:?}"
    );
    assert_eq!(report.count(OutcomeKind::Applied), 3);
}

#[tokio::test(start_paused = true)]
async fn under_overlap_a_deactivation_starts_only_after_every_grant_of_its_credential_ended() {
    let fake = FakeBunq::with(&[
        (1, 10, "10.0.0.1", A),
        (2, 20, "10.0.0.8", I),
        (2, 21, "10.0.0.9", A),
    ])
    .with_latency(1000);
    let specs = [
        spec(1, &["10.0.0.2", "10.0.0.3"], Policy::Sync),
        spec(2, &["10.0.0.8"], Policy::Sync),
    ];
    let plan = plan_for(&fake, &specs, &[], 10).await;

    let started = tokio::time::Instant::now();
    let report = apply(&fake, &plan, "run-1", &CancellationToken::new()).await;

    let events = fake.events();
    let deactivation = position(&events, "start PUT 1 10.0.0.1 INACTIVE");
    for grant in ["end POST 1 10.0.0.2", "end POST 1 10.0.0.3"] {
        assert!(position(&events, grant) < deactivation, "{events:?}");
    }
    // Credential 2's deactivation needs only its own activation, not credential 1's creates.
    assert!(
        position(&events, "end PUT 2 10.0.0.8 ACTIVE")
            < position(&events, "start PUT 2 10.0.0.9 INACTIVE")
    );
    assert!(
        position(&events, "start PUT 2 10.0.0.9 INACTIVE")
            < position(&events, "end POST 1 10.0.0.3"),
        "{events:?}"
    );
    // Two creates beside three PUTs: 3 s, not the 5 s of one stream.
    assert_eq!(started.elapsed(), std::time::Duration::from_secs(3));
    assert_eq!(report.count(OutcomeKind::Applied), 5);
    assert_eq!(fake.active_ips(1), ["10.0.0.2", "10.0.0.3"]);
    assert_eq!(fake.active_ips(2), ["10.0.0.8"]);
}

#[tokio::test(start_paused = true)]
async fn under_overlap_a_failed_create_still_holds_back_its_credentials_deactivation() {
    let fake = FakeBunq::with(&[(1, 10, "10.0.0.1", A), (1, 11, "10.0.0.5", I)])
        .with_latency(1000)
        .trouble(1, "10.0.0.3", Trouble::Refused);
    let report = apply_one(&fake, &["10.0.0.2", "10.0.0.3", "10.0.0.5"], Policy::Sync).await;

    assert!(
        !fake.writes().iter().any(|call| call.ends_with("INACTIVE")),
        "{:?}",
        fake.writes()
    );
    assert_eq!(fake.active_ips(1), ["10.0.0.1", "10.0.0.2", "10.0.0.5"]);
    let deactivation = report
        .results
        .iter()
        .find(|result| result.action.change.is_deactivation())
        .unwrap();
    assert!(
        matches!(&deactivation.outcome, Outcome::Skipped(reason) if reason.contains("failed")),
        "{deactivation:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_lets_both_calls_in_flight_finish_and_skips_the_rest() {
    let fake = FakeBunq::with(&[(1, 10, "10.0.0.5", I), (1, 11, "10.0.0.6", I)]).with_latency(1000);
    let plan = plan_one(
        &fake,
        &["10.0.0.1", "10.0.0.2", "10.0.0.5", "10.0.0.6"],
        Policy::Sync,
    )
    .await;
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        stopper.cancel();
    });

    let report = apply(&fake, &plan, "run-1", &stop).await;

    assert_eq!(fake.writes(), ["POST 1 10.0.0.1", "PUT 1 10.0.0.5 ACTIVE"]);
    assert_eq!(
        fake.events()
            .iter()
            .filter(|event| event.starts_with("end"))
            .count(),
        2,
        "both calls in flight finished"
    );
    assert_eq!(report.count(OutcomeKind::Applied), 2);
    assert_eq!(report.count(OutcomeKind::Skipped), 2);
    assert_eq!(report.results.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn results_and_audit_lines_follow_the_plan_not_the_completion_order() {
    let fake = FakeBunq::with(&[(1, 10, "10.0.0.5", I), (2, 20, "10.0.0.9", A)]).with_latency(1000);
    let specs = [
        spec(
            1,
            &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5"],
            Policy::Sync,
        ),
        spec(2, &[], Policy::Sync),
    ];
    let plan = plan_for(&fake, &specs, &[], 10).await;
    let planned: Vec<String> = plan
        .actions()
        .iter()
        .map(|action| action.change.ip())
        .collect();

    let (report, log) = capture_log(apply(&fake, &plan, "run-1", &CancellationToken::new())).await;

    let ended: Vec<&str> = fake
        .events()
        .iter()
        .filter_map(|event| event.strip_prefix("end "))
        .map(|call| call.split(' ').nth(2).unwrap())
        .map(|ip| planned.iter().find(|p| *p == ip).unwrap().as_str())
        .collect();
    assert_ne!(
        ended, planned,
        "the calls completed out of plan order: {ended:?}"
    );
    let reported: Vec<String> = report
        .results
        .iter()
        .map(|r| r.action.change.ip())
        .collect();
    assert_eq!(reported, planned);
    let audited: Vec<&str> = log
        .lines()
        .filter_map(|line| line.split(" ip=").nth(1))
        .map(|rest| rest.split(' ').next().unwrap())
        .collect();
    assert_eq!(audited, planned, "{log}");
}

#[tokio::test(start_paused = true)]
async fn a_signature_failure_lets_the_other_streams_call_finish_and_nothing_new_starts() {
    let fake = FakeBunq::with(&[(1, 10, "10.0.0.5", I), (1, 11, "10.0.0.6", I)])
        .with_latency(1000)
        .with_put_latency(1500)
        .trouble(1, "10.0.0.1", Trouble::BadSignature);
    let report = apply_one(
        &fake,
        &["10.0.0.1", "10.0.0.2", "10.0.0.5", "10.0.0.6"],
        Policy::Sync,
    )
    .await;

    assert_eq!(fake.writes(), ["POST 1 10.0.0.1", "PUT 1 10.0.0.5 ACTIVE"]);
    assert!(report.security_failure.is_some());
    assert_eq!(report.count(OutcomeKind::Skipped), 2);
    assert_eq!(report.results.len(), 4);
}

/// Runs `future` with every log line of this thread captured (no ANSI), and returns both.
async fn capture_log<T>(future: impl std::future::Future<Output = T>) -> (T, String) {
    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let output = {
        let _guard = tracing::subscriber::set_default(subscriber);
        future.await
    };
    let bytes = capture.0.lock().unwrap().clone();
    (output, String::from_utf8(bytes).unwrap())
}

#[tokio::test]
async fn observe_credentials_are_never_written_and_their_actions_are_reported_as_observe() {
    let fake = FakeBunq::with(&[(1, 10, "10.0.0.1", A), (2, 20, "10.0.0.9", A)]);
    let specs = [
        spec(1, &["10.0.0.2"], Policy::Observe),
        spec(2, &["10.0.0.8"], Policy::Sync),
    ];
    let report = plan_and_apply(&fake, &specs, &[], 10).await;

    assert!(
        fake.writes()
            .iter()
            .all(|call| call.split(' ').nth(1) != Some("1")),
        "{:?}",
        fake.writes()
    );
    assert_eq!(fake.active_ips(1), ["10.0.0.1"]);
    assert_eq!(fake.active_ips(2), ["10.0.0.8"]);
    let observed: Vec<(CredentialId, String)> = report
        .results
        .iter()
        .filter(|result| result.outcome == Outcome::Observed)
        .map(|result| (result.action.credential, result.action.change.ip()))
        .collect();
    assert_eq!(
        observed,
        [(1, "10.0.0.2".to_owned()), (1, "10.0.0.1".to_owned())]
    );
    assert_eq!(report.tally().observed, 2);
    assert!(report.has_observed() && !report.has_blocked() && !report.has_failures());
}

#[tokio::test]
async fn a_run_blocked_by_max_changes_still_reports_observe_actions_as_observe() {
    let fake = FakeBunq::with(&[(1, 10, "10.0.0.1", A)]);
    let specs = [
        spec(1, &["10.0.0.2"], Policy::Observe),
        spec(2, &["10.0.0.7", "10.0.0.8"], Policy::Sync),
    ];
    let report = plan_and_apply(&fake, &specs, &[], 1).await;

    assert!(fake.writes().is_empty());
    assert_eq!(report.count(OutcomeKind::Observed), 2);
    assert_eq!(report.count(OutcomeKind::Blocked), 2);
}

/// Records what the executor tells a progress display, as `begin P/Q`, `start IP`, `IP outcome`.
#[derive(Default)]
struct RecordingProgress(Mutex<Vec<String>>);

impl crate::reconcile::progress::ApplyProgress for RecordingProgress {
    fn begin(&self, creates: usize, status_changes: usize) {
        self.0
            .lock()
            .unwrap()
            .push(format!("begin {creates}/{status_changes}"));
    }

    fn action_started(&self, action: &Action) {
        self.0
            .lock()
            .unwrap()
            .push(format!("start {}", action.change.ip()));
    }

    fn action_finished(&self, action: &Action, outcome: &'static str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {outcome}", action.change.ip()));
    }
}

#[tokio::test(start_paused = true)]
async fn progress_hears_of_every_action_once_in_plan_order_and_of_each_start() {
    let fake = FakeBunq::with(&[(1, 10, "10.0.0.5", I), (1, 11, "10.0.0.9", A)])
        .with_latency(1000)
        .trouble(1, "10.0.0.2", Trouble::Refused);
    let plan = plan_one(&fake, &["10.0.0.1", "10.0.0.2", "10.0.0.5"], Policy::Sync).await;
    let planned: Vec<String> = plan.actions().iter().map(|a| a.change.ip()).collect();
    let progress = RecordingProgress::default();

    let report =
        apply_with_progress(&fake, &plan, "run-1", &CancellationToken::new(), &progress).await;

    let events = progress.0.lock().unwrap().clone();
    assert_eq!(events[0], "begin 2/2");
    let finished: Vec<&str> = events
        .iter()
        .filter(|event| !event.starts_with("start") && !event.starts_with("begin"))
        .map(String::as_str)
        .collect();
    let expected: Vec<String> = report
        .results
        .iter()
        .map(|r| format!("{} {}", r.action.change.ip(), r.outcome.label()))
        .collect();
    assert_eq!(finished, expected);
    assert_eq!(
        expected
            .iter()
            .map(|e| e.split(' ').next().unwrap())
            .collect::<Vec<_>>(),
        planned
    );
    // The deactivation is held back by the refused create: finished (skipped), never started.
    assert!(expected.contains(&"10.0.0.9 skipped".to_string()));
    let started: Vec<&str> = events
        .iter()
        .filter_map(|e| e.strip_prefix("start "))
        .collect();
    assert_eq!(started.len(), 3, "{events:?}");
    assert!(!started.contains(&"10.0.0.9"));
}
