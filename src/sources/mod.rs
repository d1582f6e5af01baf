//! Dynamic sources of desired IPs: DNS names, files and URLs (`ips: - dns: …`, `- file: …`,
//! `- url: …`), resolved before every run and followed between runs.
//!
//! * [`Source`]: what a source is, how it is named in plans and logs (never with a secret).
//! * [`SourceSettings`]: nameservers, timeouts and caps, validated once by the config.
//! * [`SourceError`]: every way a source can fail; a failed source never causes a deactivation.
//! * [`resolve`]: [`SourceResolver`], resolving each distinct source once.
//! * `body`: the text and JSON bodies of files and URLs, under the config's address rules.
//! * `dns`: A lookups with the answer's TTL.
//! * `fetch`: reading files and fetching URLs.

mod body;
mod dns;
mod fetch;
pub mod resolve;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use resolve::{Resolutions, SourceResolver};

/// Default of `sources.dns.timeout`: per query.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);
/// Default of `sources.url.timeout`: per fetch.
pub const DEFAULT_URL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `sources.max_addresses`: most addresses one source may yield (CIDRs expanded).
pub const DEFAULT_MAX_ADDRESSES: u32 = 32;
/// Default of `sources.min_refresh`: the shortest re-resolution period.
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(5);
/// The least `sources.min_refresh` may be: a name with TTL 0 must not be asked in a loop.
pub const MIN_REFRESH_FLOOR: Duration = Duration::from_secs(1);
/// How often a URL source is fetched again at the most: `max(min_refresh, this)`.
pub const URL_REFRESH_FLOOR: Duration = Duration::from_secs(60);

/// Where desired IPs come from. Ordered and comparable by the full value, so the same source
/// named by several credentials is resolved once per run.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The A records of a name (bunq is IPv4 only), lower case, without a trailing dot.
    Dns(String),
    /// One IPv4 address or CIDR per line; blank lines and `#` comments allowed.
    File(PathBuf),
    /// A text body (as a file) or a JSON array of strings; https, plain http only to loopback.
    Url(reqwest::Url),
}

impl Source {
    /// Every [`Source::kind`] (for pre-initialising the source failure series at 0).
    pub const KINDS: [&'static str; 3] = ["dns", "file", "url"];

    /// `dns`, `file` or `url`: the config key, and the `kind` label of source metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Dns(_) => "dns",
            Source::File(_) => "file",
            Source::Url(_) => "url",
        }
    }
}

/// `dns:home.example.org`, `file:/etc/…`, `url:https://host/path`: how plans, logs and errors
/// name a source. A URL may carry a token in its userinfo, path or query, so those are cut:
/// the userinfo is dropped, the query becomes `?…`, and only the first path segment is kept.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Dns(name) => write!(f, "dns:{name}"),
            Source::File(path) => write!(f, "file:{}", path.display()),
            Source::Url(url) => write!(f, "url:{}", redacted_url(url)),
        }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

fn redacted_url(url: &reqwest::Url) -> String {
    let mut text = crate::secret::printable_origin(url);
    let mut segments = url.path_segments().into_iter().flatten();
    if let Some(first) = segments.next() {
        text.push('/');
        text.push_str(first);
        if segments.next().is_some() {
            text.push_str("/…");
        }
    }
    if url.query().is_some() {
        text.push_str("?…");
    }
    text
}

/// How sources are resolved: the `sources` section, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSettings {
    /// Nameservers to ask; `None` uses the system resolver configuration (/etc/resolv.conf).
    pub nameservers: Option<Vec<SocketAddr>>,
    /// Per DNS query.
    pub dns_timeout: Duration,
    /// Per URL fetch (connect, request and body).
    pub url_timeout: Duration,
    /// Most addresses one source may yield, CIDRs expanded.
    pub max_addresses: u32,
    /// Shortest re-resolution period.
    pub min_refresh: Duration,
    /// The cap on one CIDR of a file or URL body (`sync.max_cidr_addresses`), as for static
    /// items.
    pub max_cidr_addresses: u32,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            nameservers: None,
            dns_timeout: DEFAULT_DNS_TIMEOUT,
            url_timeout: DEFAULT_URL_TIMEOUT,
            max_addresses: DEFAULT_MAX_ADDRESSES,
            min_refresh: DEFAULT_MIN_REFRESH,
            max_cidr_addresses: crate::address::DEFAULT_MAX_CIDR_ADDRESSES,
        }
    }
}

