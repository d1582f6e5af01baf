//! File and URL sources: reading the body, then [`super::body`] parses it.
//!
//! A URL is fetched with the same TLS stack as the bunq client (rustls) but nothing else of it:
//! no bunq header, no token, not its rate limiter. Redirects are not followed (a 3xx fails the
//! source), so a fetch never ends up at a host the config does not name; bodies are capped.

use std::path::Path;
use std::time::Duration;

use super::{Resolved, SourceError, SourceSettings, body};
use crate::bunq::transport::error_chain;

/// The largest body read from a URL; an allowlist is a few hundred bytes.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Reads and parses a file source.
pub(super) async fn read_file(
    path: &Path,
    settings: &SourceSettings,
) -> Result<Resolved, SourceError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|err| SourceError::Unreadable(err.to_string()))?;
    Ok(Resolved {
        addresses: body::parse(&text, settings)?,
        ttl: None,
    })
}

/// The HTTP client for URL sources.
pub(super) fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    crate::tls::client_builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(crate::bunq::transport::USER_AGENT)
        .build()
        .map_err(|err| format!("cannot build the HTTP client for URL sources: {err}"))
}

/// Fetches and parses a URL source.
pub(super) async fn fetch_url(
    client: &reqwest::Client,
    url: &reqwest::Url,
    settings: &SourceSettings,
) -> Result<Resolved, SourceError> {
    let transport = |err: reqwest::Error| {
        if err.is_timeout() {
            SourceError::Timeout(settings.url_timeout)
        } else {
            // Without the URL: it may carry a token.
            SourceError::Transport(error_chain(&err.without_url()))
        }
    };
    let mut response = client.get(url.clone()).send().await.map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(SourceError::HttpStatus(status.as_u16()));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(SourceError::BadBody(format!(
                "larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    let text =
        String::from_utf8(bytes).map_err(|_| SourceError::BadBody("not UTF-8 text".to_owned()))?;
    Ok(Resolved {
        addresses: body::parse(&text, settings)?,
        ttl: None,
    })
}
