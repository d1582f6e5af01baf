//! What one call to bunq is, as the transport sends it and hands it back: the endpoint
//! ([`Route`]), the request ([`Call`]) and the verified response ([`ApiResponse`]). Bodies are
//! [`Body`] buffers, wiped on drop, and `Debug` prints their length, never their bytes.

use reqwest::Method;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::bunq::crypto::{PrivateKey, PublicKey};
use crate::bunq::error::{BunqError, json_error_summary};
use crate::bunq::model::{Envelope, UserId};
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

    /// The concrete path: `{user}` replaced by `user`, every other placeholder by the next of
    /// `ids`, in order. The pattern is the one statement of an endpoint's path, so the path
    /// sent and the pattern that keys limits and metrics cannot drift apart.
    pub fn path(&self, user: UserId, ids: &[u64]) -> String {
        let mut path = String::with_capacity(self.pattern.len() + 24);
        let mut ids = ids.iter();
        let mut rest = self.pattern;
        while let Some((before, after)) = rest.split_once('{') {
            let (name, after) = after.split_once('}').unwrap_or((after, ""));
            path.push_str(before);
            let value = if name == "user" {
                Some(&user)
            } else {
                ids.next()
            };
            debug_assert!(value.is_some(), "no id for {{{name}}} in {}", self.pattern);
            path.push_str(&value.map(u64::to_string).unwrap_or_default());
            rest = after;
        }
        path.push_str(rest);
        debug_assert!(
            ids.next().is_none(),
            "more ids than placeholders in {}",
            self.pattern
        );
        path
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_fills_the_user_and_then_the_ids_in_order() {
        let entry = Route::put("/user/{user}/credential-password-ip/{cred}/ip/{id}");
        assert_eq!(
            entry.path(7, &[3, 12]),
            "/user/7/credential-password-ip/3/ip/12"
        );
        assert_eq!(
            Route::get("/device-server/{id}").path(7, &[5]),
            "/device-server/5"
        );
        assert_eq!(Route::get("/device-server").path(7, &[]), "/device-server");
    }
}
