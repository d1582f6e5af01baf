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

/// Declares one [`Definition`] constant per row: `NAME: unit("name", "help");`, where `unit` is
/// [`seconds`] or [`plain`]. One row a metric keeps the whole interface readable at a glance.
macro_rules! definitions {
    ($($name:ident: $unit:ident($metric:literal, $help:literal);)*) => {
        $(pub(super) const $name: Definition = $unit($metric, $help);)*
    };
}

// The definitions, in exposition order. Names and help texts are part of the interface:
// dashboards and alerts use them.
definitions! {
    BUILD:                         plain("build", "Build information of the running binary");
    LAST_ATTEMPT:                  seconds("last_run_attempt_timestamp", "Unix time the last reconcile run started");
    LAST_SUCCESS:                  seconds("last_run_success_timestamp", "Unix time the last reconcile run reached the desired state");
    RUN_DURATION:                  seconds("run_duration", "Duration of reconcile runs");
    RUNS:                          plain("runs", "Reconcile runs by result");
    CONSECUTIVE_FAILURES:          plain("consecutive_failed_runs", "Reconcile runs that failed in a row");
    CHANGES:                       plain("changes", "Permitted-IP changes by action and outcome");
    CHANGES_BLOCKED:               plain("changes_blocked", "Permitted-IP changes refused by a safety rule, by rule");
    DRIFT_ENTRIES:                 plain("drift_entries", "Permitted-IP entries differing from the desired state at the last run");
    SOURCE_FAILURES:               plain("source_failures", "Failed resolutions of DNS, file and URL sources, by kind and reason");
    API_REQUESTS:                  plain("api_requests", "bunq API requests by endpoint, method and HTTP status");
    API_REQUEST_DURATION:          seconds("api_request_duration", "Duration of bunq API requests");
    API_THROTTLED:                 plain("api_throttled", "bunq API replies with HTTP 429 (rate limited)");
    SESSION_EXPIRY:                seconds("session_expiry_timestamp", "Unix time the current bunq session expires");
    SESSION_RENEWALS:              plain("session_renewals", "bunq session renewals by result");
    CONFIG_RELOADS:                plain("config_reloads", "Config reloads by result");
    CONFIG_LAST_RELOAD_SUCCESSFUL: plain("config_last_reload_successful", "1 if the running config is the last one read, 0 if the last reload failed");
    NOTIFICATIONS:                 plain("notifications", "Notification messages (webhooks, heartbeat) by target and result");
    CONFIG_LAST_RELOAD_SUCCESS:    seconds("config_last_reload_success_timestamp", "Unix time a config was last loaded successfully");
    PENDING_CHANGES:               plain("pending_changes", "Changes the desired state needs that the last run did not make (observe, dry-run, blocked, failed), by credential");
    DRY_RUN:                       plain("dry_run", "1 when the daemon runs with --dry-run (plans and reports, never writes), else 0");
}
