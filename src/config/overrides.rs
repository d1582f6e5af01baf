//! One-run overrides of the config, from `apply --max-changes N` and `apply --credential ID`.
//!
//! They narrow or loosen a single run and are never saved: the config file, and the daemon that
//! reads it, keep their own values. Overrides are checked against the config before bunq is
//! contacted, so a typo in an id changes nothing.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;

use crate::bunq::model::CredentialId;
use crate::config::model::Config;

/// What the command line overrides for one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOverrides {
    /// Replaces `sync.max_changes` for this run; a run needing more is still blocked.
    pub max_changes: Option<NonZeroUsize>,
    /// Limits the run to these configured credentials (empty: every configured credential).
    pub credentials: Vec<CredentialId>,
}

/// An override the config cannot take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// `--credential` names an id the config does not manage.
    #[error(
        "--credential {id} is not a credential of the config (configured: {configured}); \
         --credential takes a credentials[].id"
    )]
    UnknownCredential {
        /// The id given.
        id: CredentialId,
        /// The configured ids, for the operator.
        configured: String,
    },
}

impl RunOverrides {
    /// Whether the run sees only some of the configured credentials (`--credential`): its
    /// record must keep what the last run knew of the others.
    pub fn narrows(&self) -> bool {
        !self.credentials.is_empty()
    }

    /// `config` as this run sees it: the limit replaced, the credentials narrowed to the ones
    /// named (in file order). Every named id must be configured, else nothing is changed.
    pub fn apply_to(&self, mut config: Config) -> Result<Config, OverrideError> {
        let configured: BTreeSet<CredentialId> =
            config.credentials.iter().map(|spec| spec.id).collect();
        if let Some(&id) = self.credentials.iter().find(|id| !configured.contains(id)) {
            let listed: Vec<String> = configured.iter().map(ToString::to_string).collect();
            return Err(OverrideError::UnknownCredential {
                id,
                configured: if listed.is_empty() {
                    "none".into()
                } else {
                    listed.join(", ")
                },
            });
        }
        if !self.credentials.is_empty() {
            config
                .credentials
                .retain(|spec| self.credentials.contains(&spec.id));
        }
        if let Some(limit) = self.max_changes {
            config.sync.max_changes = limit.get();
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const CONFIG: &str = "\
bunq:
  environment: sandbox
sync:
  policy: sync
  max_changes: 3
credentials:
  - id: 1
    ips: [192.0.2.1]
  - id: 2
    ips: [192.0.2.2]
  - id: 3
    ips: [192.0.2.3]
";

    fn config() -> Config {
        crate::config::parse(Path::new("config.yaml"), CONFIG).unwrap()
    }

    fn ids(config: &Config) -> Vec<CredentialId> {
        config.credentials.iter().map(|spec| spec.id).collect()
    }

    /// The test config with the run narrowed to `credentials` (`--credential`).
    fn narrowed_to(credentials: &[CredentialId]) -> Result<Config, OverrideError> {
        let overrides = RunOverrides {
            credentials: credentials.to_vec(),
            ..RunOverrides::default()
        };
        overrides.apply_to(config())
    }

    #[test]
    fn no_override_leaves_the_config_as_it_is() {
        let overrides = RunOverrides::default();
        assert!(!overrides.narrows());
        assert_eq!(overrides.apply_to(config()).unwrap(), config());
    }

    #[test]
    fn max_changes_replaces_the_limit_for_the_run() {
        let overrides = RunOverrides {
            max_changes: NonZeroUsize::new(25),
            ..RunOverrides::default()
        };
        assert!(
            !overrides.narrows(),
            "a new limit alone keeps every credential"
        );
        let run = overrides.apply_to(config()).unwrap();
        assert_eq!(run.sync.max_changes, 25);
        assert_eq!(ids(&run), [1, 2, 3]);
    }

    #[test]
    fn credentials_narrow_the_run_in_file_order() {
        let run = narrowed_to(&[3, 1]).unwrap();
        assert_eq!(ids(&run), [1, 3]);
        assert_eq!(run.sync.max_changes, 3);
    }

    #[test]
    fn an_unknown_credential_is_refused_with_the_configured_ids() {
        let error = narrowed_to(&[1, 99]).unwrap_err();
        assert_eq!(
            error,
            OverrideError::UnknownCredential {
                id: 99,
                configured: "1, 2, 3".into()
            }
        );
        assert!(
            error
                .to_string()
                .starts_with("--credential 99 is not a credential of the config")
        );
    }
}
