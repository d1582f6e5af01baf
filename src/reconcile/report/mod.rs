//! A [`Plan`](crate::reconcile::plan::Plan) for people (a table per credential and a summary
//! line) and for programs (a stable JSON document, `--output json`). Both are deterministic: the
//! same plan renders to the same bytes.
//!
//! # JSON format (version 1)
//!
//! ```text
//! {
//!   "format_version": 1,
//!   "outcome": "nothing_to_do" | "changes_pending" | "blocked",
//!   "checksum": "<64 hex digits: SHA-256 of the actions, see reconcile::saved_plan>",
//!   "exit_code": 0 | 2 | 3,
//!   "max_changes": 10,
//!   "run_blocked": null | {"rule": "max-changes", "changes": 12, "limit": 10},
//!   "summary": {"create", "activate", "deactivate", "blocked", "kept", "in_sync", "drift",
//!               "observe": n, "blocking_rules": ["own-ip", ...]},
//!   "credentials": [{
//!     "id": 4242, "name": "ci-runners" | null, "policy": "sync" | "additive" | "observe",
//!     "actions": [{"action": "create" | "activate" | "deactivate", "ip": "192.0.2.1",
//!                  "entry": 17 | null, "current": "INACTIVE" | null, "wanted": "ACTIVE",
//!                  "reason": "desired-missing" | "desired-inactive" | "not-desired",
//!                  "reason_text": "...", "source": "dns:home.example.org" | null,
//!                  "observe": false | true}],
//!     "blocked": [{<action fields>, "rule": "own-ip" | "unknown-status" |
//!                  "source-unavailable", "rule_text": "...",
//!                  "block_reason": "registration-ip" | "egress-ip" | "egress-unknown" |
//!                                  "own-credential-unknown" | "unknown-status" |
//!                                  "source-unavailable",
//!                  "block_reason_text": "what happened and what to fix"}],
//!     "kept": [{"ip", "entry", "status", "reason": "protected" | "additive" |
//!               "duplicate-active" | "unknown-status" | "not-ipv4", "reason_text"}],
//!     "in_sync": [{"ip", "entry", "source": "dns:..." | null}],
//!     "drift": [{"ip", "before": status | null, "now": status | null}],
//!     "failed_sources": [{"source": "dns:gone.example", "error": "NXDOMAIN (...)"}]
//!   }],
//!   "sources": [{"source": "dns:home.example.org", "ok": true | false,
//!                "addresses": ["203.0.113.10"], "error": null | "...", "ttl": 30 | null}]
//! }
//! ```
//!
//! `observe` is true on the actions of an `observe` credential (never applied; `apply` reports
//! them with the outcome `observe`), and `summary.observe` counts them; `run_blocked.changes`
//! counts only the other actions, the ones `max_changes` limits.
//!
//! `source` names where a desired IP came from (`null` for static items); a URL is named without
//! its userinfo, query or deeper path, which may hold a token. Fields are only ever added within
//! a format version; `actions` are in application order per
//! credential (creates and activations, then deactivations). `not-ipv4` was an action reason
//! until entries that are not plain IPv4 became kept (bunq does not let the API manage them);
//! it is now a `kept` reason and no action carries it.
//!
//! `text` renders for people, `json` for programs, `apply` what the executor did; everything
//! public is re-exported here.

mod apply;
mod json;
mod text;

pub use apply::{render_apply_json, render_apply_text};
pub use json::{
    ActionDocument, BlockedDocument, CredentialDocument, InSyncDocument, KeptDocument,
    PlanDocument, RunBlockedDocument, SourceDocument, SummaryDocument, render_json,
};
pub use text::{render_text, summary_line};

/// The JSON format version; bumped only when a field changes meaning or disappears.
pub const FORMAT_VERSION: u32 = 1;

#[cfg(test)]
#[path = "../report_tests.rs"]
mod tests;
