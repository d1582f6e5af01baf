//! The one error type of the bunq client. Each variant says what went wrong in terms an operator
//! can act on, and [`BunqError::is_transient`] / [`BunqError::is_security`] drive the retry policy.
//! No variant carries a secret: descriptions come from bunq's error bodies or from local checks.

use crate::bunq::crypto::CryptoError;

/// Why a bunq call failed.
#[derive(Debug, thiserror::Error)]
pub enum BunqError {
    /// bunq answered with an error status and (usually) an `{"Error": [...]}` body.
    #[error("bunq answered HTTP {status} on {endpoint}: {description}{}", response_id_suffix(.response_id))]
    Api {
        /// HTTP status code (400, 403, 429, 491, 500, ...).
        status: u16,
        /// bunq's `error_description` texts, or a short excerpt of a non-JSON body.
        description: String,
        /// `X-Bunq-Client-Response-Id`, to quote when contacting bunq.
        response_id: Option<String>,
        /// Method and route pattern, e.g. `GET /user/{user}/credential-password-ip/{cred}/ip`.
        endpoint: String,
    },
    /// A response's `X-Bunq-Server-Signature` was missing or did not verify. The response is
    /// discarded unread; it is never retried within the run (it may be a man in the middle).
    #[error(
        "security: response of {endpoint} failed server signature verification ({reason}); nothing was acted on"
    )]
    ResponseSignature {
        /// Method and route pattern.
        endpoint: String,
        /// "missing" or the verification failure.
        reason: String,
    },
    /// The request did not complete: connect failure, reset, timeout. For a write, bunq may or
    /// may not have applied it; callers must re-read before deciding.
    #[error("network error on {endpoint}: {message}")]
    Transport {
        /// Method and route pattern.
        endpoint: String,
        /// What the HTTP stack reported.
        message: String,
        /// True for timeouts (connect or whole request).
        timeout: bool,
    },
    /// The response parsed as JSON but not in the shape this client expects.
    #[error("unexpected response from {endpoint}: {message}")]
    Protocol {
        /// Method and route pattern.
        endpoint: String,
        /// What was missing or malformed.
        message: String,
    },
    /// The base URL is not allowed (plain http to a non-loopback host) or unparsable.
    #[error("base URL {url:?} refused: {reason}")]
    BaseUrl {
        /// The offending URL.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The persisted context could not be read or written.
    #[error("state: {0}")]
    Context(String),
    /// The context file exists but is not a context this client can read (bad JSON, wrong
    /// layout). It is left in place for the operator; nothing is registered over it.
    #[error("state file {} is corrupt: {reason}; move it away to register anew", path.display())]
    ContextCorrupt {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it (never its content).
        reason: String,
    },
    /// The context file was written by a newer version of this program.
    #[error(
        "state file {} has format version {found}, this build reads up to {supported}; upgrade or move it away",
        path.display()
    )]
    ContextVersion {
        /// The file.
        path: std::path::PathBuf,
        /// The version found in the file.
        found: u64,
        /// The newest version this build understands.
        supported: u32,
    },
    /// bunq rejected the installation, but this state directory registered anew less than
    /// [`crate::bunq::registration::REREGISTRATION_INTERVAL`] ago, so no new installation and device
    /// are made yet: each registration leaves a device entry in the user's bunq account, and one
    /// that keeps being rejected would otherwise leave one per retry. Nothing here is permanent:
    /// a later attempt (session-server with the saved installation, or the next registration
    /// once the interval has passed) may succeed.
    #[error(
        "bunq rejected the installation; this state directory registered anew {} ago and the \
         next registration is allowed in {} (at most one per {}, so that a rejection that \
         persists does not leave a new device at bunq on every retry)",
        humantime::format_duration(*.since),
        humantime::format_duration(*.retry_in),
        humantime::format_duration(*.interval)
    )]
    RegistrationDeferred {
        /// How long ago the last registration was (whole seconds).
        since: std::time::Duration,
        /// How long until the next one is allowed (whole seconds).
        retry_in: std::time::Duration,
        /// The bound itself, [`crate::bunq::registration::REREGISTRATION_INTERVAL`], carried
        /// so the message states it without this module depending on the registration code.
        interval: std::time::Duration,
    },
    /// Key material was unusable.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Describes a JSON error without quoting the input: serde's "invalid type" and "unknown
