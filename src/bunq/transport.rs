//! The one place that sends HTTP requests to bunq.
//!
//! For every request it:
//!
//! 1. waits for the rate limiter (per method + route pattern), before *every* attempt, and holds
//!    the slot until that attempt's response or error is back;
//! 2. sends the fixed headers (`User-Agent`, a fresh `X-Bunq-Client-Request-Id`,
//!    `Cache-Control`, geolocation, language, region) plus the caller's authentication token;
//! 3. sends the body bytes the caller serialized once, and signs exactly those bytes (the empty
//!    string for a GET) into `X-Bunq-Client-Signature` when a client key is given (every request
//!    after installation);
//! 4. reads the response as bytes; a 2xx response must carry an `X-Bunq-Server-Signature` that
//!    verifies over exactly those bytes, or it is discarded unread as
//!    [`BunqError::ResponseSignature`] and never retried. An error response that carries the
//!    header is verified the same way before anything acts on it (a forged 401 must not make
//!    the client discard its installation, a forged 5xx must not be retried); one without it
//!    is taken as it is, because bunq and the proxies in front of it do not sign every error;
//! 5. turns error responses into [`BunqError::Api`] (bunq's `error_description`s, or a short
//!    excerpt of a non-JSON body) with the `X-Bunq-Client-Response-Id`;
//! 6. retries transient failures (429, 491, 5xx, network errors, timeouts) with bounded
//!    exponential backoff and jitter, as the call's [`RetryMode`] allows. A 429 waits for the
//!    endpoint's rate-limit window and gets more attempts (see [`RetryPolicy`]): other clients
//!    behind the same IP share bunq's windows, and four quick retries fit in one 3 s window.
//!
//! Request and response bodies (the API key in device-server and session-server requests,
//! tokens in their responses) are held in [`Zeroizing`] buffers, each attempt sends the same
//! buffer instead of a copy, and `Debug` of [`Call`] and [`ApiResponse`] prints `<redacted>`
//! instead of the bytes. Errors and logs name the route pattern, never a token or the URL of a
//! token.

mod call;
mod failure;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use zeroize::Zeroizing;

use crate::bunq::endpoint::BaseUrl;
use crate::bunq::error::BunqError;
use crate::bunq::observer::{ApiObserver, FinishedRequest, NoopObserver};
use crate::bunq::ratelimit::{LimitKey, RateLimiter, RateLimits};
use crate::bunq::retry::RetryPolicy;

pub use call::{ApiResponse, Body, Call, RetryMode, Route, to_body};
pub(crate) use failure::error_chain;
use failure::transport_error;
pub use failure::{api_error, excerpt_text};

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("bunq-ipsync/", env!("CARGO_PKG_VERSION"));
/// `X-Bunq-Geolocation`: bunq wants the header; zeros say "not shared".
pub const GEOLOCATION: &str = "0 0 0 0 000";
/// `X-Bunq-Language`.
pub const LANGUAGE: &str = "en_US";
/// `X-Bunq-Region`.
pub const REGION: &str = "nl_NL";

/// Request header names bunq uses.
pub mod header {
    /// Unique id per request (bunq rejects reuse on one device).
    pub const REQUEST_ID: &str = "X-Bunq-Client-Request-Id";
    /// Installation or session token.
    pub const AUTHENTICATION: &str = "X-Bunq-Client-Authentication";
    /// Base64 signature of the request body.
    pub const CLIENT_SIGNATURE: &str = "X-Bunq-Client-Signature";
    /// Base64 signature of the response body by bunq's server key.
    pub const SERVER_SIGNATURE: &str = "X-Bunq-Server-Signature";
    /// bunq's id of a response, to quote in support requests.
    pub const RESPONSE_ID: &str = "X-Bunq-Client-Response-Id";
    /// Zeros: location not shared.
    pub const GEOLOCATION: &str = "X-Bunq-Geolocation";
    /// Language of error translations.
    pub const LANGUAGE: &str = "X-Bunq-Language";
    /// Region.
    pub const REGION: &str = "X-Bunq-Region";
}

/// Timeouts, retries and rate limits of the transport.
#[derive(Clone, Debug, PartialEq)]
pub struct TransportSettings {
    /// Limit for establishing the TCP + TLS connection.
    pub connect_timeout: Duration,
    /// Limit for one whole attempt (connect, send, read the body).
    pub request_timeout: Duration,
    /// How transient failures are retried.
    pub retry: RetryPolicy,
    /// Client-side sliding-window limits.
    pub rate_limits: RateLimits,
}

