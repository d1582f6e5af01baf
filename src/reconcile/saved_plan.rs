//! Saved plans: review a plan now, apply exactly that plan later (Terraform's `plan -out` /
//! `apply PLAN`, octoDNS's checksum).
//!
//! A plan's actions are reduced to canonical lines, `<credential> <create|activate|deactivate>
//! <entry|-> <ip>`, sorted; the SHA-256 of those lines (each ended by `\n`) is the plan's
//! [`checksum`]. It changes with any field of any action and not with their order, the reasons
//! or anything else in the report, so "same checksum" means "the same writes to the same
//! entries".
//!
//! `plan --out` writes a [`SavedPlan`]: the lines, their checksum, when it was made, the config
//! fingerprint and the entries it was computed from, and the JSON document for reviewers.
//! `apply --plan` / `apply --checksum` build a [`PlanGate`], and the gated apply
//! ([`crate::reconcile::run::apply_run_gated`]) recomputes the plan from a fresh read of bunq
//! and refuses to write anything unless the gate passes: the recomputed actions are exactly the
//! reviewed ones and the saved plan is not older than its maximum age. Only the lines decide:
//! the saved JSON document and the recorded entries are there to explain a difference, never
//! trusted to drive a write.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::bunq::model::{CredentialId, EntryId, IpStatus, PermittedIp};
use crate::reconcile::plan::{Action, Plan};

/// The `format` field of a saved plan file.
pub const FORMAT: &str = "bunq-ipsync-plan";
/// The `version` field of a saved plan file.
pub const VERSION: u32 = 1;
/// How old a saved plan may be before `apply --plan` refuses it (`--max-age`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The canonical line of one action: `<credential> <kind> <entry|-> <ip>`.
pub fn action_line(action: &Action) -> String {
    let entry = action
        .change
        .entry()
        .map_or_else(|| "-".to_owned(), |entry| entry.to_string());
    format!(
        "{} {} {} {}",
        action.credential,
        action.change.kind().as_str(),
        entry,
        action.change.ip()
    )
}

/// Every planned action of `plan` as canonical lines, sorted. Blocked actions are not writes
/// the plan makes and are not among them.
pub fn action_lines(plan: &Plan) -> Vec<String> {
    let mut lines: Vec<String> = plan
        .credentials
        .iter()
        .flat_map(|credential| credential.actions.iter().map(action_line))
        .collect();
    lines.sort();
    lines
}

/// The hex SHA-256 of sorted canonical lines.
pub fn checksum_of_lines(lines: &[String]) -> String {
    let mut hasher = Sha256::new();
    for line in lines {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    crate::hex::lower(&hasher.finalize())
}

/// The checksum of `plan`'s actions (see the module docs).
pub fn checksum(plan: &Plan) -> String {
    checksum_of_lines(&action_lines(plan))
}

/// The hex SHA-256 of the config file's bytes: recorded in a saved plan so a reviewer can tell
/// which config it was computed from.
pub fn config_fingerprint(config_bytes: &[u8]) -> String {
    crate::hex::sha256(config_bytes)
}

/// Why a saved plan file or a checksum cannot be used. Nothing was read from bunq.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    /// Not JSON, or not the shape of a saved plan.
    #[error("not a saved plan ({0}); write one with `plan --out PLAN.json`")]
    Parse(#[from] serde_json::Error),
    /// Another `format`.
    #[error("not a saved plan: format is {0:?}, expected {FORMAT:?}")]
    Format(String),
    /// A version this build does not read.
    #[error("saved plan version {0} is not supported (this build reads version {VERSION})")]
    Version(u32),
    /// The lines do not hash to the recorded checksum: the file was edited.
    #[error("saved plan is damaged or edited: its actions do not match its checksum")]
    Tampered,
    /// `--checksum` is not 64 hex digits.
    #[error("--checksum must be 64 hex digits (the `checksum` of `plan --output json`)")]
    BadChecksum,
}

/// One entry as the plan saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedEntry {
    /// Entry id.
    pub id: EntryId,
    /// Address as bunq reported it.
    pub ip: String,
    /// Status then.
    pub status: IpStatus,
}