impl SourceSettings {
    /// How long after a resolution the source is resolved again when nothing else wakes it:
    /// a DNS answer's TTL (never below `min_refresh`), a URL every `max(min_refresh, 60 s)`.
    /// Files are watched instead and are not polled (`None`).
    pub fn refresh_after(&self, source: &Source, ttl: Option<Duration>) -> Option<Duration> {
        match source {
            Source::Dns(_) => Some(ttl.unwrap_or(self.min_refresh).max(self.min_refresh)),
            Source::Url(_) => Some(self.min_refresh.max(URL_REFRESH_FLOOR)),
            Source::File(_) => None,
        }
    }
}

/// What a source yielded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Every address, CIDRs expanded.
    pub addresses: BTreeSet<Ipv4Addr>,
    /// The DNS answer's TTL (the smallest of its A records); `None` for files and URLs.
    pub ttl: Option<Duration>,
}

impl Resolved {
    /// What a source without a TTL (a file, a URL) yielded: `addresses`.
    pub fn without_ttl(addresses: BTreeSet<Ipv4Addr>) -> Resolved {
        Resolved {
            addresses,
            ttl: None,
        }
    }
}

/// Why a source yielded nothing usable. The message never holds a URL's secret parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// No answer within the timeout.
    #[error("timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The name does not exist.
    #[error("NXDOMAIN (the name does not exist)")]
    NxDomain,
    /// The nameserver failed to answer.
    #[error("SERVFAIL (the nameserver could not answer)")]
    ServFail,
    /// The nameserver refused to answer.
    #[error("REFUSED (the nameserver refused the query)")]
    Refused,
    /// Another DNS failure.
    #[error("DNS error: {0}")]
    Dns(String),
    /// The answer, file or body held no address.
    #[error("no addresses ({0})")]
    NoAddresses(&'static str),
    /// A file that cannot be read.
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    /// A line (of a file or a text body) or an item (of a JSON body) that is not an address.
    #[error("line {line}: {message}")]
    BadLine {
        /// 1-based line number, or item number in a JSON array.
        line: usize,
        /// What is wrong, as the config would say it.
        message: String,
    },
    /// A URL answered with a status other than 2xx.
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    /// A body that is neither text lines nor a JSON array of strings.
    #[error("unreadable body: {0}")]
    BadBody(String),
    /// More addresses than `sources.max_addresses`.
    #[error("{count} addresses, more than sources.max_addresses ({max})")]
    TooMany {
        /// How many the source yielded.
        count: usize,
        /// The cap.
        max: u32,
    },
    /// The fetch failed on the way (connect, TLS, reading the body).
    #[error("{0}")]
    Transport(String),
}

impl SourceError {
    /// Every [`SourceError::reason`] (for pre-initialising the source failure series at 0).
    pub const REASONS: [&'static str; 12] = [
        "timeout",
        "nxdomain",
        "servfail",
        "refused",
        "dns",
        "no_addresses",
        "unreadable",
        "bad_line",
        "http_status",
        "bad_body",
        "too_many",
        "transport",
    ];

    /// A short, stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::Timeout(_) => "timeout",
            SourceError::NxDomain => "nxdomain",
            SourceError::ServFail => "servfail",
            SourceError::Refused => "refused",
            SourceError::Dns(_) => "dns",
            SourceError::NoAddresses(_) => "no_addresses",
            SourceError::Unreadable(_) => "unreadable",
            SourceError::BadLine { .. } => "bad_line",
            SourceError::HttpStatus(_) => "http_status",
            SourceError::BadBody(_) => "bad_body",
            SourceError::TooMany { .. } => "too_many",
            SourceError::Transport(_) => "transport",
        }
    }
}

