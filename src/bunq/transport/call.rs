//! What one call to bunq is, as the transport sends it and hands it back: the endpoint
//! ([`Route`]), the request ([`Call`]) and the verified response ([`ApiResponse`]). Bodies are
//! [`Body`] buffers, wiped on drop, and `Debug` prints their length, never their bytes.

use reqwest::Method;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::bunq::crypto::{PrivateKey, PublicKey};
use crate::bunq::error::{BunqError, json_error_summary};
use crate::bunq::model::Envelope;
use crate::secret::Secret;

/// An endpoint as method + route pattern, e.g. `GET /user/{user}/credential-password-ip`. The
/// pattern keys the rate limiter and names the endpoint in errors, logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path below the base URL with `{user}`, `{cred}`, `{id}` placeholders.
    pub pattern: &'static str,
}

impl Route {
    /// A GET route.
    pub const fn get(pattern: &'static str) -> Self {
        Route {
            method: Method::GET,
            pattern,
        }
    }

    /// A POST route.
    pub const fn post(pattern: &'static str) -> Self {
        Route {
            method: Method::POST,
            pattern,
        }
    }

    /// A PUT route.
    pub const fn put(pattern: &'static str) -> Self {
        Route {
            method: Method::PUT,
            pattern,
        }
    }

    /// `METHOD pattern`, as used in error messages.
    pub fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.pattern)
    }
}

/// Whether transient failures of a call may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryMode {
    /// Retry 429, 491, 5xx and network failures with backoff.
    Transient,
    /// Retry only a 429: for writes that are not idempotent (creating an IP entry). bunq
    /// refused a rate-limited request before doing anything, so sending it again cannot make a
    /// duplicate; after any other failure the caller must re-read the state to learn whether
    /// the write happened.
    RateLimitedOnly,
    /// Never retry, not even a 429 (creating a sandbox user).
    Never,
}

/// A request or response body: wiped from memory when dropped, because it may hold the API
/// key or a token.
pub type Body = Zeroizing<Vec<u8>>;

/// One request as the transport sends it. `Debug` shows the body's length only.
pub struct Call<'a> {
    /// Method and pattern.
    pub route: Route,
    /// The concrete path below the base URL, with query (`/user/1/credential-password-ip?count=200`).
    pub path: String,
    /// The serialized body, sent and signed byte for byte; `None` sends no body (and signs the
    /// empty string).
    pub body: Option<Body>,
    /// The `X-Bunq-Client-Authentication` token, if any.
    pub auth: Option<&'a Secret>,
    /// Signs the body into `X-Bunq-Client-Signature` when present.
    pub signer: Option<&'a PrivateKey>,
    /// Verifies 2xx responses when present (every call after installation).
    pub verifier: Option<&'a PublicKey>,
    /// Retry policy for this call.
    pub retry: RetryMode,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("route", &self.route)
            .field("path", &self.path)
            .field("body", &self.body.as_ref().map(|body| Redacted(body.len())))
            .field("auth", &self.auth)
            .field("signer", &self.signer.map(|_| "set"))
            .field("verifier", &self.verifier.map(|_| "set"))
            .field("retry", &self.retry)
            .finish()
    }
}

/// Prints `<redacted N bytes>` in place of a body.
struct Redacted(usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted {} bytes>", self.0)
    }
}

/// A verified successful response. `Debug` shows the body's length only.
#[derive(Clone)]
pub struct ApiResponse {
    /// HTTP status (2xx).
    pub status: u16,
    /// The exact body bytes (already verified when a verifier was given).
    pub body: Body,
    /// `X-Bunq-Client-Response-Id`.
    pub response_id: Option<String>,
}

impl std::fmt::Debug for ApiResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiResponse")
            .field("status", &self.status)
            .field("body", &Redacted(self.body.len()))
            .field("response_id", &self.response_id)
            .finish()
    }
}

impl ApiResponse {
    /// Parses the body as a bunq success envelope.
    pub fn envelope(&self, route: &Route) -> Result<Envelope, BunqError> {
        serde_json::from_slice(&self.body).map_err(|err| BunqError::Protocol {
            endpoint: route.endpoint(),
            message: format!(
                "not a bunq response envelope ({})",
                json_error_summary(&err)
            ),
        })
    }
}

/// Serializes a request body once; the result is what is sent and signed.
pub fn to_body<T: Serialize>(route: &Route, value: &T) -> Result<Body, BunqError> {
    serde_json::to_vec(value)
        .map(Zeroizing::new)
        .map_err(|err| BunqError::Protocol {
            endpoint: route.endpoint(),
            message: format!("cannot serialize the request body ({err})"),
        })
}
