//! `format: json`: the [`Event`] as a versioned JSON document (`Content-Type:
//! application/json`), documented in the README. Field names are the plan JSON's where they
//! mean the same thing; fields are only ever added within a format version.

use serde::Serialize;

use super::event::Event;

/// Bumped only when a field changes meaning or disappears.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize)]
struct Document<'a> {
    format_version: u32,
    #[serde(flatten)]
    event: &'a Event,
}

/// The request body of `event`.
pub fn render(event: &Event) -> Vec<u8> {
    let document = Document {
        format_version: FORMAT_VERSION,
        event,
    };
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_vec(&document).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::EventKind;
    use crate::notify::testing::{applied_event, origin};

    #[test]
    fn carries_every_field_of_the_contract() {
        let event = applied_event();
        let value: serde_json::Value = serde_json::from_slice(&render(&event)).unwrap();
        assert_eq!(value["format_version"], 1);
        assert_eq!(value["event"], "applied");
        assert_eq!(value["time"], "2026-12-02T10:00:00Z");
        assert_eq!(value["run_id"], "run-1");
        assert_eq!(value["host"], "host-a");
        assert!(
            value["summary"]
                .as_str()
                .unwrap()
                .starts_with("changes applied")
        );
        assert_eq!(value["error"], serde_json::Value::Null);
        let credential = &value["credentials"][0];
        assert_eq!(credential["id"], 4242);
        assert_eq!(credential["name"], "ci");
        assert_eq!(
            credential["actions"][0],
            serde_json::json!({"action": "create", "ip": "192.0.2.1", "entry": 17,
                "outcome": "applied", "reason": "desired-missing"})
        );
        assert_eq!(credential["blocked"][0]["rule"], "own-ip");
        assert_eq!(credential["blocked"][0]["ip"], "192.0.2.9");
        assert_eq!(credential["drift"][0]["ip"], "192.0.2.5");
    }

    #[test]
    fn a_config_rejection_has_the_error_and_no_run() {
        let event = Event::config_rejected("config.yaml:3:5: sync.policy: bad", &origin());
        let value: serde_json::Value = serde_json::from_slice(&render(&event)).unwrap();
        assert_eq!(value["event"], "config_rejected");
        assert_eq!(value["run_id"], serde_json::Value::Null);
        assert_eq!(value["error"], "config.yaml:3:5: sync.policy: bad");
        assert_eq!(value["credentials"], serde_json::json!([]));
    }

    #[test]
    fn every_kind_is_spelled_as_configured() {
        for kind in EventKind::CONFIGURABLE {
            let text = serde_json::to_string(&kind).unwrap();
            assert_eq!(text, format!("\"{}\"", kind.as_str()));
            assert_eq!(EventKind::configurable(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::configurable("test"), None);
    }
}
