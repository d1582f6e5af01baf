//! Where the bunq API lives: the two public environments and validated base URLs.
//!
//! A [`BaseUrl`] is the only way the client learns a host. It refuses plain `http://` unless the
//! host is loopback (`127.0.0.0/8`, `::1`, `localhost`): API keys, tokens and signed bodies must
//! never cross a network in clear text, but the tests and the in-process simulator listen on
//! loopback without TLS. It also resolves bunq's pagination links, and refuses links that point
//! at another origin or outside the API path, so a session token is only ever sent to the base
//! URL's origin.

use std::fmt;
use std::net::IpAddr;

use reqwest::Url;

use crate::bunq::error::BunqError;

/// bunq's production API.
pub const PRODUCTION_URL: &str = "https://api.bunq.com/v1";
/// bunq's public sandbox API.
pub const SANDBOX_URL: &str = "https://public-api.sandbox.bunq.com/v1";

/// The two environments bunq runs. API keys only work in their own environment.
///
/// The one environment type of the crate: the config's `bunq.environment` is validated into it,
/// and it owns the URLs, so no other layer spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Environment {
    /// Real money: [`PRODUCTION_URL`].
    Production,
    /// bunq's public sandbox (keys start with `sandbox_`): [`SANDBOX_URL`].
    Sandbox,
}

impl Environment {
    /// The environment's API base URL.
    pub fn base_url(self) -> BaseUrl {
        match BaseUrl::parse(self.url()) {
            Ok(base) => base,
            Err(err) => unreachable!("the built-in base URLs are valid https URLs: {err}"),
        }
    }

    /// The config spelling (`bunq.environment`).
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Sandbox => "sandbox",
        }
    }

    /// The environment named by its config spelling, if any.
    pub fn from_config_str(text: &str) -> Option<Environment> {
        match text {
            "production" => Some(Environment::Production),
            "sandbox" => Some(Environment::Sandbox),
            _ => None,
        }
    }

    fn url(self) -> &'static str {
        match self {
            Environment::Production => PRODUCTION_URL,
            Environment::Sandbox => SANDBOX_URL,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated API base URL such as `https://api.bunq.com/v1`, kept without a trailing slash.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl {
    url: Url,
}

impl BaseUrl {
    /// Parses and validates a base URL: `https`, or `http` to a loopback host only; a host; no
    /// user info, query or fragment. The one rule for every base URL, the config's
    /// `bunq.base_url` included: the reason in the error is what the operator reads.
    pub fn parse(text: &str) -> Result<Self, BunqError> {
        let refuse = |reason: String| BunqError::BaseUrl {
            url: text.to_owned(),
            reason,
        };
        let mut url =
            Url::parse(text.trim()).map_err(|err| refuse(format!("not a URL ({err})")))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&url) => {}
            "http" => {
                return Err(refuse(
                    "plain http is only allowed to a loopback address; the API key and session \
                     token would cross the network unencrypted"
                        .to_owned(),
                ));
            }
            other => {
                return Err(refuse(format!(
                    "scheme {other:?} is not supported; use https"
                )));
            }
        }
        if url.cannot_be_a_base() || url.host().is_none() {
            return Err(refuse("the URL has no host".to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse(
                "a base URL takes no user name or password (the API key authenticates)".to_owned(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(refuse("a base URL takes no query or fragment".to_owned()));
        }
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&trimmed);
        Ok(BaseUrl { url })
    }

    /// The production base URL.
    pub fn production() -> Self {
        Environment::Production.base_url()
    }

    /// The sandbox base URL.
    pub fn sandbox() -> Self {
        Environment::Sandbox.base_url()
    }

    /// The URL text without a trailing slash, e.g. `https://api.bunq.com/v1`.
    pub fn as_str(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }

    /// Whether the host is loopback (tests, simulator).
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.url)
    }

    /// The absolute URL of an API path such as `/installation` or `/user/1/x?count=200`.
    pub fn join(&self, path_and_query: &str) -> Result<Url, BunqError> {
        let text = format!(
            "{}/{}",
            self.as_str(),
            path_and_query.trim_start_matches('/')
        );
        Url::parse(&text).map_err(|err| BunqError::BaseUrl {
            url: self.as_str().to_owned(),
            reason: format!("cannot append an API path: {err}"),
        })
    }

    /// Turns a pagination link (`/v1/user/1/...?older_id=5`, or an absolute URL of the same
    /// origin) into an API path relative to this base (`/user/1/...?older_id=5`).
    ///
    /// A link to another origin, or outside the base path, is a protocol error: following it
    /// would send the session token somewhere else.
    pub fn relative_path_of_link(&self, link: &str) -> Result<String, BunqError> {
        let refuse = |reason: &str| BunqError::Protocol {
            endpoint: "pagination".to_owned(),
            message: format!("refusing pagination link {link:?}: {reason}"),
        };
        let resolved = self
            .url
            .join(link)
            .map_err(|err| refuse(&err.to_string()))?;
        if resolved.origin() != self.url.origin() {
            return Err(refuse("it points at another origin"));
        }
        let base_path = self.url.path().trim_end_matches('/');
        let path = resolved.path();
        let rest = path
            .strip_prefix(base_path)
            .filter(|rest| rest.starts_with('/'))
            .ok_or_else(|| refuse("it is outside the API base path"))?;
        Ok(match resolved.query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        })
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseUrl({})", self.as_str())
    }
}