/// Entries per credential, as a plan was computed from them.
pub type ObservedEntries = BTreeMap<CredentialId, Vec<ObservedEntry>>;

/// The entries of an observation, in the saved plan's form.
pub fn observed_entries(entries: &BTreeMap<CredentialId, Vec<PermittedIp>>) -> ObservedEntries {
    entries
        .iter()
        .map(|(id, entries)| {
            let mut observed: Vec<ObservedEntry> = entries
                .iter()
                .map(|entry| ObservedEntry {
                    id: entry.id,
                    ip: entry.ip.clone(),
                    status: entry.status.clone(),
                })
                .collect();
            observed.sort_by_key(|entry| entry.id);
            (*id, observed)
        })
        .collect()
}

/// The file `plan --out` writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// When the plan was computed.
    pub created_at: DateTime<Utc>,
    /// [`config_fingerprint`] of the config it was computed with.
    pub config_fingerprint: String,
    /// [`checksum_of_lines`] of `actions`.
    pub checksum: String,
    /// The canonical action lines, sorted: what `apply --plan` will accept.
    pub actions: Vec<String>,
    /// The entries of every configured credential the plan was computed from.
    pub observed: ObservedEntries,
    /// The plan's JSON document (`plan --output json`), for reviewers.
    pub plan: serde_json::Value,
}

impl SavedPlan {
    /// A saved plan of `plan`, computed at `created_at` from `observed` with the config whose
    /// fingerprint is `config_fingerprint`; `document` is its JSON document.
    pub fn new(
        plan: &Plan,
        observed: ObservedEntries,
        config_fingerprint: String,
        created_at: DateTime<Utc>,
        document: serde_json::Value,
    ) -> SavedPlan {
        let actions = action_lines(plan);
        SavedPlan {
            format: FORMAT.to_owned(),
            version: VERSION,
            created_at,
            config_fingerprint,
            checksum: checksum_of_lines(&actions),
            actions,
            observed,
            plan: document,
        }
    }

    /// Pretty JSON with a trailing newline.
    pub fn render(&self) -> Result<String, serde_json::Error> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        Ok(text)
    }

    /// Reads a saved plan, refusing another format or version and a file whose actions do not
    /// hash to its checksum.
    pub fn parse(text: &str) -> Result<SavedPlan, SavedPlanError> {
        let header: Header = serde_json::from_str(text)?;
        if header.format != FORMAT {
            return Err(SavedPlanError::Format(header.format));
        }
        if header.version != VERSION {
            return Err(SavedPlanError::Version(header.version));
        }
        let saved: SavedPlan = serde_json::from_str(text)?;
        let mut sorted = saved.actions.clone();
        sorted.sort();
        if sorted != saved.actions || checksum_of_lines(&saved.actions) != saved.checksum {
            return Err(SavedPlanError::Tampered);
        }
        Ok(saved)
    }
}

/// The fields read first, so another format or version is named as such.
#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
}

/// Why a gate refused: the plan bunq now calls for is not the reviewed one. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[error("stale plan: {difference}")]
pub struct Stale {
    /// What differs, for the operator.
    pub difference: String,
}

/// What an apply must match before it may write.
#[derive(Clone, Debug)]
pub struct PlanGate {
    expected: Expected,
}

#[derive(Clone, Debug)]
enum Expected {
    /// `apply --checksum`: only the checksum is known.
    Checksum(String),
    /// `apply --plan`: the saved plan and how old it may be.
    Saved {
        saved: Box<SavedPlan>,
        max_age: Duration,
        config_fingerprint: String,
    },
}

