//! The one type that holds secrets: API keys, installation and session tokens, private keys.
//!
//! A [`Secret`] never prints itself: `Debug` shows `Secret(<redacted>)` and there is no
//! `Display`, so a secret cannot reach a log line, an error message or a `{:?}` by accident. The
//! memory is wiped on drop. Reading the value is explicit and greppable: [`Secret::expose`].
//!
//! Wiping on drop does not help while a secret is alive, so the process also keeps itself out of
//! core dumps and `ptrace` by other processes of the same user: [`forbid_core_dumps`], called
//! first thing in `main`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// A string that must never be logged or printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value; the caller's copy should be dropped.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret value, for the few places that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string (an unset key file, for example).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The part of a URL that may be printed: `scheme://host[:port]`. Userinfo, path and query are
/// left out because webhooks, heartbeats and source URLs carry their tokens there; every printed
/// form of a URL (a [`crate::notify::SecretUrl`], a [`crate::sources::Source`]) starts from this.
pub fn printable_origin(url: &reqwest::Url) -> String {
    let port = url
        .port()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    format!("{}://{}{port}", url.scheme(), url.host_str().unwrap_or("?"))
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Serialized as the plain string: only the context store (a 0600 file) serializes secrets.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

/// Marks the process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`): no core dump on a crash or
/// on the watchdog's SIGABRT, no `ptrace` attach and no `/proc/<pid>/mem` reads by other
/// processes of the same user. The private key, the API key and the session token live in
/// this process's memory for its whole life, and a core file would write them to disk. Through
/// `rustix`'s safe wrapper, because `unsafe_code` is forbidden here. A no-op off Linux.
pub fn forbid_core_dumps() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printable_origin_keeps_scheme_host_and_port_only() {
        let url = |text: &str| printable_origin(&reqwest::Url::parse(text).unwrap());
        assert_eq!(url("http://127.0.0.1:8080/x"), "http://127.0.0.1:8080");
        assert_eq!(
            url("https://user:pw@hooks.example/services/TOKEN?key=K#frag"),
            "https://hooks.example"
        );
        // The scheme's default port is not written out by the URL parser.
        assert_eq!(url("https://hooks.example:443/x"), "https://hooks.example");
    }

    #[test]
    fn debug_print_never_shows_the_value() {
        let secret = Secret::new("sandbox_0123456789abcdef");
        let printed = format!("{secret:?} {:?}", Some(&secret));
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn expose_returns_the_value() {
        assert_eq!(Secret::new("k").expose(), "k");
    }
}
