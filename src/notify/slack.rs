//! `format: slack`: a Slack-compatible incoming-webhook body, `{"text": "..."}`, with a readable
//! one-screen summary: what changed on which credential, rule names for blocks, the error for
//! failures. Mattermost, Rocket.Chat and Discord's `/slack` endpoints take the same body.

use super::event::{CredentialEvent, Event};

/// Most item lines per message; the rest is counted, so a 40-IP apply stays one screen.
const MAX_LINES: usize = 15;

/// The request body of `event`.
pub fn render(event: &Event) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "text": text(event) })).unwrap_or_default()
}

/// The message text: a headline, one line per item (bounded), the error.
pub fn text(event: &Event) -> String {
    let mut out = format!(
        "*bunq-ipsync {}* on {}: {}",
        event.event.as_str(),
        event.host,
        event.summary
    );
    let lines: Vec<String> = event.credentials.iter().flat_map(item_lines).collect();
    for line in lines.iter().take(MAX_LINES) {
        out.push('\n');
        out.push_str(line);
    }
    if lines.len() > MAX_LINES {
        out.push_str(&format!("\n… and {} more", lines.len() - MAX_LINES));
    }
    if let Some(error) = &event.error {
        out.push_str(&format!("\nerror: {error}"));
    }
    out
}

fn item_lines(credential: &CredentialEvent) -> Vec<String> {
    let label = match &credential.name {
        Some(name) => format!("{} ({name})", credential.id),
        None => credential.id.to_string(),
    };
    let actions = credential.actions.iter().map(|action| {
        format!(
            "• {label}: {} {} ({})",
            action.action, action.ip, action.outcome
        )
    });
    let blocked = credential.blocked.iter().map(|blocked| {
        format!(
            "• {label}: blocked {} {} by {}",
            blocked.action.action, blocked.action.ip, blocked.rule
        )
    });
    let drift = credential.drift.iter().map(|drift| {
        format!(
            "• {label}: drift {} {} → {}",
            drift.ip,
            state(drift.before.as_ref()),
            state(drift.now.as_ref())
        )
    });
    actions.chain(blocked).chain(drift).collect()
}

/// A drift side: the status, or `absent` when there was no entry.
fn state(status: Option<&crate::bunq::model::IpStatus>) -> &str {
    status.map_or("absent", crate::bunq::model::IpStatus::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::EventKind;
    use crate::notify::testing::{applied_event, applied_report, origin};

    #[test]
    fn names_credential_action_rule_and_drift() {
        let event = applied_event();
        let text = text(&event);
        assert!(
            text.starts_with("*bunq-ipsync applied* on host-a: changes applied"),
            "{text}"
        );
        assert!(
            text.contains("• 4242 (ci): create 192.0.2.1 (applied)"),
            "{text}"
        );
        assert!(
            text.contains("• 4242 (ci): blocked deactivate 192.0.2.9 by own-ip"),
            "{text}"
        );
        assert!(
            text.contains("• 4242 (ci): drift 192.0.2.5 INACTIVE → ACTIVE"),
            "{text}"
        );
        let body: serde_json::Value = serde_json::from_slice(&render(&event)).unwrap();
        assert_eq!(body["text"], text);
    }

    #[test]
    fn a_failure_shows_its_error() {
        let event = Event::failure(None, "cannot open a bunq session", "HTTP 500", &origin());
        assert!(text(&event).ends_with("\nerror: HTTP 500"));
    }

    #[test]
    fn long_lists_are_cut_to_one_screen() {
        let (mut report, verdict) = applied_report();
        let results = &mut report.applied.as_mut().unwrap().results;
        let first = results[0].clone();
        for _ in 0..40 {
            results.push(first.clone());
        }
        let event = Event::of_run(EventKind::Applied, &report, &verdict, &origin());
        let text = text(&event);
        assert_eq!(
            text.lines().filter(|line| line.starts_with('•')).count(),
            MAX_LINES
        );
        assert!(text.contains("… and 28 more"), "{text}");
    }
}
