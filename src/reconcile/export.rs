//! The current allowlists as a config file, for onboarding an existing account
//! (`bunq-ipsync export`).
//!
//! Each credential's ACTIVE IPv4 entries become its `ips`, sorted. The policy is `additive` by
//! default: the exported file, applied as is, changes nothing and never deactivates; the operator
//! reviews it and switches to `sync` deliberately. `export --policy observe` writes `observe`
//! instead, for a first period in which the daemon only reports what it would do. Entries the config cannot express (INACTIVE entries, `*`,
//! IPv6, unknown statuses) are listed as comments so nothing is silently dropped. A credential
//! without ACTIVE IPv4 entries gets `ips: []` with `allow_empty: true`, which under `additive`
//! does nothing. The output is deterministic (no timestamp) and parses back through
//! [`crate::config::parse`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::bunq::model::{CredentialId, IpStatus, PermittedIp};
use crate::config::model::{DEFAULT_INTERVAL, DEFAULT_MAX_CHANGES};
use crate::config::{BunqSettings, Policy};

/// One credential as bunq reports it.
#[derive(Clone, Copy, Debug)]
pub struct ExportedCredential<'a> {
    /// The credential id.
    pub id: CredentialId,
    /// All of its entries.
    pub entries: &'a [PermittedIp],
}

/// Renders a config file holding `credentials`' current allowlists under `sync.policy: policy`.
/// `bunq` settings are carried over (so the file connects the same way); `names` labels
/// credentials where known.
pub fn render_config(
    bunq: &BunqSettings,
    credentials: &[ExportedCredential<'_>],
    names: &BTreeMap<CredentialId, String>,
    policy: Policy,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# bunq-ipsync configuration exported from the {} account by `bunq-ipsync export`.",
        bunq.environment
    );
    out.push_str(policy_note(policy));

    out.push_str("bunq:\n");
    let _ = writeln!(out, "  environment: {}", bunq.environment);
    if bunq.base_url_overridden {
        let _ = writeln!(out, "  base_url: {}", scalar(bunq.base_url.as_str()));
    }
    if let Some(file) = &bunq.api_key_file {
        let _ = writeln!(out, "  api_key_file: {}", scalar(&file.to_string_lossy()));
    }
    if let Some(name) = &bunq.api_key_credential {
        let _ = writeln!(out, "  api_key_credential: {}", scalar(name));
    }
    let _ = writeln!(
        out,
        "  device_description: {}",
        scalar(&bunq.device_description)
    );
    let _ = writeln!(
        out,
        "  state_dir: {}",
        scalar(&bunq.state_dir.to_string_lossy())
    );
    if !bunq.permitted_ips.is_empty() {
        let ips: Vec<String> = bunq.permitted_ips.iter().map(Ipv4Addr::to_string).collect();
        let _ = writeln!(out, "  permitted_ips: [{}]", ips.join(", "));
    }
    // The own-ip rule depends on it: dropping it would block every deactivation on the
    // daemon's own credential.
    if let Some(egress) = &bunq.egress_ips {
        let ips: Vec<String> = egress.iter().map(Ipv4Addr::to_string).collect();
        let _ = writeln!(out, "  egress_ips: [{}]", ips.join(", "));
    }

    let _ = writeln!(out, "\nsync:\n  policy: {policy}");
    let _ = writeln!(
        out,
        "  interval: {}",
        humantime::format_duration(DEFAULT_INTERVAL)
    );
    let _ = writeln!(out, "  max_changes: {DEFAULT_MAX_CHANGES}");

    let mut sorted: Vec<&ExportedCredential<'_>> = credentials.iter().collect();
    sorted.sort_by_key(|credential| credential.id);
    if sorted.is_empty() {
        out.push_str("\n# No credentials were found.\ncredentials: []\n");
        return out;
    }
    out.push_str("\ncredentials:\n");
    for credential in sorted {
        render_credential(&mut out, credential, names.get(&credential.id));
    }
    out
}

/// The header lines saying what the exported policy does with the file as it is.
fn policy_note(policy: Policy) -> &'static str {
    match policy {
        Policy::Additive => {
            "# Each credential lists its ACTIVE IPs. The policy is additive, the safe starting point:\n\
             # applied as is, this file changes nothing and never deactivates. Review the lists, then\n\
             # set sync.policy to sync to make them exact. config.example.yaml documents every key.\n\n"
        }
        Policy::Observe => {
            "# Each credential lists its ACTIVE IPs. The policy is observe: the daemon reads, plans and\n\
             # reports these credentials exactly as under sync, but never writes them. Watch the\n\
             # plans, then set sync.policy to sync to let it act. config.example.yaml documents every key.\n\n"
        }
        Policy::Sync => {
            "# Each credential lists its ACTIVE IPs. The policy is sync: applied as is, this file\n\
             # changes nothing; later, every ACTIVE IP not listed is deactivated.\n\
             # config.example.yaml documents every key.\n\n"
        }
    }
}

