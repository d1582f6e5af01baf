//! bunq response parsing on arbitrary bytes: the wire models never panic, and what parses as an
//! envelope survives a serialize/parse round trip unchanged.

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
        let text = serde_json::to_string(&envelope).expect("an envelope serializes");
        let again: Envelope = serde_json::from_str(&text).expect("a serialized envelope parses");
        assert_eq!(again, envelope);
    }
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(data) {
        let _ = body.description();
    }
    let _ = serde_json::from_slice::<PermittedIp>(data);
    let _ = serde_json::from_slice::<CredentialPasswordIp>(data);
    let _ = serde_json::from_slice::<Pagination>(data);
});
