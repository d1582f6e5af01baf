//! The bunq API client.
//!
//! * [`crypto`]: RSA keys, request signing, response verification.
//! * [`model`]: typed wire format (envelopes, credentials, permitted IPs, errors).
//! * [`error`]: [`BunqError`], the one error type of this layer.

pub mod crypto;
pub mod error;
pub mod model;

pub use error::BunqError;
