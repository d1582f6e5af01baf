//! bunq response parsing on arbitrary bytes: the wire models never panic.

#![no_main]

use bunq_ipsync::bunq::model::{
    BunqId, CredentialPasswordIp, Envelope, ErrorBody, Pagination, PermittedIp,
};
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

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(data) {
        for type_name in TYPES {
            let _ = envelope.find(type_name);
            for value in envelope.all(type_name) {
                let _ = serde_json::from_value::<PermittedIp>(value.clone());
                let _ = serde_json::from_value::<CredentialPasswordIp>(value.clone());
                let _ = serde_json::from_value::<BunqId>(value.clone());
            }
        }
        // A serialize/parse round trip is not checked: serde_json parses floats to the nearest
        // value only with its `float_roundtrip` feature, and float fields are never read.
        let _ = serde_json::to_string(&envelope);
    }
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(data) {
        let _ = body.description();
    }
    let _ = serde_json::from_slice::<PermittedIp>(data);
    let _ = serde_json::from_slice::<CredentialPasswordIp>(data);
    let _ = serde_json::from_slice::<Pagination>(data);
});
