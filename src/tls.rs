//! The one TLS set-up of every outgoing HTTPS client (bunq, URL sources, notifications).
//!
//! reqwest's `rustls` feature brings aws-lc-rs as rustls' crypto; we build with
//! `rustls-no-provider` and install ring's provider instead, once, as the process default. Both
//! offer the TLS 1.2 and 1.3 suites bunq's and webhook hosts' servers negotiate; ring is about
//! 1.5 MiB smaller in the release binary (BENCHMARKS.md, binary size) and builds without cmake.
//! Certificates are verified the same way either way (rustls-platform-verifier, the system's
//! roots).

use std::sync::Once;

/// A `reqwest` client builder whose TLS uses the process's crypto provider. Every HTTPS client
/// of the crate starts here: a builder from `reqwest::Client::builder()` directly would fail to
/// build (no provider) before the first one of these ran.
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// Installs ring's crypto as rustls' process default, once. Another provider installed first
/// (by an embedding program) is kept: it is as good a choice, and replacing it is impossible.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_builds_a_client_with_the_installed_provider() {
        let client = client_builder().build();
        assert!(client.is_ok(), "{client:?}");
        let provider = rustls::crypto::CryptoProvider::get_default().expect("installed");
        let ring = rustls::crypto::ring::default_provider();
        assert_eq!(
            provider.cipher_suites.len(),
            ring.cipher_suites.len(),
            "the process provider is ring's"
        );
    }
}