impl Default for TransportSettings {
    /// 10 s connect, 30 s per attempt (the Java SDK's value), default retries, bunq's limits
    /// with a [`crate::bunq::ratelimit::DEFAULT_MARGIN`] for bunq's undocumented window arithmetic (network latency
    /// needs no margin: windows count from the response).
    fn default() -> Self {
        TransportSettings {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::client_default(),
        }
    }
}

/// Sends requests to one base URL. Shared by all tasks of a client.
pub struct Transport {
    http: reqwest::Client,
    base_url: BaseUrl,
    /// Shared with every other transport of the process when built by
    /// [`Transport::with_limiter`] (bunq counts per IP, not per client).
    limiter: Arc<RateLimiter>,
    retry: RetryPolicy,
    observer: Arc<dyn ApiObserver>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("base_url", &self.base_url)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport for `base_url` with a rate limiter of its own (built from
    /// `settings.rate_limits`). TLS is rustls; redirects are not followed (a redirect could
    /// carry the token elsewhere); reqwest's own retries are off (this module decides).
    pub fn new(
        base_url: BaseUrl,
        settings: &TransportSettings,
        observer: Option<Arc<dyn ApiObserver>>,
    ) -> Result<Self, BunqError> {
        let limiter = Arc::new(RateLimiter::new(settings.rate_limits.clone()));
        Transport::with_limiter(base_url, settings, observer, limiter)
    }

    /// [`Transport::new`], but admitting requests through `limiter`, which other transports
    /// may share: bunq's windows are per IP, so every client of a process must count against
    /// the same ones. `limiter`'s own limits apply; `settings.rate_limits` is not used.
    pub fn with_limiter(
        base_url: BaseUrl,
        settings: &TransportSettings,
        observer: Option<Arc<dyn ApiObserver>>,
        limiter: Arc<RateLimiter>,
    ) -> Result<Self, BunqError> {
        let mut builder = crate::tls::client_builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never());
        if base_url.is_loopback() {
            // A proxy from the environment must not intercept loopback test traffic.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|err| BunqError::BaseUrl {
            url: base_url.as_str().to_owned(),
            reason: format!("cannot build the HTTP client: {}", error_chain(&err)),
        })?;
        Ok(Transport {
            http,
            base_url,
            limiter,
            retry: settings.retry,
            observer: observer.unwrap_or_else(|| Arc::new(NoopObserver)),
        })
    }

    /// The base URL every request goes to.
    pub fn base_url(&self) -> &BaseUrl {
        &self.base_url
    }

    /// The observer events go to.
    pub fn observer(&self) -> &Arc<dyn ApiObserver> {
        &self.observer
    }

    /// Sends `call`, retrying transient failures per its [`RetryMode`], and returns the verified
    /// success response.
    pub async fn send(&self, call: &Call<'_>) -> Result<ApiResponse, BunqError> {
        let body: &[u8] = call.body.as_deref().map(Vec::as_slice).unwrap_or_default();
        let signature = call.signer.map(|key| key.sign(body));
        // One shared buffer for every attempt (cloning `Bytes` copies no bytes), wiped when the
        // last attempt's request is dropped.
        let shared = call
            .body
            .as_ref()
            .map(|body| Bytes::from_owner(body.clone()));
        let key = LimitKey::new(call.route.method.clone(), call.route.pattern);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let permit = self
                .limiter
                .acquire_noting(&key, |wait| {
                    self.observer
                        .waiting_for_window(key.method.as_str(), call.route.pattern, wait)
                })
                .await;
            let waited = permit.waited();
            if !waited.is_zero() {
                tracing::debug!(endpoint = %call.route.endpoint(), waited = %crate::clock::log_seconds(waited), "rate limiter held the request");
                self.observer.throttled(call.route.pattern, waited);
            }
            let outcome = self
                .attempt(call, shared.clone(), signature.as_deref())
                .await;
            // The response or the error is back, so bunq has counted the request by now: its
            // window starts here (see `ratelimit`).
            permit.complete();
            let err = match outcome {
                Ok(response) => return Ok(response),
                Err(err) => err,
            };
            let rate_limited = matches!(err, BunqError::Api { status: 429, .. });
            let retry_allowed = match call.retry {
                RetryMode::Transient => true,
                RetryMode::RateLimitedOnly => rate_limited,
                RetryMode::Never => false,
            };
            if !(retry_allowed && self.retry.should_retry(attempt, &err)) {
                return Err(err);
            }
            let delay = if rate_limited {
                self.retry
                    .rate_limited_delay(attempt, self.rate_limit_window(&call.route))
            } else {
                self.retry.delay(attempt)
            };
            tracing::warn!(
                endpoint = %call.route.endpoint(),
                attempt,
                delay = %crate::clock::log_seconds(delay),
                error = %err,
                "transient bunq failure; retrying"
            );
            self.observer.retrying(call.route.pattern, attempt, delay);
            tokio::time::sleep(delay).await;
        }
    }

    /// The window bunq counts `route`'s requests in, as the limiter knows it; zero when the
    /// limiter is disabled (tests), which leaves a 429 to the plain backoff.
    fn rate_limit_window(&self, route: &Route) -> Duration {
        let limits = self.limiter.limits();
        if limits.enabled {
            limits.limit_for(&route.method, route.pattern).window
        } else {
            Duration::ZERO
        }
    }

    /// The request of one attempt: fixed headers, a fresh request id, the token (marked
    /// sensitive, so no log of the client library prints it), the signature and the body.
    fn request(
        &self,
        call: &Call<'_>,
        body: Option<Bytes>,
        signature: Option<&str>,
        request_id: &str,
    ) -> Result<reqwest::RequestBuilder, BunqError> {
        let route = &call.route;
        let url = self.base_url.join(&call.path)?;
        let mut request = self
            .http
            .request(route.method.clone(), url)
            .headers(fixed_headers(request_id))
            .header(reqwest::header::CACHE_CONTROL, "no-cache");
        if let Some(token) = call.auth {
            let mut value =
                HeaderValue::from_str(token.expose()).map_err(|_| BunqError::Protocol {
                    endpoint: route.endpoint(),
                    message: "the authentication token is not a valid header value".to_owned(),
                })?;
            value.set_sensitive(true);
            request = request.header(header::AUTHENTICATION, value);
        }
        if let Some(signature) = signature {
            request = request.header(header::CLIENT_SIGNATURE, signature);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        Ok(request)
    }

    /// Checks the server signature when the call has a verifier: a success must carry one that
    /// verifies; an error is checked when it carries one. A failure discards the response.
    fn verify(
        &self,
        call: &Call<'_>,
        success: bool,
        headers: &HeaderMap,
        body: &[u8],
        response_id: Option<&str>,
    ) -> Result<(), BunqError> {
        let route = &call.route;
        let Some(server_key) = call.verifier else {
            return Ok(());
        };
        let verified = match header_text(headers, header::SERVER_SIGNATURE) {
            None if success => Err("missing".to_owned()),
            // bunq does not sign every error (a proxy's 503 page never is): an unsigned
            // error is taken as it is. Only a success must prove it came from bunq.
            None => Ok(()),
            Some(signature) => server_key
                .verify(body, &signature)
                .map_err(|err| err.to_string()),
        };
        let Err(reason) = verified else {
            return Ok(());
        };
        tracing::error!(
            endpoint = %route.endpoint(),
            reason,
            response_id = response_id.unwrap_or("-"),
            "bunq response failed server signature verification; discarded"
        );
        self.observer.signature_rejected(route.pattern);
        Err(BunqError::ResponseSignature {
            endpoint: route.endpoint(),
            reason,
        })
    }

    async fn attempt(
        &self,
        call: &Call<'_>,
        body: Option<Bytes>,
        signature: Option<&str>,
    ) -> Result<ApiResponse, BunqError> {
        let route = &call.route;
        let request_id = uuid::Uuid::new_v4().to_string();
        let request = self.request(call, body, signature, &request_id)?;

        let started = tokio::time::Instant::now();
        let finished = |status: Option<u16>| {
            self.observer.request_finished(&FinishedRequest {
                method: route.method.as_str(),
                route_pattern: route.pattern,
                status,
                elapsed: started.elapsed(),
            });
        };
        let outcome = request.send().await;
        let response = match outcome {
            Ok(response) => response,
            Err(err) => {
                finished(None);
                return Err(transport_error(route, &err));
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(bytes) => Zeroizing::new(bytes.to_vec()),
            Err(err) => {
                finished(Some(status));
                return Err(transport_error(route, &err));
            }
        };
        finished(Some(status));
        let response_id = header_text(&headers, header::RESPONSE_ID);
        tracing::debug!(
            endpoint = %route.endpoint(),
            status,
            request_id,
            response_id = response_id.as_deref().unwrap_or("-"),
            "bunq request finished"
        );

        let success = (200..300).contains(&status);
        self.verify(call, success, &headers, &body, response_id.as_deref())?;
        if !success {
            if status == 429 {
                self.observer.rate_limited(route.pattern);
            }
            return Err(api_error(route, status, &body, response_id));
        }
        Ok(ApiResponse {
            status,
            body,
            response_id,
        })
    }
}

fn fixed_headers(request_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(header::REQUEST_ID, value);
    }
    headers.insert(header::GEOLOCATION, HeaderValue::from_static(GEOLOCATION));
    headers.insert(header::LANGUAGE, HeaderValue::from_static(LANGUAGE));
    headers.insert(header::REGION, HeaderValue::from_static(REGION));
    headers
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    const ROUTE: Route = Route::get("/user/{user}/credential-password-ip");

    #[test]
    fn error_body_becomes_api_error_with_descriptions_and_response_id() {
        let body = br#"{"Error":[{"error_description":"Insufficient authentication.","error_description_translated":"x"}]}"#;
        let err = api_error(&ROUTE, 403, body, Some("resp-1".into()));
        match &err {
            BunqError::Api {
                status,
                description,
                response_id,
                endpoint,
            } => {
                assert_eq!(*status, 403);
                assert_eq!(description, "Insufficient authentication.");
                assert_eq!(response_id.as_deref(), Some("resp-1"));
                assert_eq!(endpoint, "GET /user/{user}/credential-password-ip");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.is_session_rejected());
    }

    #[test]
    fn html_error_body_becomes_a_short_excerpt() {
        let page = format!(
            "<html>\n  <body>Service Unavailable {}</body></html>",
            "x".repeat(500)
        );
        let err = api_error(&ROUTE, 503, page.as_bytes(), None);
        let BunqError::Api { description, .. } = err else {
            panic!("not an API error");
        };
        assert!(
            description.starts_with("non-JSON body: <html> <body>Service Unavailable"),
            "{description}"
        );
        assert!(description.chars().count() < 230, "{description}");
        assert!(description.ends_with('…'));
    }

    #[test]
    fn json_error_body_of_another_shape_is_quoted() {
        let BunqError::Api { description, .. } =
            api_error(&ROUTE, 500, br#"{"message":"boom"}"#, None)
        else {
            panic!("not an API error");
        };
        assert_eq!(
            description,
            r#"unrecognised error body: {"message":"boom"}"#
        );
    }

    #[test]
    fn empty_error_body_is_named() {
        let BunqError::Api { description, .. } = api_error(&ROUTE, 500, b"", None) else {
            panic!("not an API error");
        };
        assert_eq!(description, "(empty body)");
    }

    #[test]
    fn malformed_envelope_error_does_not_quote_the_body() {
        let response = ApiResponse {
            status: 200,
            body: Zeroizing::new(br#"{"Response":"token-0123456789abcdef"}"#.to_vec()),
            response_id: None,
        };
        let err = response.envelope(&ROUTE).unwrap_err().to_string();
        assert!(!err.contains("0123456789abcdef"), "{err}");
        assert!(err.contains("not a bunq response envelope"), "{err}");
    }

    const SECRET_BODY: &[u8] = br#"{"secret":"sandbox_api_key_0123456789abcdef"}"#;
    /// `secret` as a derived `Debug` of the bytes would print it.
    const SECRET_AS_NUMBERS: &str = "115, 101, 99, 114, 101, 116";

    #[test]
    fn call_debug_shows_the_body_length_but_never_the_body_or_the_token() {
        let token = Secret::new("session-token-fedcba9876543210");
        let call = Call {
            route: Route::post("/session-server"),
            path: "/session-server".into(),
            body: Some(Zeroizing::new(SECRET_BODY.to_vec())),
            auth: Some(&token),
            signer: None,
            verifier: None,
            retry: RetryMode::Transient,
        };
        let printed = format!("{call:?} {call:#?}");
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        assert!(!printed.contains(SECRET_AS_NUMBERS), "{printed}");
        assert!(!printed.contains("fedcba9876543210"), "{printed}");
        assert!(
            printed.contains(&format!("<redacted {} bytes>", SECRET_BODY.len())),
            "{printed}"
        );
    }

    #[test]
    fn api_response_debug_shows_the_body_length_but_never_the_body() {
        let response = ApiResponse {
            status: 200,
            body: Zeroizing::new(SECRET_BODY.to_vec()),
            response_id: Some("r-1".into()),
        };
        let printed = format!("{response:?} {response:#?}");
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        assert!(!printed.contains(SECRET_AS_NUMBERS), "{printed}");
        assert!(printed.contains("<redacted"), "{printed}");
        assert!(printed.contains("r-1"), "{printed}");
    }

    #[test]
    fn user_agent_names_this_program_and_version() {
        assert_eq!(
            USER_AGENT,
            format!("bunq-ipsync/{}", env!("CARGO_PKG_VERSION"))
        );
    }
}
