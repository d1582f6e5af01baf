//! The metric definitions: name, help text and unit of every metric, in exposition order.
//! Names and help texts are part of the interface: dashboards and alerts use them.

use prometheus_client::registry::Unit;

/// One metric's name (without [`super::PREFIX`] and suffixes), help text and unit.
pub(super) struct Definition {
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) unit: Option<Unit>,
}

/// A metric with a unit of seconds.
const fn seconds(name: &'static str, help: &'static str) -> Definition {
    Definition {
        name,
        help,
        unit: Some(Unit::Seconds),
    }
}

/// A metric without a unit.
const fn plain(name: &'static str, help: &'static str) -> Definition {
    Definition {
        name,
        help,
        unit: None,
    }
}

// The definitions, in exposition order. Names and help texts are part of the interface:
// dashboards and alerts use them.
pub(super) const BUILD: Definition = plain("build", "Build information of the running binary");
pub(super) const LAST_ATTEMPT: Definition = seconds(
    "last_run_attempt_timestamp",
    "Unix time the last reconcile run started",
);
pub(super) const LAST_SUCCESS: Definition = seconds(
    "last_run_success_timestamp",
    "Unix time the last reconcile run reached the desired state",
);
pub(super) const RUN_DURATION: Definition = seconds("run_duration", "Duration of reconcile runs");
pub(super) const RUNS: Definition = plain("runs", "Reconcile runs by result");
pub(super) const CONSECUTIVE_FAILURES: Definition = plain(
    "consecutive_failed_runs",
    "Reconcile runs that failed in a row",
);
pub(super) const CHANGES: Definition =
    plain("changes", "Permitted-IP changes by action and outcome");
pub(super) const CHANGES_BLOCKED: Definition = plain(
    "changes_blocked",
    "Permitted-IP changes refused by a safety rule, by rule",
);
pub(super) const DRIFT_ENTRIES: Definition = plain(
    "drift_entries",
    "Permitted-IP entries differing from the desired state at the last run",
);
pub(super) const SOURCE_FAILURES: Definition = plain(
    "source_failures",
    "Failed resolutions of DNS, file and URL sources, by kind and reason",
);
pub(super) const API_REQUESTS: Definition = plain(
    "api_requests",
    "bunq API requests by endpoint, method and HTTP status",
);
pub(super) const API_REQUEST_DURATION: Definition =
    seconds("api_request_duration", "Duration of bunq API requests");
pub(super) const API_THROTTLED: Definition = plain(
    "api_throttled",
    "bunq API replies with HTTP 429 (rate limited)",
);
pub(super) const SESSION_EXPIRY: Definition = seconds(
    "session_expiry_timestamp",
    "Unix time the current bunq session expires",
);
pub(super) const SESSION_RENEWALS: Definition =
    plain("session_renewals", "bunq session renewals by result");
pub(super) const CONFIG_RELOADS: Definition = plain("config_reloads", "Config reloads by result");
pub(super) const CONFIG_LAST_RELOAD_SUCCESSFUL: Definition = plain(
    "config_last_reload_successful",
    "1 if the running config is the last one read, 0 if the last reload failed",
);
pub(super) const NOTIFICATIONS: Definition = plain(
    "notifications",
    "Notification messages (webhooks, heartbeat) by target and result",
);
pub(super) const CONFIG_LAST_RELOAD_SUCCESS: Definition = seconds(
    "config_last_reload_success_timestamp",
    "Unix time a config was last loaded successfully",
);

pub(super) const PENDING_CHANGES: Definition = plain(
    "pending_changes",
    "Changes the desired state needs that the last run did not make (observe, dry-run, blocked, \
     failed), by credential",
);
pub(super) const DRY_RUN: Definition = plain(
    "dry_run",
    "1 when the daemon runs with --dry-run (plans and reports, never writes), else 0",
);
