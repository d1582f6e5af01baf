//! `notify:`: webhooks and the heartbeat. Their URLs carry tokens, so no message here ever
//! shows a URL or a `url_file`'s contents: only the field, and the file's path.
//!
//! A `url_file` is read here, at load and at every reload, so a rotated secret is picked up by
//! the reload that follows it, and an unreadable file is a config error like any other.

use std::collections::BTreeSet;
use std::path::Path;

use super::credentials::boolean;
use super::problems::Problems;
use super::sources::positive;
use crate::bunq::endpoint::is_loopback_host;
use crate::config::locate::FieldPath;
use crate::config::raw::{RawHeartbeat, RawNotify, RawWebhook, Text};
use crate::notify::settings::DEFAULT_TIMEOUT;
use crate::notify::{EventKind, Format, Heartbeat, NotifyConfig, SecretUrl, Webhook};

/// `notify:`.
pub(super) fn validate_notify(
    raw: RawNotify,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<NotifyConfig> {
    let webhooks_path = path.key("webhooks");
    let webhooks: Vec<Option<Webhook>> = raw
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, raw)| webhook(raw, &webhooks_path.index(index), problems))
        .collect();
    let heartbeat = match raw.heartbeat {
        None => Some(None),
        Some(raw) => heartbeat(raw, &path.key("heartbeat"), problems).map(Some),
    };
    let timeout = positive(raw.timeout, DEFAULT_TIMEOUT, &path.key("timeout"), problems);
    Some(NotifyConfig {
        webhooks: webhooks.into_iter().collect::<Option<_>>()?,
        heartbeat: heartbeat?,
        timeout: timeout?,
    })
}

fn webhook(raw: RawWebhook, path: &FieldPath, problems: &mut Problems) -> Option<Webhook> {
    let url = target_url(raw.url, raw.url_file, path, problems);
    let format = match raw.format.as_ref().map(|Text(value)| value.as_str()) {
        None | Some("json") => Some(Format::Json),
        Some("slack") => Some(Format::Slack),
        Some(other) => {
            problems.add(
                &path.key("format"),
                format!("{other:?} is not a format; use json or slack"),
            );
            None
        }
    };
    let events = match raw.events {
        None => Some(EventKind::CONFIGURABLE.into_iter().collect()),
        Some(items) => events(items, &path.key("events"), problems),
    };
    Some(Webhook {
        url: url?,
        format: format?,
        events: events?,
    })
}

