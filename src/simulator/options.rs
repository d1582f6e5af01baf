//! How a simulator instance behaves where bunq's behaviour is unknown or too slow for tests.

use std::net::Ipv4Addr;

use crate::bunq::crypto::PrivateKey;

/// The IP the simulated bunq sees by default (TEST-NET-2, never routable).
pub const DEFAULT_CALLER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// Which user object session-server returns. bunq answers one of several types; clients must
/// find it by type key, not assume `UserPerson`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserKind {
    /// `UserPerson`, a private account (the usual case).
    #[default]
    Person,
    /// `UserCompany`, a business account; same fields as far as this daemon cares.
    Company,
}

impl UserKind {
    /// The wrapper key of the user object (`UserPerson`, `UserCompany`).
    pub fn wrapper(self) -> &'static str {
        match self {
            UserKind::Person => "UserPerson",
            UserKind::Company => "UserCompany",
        }
    }
}

/// Knobs of one simulator. `Default` is bunq as documented: real-time windows, rate limits on,
/// one-week sessions, 403 for a bad token.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// Real seconds per bunq second for rate-limit windows and session lifetimes: 1.0 is bunq's
    /// real speed, 0.01 runs everything 100x faster. Measured on tokio's clock, so paused-time
    /// tests can `advance` over windows. Must be finite and positive.
    pub time_scale: f64,
    /// Enforce bunq's per-endpoint rate limits (off for tests that do not test them).
    pub rate_limits: bool,
    /// `session_timeout` of every user in bunq seconds; sessions die after it.
    pub session_timeout_secs: u64,
    /// Status for a missing, wrong or expired token: 403 is the best-evidenced, 401 is what the
    /// docs' table suggests. The text is always "Insufficient authentication.".
    pub expired_session_status: u16,
    /// Require a signature on device-server (bunq's docs say to sign it; whether bunq enforces
    /// it is unknown). A present signature is always verified.
    pub strict_device_signature: bool,
    /// Escape `/` as `\/` in bodies like bunq's encoder, to catch clients that verify the
    /// signature over re-encoded JSON.
    pub escape_slashes: bool,
    /// The IP the simulated bunq sees for every request until `set_caller_ip` changes it.
    pub caller_ip: Ipv4Addr,
    /// The user object type of session-server and `GET /user/{id}`.
    pub user_kind: UserKind,
    /// The server's signing key; `None` generates a fresh RSA-2048 key (slow in debug builds,
    /// so test suites may share one).
    pub server_key: Option<PrivateKey>,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            time_scale: 1.0,
            rate_limits: true,
            session_timeout_secs: 604_800,
            expired_session_status: 403,
            strict_device_signature: false,
            escape_slashes: true,
            caller_ip: DEFAULT_CALLER_IP,
            user_kind: UserKind::Person,
            server_key: None,
        }
    }
}
