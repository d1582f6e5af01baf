//! [`ClientSettings`]: how a [`crate::bunq::BunqClient`] reaches bunq and registers there, as
//! the caller (the config, a test) decides it. Plain data; the client reads it, never changes it.

use std::sync::Arc;
use std::time::Duration;

use crate::bunq::endpoint::BaseUrl;
use crate::bunq::observer::ApiObserver;
use crate::bunq::ratelimit::RateLimiter;
use crate::bunq::session::{WallClock, system_clock};
use crate::bunq::transport::TransportSettings;

/// How to reach bunq and how to register there.
#[derive(Clone)]
pub struct ClientSettings {
    /// Production, sandbox, or an explicit (e.g. simulator) URL.
    pub base_url: BaseUrl,
    /// The device description sent to `POST /device-server`. bunq shows it as the credential's
    /// `permitted_device.description`, which is how the daemon finds its own credential.
    pub device_description: String,
    /// `permitted_ips` for `POST /device-server`; `None` omits the field (bunq binds the calling
    /// IP only).
    pub permitted_ips: Option<Vec<String>>,
    /// Timeouts, retries, rate limits.
    pub transport: TransportSettings,
    /// The rate limiter to share with the process's other clients, normally
    /// [`RateLimiter::process`]; its limits replace `transport.rate_limits`. `None` gives the
    /// client a limiter of its own from `transport.rate_limits`, which keeps bunq's windows only
    /// if the process builds no other client (tests with a simulated bank each).
    pub rate_limiter: Option<Arc<RateLimiter>>,
    /// Open a new session when the current one expires within this margin.
    pub renew_before: Duration,
    /// Receives request and session events (metrics); `None` for no observer.
    pub observer: Option<Arc<dyn ApiObserver>>,
    /// The wall clock for session expiry; [`system_clock`] unless a test moves time.
    pub clock: WallClock,
}

impl ClientSettings {
    /// Defaults: bunq's rate limits, default timeouts and retries, renew 10 minutes before expiry.
    pub fn new(base_url: BaseUrl, device_description: impl Into<String>) -> Self {
        ClientSettings {
            base_url,
            device_description: device_description.into(),
            permitted_ips: None,
            transport: TransportSettings::default(),
            rate_limiter: None,
            renew_before: Duration::from_secs(600),
            observer: None,
            clock: system_clock(),
        }
    }
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("base_url", &self.base_url)
            .field("device_description", &self.device_description)
            .field("permitted_ips", &self.permitted_ips)
            .field("transport", &self.transport)
            .field(
                "rate_limiter",
                &self.rate_limiter.as_ref().map_or("own", |_| "shared"),
            )
            .field("renew_before", &self.renew_before)
            .field("observer", &self.observer.as_ref().map(|_| "set"))
            .finish()
    }
}
