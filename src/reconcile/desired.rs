//! The desired state of one run: each credential's static items widened by what its dynamic
//! sources yielded, where each IP came from, and which sources failed.
//!
//! Sources are resolved once per run, before bunq is read, every distinct source once (a name
//! shared by several credentials is asked once). A source that fails leaves its credential's
//! desired set incomplete; the planner then holds back that credential's deactivations
//! (`source-unavailable`), so a failed lookup never removes an IP.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::config::{Config, CredentialSpec};
use crate::reconcile::plan::{FailedSource, SourceFacts, SourceReport};
use crate::sources::{Resolutions, SourceResolver};

/// Resolves every source of `config` once; logs each failure with the source's name.
pub async fn resolve_sources(config: &Config) -> Resolutions {
    let sources = config.sources();
    if sources.is_empty() {
        return Resolutions::new();
    }
    let resolver = SourceResolver::new(config.sources.clone());
    let resolutions = resolver.resolve_all(sources).await;
    for (source, result) in &resolutions {
        if let Err(error) = result {
            tracing::warn!(
                %source,
                error = %error,
                reason = error.reason(),
                "a source failed; the deactivations of the credentials that use it are held \
                 back (source-unavailable)"
            );
        }
    }
    resolutions
}

/// One credential's desired set (static items and every address its sources yielded) and the
/// facts the planner and the report need; `None` facts for a credential without sources.
pub fn desired_of(
    spec: &CredentialSpec,
    resolutions: &Resolutions,
) -> (BTreeSet<Ipv4Addr>, Option<SourceFacts>) {
    if spec.sources.is_empty() {
        return (spec.ips.clone(), None);
    }
    let mut desired = spec.ips.clone();
    let mut facts = SourceFacts::default();
    for source in &spec.sources {
        match resolutions.get(source) {
            Some(Ok(resolved)) => {
                for ip in &resolved.addresses {
                    if desired.insert(*ip) {
                        facts.provenance.insert(*ip, source.to_string());
                    }
                }
            }
            Some(Err(error)) => facts.failed.push(FailedSource {
                source: source.to_string(),
                error: error.to_string(),
            }),
            // Not resolved at all (cannot happen for a run's own resolutions): fail closed.
            None => facts.failed.push(FailedSource {
                source: source.to_string(),
                error: "not resolved in this run".to_owned(),
            }),
        }
    }
    (desired, Some(facts))
}

/// What every source yielded, for the plan's `sources` list.
pub fn source_reports(resolutions: &Resolutions) -> Vec<SourceReport> {
    resolutions
        .iter()
        .map(|(source, result)| match result {
            Ok(resolved) => SourceReport {
                source: source.to_string(),
                addresses: resolved.addresses.clone(),
                error: None,
                ttl_secs: resolved.ttl.map(|ttl| ttl.as_secs()),
            },
            Err(error) => SourceReport {
                source: source.to_string(),
                addresses: BTreeSet::new(),
                error: Some(error.to_string()),
                ttl_secs: None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::sources::{Resolved, Source, SourceError};

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    /// A resolution without TTL that yielded `ips`.
    fn yielded(ips: &[&str]) -> Result<Resolved, SourceError> {
        Ok(Resolved::without_ttl(
            ips.iter().map(|text| ip(text)).collect(),
        ))
    }

    fn spec(sources: Vec<Source>) -> CredentialSpec {
        CredentialSpec {
            id: 1,
            name: None,
            ips: [ip("203.0.113.10")].into(),
            sources,
            policy: Policy::Sync,
            protected: BTreeSet::new(),
            allow_empty: false,
        }
    }

    #[test]
    fn sources_widen_the_static_set_and_name_where_each_new_ip_came_from() {
        let home = Source::Dns("home.example".into());
        let nat = Source::File("/etc/nat.txt".into());
        let resolutions = Resolutions::from([
            (home.clone(), yielded(&["203.0.113.10", "198.51.100.7"])),
            (nat.clone(), yielded(&["198.51.100.7", "192.0.2.1"])),
        ]);
        let (desired, facts) = desired_of(&spec(vec![home, nat]), &resolutions);
        assert_eq!(
            desired,
            [ip("192.0.2.1"), ip("198.51.100.7"), ip("203.0.113.10")].into()
        );
        let facts = facts.unwrap();
        assert!(facts.failed.is_empty());
        assert_eq!(
            facts.provenance,
            [
                (ip("198.51.100.7"), "dns:home.example".to_owned()),
                (ip("192.0.2.1"), "file:/etc/nat.txt".to_owned()),
            ]
            .into(),
            "a static item has no source; an IP two sources yield names the first"
        );
    }

    #[test]
    fn a_failed_source_is_listed_and_the_others_still_count() {
        let home = Source::Dns("home.example".into());
        let gone = Source::Dns("gone.example".into());
        let resolutions = Resolutions::from([
            (home.clone(), yielded(&["198.51.100.7"])),
            (gone.clone(), Err(SourceError::NxDomain)),
        ]);
        let (desired, facts) = desired_of(&spec(vec![home, gone]), &resolutions);
        assert!(desired.contains(&ip("198.51.100.7")));
        assert_eq!(
            facts.unwrap().failed,
            vec![FailedSource {
                source: "dns:gone.example".into(),
                error: "NXDOMAIN (the name does not exist)".into()
            }]
        );
    }

    #[test]
    fn a_credential_without_sources_keeps_its_static_set_and_no_facts() {
        let (desired, facts) = desired_of(&spec(Vec::new()), &Resolutions::new());
        assert_eq!(desired, [ip("203.0.113.10")].into());
        assert_eq!(facts, None);
    }
}
