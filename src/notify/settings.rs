//! `notify:` as validated: where messages go, in which format, for which events. Built by the
//! config layer (`config::validate::notify`), read by [`super::Notifications`].

use std::collections::BTreeSet;
use std::time::Duration;

use super::event::EventKind;
use super::url::SecretUrl;

/// Default of `notify.timeout`, per delivery attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// `notify:`; the default has no target, and nothing is ever sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyConfig {
    /// `notify.webhooks`, in file order: the index is the `target` metric label.
    pub webhooks: Vec<Webhook>,
    /// `notify.heartbeat`.
    pub heartbeat: Option<Heartbeat>,
    /// Per delivery attempt.
    pub timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhooks: Vec::new(),
            heartbeat: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl NotifyConfig {
    /// True when there is somewhere to send to.
    pub fn has_targets(&self) -> bool {
        !self.webhooks.is_empty() || self.heartbeat.is_some()
    }
}

/// The body a webhook takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The versioned JSON document (see [`super::json`]).
    Json,
    /// A Slack incoming-webhook `{"text": ...}`.
    Slack,
}

impl Format {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Slack => "slack",
        }
    }
}

/// One `notify.webhooks[]` item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// Where to POST; a secret (the token is in the path).
    pub url: SecretUrl,
    /// The body format.
    pub format: Format,
    /// The kinds sent to it (`test` always is).
    pub events: BTreeSet<EventKind>,
}

impl Webhook {
    /// Whether `kind` goes to this webhook.
    pub fn wants(&self, kind: EventKind) -> bool {
        kind == EventKind::Test || self.events.contains(&kind)
    }
}

/// `notify.heartbeat`: healthchecks.io / Uptime Kuma push style.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// `GET <url>` after a good run, `<url>/fail` after a failed or blocked one.
    pub url: SecretUrl,
    /// Also `GET <url>/start` when a run begins.
    pub start: bool,
}