/// `events:`: every item a configurable kind; an empty list would be a webhook never used.
fn events(
    items: Vec<Text>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<BTreeSet<EventKind>> {
    let valid = || EventKind::CONFIGURABLE.map(EventKind::as_str).join(", ");
    if items.is_empty() {
        problems.add(
            path,
            format!("is empty; leave it out for every kind ({})", valid()),
        );
        return None;
    }
    let mut kinds = BTreeSet::new();
    let mut ok = true;
    for (index, Text(value)) in items.into_iter().enumerate() {
        match EventKind::configurable(value.trim()) {
            Some(kind) => {
                kinds.insert(kind);
            }
            None => {
                problems.add(
                    &path.index(index),
                    format!("{value:?} is not an event kind; use {}", valid()),
                );
                ok = false;
            }
        }
    }
    ok.then_some(kinds)
}

fn heartbeat(raw: RawHeartbeat, path: &FieldPath, problems: &mut Problems) -> Option<Heartbeat> {
    let url = target_url(raw.url, raw.url_file, path, problems);
    let start = match raw.start {
        None => Some(false),
        Some(Text(value)) => boolean(&value, &path.key("start"), problems),
    };
    Some(Heartbeat {
        url: url?,
        start: start?,
    })
}

/// Exactly one of `url` and `url_file`; the URL https, or http to loopback only.
fn target_url(
    url: Option<Text>,
    url_file: Option<Text>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<SecretUrl> {
    match (url, url_file) {
        (Some(Text(value)), None) => {
            let path = path.key("url");
            checked_url(value.trim())
                .map_err(|message| problems.add(&path, message))
                .ok()
        }
        (None, Some(Text(file))) => {
            let path = path.key("url_file");
            read_url_file(file.trim())
                .map_err(|message| problems.add(&path, message))
                .ok()
        }
        (Some(_), Some(_)) => {
            problems.add(path, "set url or url_file, not both");
            None
        }
        (None, None) => {
            problems.add(path, "url or url_file is required");
            None
        }
    }
}

/// The URL in `file` (absolute path, contents trimmed). Messages name the file, never what
/// it holds.
fn read_url_file(file: &str) -> Result<SecretUrl, String> {
    let path = Path::new(file);
    if !path.is_absolute() {
        return Err(format!(
            "{file:?} is not an absolute path; the daemon does not run in the config's directory"
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read {file}: {}", err.kind()))?;
    checked_url(text.trim()).map_err(|message| format!("the URL in {file} {message}"))
}

/// Messages never quote `value`: it is a secret.
fn checked_url(value: &str) -> Result<SecretUrl, String> {
    let url = reqwest::Url::parse(value)
        .map_err(|err| format!("is not a URL ({err}); write e.g. https://hooks.slack.com/…"))?;
    if url.host_str().is_none() {
        return Err("has no host".to_owned());
    }
    match url.scheme() {
        "https" => Ok(SecretUrl::new(url)),
        "http" if is_loopback_host(&url) => Ok(SecretUrl::new(url)),
        "http" => Err(
            "uses plain http, allowed only to loopback; use https (the URL carries a token)"
                .to_owned(),
        ),
        other => Err(format!("has scheme {other:?}; use https")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ConfigError, parse};
    use crate::notify::{EventKind, Format};

    const HEAD: &str = "bunq:\n  environment: sandbox\nsync:\n  policy: sync\n";
    const TOKEN: &str = "T000/B000/XXXXSECRET";

    fn load(notify: &str) -> Result<crate::config::Config, ConfigError> {
        parse(Path::new("config.yaml"), &format!("{HEAD}{notify}"))
    }

    /// Every problem as `line: field: message`, asserting no token leaks into any.
    fn problems(notify: &str) -> Vec<String> {
        let err = load(notify).expect_err("invalid");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("XXXXSECRET"), "{shown}");
        err.issues()
            .iter()
            .map(|issue| {
                let line = issue.location.map_or(0, |location| location.line);
                format!("{line}: {}: {}", issue.field, issue.message)
            })
            .collect()
    }

    #[test]
    fn no_notify_section_means_no_target_and_the_default_timeout() {
        let config = load("").unwrap();
        assert!(!config.notify.has_targets());
        assert_eq!(config.notify.timeout, std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_full_section_is_read_with_defaults_filled_in() {
        let config = load(&format!(
            "notify:\n  webhooks:\n    - url: https://hooks.slack.com/services/{TOKEN}\n      \
             format: slack\n      events: [applied, failed]\n    - url: http://127.0.0.1:9/hook\n  \
             heartbeat:\n    url: https://hc-ping.com/uuid\n    start: true\n  timeout: 2s\n"
        ))
        .unwrap();
        let notify = &config.notify;
        assert_eq!(notify.webhooks[0].format, Format::Slack);
        assert_eq!(
            notify.webhooks[0].events,
            [EventKind::Applied, EventKind::Failed].into()
        );
        assert_eq!(notify.webhooks[1].format, Format::Json);
        assert_eq!(notify.webhooks[1].events.len(), 6, "default: every kind");
        assert!(notify.heartbeat.as_ref().unwrap().start);
        assert_eq!(notify.timeout, std::time::Duration::from_secs(2));
        let printed = format!("{config:?}");
        assert!(!printed.contains("XXXXSECRET"), "{printed}");
        assert!(printed.contains("https://hooks.slack.com/…"), "{printed}");
    }

    #[test]
    fn every_bad_value_is_reported_with_its_line_and_never_the_url() {
        let found = problems(&format!(
            "notify:\n  webhooks:\n    - url: http://hooks.example.com/{TOKEN}\n      \
             format: teams\n      events: [applied, exploded]\n    - format: json\n    \
             - url: ftp://x.example/{TOKEN}\n      url_file: /run/x\n  \
             heartbeat:\n    url: not a url {TOKEN}\n    start: maybe\n  timeout: 0s\n"
        ));
        let expected = [
            "7: notify.webhooks[0].url: uses plain http, allowed only to loopback; use https (the URL carries a token)",
            "8: notify.webhooks[0].format: \"teams\" is not a format; use json or slack",
            "9: notify.webhooks[0].events[1]: \"exploded\" is not an event kind; use applied, blocked, failed, drift, config_rejected, recovered",
            "10: notify.webhooks[1]: url or url_file is required",
            "11: notify.webhooks[2]: set url or url_file, not both",
            "14: notify.heartbeat.url: is not a URL (relative URL without a base); write e.g. https://hooks.slack.com/…",
            "15: notify.heartbeat.start: \"maybe\" is not true or false",
            "16: notify.timeout: must be more than 0s",
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn a_url_file_is_read_trimmed_and_its_problems_name_only_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("slack-url");
        std::fs::write(&good, format!("https://hooks.slack.com/services/{TOKEN}\n")).unwrap();
        let config = load(&format!(
            "notify:\n  webhooks:\n    - url_file: {}\n",
            good.display()
        ))
        .unwrap();
        assert_eq!(
            config.notify.webhooks[0].url.expose(),
            format!("https://hooks.slack.com/services/{TOKEN}")
        );

        let bad = dir.path().join("bad-url");
        std::fs::write(&bad, format!("http://example.com/{TOKEN}")).unwrap();
        let missing = dir.path().join("missing");
        let found = problems(&format!(
            "notify:\n  webhooks:\n    - url_file: {}\n  heartbeat:\n    url_file: {}\n",
            bad.display(),
            missing.display()
        ));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with(&format!(
                "7: notify.webhooks[0].url_file: the URL in {}",
                bad.display()
            )),
            "{found:?}"
        );
        assert_eq!(
            found[1],
            format!(
                "9: notify.heartbeat.url_file: cannot read {}: entity not found",
                missing.display()
            )
        );
    }

    #[test]
    fn the_commented_example_in_config_example_yaml_is_valid() {
        let example = include_str!("../../../config.example.yaml");
        let block: String = example
            .lines()
            .skip_while(|line| *line != "# notify:")
            .take_while(|line| line.starts_with('#'))
            .map(|line| {
                format!(
                    "{}\n",
                    line.trim_start_matches('#').strip_prefix(' ').unwrap_or("")
                )
            })
            .collect();
        assert!(block.starts_with("notify:\n"), "{block}");
        let config = load(&block).unwrap();
        assert_eq!(config.notify.webhooks.len(), 2);
        assert_eq!(config.notify.webhooks[0].format, Format::Slack);
        assert!(config.notify.heartbeat.unwrap().start);
    }

    #[test]
    fn an_empty_events_list_is_refused() {
        let found =
            problems("notify:\n  webhooks:\n    - url: https://x.example/h\n      events: []\n");
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("8: notify.webhooks[0].events: is empty"),
            "{found:?}"
        );
    }
}