fn render_credential(out: &mut String, credential: &ExportedCredential<'_>, name: Option<&String>) {
    let _ = writeln!(out, "  - id: {}", credential.id);
    if let Some(name) = name {
        let _ = writeln!(out, "    name: {}", scalar(name));
    }
    let active: BTreeSet<Ipv4Addr> = credential
        .entries
        .iter()
        .filter(|entry| entry.status == IpStatus::Active)
        .filter_map(|entry| entry.ip.parse::<Ipv4Addr>().ok())
        .collect();
    if active.is_empty() {
        out.push_str("    ips: []\n    allow_empty: true             # no ACTIVE IPv4 entry at export time\n");
    } else {
        out.push_str("    ips:\n");
        for ip in &active {
            let _ = writeln!(out, "      - {ip}");
        }
    }

    let mut notes: Vec<&PermittedIp> = credential
        .entries
        .iter()
        .filter(|entry| entry.status != IpStatus::Active || entry.ip.parse::<Ipv4Addr>().is_err())
        .collect();
    notes.sort_by(|a, b| (a.ip.as_str(), a.id).cmp(&(b.ip.as_str(), b.id)));
    for entry in notes {
        let note = match (&entry.status, entry.ip.parse::<Ipv4Addr>()) {
            (IpStatus::Inactive, Ok(_)) => "inactive",
            (IpStatus::Active, Err(_)) => "active, not an IPv4 address, cannot be listed",
            (IpStatus::Inactive, Err(_)) => "inactive, not an IPv4 address",
            (IpStatus::Other(_), _) => "unknown status",
            (IpStatus::Active, Ok(_)) => continue,
        };
        let _ = writeln!(
            out,
            "    # {} (entry {}, {}): {note}",
            comment_safe(&entry.ip),
            entry.id,
            comment_safe(entry.status.as_str())
        );
    }
}

/// A YAML scalar for `value`, quoted when YAML would read it as something else.
fn scalar(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/')
        && matches!(yaml_serde::from_str(value), Ok(yaml_serde::Value::String(read)) if read == value);
    if plain {
        value.to_owned()
    } else {
        // Double-quoted YAML: JSON string escaping is valid inside it.
        serde_json::Value::String(value.to_owned()).to_string()
    }
}

/// Text that cannot end a comment line early (bunq could report anything as an IP).
fn comment_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::{Config, Environment, Policy};
    use crate::reconcile::fixtures::{active, entry};

    fn bunq() -> BunqSettings {
        BunqSettings {
            environment: Environment::Sandbox,
            base_url: crate::bunq::BaseUrl::parse("http://127.0.0.1:8080/v1").unwrap(),
            base_url_overridden: true,
            api_key_file: Some(PathBuf::from("/run/secrets/bunq-api-key")),
            api_key_credential: None,
            device_description: "bunq-ipsync".to_owned(),
            state_dir: PathBuf::from("/var/lib/bunq-ipsync"),
            permitted_ips: vec![],
            egress_ips: None,
        }
    }

    fn sample() -> String {
        let first = [
            active(9, "198.51.100.20"),
            active(3, "192.0.2.10"),
            active(4, "192.0.2.9"),
            active(5, "192.0.2.9"),
            entry(6, "192.0.2.77", "INACTIVE"),
            active(7, "*"),
        ];
        let second = [entry(20, "203.0.113.1", "INACTIVE")];
        let names = BTreeMap::from([(4242, "ci: runners #1".to_owned())]);
        render_config(
            &bunq(),
            &[
                ExportedCredential {
                    id: 5000,
                    entries: &second,
                },
                ExportedCredential {
                    id: 4242,
                    entries: &first,
                },
            ],
            &names,
            Policy::Additive,
        )
    }

    fn reparse(text: &str) -> Config {
        match crate::config::parse(Path::new("export.yaml"), text) {
            Ok(config) => config,
            Err(error) => panic!("export does not parse back:\n{error}\n---\n{text}"),
        }
    }

    const SAMPLE: &str = "\
# bunq-ipsync configuration exported from the sandbox account by `bunq-ipsync export`.
# Each credential lists its ACTIVE IPs. The policy is additive, the safe starting point:
# applied as is, this file changes nothing and never deactivates. Review the lists, then
# set sync.policy to sync to make them exact. config.example.yaml documents every key.

