//! [`SecretUrl`]: a webhook or heartbeat URL, which carries its token in the path (Slack's
//! `/services/T…/B…/X…`, healthchecks' `/<uuid>`) and so is a secret like the API key.
//!
//! It prints as its origin only (`https://hooks.slack.com/…`), in `Debug` and `Display` alike,
//! so an error, a log line or a `{:?}` can name the target without leaking it. The full URL is
//! read with [`SecretUrl::expose`], in the one place that sends.

use crate::secret::{Secret, printable_origin};

/// A URL whose path and query are secret. Only `https`, or `http` to loopback, gets here
/// (config validation decides).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl {
    /// The whole URL, zeroized on drop.
    full: Secret,
    /// `scheme://host[:port]`, which is what logs and errors may show.
    origin: String,
}

impl SecretUrl {
    /// Wraps a parsed URL; the caller's copy should be dropped.
    pub fn new(url: reqwest::Url) -> SecretUrl {
        let origin = printable_origin(&url);
        SecretUrl {
            full: Secret::new(String::from(url)),
            origin,
        }
    }

    /// The full URL, for the one place that sends a request to it.
    pub fn expose(&self) -> &str {
        self.full.expose()
    }

    /// `scheme://host[:port]`, safe to print.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// This URL with `segment` appended to its path (`<url>/fail`), query kept: the
    /// healthchecks.io and Uptime Kuma convention for the other pings of one check.
    pub fn with_segment(&self, segment: &str) -> SecretUrl {
        let Ok(mut url) = reqwest::Url::parse(self.expose()) else {
            return self.clone();
        };
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push(segment);
        }
        SecretUrl::new(url)
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/…", self.origin)
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use crate::notify::testing::secret_url as url;

    #[test]
    fn prints_only_scheme_and_host() {
        let slack = url("https://hooks.slack.com/services/T000/B000/XXXXTOKEN");
        let printed = format!("{slack} {slack:?} {:?}", Some(&slack));
        assert!(!printed.contains("XXXXTOKEN"), "{printed}");
        assert!(!printed.contains("services"), "{printed}");
        assert_eq!(slack.to_string(), "https://hooks.slack.com/…");
        assert_eq!(
            slack.expose(),
            "https://hooks.slack.com/services/T000/B000/XXXXTOKEN"
        );
    }

    #[test]
    fn segments_are_appended_to_the_path_before_the_query() {
        let check = url("https://hc-ping.com/abc-uuid/");
        assert_eq!(
            check.with_segment("fail").expose(),
            "https://hc-ping.com/abc-uuid/fail"
        );
        let kuma = url("https://kuma.example/api/push/TOKEN?status=up");
        assert_eq!(
            kuma.with_segment("start").expose(),
            "https://kuma.example/api/push/TOKEN/start?status=up"
        );
    }
}