impl PlanGate {
    /// The gate of `apply --checksum SUM`.
    pub fn checksum(sum: &str) -> Result<PlanGate, SavedPlanError> {
        let sum = sum.trim().to_ascii_lowercase();
        if sum.len() != 64 || !sum.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(SavedPlanError::BadChecksum);
        }
        Ok(PlanGate {
            expected: Expected::Checksum(sum),
        })
    }

    /// The gate of `apply --plan FILE --max-age AGE`; `config_fingerprint` is the current
    /// config's, named in the difference when it changed.
    pub fn saved(saved: SavedPlan, max_age: Duration, config_fingerprint: String) -> PlanGate {
        PlanGate {
            expected: Expected::Saved {
                saved: Box::new(saved),
                max_age,
                config_fingerprint,
            },
        }
    }

    /// Passes when `plan`, computed at `now` from `entries`, makes exactly the expected writes
    /// (and a saved plan is young enough); otherwise says what differs.
    pub fn check(
        &self,
        plan: &Plan,
        entries: &BTreeMap<CredentialId, Vec<PermittedIp>>,
        now: DateTime<Utc>,
    ) -> Result<(), Stale> {
        let lines = action_lines(plan);
        let sum = checksum_of_lines(&lines);
        match &self.expected {
            Expected::Checksum(expected) if *expected == sum => Ok(()),
            Expected::Checksum(expected) => Err(Stale {
                difference: format!(
                    "the actions bunq now calls for have checksum {sum}, not {expected}; \
                     planned now:{}",
                    listing(&lines)
                ),
            }),
            Expected::Saved {
                saved,
                max_age,
                config_fingerprint,
            } => {
                let age = (now - saved.created_at).to_std().unwrap_or_default();
                if age > *max_age {
                    return Err(Stale {
                        difference: format!(
                            "it was made {} ago, longer than --max-age {}; run `plan --out` \
                             again and review it",
                            humantime::format_duration(Duration::from_secs(age.as_secs())),
                            humantime::format_duration(*max_age)
                        ),
                    });
                }
                if saved.actions == lines {
                    return Ok(());
                }
                Err(Stale {
                    difference: difference(saved, &lines, entries, config_fingerprint),
                })
            }
        }
    }
}

/// Lines as an indented list, or ` none`.
fn listing(lines: &[String]) -> String {
    if lines.is_empty() {
        return " none".to_owned();
    }
    lines.iter().map(|line| format!("\n  {line}")).collect()
}

/// The actions only in the saved plan (`-`) and only in the new one (`+`), the entries bunq
/// changed since, and whether the config changed.
fn difference(
    saved: &SavedPlan,
    now: &[String],
    entries: &BTreeMap<CredentialId, Vec<PermittedIp>>,
    config_fingerprint: &str,
) -> String {
    let then: BTreeSet<&String> = saved.actions.iter().collect();
    let now_set: BTreeSet<&String> = now.iter().collect();
    let mut text = String::from("the actions differ from the saved plan's");
    for line in then.difference(&now_set) {
        text.push_str(&format!("\n  - {line} (saved, not planned now)"));
    }
    for line in now_set.difference(&then) {
        text.push_str(&format!(
            "\n  + {line} (planned now, not in the saved plan)"
        ));
    }
    for change in entry_changes(&saved.observed, &observed_entries(entries)) {
        text.push_str(&format!("\n  bunq changed since the plan: {change}"));
    }
    if saved.config_fingerprint != config_fingerprint {
        text.push_str("\n  the config file changed since the plan");
    }
    text
}

/// Entries that appeared, disappeared or changed status between two observations.
fn entry_changes(then: &ObservedEntries, now: &ObservedEntries) -> Vec<String> {
    let empty = Vec::new();
    let credentials: BTreeSet<&CredentialId> = then.keys().chain(now.keys()).collect();
    let mut changes = Vec::new();
    for credential in credentials {
        let before = then.get(credential).unwrap_or(&empty);
        let after = now.get(credential).unwrap_or(&empty);
        let describe = |entry: Option<&ObservedEntry>| {
            entry.map_or("absent".to_owned(), |entry| {
                entry.status.as_str().to_owned()
            })
        };
        let ids: BTreeSet<EntryId> = before.iter().chain(after).map(|entry| entry.id).collect();
        for id in ids {
            let old = before.iter().find(|entry| entry.id == id);
            let new = after.iter().find(|entry| entry.id == id);
            if old == new {
                continue;
            }
            let ip = old.or(new).map_or("", |entry| entry.ip.as_str());
            changes.push(format!(
                "credential {credential} entry {id} {ip}: {} → {}",
                describe(old),
                describe(new)
            ));
        }
    }
    changes
}

#[cfg(test)]
#[path = "saved_plan_tests.rs"]
mod tests;
