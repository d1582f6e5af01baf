//! The bunq API client.
//!
//! * [`crypto`]: RSA keys, request signing, response verification.
//! * [`model`]: typed wire format (envelopes, credentials, permitted IPs, errors).
//! * [`error`]: [`BunqError`], the one error type of this layer.
//! * [`endpoint`]: production / sandbox / override base URLs; plain http only to loopback.
//! * [`ratelimit`]: bunq's sliding-window limits, enforced client-side per method + route.
//! * [`retry`]: bounded exponential backoff with jitter for transient failures.
//! * [`observer`]: hooks for metrics ([`ApiObserver`]).
//! * [`context`]: the persisted registration (0600 file, atomic writes).
//! * [`sdk_import`]: adopting the official SDK's `bunq.conf` as a context.
//! * [`transport`]: the one place that sends requests: headers, signing, verification, retries.
//! * [`session`]: installation, device-server and session-server calls and their parsing.
//! * [`client_settings`]: [`ClientSettings`], how a client reaches bunq and registers.
//! * [`registration`]: installation → device-server → session-server, bounded per state dir.
//! * [`client`]: [`BunqClient`], connecting, session renewal, authenticated calls.
//! * [`allowlist`]: the typed credential and permitted-IP endpoints.
//! * [`device`]: reading the own device back from bunq when the saved context lacks it.
//! * [`sandbox`]: creating sandbox users.

pub mod allowlist;
pub mod client;
pub mod client_settings;
pub mod context;
pub mod crypto;
pub mod device;
pub mod endpoint;
pub mod error;
pub mod model;
pub mod observer;
pub mod ratelimit;
pub mod registration;
pub mod retry;
pub mod sandbox;
pub mod sdk_import;
pub mod session;
pub mod state_dir;
pub mod transport;

pub use client::{BunqClient, ClientSettings};
pub use context::{Context, ContextStore};
pub use crypto::{PrivateKey, PublicKey};
pub use endpoint::{BaseUrl, Environment};
pub use error::BunqError;
pub use observer::{ApiObserver, FinishedRequest};
pub use ratelimit::{Limit, RateLimiter, RateLimits};
pub use retry::RetryPolicy;
pub use sandbox::{SandboxUser, create_sandbox_user};
pub use sdk_import::{SdkImport, import_sdk_conf};
pub use transport::TransportSettings;
