//! Response bodies exactly as bunq shapes them.
//!
//! Success: `{"Response":[{<Type>:{...}},...]}` (plus `Pagination` on lists), compact JSON with
//! `/` escaped as `\/` the way bunq's encoder writes it; a client that verifies the server
//! signature over re-encoded JSON instead of the raw bytes fails against this, as it would
//! against bunq. Errors: `{"Error":[{"error_description":..,"error_description_translated":..}]}`.

use serde::Serialize;
use serde_json::Value;

use crate::bunq::model::{Envelope, ErrorBody, Pagination};

/// A status and body produced by the API logic, before headers and signatures are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// HTTP status.
    pub(crate) status: u16,
    /// Exact body bytes; these are what the server signature covers.
    pub(crate) body: Vec<u8>,
}

/// A bunq error: status plus `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// HTTP status (400, 403, 404, 405, 429, 466, ...).
    pub(crate) status: u16,
    /// The English text bunq would send.
    pub(crate) description: String,
}

/// bunq's text for a wrong key or an IP that is not ACTIVE on the key's credential.
pub(crate) const CREDENTIALS_INCORRECT: &str =
    "User credentials are incorrect. Incorrect API key or IP address.";
/// bunq's text for a missing, wrong, expired or wrong-kind token.
pub(crate) const INSUFFICIENT_AUTHENTICATION: &str = "Insufficient authentication.";
/// bunq's text when session-server is called without a signature.
pub(crate) const SIGNATURE_REQUIRED: &str = "For this operation a request signature is required.";
/// bunq's text when a present signature does not verify.
pub(crate) const SIGNATURE_INVALID: &str = "The request signature is invalid.";

impl ApiError {
    /// An error with any status and text.
    pub(crate) fn new(status: u16, description: impl Into<String>) -> Self {
        ApiError {
            status,
            description: description.into(),
        }
    }

    /// 400 with a validation message.
    pub(crate) fn bad_request(description: impl Into<String>) -> Self {
        ApiError::new(400, description)
    }

    /// 400 "User credentials are incorrect...".
    pub(crate) fn credentials_incorrect() -> Self {
        ApiError::new(400, CREDENTIALS_INCORRECT)
    }

    /// 404 for an object that does not exist (or is not the caller's).
    pub(crate) fn not_found(what: &str) -> Self {
        ApiError::new(404, format!("{what} not found."))
    }

    /// The reply carrying this error.
    pub(crate) fn into_reply(self, escape_slashes: bool) -> Reply {
        Reply {
            status: self.status,
            body: encode(&ErrorBody::new(self.description), escape_slashes),
        }
    }
}

/// Serializes compact JSON, escaping `/` as bunq does when asked. Escaping every `/` byte is
/// safe: outside strings JSON has no `/`, and inside strings `\/` is a valid escape.
pub(crate) fn encode<T: Serialize>(value: &T, escape_slashes: bool) -> Vec<u8> {
    let json = match serde_json::to_string(value) {
        Ok(json) => json,
        // Our own model types and `Value`s always serialize; keep a body rather than panic.
        Err(err) => {
            return format!(
                r#"{{"Error":[{{"error_description":"simulator encoding failure: {err}"}}]}}"#
            )
            .into_bytes();
        }
    };
    if escape_slashes {
        json.replace('/', "\\/").into_bytes()
    } else {
        json.into_bytes()
    }
}

/// A success envelope of `(type, object)` items, without pagination.
pub(crate) fn items(items: Vec<(&str, Value)>) -> Envelope {
    Envelope::new(
        items
            .into_iter()
            .map(|(kind, value)| (kind.to_owned(), value)),
    )
}

/// A success envelope of one type's list items with pagination links.
pub(crate) fn list(kind: &str, values: Vec<Value>, pagination: Pagination) -> Envelope {
    let mut envelope = Envelope::new(values.into_iter().map(|value| (kind.to_owned(), value)));
    envelope.pagination = Some(pagination);
    envelope
}

/// `{"Response":[{"Id":{"id":n}}]}`, the reply to creates and updates.
pub(crate) fn id(id: u64) -> Envelope {
    items(vec![("Id", serde_json::json!({ "id": id }))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_both_descriptions() {
        let reply = ApiError::credentials_incorrect().into_reply(false);
        assert_eq!(reply.status, 400);
        assert_eq!(
            String::from_utf8(reply.body).unwrap(),
            r#"{"Error":[{"error_description":"User credentials are incorrect. Incorrect API key or IP address.","error_description_translated":"User credentials are incorrect. Incorrect API key or IP address."}]}"#
        );
    }

    #[test]
    fn slashes_are_escaped_like_bunq_and_still_parse() {
        let body = encode(&serde_json::json!({ "url": "/v1/user" }), true);
        assert_eq!(body, br#"{"url":"\/v1\/user"}"#);
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["url"], "/v1/user");
    }

    #[test]
    fn list_always_carries_all_three_pagination_keys() {
        let body = encode(&list("PermittedIp", vec![], Pagination::default()), false);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"Response":[],"Pagination":{"future_url":null,"newer_url":null,"older_url":null}}"#
        );
    }

    #[test]
    fn id_reply_is_wrapped_in_id() {
        let body = encode(&id(7), false);
        assert_eq!(body, br#"{"Response":[{"Id":{"id":7}}]}"#);
    }
}
