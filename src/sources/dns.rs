//! DNS sources: the A records of a name, asked of the configured nameservers (or the system's),
//! with the answer's TTL so the daemon can ask again when it runs out.
//!
//! The resolver keeps no cache: the daemon decides when to ask again (the TTL, floored at
//! `sources.min_refresh`), and a cached negative answer would hide a name that came back. Hosts
//! files are not consulted: a desired state must come from DNS, the same on every machine.

use std::collections::BTreeSet;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

use super::{Resolved, SourceError, SourceSettings, within_cap};

/// Asks nameservers for A records.
pub(super) struct DnsLookup {
    resolver: TokioResolver,
    timeout: Duration,
    max_addresses: u32,
}

impl DnsLookup {
    /// A resolver for `settings`: its nameservers (UDP, then TCP for truncated answers), else
    /// the system configuration. Fails when no nameserver is configured and the system
    /// configuration cannot be read.
    pub(super) fn new(settings: &SourceSettings) -> Result<DnsLookup, String> {
        let mut builder = match &settings.nameservers {
            Some(servers) => {
                let mut config = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
                for server in servers {
                    let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
                    for connection in &mut name_server.connections {
                        connection.port = server.port();
                    }
                    config.add_name_server(name_server);
                }
                Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            }
            None => Resolver::builder_tokio()
                .map_err(|err| format!("cannot read the system resolver configuration: {err}"))?,
        };
        let options = builder.options_mut();
        options.timeout = settings.dns_timeout;
        options.attempts = 1;
        options.cache_size = 0;
        options.use_hosts_file = ResolveHosts::Never;
        // Names are written in full in the config: no search domains.
        options.ndots = 0;
        let resolver = builder
            .build()
            .map_err(|err| format!("cannot build the DNS resolver: {err}"))?;
        Ok(DnsLookup {
            resolver,
            timeout: settings.dns_timeout,
            max_addresses: settings.max_addresses,
        })
    }

    /// The A records of `name`. An empty answer, NXDOMAIN, SERVFAIL, REFUSED and a timeout all
    /// fail the source.
    pub(super) async fn lookup(&self, name: &str) -> Result<Resolved, SourceError> {
        // The resolver has its own per-query timeout; this bounds the whole lookup (several
        // nameservers, a TCP retry) to what the operator configured, plus a little.
        let bound = self.timeout * 2 + Duration::from_millis(500);
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let lookup = match tokio::time::timeout(bound, self.resolver.ipv4_lookup(fqdn)).await {
            Err(_) => return Err(SourceError::Timeout(self.timeout)),
            Ok(Err(err)) => return Err(classify(&err, self.timeout)),
            Ok(Ok(lookup)) => lookup,
        };
        let mut addresses = BTreeSet::new();
        let mut ttl: Option<u32> = None;
        for record in lookup.answers() {
            if let RData::A(a) = &record.data {
                addresses.insert(a.0);
                ttl = Some(ttl.map_or(record.ttl, |least| least.min(record.ttl)));
            }
        }
        if addresses.is_empty() {
            return Err(SourceError::NoAddresses("the answer holds no A record"));
        }
        Ok(Resolved {
            addresses: within_cap(addresses, self.max_addresses)?,
            ttl: ttl.map(|secs| Duration::from_secs(u64::from(secs))),
        })
    }
}

/// Names the failure the way an operator reads it in `dig`.
fn classify(err: &NetError, timeout: Duration) -> SourceError {
    match err {
        NetError::Timeout => SourceError::Timeout(timeout),
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => match no_records.response_code {
            ResponseCode::NXDomain => SourceError::NxDomain,
            ResponseCode::NoError => SourceError::NoAddresses("the answer holds no A record"),
            other => rcode(other),
        },
        NetError::Dns(DnsError::ResponseCode(code)) => rcode(*code),
        other => {
            let text = other.to_string();
            if text.contains("timed out") {
                SourceError::Timeout(timeout)
            } else {
                SourceError::Dns(text)
            }
        }
    }
}

fn rcode(code: ResponseCode) -> SourceError {
    match code {
        ResponseCode::NXDomain => SourceError::NxDomain,
        ResponseCode::ServFail => SourceError::ServFail,
        ResponseCode::Refused => SourceError::Refused,
        other => SourceError::Dns(format!("response code {other}")),
    }
}