bunq:
  environment: sandbox
  base_url: \"http://127.0.0.1:8080/v1\"
  api_key_file: /run/secrets/bunq-api-key
  device_description: bunq-ipsync
  state_dir: /var/lib/bunq-ipsync

sync:
  policy: additive
  interval: 5m
  max_changes: 10

credentials:
  - id: 4242
    name: \"ci: runners #1\"
    ips:
      - 192.0.2.9
      - 192.0.2.10
      - 198.51.100.20
    # * (entry 7, ACTIVE): active, not an IPv4 address, cannot be listed
    # 192.0.2.77 (entry 6, INACTIVE): inactive
  - id: 5000
    ips: []
    allow_empty: true             # no ACTIVE IPv4 entry at export time
    # 203.0.113.1 (entry 20, INACTIVE): inactive
";

    #[test]
    fn export_renders_active_ips_sorted_with_notes_for_the_rest() {
        assert_eq!(sample(), SAMPLE);
    }

    #[test]
    fn export_parses_back_to_the_same_allowlists() {
        let config = reparse(&sample());
        assert_eq!(config.bunq.environment, Environment::Sandbox);
        assert_eq!(config.bunq.base_url.as_str(), "http://127.0.0.1:8080/v1");
        assert_eq!(
            config.bunq.api_key_file,
            Some(PathBuf::from("/run/secrets/bunq-api-key"))
        );
        assert_eq!(config.sync.policy, Policy::Additive);
        let first = &config.credentials[0];
        assert_eq!(
            (first.id, first.name.as_deref()),
            (4242, Some("ci: runners #1"))
        );
        let ips: Vec<String> = first.ips.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["192.0.2.9", "192.0.2.10", "198.51.100.20"]);
        assert_eq!(first.policy, Policy::Additive);
        let second = &config.credentials[1];
        assert!(second.ips.is_empty() && second.allow_empty);
    }

    #[test]
    fn export_of_an_account_without_credentials_parses_back() {
        let text = render_config(&bunq(), &[], &BTreeMap::new(), Policy::Additive);
        assert!(reparse(&text).credentials.is_empty());
    }

    #[test]
    fn export_carries_production_and_permitted_ips() {
        let mut settings = bunq();
        settings.environment = Environment::Production;
        settings.base_url_overridden = false;
        settings.permitted_ips = vec![Ipv4Addr::new(203, 0, 113, 5)];
        let config = reparse(&render_config(
            &settings,
            &[],
            &BTreeMap::new(),
            Policy::Additive,
        ));
        assert_eq!(config.bunq.environment, Environment::Production);
        assert_eq!(config.bunq.base_url.as_str(), "https://api.bunq.com/v1");
        assert_eq!(
            config.bunq.permitted_ips,
            vec![Ipv4Addr::new(203, 0, 113, 5)]
        );
    }

    #[test]
    fn export_with_policy_observe_parses_back_as_observe() {
        let first = [active(3, "192.0.2.10")];
        let credentials = [ExportedCredential {
            id: 4242,
            entries: &first,
        }];
        let text = render_config(&bunq(), &credentials, &BTreeMap::new(), Policy::Observe);
        assert!(text.contains("The policy is observe"), "{text}");
        assert!(text.contains("\nsync:\n  policy: observe\n"), "{text}");
        let config = reparse(&text);
        assert_eq!(config.sync.policy, Policy::Observe);
        assert_eq!(config.credentials[0].policy, Policy::Observe);
    }

    #[test]
    fn plain_names_stay_plain() {
        assert_eq!(scalar("ci-runners"), "ci-runners");
        assert_eq!(scalar("/var/lib/bunq-ipsync"), "/var/lib/bunq-ipsync");
    }

    #[test]
    fn values_yaml_would_misread_are_quoted() {
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("123"), "\"123\"");
        assert_eq!(scalar("a: b # c"), "\"a: b # c\"");
        assert_eq!(scalar(""), "\"\"");
    }

    #[test]
    fn control_characters_cannot_break_a_comment() {
        assert_eq!(comment_safe("1.2.3.4\nbunq: x"), "1.2.3.4?bunq: x");
    }
}