/// Checks the cap on one source's addresses.
fn within_cap(addresses: BTreeSet<Ipv4Addr>, max: u32) -> Result<BTreeSet<Ipv4Addr>, SourceError> {
    if addresses.len() > max as usize {
        return Err(SourceError::TooMany {
            count: addresses.len(),
            max,
        });
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Source {
        Source::Url(reqwest::Url::parse(text).unwrap())
    }

    #[test]
    fn reasons_and_kinds_list_every_label() {
        let every_error = [
            SourceError::Timeout(Duration::from_secs(1)),
            SourceError::NxDomain,
            SourceError::ServFail,
            SourceError::Refused,
            SourceError::Dns(String::new()),
            SourceError::NoAddresses("answer"),
            SourceError::Unreadable(String::new()),
            SourceError::BadLine {
                line: 1,
                message: String::new(),
            },
            SourceError::HttpStatus(500),
            SourceError::BadBody(String::new()),
            SourceError::TooMany { count: 2, max: 1 },
            SourceError::Transport(String::new()),
        ];
        let reasons: Vec<_> = every_error.iter().map(SourceError::reason).collect();
        assert_eq!(reasons, SourceError::REASONS);
        let kinds = [
            Source::Dns("a.example".into()),
            Source::File("/x".into()),
            url("https://a.example/"),
        ]
        .map(|s| s.kind());
        assert_eq!(kinds, Source::KINDS);
    }

    #[test]
    fn a_url_is_named_without_userinfo_query_or_deeper_path() {
        assert_eq!(
            url("https://user:pw@ops.example.com/egress").to_string(),
            "url:https://ops.example.com/egress"
        );
        assert_eq!(
            url("https://hooks.example.com/T000/B000/XXXX?token=abc").to_string(),
            "url:https://hooks.example.com/T000/…?…"
        );
        assert_eq!(
            url("http://127.0.0.1:8080/ips").to_string(),
            "url:http://127.0.0.1:8080/ips"
        );
        let debug = format!("{:?}", url("https://h.example/a/secret-path?key=s3cr3t"));
        assert!(
            !debug.contains("secret-path") && !debug.contains("s3cr3t"),
            "{debug}"
        );
    }

    #[test]
    fn dns_and_file_sources_are_named_by_kind_and_value() {
        assert_eq!(
            Source::Dns("home.example.org".into()).to_string(),
            "dns:home.example.org"
        );
        assert_eq!(
            Source::File("/etc/bunq-ipsync/nat.txt".into()).to_string(),
            "file:/etc/bunq-ipsync/nat.txt"
        );
    }

    #[test]
    fn refresh_follows_the_ttl_but_never_faster_than_min_refresh() {
        let settings = SourceSettings::default();
        let dns = Source::Dns("a.example".into());
        let refresh = |ttl| settings.refresh_after(&dns, ttl);
        assert_eq!(
            refresh(Some(Duration::from_secs(300))),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            refresh(Some(Duration::from_secs(1))),
            Some(Duration::from_secs(5))
        );
        assert_eq!(refresh(None), Some(Duration::from_secs(5)));
        assert_eq!(
            settings.refresh_after(&url("https://a.example/x"), None),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            settings.refresh_after(&Source::File("/x".into()), None),
            None
        );
    }

    #[test]
    fn more_addresses_than_the_cap_fail_the_source() {
        let three: BTreeSet<Ipv4Addr> = (1..=3).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
        assert_eq!(within_cap(three.clone(), 3), Ok(three.clone()));
        assert_eq!(
            within_cap(three, 2),
            Err(SourceError::TooMany { count: 3, max: 2 })
        );
    }
}
