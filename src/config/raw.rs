//! The faithful first stage: the YAML document as written, with no meaning attached yet.
//!
//! Structure is enforced here (unknown keys are refused with `deny_unknown_fields`, lists must be
//! lists), but values stay as text wherever validation has something to say about them, so that
//! validation can report every bad IP, duration or policy at once instead of stopping at
//! the first one.

use serde::{Deserialize, Deserializer};

/// A scalar kept as the text the operator wrote: `5m`, `sync`, `300`, `true` all arrive as
/// strings, so the validator can say what is wrong with them in domain terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl serde::de::Visitor<'_> for TextVisitor {
            type Value = Text;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a single value (text or number)")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Text, E> {
                Ok(Text(value.to_owned()))
            }

            fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Text, E> {
                Ok(Text(value.to_string()))
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Text, E> {
                Ok(Text(value.to_string()))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Text, E> {
                Ok(Text(value.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Text, E> {
                Ok(Text(value.to_string()))
            }
        }

        deserializer.deserialize_any(TextVisitor)
    }
}

/// The whole document.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Connection to bunq.
    pub bunq: Option<RawBunq>,
    /// Reconcile behaviour.
    pub sync: Option<RawSync>,
    /// Health and metrics listener.
    pub http: Option<RawHttp>,
    /// Logging.
    pub log: Option<RawLog>,
    /// The credentials under management.
    pub credentials: Option<Vec<RawCredential>>,
    /// How dynamic sources are resolved.
    pub sources: Option<RawSources>,
    /// Webhooks and the heartbeat.
    pub notify: Option<RawNotify>,
}

/// `notify:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// Where event messages are POSTed.
    pub webhooks: Option<Vec<RawWebhook>>,
    /// The dead-man heartbeat.
    pub heartbeat: Option<RawHeartbeat>,
    /// Per delivery attempt.
    pub timeout: Option<Text>,
}

/// One element of `notify.webhooks:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// The webhook URL (a secret).
    pub url: Option<Text>,
    /// A file holding the URL, instead of `url`.
    pub url_file: Option<Text>,
    /// `json` or `slack`.
    pub format: Option<Text>,
    /// The event kinds sent to it.
    pub events: Option<Vec<Text>>,
}

/// `notify.heartbeat:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    /// The check's ping URL (a secret).
    pub url: Option<Text>,
    /// A file holding the URL, instead of `url`.
    pub url_file: Option<Text>,
    /// Also ping `<url>/start` when a run begins.
    pub start: Option<Text>,
}

/// One item of `credentials[].ips`: an address or CIDR as text, or a mapping naming a source
/// (`dns: name`, `file: path`, `url: https://…`). The mapping is kept as written, every key
/// with its text, so validation can say which key is unknown or missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawIpItem {
    /// `203.0.113.10` or `198.51.100.0/30`.
    Text(Text),
    /// `{dns: home.example.org}` and the like, keys in file order.
    Source(Vec<(String, Text)>),
}

impl<'de> Deserialize<'de> for RawIpItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;

        impl<'de> serde::de::Visitor<'de> for ItemVisitor {
            type Value = RawIpItem;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an IPv4 address or CIDR, or one of dns:, file:, url:")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<RawIpItem, E> {
                Ok(RawIpItem::Text(Text(value.to_owned())))
            }

            // A number or boolean is kept as text, as for every scalar, so validation explains
            // that it is not an address.
            fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<RawIpItem, E> {
                self.visit_str(&value.to_string())
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<RawIpItem, E> {
                self.visit_str(&value.to_string())
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<RawIpItem, E> {
                self.visit_str(&value.to_string())
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<RawIpItem, E> {
                self.visit_str(&value.to_string())
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawIpItem, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Text>()? {
                    entries.push((key, value));
                }
                Ok(RawIpItem::Source(entries))
            }
        }

        deserializer.deserialize_any(ItemVisitor)
    }
}

/// `sources:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSources {
    /// DNS sources.
    pub dns: Option<RawDnsSources>,
    /// URL sources.
    pub url: Option<RawUrlSources>,
    /// Most addresses one source may yield.
    pub max_addresses: Option<Text>,
    /// Shortest re-resolution period.
    pub min_refresh: Option<Text>,
}

/// `sources.dns:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsSources {
    /// `host:port` or `host` (port 53) of each nameserver.
    pub nameservers: Option<Vec<Text>>,
    /// Per query.
    pub timeout: Option<Text>,
}

/// `sources.url:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUrlSources {
    /// Per fetch.
    pub timeout: Option<Text>,
}

/// `bunq:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBunq {
    /// `sandbox` or `production`.
    pub environment: Option<Text>,
    /// Optional API base URL override.
    pub base_url: Option<Text>,
    /// File holding the API key.
    pub api_key_file: Option<Text>,
    /// systemd credential name holding the API key.
    pub api_key_credential: Option<Text>,
    /// Device description registered with bunq.
    pub device_description: Option<Text>,
    /// Directory for the persisted context and run state.
    pub state_dir: Option<Text>,
    /// IPs sent as `permitted_ips` at device registration.
    pub permitted_ips: Option<Vec<Text>>,
    /// IPs and CIDRs the daemon may call bunq from.
    pub egress_ips: Option<Vec<Text>>,
}

/// `sync:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    /// `sync` or `additive`; required.
    pub policy: Option<Text>,
    /// Daemon run interval.
    pub interval: Option<Text>,
    /// Daemon cron schedule, replacing `interval`.
    pub schedule: Option<Text>,
    /// Renew the bunq session this long before it expires.
    pub renew_before: Option<Text>,
    /// Random delay added to each scheduled run.
    pub jitter: Option<Text>,
    /// Most changes applied in one run.
    pub max_changes: Option<Text>,
    /// Most addresses one CIDR may expand to.
    pub max_cidr_addresses: Option<Text>,
}

/// `http:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Socket address of the health and metrics listener.
    pub listen: Option<Text>,
}

/// `log:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` or `json`.
    pub format: Option<Text>,
    /// A tracing filter directive such as `info` or `bunq_ipsync=debug`.
    pub level: Option<Text>,
}

/// One element of `credentials:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    /// The credential-password-ip id.
    pub id: Option<Text>,
    /// Label for logs and plans.
    pub name: Option<Text>,
    /// Desired IPs and CIDRs, and sources of them.
    pub ips: Option<Vec<RawIpItem>>,
    /// Per-credential policy override.
    pub policy: Option<Text>,
    /// IPs never deactivated.
    pub protected: Option<Vec<Text>>,
    /// Permits an empty `ips` list.
    pub allow_empty: Option<Text>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_booleans_are_kept_as_text() {
        let raw: RawSync = yaml_serde::from_str("interval: 300\npolicy: true\n").unwrap();
        assert_eq!(raw.interval, Some(Text("300".into())));
        assert_eq!(raw.policy, Some(Text("true".into())));
    }

    #[test]
    fn unknown_key_is_refused_with_its_location() {
        let error = yaml_serde::from_str::<RawConfig>("sync:\n  polcy: sync\n").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `polcy`"),
            "{error}"
        );
        let location = error.location().unwrap();
        assert_eq!((location.line(), location.column()), (2, 3));
    }
}