/// variant" messages include the offending value, which may be a token (a session-server
/// response, a context file). "missing field" messages name only the field and are kept.
pub(crate) fn json_error_summary(err: &serde_json::Error) -> String {
    let text = err.to_string();
    if text.starts_with("missing field") {
        return text;
    }
    let kind = match err.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "a value of the wrong type or shape",
        serde_json::error::Category::Eof => "unexpected end of input",
    };
    format!("{kind} at line {} column {}", err.line(), err.column())
}

fn response_id_suffix(response_id: &Option<String>) -> String {
    match response_id {
        Some(id) => format!(" (bunq response id {id})"),
        None => String::new(),
    }
}

impl BunqError {
    /// Worth retrying with backoff: rate limits, bunq-side failures, maintenance, network trouble.
    pub fn is_transient(&self) -> bool {
        match self {
            BunqError::Api { status, .. } => matches!(status, 429 | 491 | 500..=599),
            BunqError::Transport { .. } => true,
            _ => false,
        }
    }

    /// A signature failure: stop the run, act on nothing, alert.
    pub fn is_security(&self) -> bool {
        matches!(self, BunqError::ResponseSignature { .. })
    }

    /// bunq does not know the object (404): for a credential's entries, the credential.
    pub fn is_not_found(&self) -> bool {
        matches!(self, BunqError::Api { status: 404, .. })
    }

    /// bunq rejected the token of an authenticated call: any 401 or 403, whatever the wording
    /// (bunq's texts vary: "Insufficient authentication.", "Insufficient authorisation.",
    /// "Session timeout." are all seen). On a session call this means the session is gone: open
    /// a new session once and retry the request once. Cheap to get wrong in the permissive
    /// direction (one session-server call), expensive in the strict one (every run fails until
    /// the scheduled renewal).
    pub fn is_session_rejected(&self) -> bool {
        matches!(
            self,
            BunqError::Api {
                status: 401 | 403,
                ..
            }
        )
    }

    /// `POST /session-server` rejected the *installation* token: bunq has forgotten the
    /// installation, and the client discards the saved one and registers anew. That step is
    /// destructive, so it needs bunq's own words ("Insufficient authentication" or
    /// "Insufficient authorisation") as well as 401/403, and never "User credentials are
    /// incorrect" (the calling IP is not active on the credential; a new installation cannot fix
    /// that). The transport has already verified a signed error response by then (see
    /// [`crate::bunq::transport`]), so a forged rejection arrives as
    /// [`BunqError::ResponseSignature`] instead and discards nothing.
    pub fn is_installation_rejected(&self) -> bool {
        match self {
            BunqError::Api {
                status,
                description,
                ..
            } => {
                matches!(status, 401 | 403)
                    && !self.is_credentials_rejected()
                    && (description.contains("Insufficient authentication")
                        || description.contains("Insufficient authorisation"))
            }
            _ => false,
        }
    }

    /// A write failed in a way that does not say whether bunq carried it out: no answer at all
    /// (reset, timeout), a 5xx (bunq may have committed before failing), or a 2xx whose body
    /// could not be read as the expected answer. A create that failed like this must be
    /// re-listed before anything retries it, and is recorded as unconfirmed. 429 and 491 are
    /// not among them: bunq refused those before doing anything.
    pub fn is_unclear_write(&self) -> bool {
        match self {
            BunqError::Transport { .. } | BunqError::Protocol { .. } => true,
            BunqError::Api { status, .. } => (500..=599).contains(status),
            _ => false,
        }
    }

    /// bunq refused the caller: wrong key, or the calling IP is not ACTIVE on the key's credential.
    pub fn is_credentials_rejected(&self) -> bool {
        matches!(self, BunqError::Api { description, .. }
            if description.contains("User credentials are incorrect"))
    }

    /// bunq rejected the installation and a new registration waits for
    /// [`crate::bunq::registration::REREGISTRATION_INTERVAL`] to pass ([`BunqError::RegistrationDeferred`]).
    pub fn is_registration_deferred(&self) -> bool {
        matches!(self, BunqError::RegistrationDeferred { .. })
    }

