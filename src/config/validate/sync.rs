//! `sync:`: the default policy, the cadence (interval or cron schedule, jitter, renewal margin)
//! and the limits that block a run (changes per run, addresses per CIDR).

use std::time::Duration;

use super::problems::Problems;
use super::scalars::{parse_duration, parse_policy};
use crate::config::cron::CronSchedule;
use crate::config::locate::FieldPath;
use crate::config::model::{
    DEFAULT_INTERVAL, DEFAULT_MAX_CHANGES, DEFAULT_MAX_CIDR_ADDRESSES, DEFAULT_RENEW_BEFORE,
    MAX_CIDR_ADDRESSES_LIMIT, MIN_INTERVAL, Policy, SyncSettings,
};
use crate::config::raw::{RawSync, Text};

/// What the sync section yields, also when part of it is invalid: credentials still need the
/// default policy and the CIDR cap to be checked without spurious follow-up errors.
pub(super) struct ValidSync {
    /// The settings, when every sync key is valid.
    pub(super) settings: Option<SyncSettings>,
    /// The default policy, when given and valid.
    pub(super) policy: Option<Policy>,
    /// The CIDR cap to check credentials against.
    pub(super) max_cidr_addresses: u32,
}

pub(super) fn validate_sync(raw: RawSync, path: &FieldPath, problems: &mut Problems) -> ValidSync {
    let policy = match raw.policy {
        None => {
            problems.add(
                &path.key("policy"),
                "is required and has no default: choose sync (deactivate every IP that is not listed), \
                 additive (only add, never deactivate) or observe (plan and report, never write); \
                 a guessed default either leaves access open or locks callers out",
            );
            None
        }
        Some(Text(value)) => parse_policy(&value, &path.key("policy"), problems),
    };
    let interval = interval(raw.interval.as_ref(), &path.key("interval"), problems);
    let schedule = raw.schedule.and_then(|Text(expression)| {
        schedule(
            &expression,
            raw.interval.is_some(),
            &path.key("schedule"),
            problems,
        )
    });
    let renew_before = match raw.renew_before {
        None => Some(DEFAULT_RENEW_BEFORE),
        Some(Text(value)) => parse_duration(&value, &path.key("renew_before"), problems),
    };
    let jitter = match raw.jitter {
        None => Some(Duration::ZERO),
        Some(Text(value)) => parse_duration(&value, &path.key("jitter"), problems),
    };
    if let (Some(jitter), Some(interval)) = (jitter, interval)
        && schedule.is_none()
    {
        check_jitter(jitter, interval, &path.key("jitter"), problems);
    }
    let max_changes = raw
        .max_changes
        .map_or(Some(DEFAULT_MAX_CHANGES), |Text(value)| {
            max_changes(&value, &path.key("max_changes"), problems)
        });
    let max_cidr_addresses = raw
        .max_cidr_addresses
        .map_or(Some(DEFAULT_MAX_CIDR_ADDRESSES), |Text(value)| {
            max_cidr_addresses(&value, &path.key("max_cidr_addresses"), problems)
        });

    let settings = (|| {
        Some(SyncSettings {
            policy: policy?,
            interval: interval?,
            schedule,
            renew_before: renew_before?,
            jitter: jitter?,
            max_changes: max_changes?,
            max_cidr_addresses: max_cidr_addresses?,
        })
    })();
    ValidSync {
        settings,
        policy,
        // An invalid cap is already reported; check CIDRs against the hard limit meanwhile
        // rather than report them against a cap the operator did not choose.
        max_cidr_addresses: max_cidr_addresses.unwrap_or(MAX_CIDR_ADDRESSES_LIMIT),
    }
}

/// `sync.interval`: at least [`MIN_INTERVAL`], since every run lists every credential.
fn interval(raw: Option<&Text>, path: &FieldPath, problems: &mut Problems) -> Option<Duration> {
    let Some(Text(value)) = raw else {
        return Some(DEFAULT_INTERVAL);
    };
    let interval = parse_duration(value, path, problems)?;
    if interval < MIN_INTERVAL {
        problems.add(
            path,
            format!(
                "{value:?} is shorter than the minimum of {}; every run lists all credentials \
                 and bunq allows 3 GETs per 3 seconds",
                humantime::format_duration(MIN_INTERVAL)
            ),
        );
        return None;
    }
    Some(interval)
}

/// `sync.schedule`: a cron expression parsed (and measured) once, into the schedule the daemon
/// runs on. Refused beside an explicit `sync.interval`, which it would silently replace.
fn schedule(
    expression: &str,
    interval_set: bool,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<CronSchedule> {
    if interval_set {
        problems.add(
            path,
            "set either sync.interval or sync.schedule, not both: the schedule replaces the interval",
        );
        return None;
    }
    CronSchedule::parse(expression)
        .map_err(|message| problems.add(path, message))
        .ok()
}

/// `sync.jitter` under interval cadence: shorter than the interval, or runs would overlap their
/// own schedule.
fn check_jitter(jitter: Duration, interval: Duration, path: &FieldPath, problems: &mut Problems) {
    if jitter >= interval {
        problems.add(
            path,
            format!(
                "{} is not shorter than sync.interval ({}); runs would overlap their own schedule",
                humantime::format_duration(jitter),
                humantime::format_duration(interval)
            ),
        );
    }
}

/// `sync.max_changes`: at least 1, since 0 would block every run with anything to do.
fn max_changes(value: &str, path: &FieldPath, problems: &mut Problems) -> Option<usize> {
    match value.parse::<usize>() {
        Ok(0) => {
            problems.add(
                path,
                "0 would block every run that has anything to do; use at least 1",
            );
            None
        }
        Ok(limit) => Some(limit),
        Err(_) => {
            problems.add(path, format!("{value:?} is not a positive whole number"));
            None
        }
    }
}

/// `sync.max_cidr_addresses`: from 1 to [`MAX_CIDR_ADDRESSES_LIMIT`].
fn max_cidr_addresses(value: &str, path: &FieldPath, problems: &mut Problems) -> Option<u32> {
    match value.parse::<u32>() {
        Ok(limit) if (1..=MAX_CIDR_ADDRESSES_LIMIT).contains(&limit) => Some(limit),
        _ => {
            problems.add(
                path,
                format!("{value:?} must be a whole number from 1 to {MAX_CIDR_ADDRESSES_LIMIT}"),
            );
            None
        }
    }
}
