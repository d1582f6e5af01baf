//! Turning what went wrong into a [`BunqError`]: an error response into [`BunqError::Api`]
//! (bunq's descriptions, or a short excerpt of a body that is not bunq's error JSON), and a
//! failed exchange into [`BunqError::Transport`] (the causes, never the URL).

use crate::bunq::error::BunqError;
use crate::bunq::model::ErrorBody;

use super::call::Route;

/// How much of a body that is not bunq's error JSON an error message quotes.
const EXCERPT_CHARS: usize = 200;

/// Builds [`BunqError::Api`] from an error response.
pub fn api_error(
    route: &Route,
    status: u16,
    body: &[u8],
    response_id: Option<String>,
) -> BunqError {
    let description = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) if !parsed.error.is_empty() => parsed.description(),
        _ if serde_json::from_slice::<serde_json::Value>(body).is_ok() => {
            format!("unrecognised error body: {}", excerpt_text(body))
        }
        _ if body.is_empty() => "(empty body)".to_owned(),
        _ => format!("non-JSON body: {}", excerpt_text(body)),
    };
    BunqError::Api {
        status,
        description,
        response_id,
        endpoint: route.endpoint(),
    }
}

/// The first characters of a body with whitespace collapsed, for error messages about
/// responses that are not bunq error JSON (a load balancer's 503 HTML page, say).
pub fn excerpt_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut short: String = collapsed.chars().take(EXCERPT_CHARS).collect();
    if collapsed.chars().count() > EXCERPT_CHARS {
        short.push('…');
    }
    short
}

pub(super) fn transport_error(route: &Route, err: &reqwest::Error) -> BunqError {
    BunqError::Transport {
        endpoint: route.endpoint(),
        message: error_chain(err),
        timeout: err.is_timeout(),
    }
}

/// The error and its causes on one line, without the request URL.
pub(crate) fn error_chain(err: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    let head = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else if err.is_body() || err.is_decode() {
        "cannot read the response"
    } else {
        "request failed"
    };
    if parts.is_empty() {
        head.to_owned()
    } else {
        format!("{head}: {}", parts.join(": "))
    }
}
