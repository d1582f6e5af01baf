//! [`SourceResolver`]: resolves sources, each distinct one once per call, all at the same time.
//!
//! A run resolves every source of the config before it plans; what each yielded (or why it
//! failed) is a [`Resolutions`] map the planner reads. Resolution never touches bunq.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::OnceCell;

use super::dns::DnsLookup;
use super::fetch::{fetch_url, http_client, read_file};
use super::{Resolved, Source, SourceError, SourceSettings};

/// What each source yielded in one resolution, by source.
pub type Resolutions = BTreeMap<Source, Result<Resolved, SourceError>>;

/// Resolves DNS, file and URL sources under one [`SourceSettings`].
pub struct SourceResolver {
    settings: SourceSettings,
    /// Built on the first DNS source: a config without one must not need a readable
    /// /etc/resolv.conf.
    dns: OnceCell<Result<DnsLookup, String>>,
    http: OnceCell<Result<reqwest::Client, String>>,
}

impl std::fmt::Debug for SourceResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceResolver")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SourceResolver {
    /// A resolver; nothing is built or contacted until a source needs it.
    pub fn new(settings: SourceSettings) -> SourceResolver {
        SourceResolver {
            settings,
            dns: OnceCell::new(),
            http: OnceCell::new(),
        }
    }

    /// The settings it resolves under.
    pub fn settings(&self) -> &SourceSettings {
        &self.settings
    }

    /// Resolves one source.
    pub async fn resolve(&self, source: &Source) -> Result<Resolved, SourceError> {
        match source {
            Source::Dns(name) => {
                let dns = self
                    .dns
                    .get_or_init(|| async { DnsLookup::new(&self.settings) })
                    .await;
                match dns {
                    Ok(dns) => dns.lookup(name).await,
                    Err(reason) => Err(SourceError::Dns(reason.clone())),
                }
            }
            Source::File(path) => read_file(path, &self.settings).await,
            Source::Url(url) => {
                let http = self
                    .http
                    .get_or_init(|| async { http_client(self.settings.url_timeout) })
                    .await;
                match http {
                    Ok(client) => fetch_url(client, url, &self.settings).await,
                    Err(reason) => Err(SourceError::Transport(reason.clone())),
                }
            }
        }
    }

    /// Resolves every distinct source of `sources` once, concurrently.
    pub async fn resolve_all<'a>(
        &self,
        sources: impl IntoIterator<Item = &'a Source>,
    ) -> Resolutions {
        let distinct: BTreeSet<&Source> = sources.into_iter().collect();
        let lookups = distinct.into_iter().map(|source| async move {
            let result = self.resolve(source).await;
            (source.clone(), result)
        });
        futures_util::future::join_all(lookups)
            .await
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::simulator::{DnsAnswer, DnsServer};

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn resolver_for(dns: &DnsServer) -> SourceResolver {
        SourceResolver::new(SourceSettings {
            nameservers: Some(vec![dns.address()]),
            dns_timeout: Duration::from_millis(300),
            url_timeout: Duration::from_secs(2),
            max_addresses: 4,
            ..SourceSettings::default()
        })
    }

    fn dns(name: &str) -> Source {
        Source::Dns(name.to_owned())
    }

    #[tokio::test]
    async fn a_name_yields_its_a_records_and_the_smallest_ttl() {
        let server = DnsServer::start().await.unwrap();
        server.set(
            "home.example.org",
            DnsAnswer::a(&[ip("203.0.113.10"), ip("203.0.113.11")], 30),
        );
        let resolved = resolver_for(&server)
            .resolve(&dns("home.example.org"))
            .await
            .unwrap();
        assert_eq!(
            resolved.addresses,
            [ip("203.0.113.10"), ip("203.0.113.11")].into()
        );
        assert_eq!(resolved.ttl, Some(Duration::from_secs(30)));
    }

    #[tokio::test]
    async fn every_dns_failure_is_named_as_dig_would() {
        let server = DnsServer::start().await.unwrap();
        server.set("servfail.example", DnsAnswer::ServFail);
        server.set("refused.example", DnsAnswer::Refused);
        server.set("empty.example", DnsAnswer::Empty);
        server.set("silent.example", DnsAnswer::Silent);
        server.set(
            "many.example",
            DnsAnswer::a(
                &(1..=5)
                    .map(|i| Ipv4Addr::new(192, 0, 2, i))
                    .collect::<Vec<_>>(),
                60,
            ),
        );
        let resolver = resolver_for(&server);
        let failure = |name: &'static str| {
            let resolver = &resolver;
            async move { resolver.resolve(&dns(name)).await.unwrap_err() }
        };
        assert_eq!(failure("missing.example").await, SourceError::NxDomain);
        assert_eq!(failure("servfail.example").await, SourceError::ServFail);
        assert_eq!(failure("refused.example").await, SourceError::Refused);
        assert!(matches!(
            failure("empty.example").await,
            SourceError::NoAddresses(_)
        ));
        assert_eq!(
            failure("silent.example").await,
            SourceError::Timeout(Duration::from_millis(300))
        );
        assert_eq!(
            failure("many.example").await,
            SourceError::TooMany { count: 5, max: 4 }
        );
    }

    #[tokio::test]
    async fn a_source_named_twice_is_resolved_once_per_call() {
        let server = DnsServer::start().await.unwrap();
        server.set("shared.example", DnsAnswer::a(&[ip("198.51.100.1")], 60));
        let resolver = resolver_for(&server);
        let (first, second) = (dns("shared.example"), dns("shared.example"));
        let resolutions = resolver.resolve_all([&first, &second]).await;
        assert_eq!(resolutions.len(), 1);
        assert_eq!(server.queries("shared.example"), 1);
        resolver.resolve_all([&first]).await;
        assert_eq!(
            server.queries("shared.example"),
            2,
            "nothing is cached between calls"
        );
    }

    #[tokio::test]
    async fn a_file_is_read_line_by_line_and_a_bad_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nat.txt");
        std::fs::write(&path, "# egress\n203.0.113.10\n").unwrap();
        let resolver = SourceResolver::new(SourceSettings::default());
        let source = Source::File(path.clone());
        assert_eq!(
            resolver.resolve(&source).await.unwrap().addresses,
            [ip("203.0.113.10")].into()
        );
        std::fs::write(&path, "203.0.113.10\nnot an address\n").unwrap();
        assert!(matches!(
            resolver.resolve(&source).await,
            Err(SourceError::BadLine { line: 2, .. })
        ));
        let missing = Source::File(dir.path().join("missing.txt"));
        assert!(matches!(
            resolver.resolve(&missing).await,
            Err(SourceError::Unreadable(_))
        ));
    }

    #[tokio::test]
    async fn a_url_body_is_text_or_a_json_array_and_anything_but_2xx_fails() {
        let mut server = mockito::Server::new_async().await;
        let text = server
            .mock("GET", "/text")
            .match_header("x-bunq-client-authentication", mockito::Matcher::Missing)
            .match_header("authorization", mockito::Matcher::Missing)
            .with_body("203.0.113.10\n# c\n203.0.113.11\n")
            .create_async()
            .await;
        server
            .mock("GET", "/json")
            .with_body(r#"["198.51.100.7"]"#)
            .create_async()
            .await;
        server
            .mock("GET", "/broken")
            .with_status(500)
            .with_body("203.0.113.99")
            .create_async()
            .await;
        server
            .mock("GET", "/moved")
            .with_status(302)
            .with_header("location", "/json")
            .create_async()
            .await;
        let resolver = SourceResolver::new(SourceSettings::default());
        let url = |path: &str| {
            Source::Url(reqwest::Url::parse(&format!("{}{path}", server.url())).unwrap())
        };
        assert_eq!(
            resolver.resolve(&url("/text")).await.unwrap().addresses,
            [ip("203.0.113.10"), ip("203.0.113.11")].into()
        );
        text.assert_async().await;
        assert_eq!(
            resolver.resolve(&url("/json")).await.unwrap().addresses,
            [ip("198.51.100.7")].into()
        );
        assert_eq!(
            resolver.resolve(&url("/broken")).await,
            Err(SourceError::HttpStatus(500))
        );
        assert_eq!(
            resolver.resolve(&url("/moved")).await,
            Err(SourceError::HttpStatus(302)),
            "redirects are not followed"
        );
    }

    #[tokio::test]
    async fn a_url_error_never_carries_the_url() {
        let resolver = SourceResolver::new(SourceSettings::default());
        // A closed loopback port: the connect fails at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let source = Source::Url(
            reqwest::Url::parse(&format!("http://127.0.0.1:{port}/ips?token=s3cr3t")).unwrap(),
        );
        let err = resolver.resolve(&source).await.unwrap_err();
        assert!(matches!(err, SourceError::Transport(_)), "{err:?}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }
}
