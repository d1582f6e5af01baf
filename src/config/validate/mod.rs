//! The second stage: raw document → typed [`Config`], collecting every problem.
//!
//! Each check records a `(field path, message)`; at the end every path is located in the source
//! (see [`super::locate`]) so that each problem names file, line, column and field. Nothing stops
//! at the first problem: an operator fixing a config sees the whole list at once.
//!
//! Layout, one file per section of the document:
//! * this file: the entry point, which validates the sections in dependency order;
//! * [`problems`]: the list of problems, located in the source at the end;
//! * [`scalars`]: the value rules several sections share (policy, duration, non-empty text);
//! * [`bunq`]: `bunq:` (environment, base URL, API key sources, egress IPs);
//! * [`sync`]: `sync:` (policy, cadence, limits);
//! * [`credentials`]: the `credentials:` list;
//! * [`addresses`]: the IPv4 address and CIDR rules of every IP list;
//! * [`sources`]: `dns:`, `file:` and `url:` items and the `sources:` section;
//! * [`service`]: `http:` and `log:`;
//! * [`notify`]: `notify:` (webhooks, heartbeat; their URLs are secrets and never quoted).
//!
//! Decisions worth knowing:
//! * A CIDR with host bits set (`198.51.100.1/30`) is refused, not normalized: the writer may
//!   have meant the single host, and guessing would widen an allowlist silently.
//! * A CIDR means every address in it, network and broadcast included (`/30` = 4 addresses).
//! * The same address twice in one credential (literally, or through overlapping CIDRs) is an
//!   error naming both items: it usually means a copy-paste slip.
//! * `bunq.environment` and `sync.policy` are required: both are choices with no safe guess.
//! * Values are validated into the types their consumers take (`BaseUrl`, `CronSchedule`), with
//!   the consumers' own rules, so nothing downstream parses them again.

mod addresses;
mod bunq;
mod credentials;
mod notify;
mod problems;
mod scalars;
mod service;
mod sources;
mod sync;

use std::path::Path;

use super::error::ConfigErrors;
use super::locate::FieldPath;
use super::model::{BunqSettings, Config};
use super::raw::RawConfig;
use problems::Problems;

/// Validates `raw` (parsed from `text`, read from `source`).
pub(crate) fn validate(raw: RawConfig, source: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut problems = Problems::default();
    let root = FieldPath::root();

    let mut raw_bunq = raw.bunq.unwrap_or_default();
    // Checked after `sync:`, against the same CIDR cap as the credentials' lists.
    let raw_egress_ips = raw_bunq.egress_ips.take();
    let bunq = bunq::validate_bunq(raw_bunq, &root.key("bunq"), &mut problems);
    let sync = sync::validate_sync(
        raw.sync.unwrap_or_default(),
        &root.key("sync"),
        &mut problems,
    );
    let egress_ips = raw_egress_ips.and_then(|items| {
        bunq::validate_egress_ips(
            items,
            &root.key("bunq").key("egress_ips"),
            sync.max_cidr_addresses,
            &mut problems,
        )
    });
    let bunq = bunq.map(|bunq| BunqSettings { egress_ips, ..bunq });
    let http = service::validate_http(
        raw.http.unwrap_or_default(),
        &root.key("http"),
        &mut problems,
    );
    let log = service::validate_log(raw.log.unwrap_or_default(), &root.key("log"), &mut problems);
    let credentials = credentials::validate_credentials(
        raw.credentials.unwrap_or_default(),
        &root.key("credentials"),
        &sync,
        &mut problems,
    );

    let sources = sources::validate_sources(
        raw.sources.unwrap_or_default(),
        &root.key("sources"),
        sync.max_cidr_addresses,
        &mut problems,
    );

    let notify = notify::validate_notify(
        raw.notify.unwrap_or_default(),
        &root.key("notify"),
        &mut problems,
    );

    match (bunq, sync.settings, sources, notify, problems.is_empty()) {
        (Some(bunq), Some(sync), Some(sources), Some(notify), true) => Ok(Config {
            source: source.to_path_buf(),
            bunq,
            sync,
            http,
            log,
            credentials,
            sources,
            notify,
        }),
        _ => Err(problems.into_errors(source, text)),
    }
}