impl std::str::FromStr for BaseUrl {
    type Err = BunqError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        BaseUrl::parse(text)
    }
}

/// True for `localhost` and loopback IP hosts: the only hosts plain http may go to (bunq.base_url,
/// URL sources), because nothing on the way can read or change what is sent.
pub(crate) fn is_loopback_host(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_environments_use_https_and_no_base_url_keeps_a_trailing_slash() {
        let parsed = BaseUrl::parse("https://example.test/v1/").unwrap();
        for (base, text) in [
            (BaseUrl::production(), "https://api.bunq.com/v1"),
            (BaseUrl::sandbox(), "https://public-api.sandbox.bunq.com/v1"),
            (parsed, "https://example.test/v1"),
        ] {
            assert_eq!(base.as_str(), text);
        }
    }

    #[test]
    fn plain_http_to_a_remote_host_other_schemes_userinfo_and_query_are_refused() {
        for text in [
            "http://api.bunq.com/v1",
            "http://10.0.0.1:8080/v1",
            "http://128.0.0.1/v1",
            "ftp://api.bunq.com/v1",
            "https://user:pw@api.bunq.com/v1",
            "https://api.bunq.com/v1?x=1",
            "not a url",
        ] {
            let err = BaseUrl::parse(text).unwrap_err();
            assert!(matches!(err, BunqError::BaseUrl { .. }), "{text}: {err}");
        }
    }

    #[test]
    fn plain_http_to_loopback_is_allowed() {
        for text in [
            "http://127.0.0.1:1234/v1",
            "http://127.8.9.10/v1",
            "http://[::1]:99/v1",
            "http://localhost:8080/v1",
        ] {
            let base = BaseUrl::parse(text).unwrap();
            assert!(base.is_loopback(), "{text}");
        }
    }

    #[test]
    fn join_appends_path_and_query() {
        let base = BaseUrl::parse("http://127.0.0.1:9/v1").unwrap();
        assert_eq!(
            base.join("/user/1/credential-password-ip?count=200")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/v1/user/1/credential-password-ip?count=200"
        );
    }

    #[test]
    fn relative_pagination_link_becomes_api_path() {
        let base = BaseUrl::parse("https://api.bunq.com/v1").unwrap();
        assert_eq!(
            base.relative_path_of_link(
                "/v1/user/7/credential-password-ip/3/ip?count=200&older_id=5"
            )
            .unwrap(),
            "/user/7/credential-password-ip/3/ip?count=200&older_id=5"
        );
    }

    #[test]
    fn escaped_slash_links_from_real_bunq_resolve() {
        // bunq escapes slashes in JSON; after JSON decoding the link is a normal path.
        let link: String = serde_json::from_str(r#""\/v1\/user\/7\/x?older_id=1""#).unwrap();
        let base = BaseUrl::parse("https://api.bunq.com/v1").unwrap();
        assert_eq!(
            base.relative_path_of_link(&link).unwrap(),
            "/user/7/x?older_id=1"
        );
    }

    #[test]
    fn absolute_link_of_the_same_origin_is_accepted() {
        let base = BaseUrl::parse("http://127.0.0.1:9/v1").unwrap();
        assert_eq!(
            base.relative_path_of_link("http://127.0.0.1:9/v1/user/1/x?older_id=2")
                .unwrap(),
            "/user/1/x?older_id=2"
        );
    }

    #[test]
    fn link_to_another_origin_or_outside_the_base_path_is_refused() {
        let base = BaseUrl::parse("https://api.bunq.com/v1").unwrap();
        for link in [
            "https://evil.example/v1/user/1/x",
            "http://api.bunq.com/v1/user/1/x",
            "/v2/user/1/x",
            "/v1x/user",
        ] {
            let err = base.relative_path_of_link(link).unwrap_err();
            assert!(matches!(err, BunqError::Protocol { .. }), "{link}: {err}");
        }
    }
}
