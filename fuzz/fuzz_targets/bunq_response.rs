//! bunq response parsing on arbitrary bytes, through the client's own entry points: the body
//! as an envelope (`ApiResponse::envelope`), list pages (`page_items`), create responses
//! (`parse_id`), installation and session responses (`parse_installation`, `parse_session`),
//! error bodies (`api_error`), pagination links (`BaseUrl::relative_path_of_link`), and the
//! `X-Bunq-Server-Signature` check (`PublicKey::verify`).
//!
//! Contract: nothing panics; a signature made of the input never verifies; an error body that is not bunq JSON is quoted only as a bounded
//! excerpt; a pagination link the client accepts never leads off the API's origin or base path
//! (following it sends the session token).

#![no_main]

use std::sync::OnceLock;

use bunq_ipsync::bunq::PrivateKey;
use bunq_ipsync::bunq::allowlist::{LIST_CREDENTIALS, LIST_IPS, page_items};
use bunq_ipsync::bunq::endpoint::BaseUrl;
use bunq_ipsync::bunq::model::{
    BunqId, CredentialPasswordIp, Envelope, ErrorBody, Pagination, PermittedIp,
};
use bunq_ipsync::bunq::session::{DEVICE_SERVER, parse_id, parse_installation, parse_session};
use bunq_ipsync::bunq::transport::{ApiResponse, api_error, excerpt_text};
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

/// Every type key the client reads out of an envelope.
const TYPES: [&str; 6] = [
    "PermittedIp",
    "CredentialPasswordIp",
    "Id",
    "Token",
    "ServerPublicKey",
    "UserCompany",
];

/// The longest excerpt `excerpt_text` may return: 200 characters and an ellipsis.
const EXCERPT_MAX_CHARS: usize = 201;

fuzz_target!(|data: &[u8]| {
    let response = ApiResponse {
        status: 200,
        body: data.to_vec().into(),
        response_id: None,
    };
    if let Ok(envelope) = response.envelope(&LIST_IPS) {
        check_envelope(&envelope);
    }

    let status = 400 + u16::from(data.first().copied().unwrap_or(0));
    let error = api_error(&LIST_IPS, status, data, Some("response-id".to_owned()));
    let _ = error.to_string();
    let excerpt = excerpt_text(data);
    assert!(excerpt.chars().count() <= EXCERPT_MAX_CHARS, "{excerpt:?}");

    if let Ok(body) = serde_json::from_slice::<ErrorBody>(data) {
        let _ = body.description();
    }
    let _ = serde_json::from_slice::<PermittedIp>(data);
    let _ = serde_json::from_slice::<CredentialPasswordIp>(data);
    let _ = serde_json::from_slice::<Pagination>(data);

    if let Ok(link) = std::str::from_utf8(data) {
        check_link(link);
    }

    // The signature header is text; the body is what it claims to sign.
    let signature = String::from_utf8_lossy(data);
    assert!(
        server_key().public_key().verify(data, &signature).is_err(),
        "an input verified as its own signature"
    );
});

/// One key for the whole run: generating an RSA-2048 key per input would dominate the run.
fn server_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate().expect("an RSA key generates"))
}

fn check_envelope(envelope: &Envelope) {
    for type_name in TYPES {
        let _ = envelope.find(type_name);
        for value in envelope.all(type_name) {
            let _ = serde_json::from_value::<BunqId>(value.clone());
        }
    }
    if let Ok(items) = page_items::<PermittedIp>(&LIST_IPS, envelope, "PermittedIp") {
        assert_eq!(items.len(), envelope.response.len());
    }
    let _ = page_items::<CredentialPasswordIp>(&LIST_CREDENTIALS, envelope, "CredentialPasswordIp")
        .map_err(|error| error.to_string());
    let _ = parse_id(envelope, &DEVICE_SERVER).map_err(|error| error.to_string());
    let _ = parse_installation(envelope).map_err(|error| error.to_string());
    for now in [DateTime::<Utc>::UNIX_EPOCH, DateTime::<Utc>::MAX_UTC] {
        let _ = parse_session(envelope, now).map_err(|error| error.to_string());
    }
    if let Some(link) = envelope
        .pagination
        .as_ref()
        .and_then(|pagination| pagination.older_url.as_deref())
    {
        check_link(link);
    }
}

/// A link the client accepts must lead to the base URL's origin, under its path.
fn check_link(link: &str) {
    for base in [
        "https://api.bunq.com/v1",
        "http://127.0.0.1:8080/v1",
        "https://h.example",
    ] {
        let base = BaseUrl::parse(base).expect("a valid base URL");
        let Ok(path) = base.relative_path_of_link(link) else {
            continue;
        };
        let url = base
            .join(&path)
            .unwrap_or_else(|error| panic!("accepted link {link:?} gives {path:?}: {error}"));
        let origin = BaseUrl::parse(base.as_str())
            .expect("valid")
            .join("/")
            .expect("joins");
        assert_eq!(
            url.origin(),
            origin.origin(),
            "link {link:?} leaves the origin"
        );
        let prefix = format!("{}/", base.as_str());
        assert!(
            url.as_str().starts_with(&prefix),
            "link {link:?} leads outside the API base: {url}"
        );
    }
}