    /// A short, stable label for metrics (`reason` label values).
    pub fn metric_label(&self) -> &'static str {
        match self {
            BunqError::Api { status: 429, .. } => "rate_limited",
            BunqError::Api { .. } if self.is_credentials_rejected() => "credentials_rejected",
            BunqError::Api { .. } if self.is_session_rejected() => "session_rejected",
            BunqError::Api { status, .. } if *status >= 500 || *status == 491 => "server_error",
            BunqError::Api { .. } => "api_error",
            BunqError::ResponseSignature { .. } => "signature",
            BunqError::Transport { timeout: true, .. } => "timeout",
            BunqError::Transport { .. } => "network",
            BunqError::Protocol { .. } => "protocol",
            BunqError::BaseUrl { .. } => "base_url",
            BunqError::Context(_)
            | BunqError::ContextCorrupt { .. }
            | BunqError::ContextVersion { .. } => "state",
            BunqError::RegistrationDeferred { .. } => "registration_deferred",
            BunqError::Crypto(_) => "crypto",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, description: &str) -> BunqError {
        BunqError::Api {
            status,
            description: description.into(),
            response_id: Some("r-1".into()),
            endpoint: "GET /user/{user}/credential-password-ip".into(),
        }
    }

    #[test]
    fn rate_limits_maintenance_and_server_errors_are_transient() {
        for status in [429, 491, 500, 503] {
            assert!(api(status, "x").is_transient(), "{status}");
        }
        assert!(!api(400, "x").is_transient());
        assert!(!api(403, "Insufficient authentication.").is_transient());
    }

    #[test]
    fn any_401_or_403_rejects_the_session_whatever_the_wording() {
        for text in [
            "Insufficient authentication.",
            "Insufficient authorisation.",
            "Session timeout.",
            "Forbidden",
        ] {
            assert!(api(403, text).is_session_rejected(), "{text}");
            assert!(api(401, text).is_session_rejected(), "{text}");
        }
        assert!(!api(400, "Insufficient authentication.").is_session_rejected());
        assert!(!api(500, "Session timeout.").is_session_rejected());
    }

    #[test]
    fn installation_rejection_needs_both_status_and_bunqs_words() {
        assert!(api(403, "Insufficient authentication.").is_installation_rejected());
        assert!(api(401, "Insufficient authorisation.").is_installation_rejected());
        assert!(!api(400, "Insufficient authentication.").is_installation_rejected());
        assert!(!api(403, "Session timeout.").is_installation_rejected());
        assert!(
            !api(
                403,
                "User credentials are incorrect. Incorrect API key or IP address."
            )
            .is_installation_rejected()
        );
    }

    #[test]
    fn no_answer_a_5xx_or_an_unreadable_answer_leave_a_write_unclear_and_a_refusal_does_not() {
        let reset = BunqError::Transport {
            endpoint: "POST x".into(),
            message: "reset".into(),
            timeout: false,
        };
        let unreadable = BunqError::Protocol {
            endpoint: "POST x".into(),
            message: "no Id".into(),
        };
        assert!(reset.is_unclear_write());
        assert!(unreadable.is_unclear_write());
        assert!(api(500, "x").is_unclear_write());
        assert!(api(503, "x").is_unclear_write());
        for status in [400, 403, 429, 491] {
            assert!(!api(status, "x").is_unclear_write(), "{status}");
        }
        let forged = BunqError::ResponseSignature {
            endpoint: "POST x".into(),
            reason: "missing".into(),
        };
        assert!(!forged.is_unclear_write());
    }

    #[test]
    fn message_quotes_status_description_and_response_id() {
        let text = api(
            400,
            "User credentials are incorrect. Incorrect API key or IP address.",
        )
        .to_string();
        assert!(text.contains("HTTP 400"), "{text}");
        assert!(text.contains("Incorrect API key or IP address"), "{text}");
        assert!(text.contains("r-1"), "{text}");
    }

    #[test]
    fn signature_failures_are_security_errors_and_not_transient() {
        let err = BunqError::ResponseSignature {
            endpoint: "GET x".into(),
            reason: "missing".into(),
        };
        assert!(err.is_security());
        assert!(!err.is_transient());
        assert_eq!(err.metric_label(), "signature");
    }
}
