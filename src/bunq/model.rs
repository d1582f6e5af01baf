//! Typed models of bunq's wire format for the resources this daemon uses.
//!
//! bunq wraps every object in a single-key map naming its type (`{"PermittedIp": {...}}`) inside
//! a `Response` array; lists add a top-level `Pagination`. Unknown fields are tolerated
//! everywhere, and statuses keep an `Other` case so that a new status bunq invents is reported,
//! not a parse failure. The simulator serializes the same types, so both sides agree by
//! construction and the tests pin the JSON shape.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A bunq user id, as used in `/user/{id}/...` paths.
pub type UserId = u64;
/// The id of a `credential-password-ip` (one API key's credential).
pub type CredentialId = u64;

/// How messages, logs and plans name a credential: `4242 (ci-runners)` with a configured name,
/// `4242` without.
pub fn credential_label(id: CredentialId, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{id} ({name})"),
        None => id.to_string(),
    }
}
/// The id of one permitted-IP entry of a credential.
pub type EntryId = u64;

/// Which entry a status write is for. bunq addresses an entry under its credential
/// (`/credential-password-ip/{credential}/ip/{entry}`), so an entry id alone names nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef {
    /// The credential the entry belongs to.
    pub credential: CredentialId,
    /// The entry's id.
    pub entry: EntryId,
}

impl EntryRef {
    /// Entry `entry` of credential `credential`.
    pub const fn new(credential: CredentialId, entry: EntryId) -> EntryRef {
        EntryRef { credential, entry }
    }
}

/// The status of one permitted-IP entry. Only `ACTIVE` entries authenticate (and are billed).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpStatus {
    /// The IP may use the API key.
    Active,
    /// The entry exists but does not authenticate; this is how an IP leaves the allowlist.
    Inactive,
    /// A status this daemon does not know; kept verbatim for reports.
    Other(String),
}

impl IpStatus {
    /// The wire spelling (`ACTIVE`, `INACTIVE`, or the unknown value).
    pub fn as_str(&self) -> &str {
        match self {
            IpStatus::Active => "ACTIVE",
            IpStatus::Inactive => "INACTIVE",
            IpStatus::Other(other) => other,
        }
    }

    /// Parses the wire spelling; anything unknown becomes [`IpStatus::Other`].
    pub fn from_wire(value: &str) -> Self {
        match value {
            "ACTIVE" => IpStatus::Active,
            "INACTIVE" => IpStatus::Inactive,
            other => IpStatus::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for IpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for IpStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IpStatus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|value| IpStatus::from_wire(&value))
    }
}

/// One entry of a credential's allowlist (`PermittedIp`). Its `ip` never changes; its `status`
/// is toggled with PUT. The official SDK drops `id`, `created` and `updated`; we keep them,
/// because reactivating an entry needs its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermittedIp {
    /// Entry id, needed to PUT a status change.
    pub id: EntryId,
    /// The address as bunq reports it. Kept as text: bunq may hold values this daemon cannot
    /// manage (an app-set wildcard, say), and those must be reported, not dropped.
    pub ip: String,
    /// Whether the entry authenticates.
    pub status: IpStatus,
    /// Creation time in bunq's `YYYY-MM-DD hh:mm:ss.ffffff` UTC format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Last change time, same format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
}

impl PermittedIp {
    /// An entry without timestamps, the way unit tests, property tests and benches build their
    /// allowlists (one constructor instead of a struct literal in each). The daemon itself only
    /// gets entries from bunq's listings.
    #[doc(hidden)]
    pub fn new(id: EntryId, ip: impl Into<String>, status: IpStatus) -> PermittedIp {
        PermittedIp {
            id,
            ip: ip.into(),
            status,
            created: None,
            updated: None,
        }
    }
}

/// The device a credential is bound to, as reported in the credential listing. The daemon
/// finds its own credential (and so its own egress IP) through the device description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PermittedDevice {
    /// The `description` given at `POST /device-server`.
    #[serde(default)]
    pub description: Option<String>,
    /// The IP the device was registered from.
    #[serde(default)]
    pub ip: Option<String>,
}

/// A registered device (`DeviceServer`), as `GET /device-server` lists it. Its description is
/// what the credential listing shows as `permitted_device.description`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceServer {
    /// The DeviceServer id, used in `/device-server/{id}`.
    pub id: u64,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Last change time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    /// The `description` given at `POST /device-server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The IP the device was registered from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// `ACTIVE`, `BLOCKED`, `NEEDS_CONFIRMATION` or `OBSOLETE`, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A password-type credential (API key) with an allowlist (`CredentialPasswordIp`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialPasswordIp {
    /// Credential id, used in `/credential-password-ip/{id}/ip` paths.
    pub id: CredentialId,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Last change time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    /// Credential status (`ACTIVE`, `PENDING_FIRST_USE`, ...), kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Only while `PENDING_FIRST_USE`: when the credential expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_time: Option<String>,
    /// The device allowed to use the credential, when active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permitted_device: Option<PermittedDevice>,
}

/// Links to neighbouring pages of a list. All three keys are always present (null allowed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Pagination {
    /// Poll for items created after the newest one on this page.
    pub future_url: Option<String>,
    /// Items newer than this page.
    pub newer_url: Option<String>,
    /// Items older than this page; `None` on the last page. The client follows this one.
    pub older_url: Option<String>,
}

/// The body of a successful bunq response: `{"Response": [{<Type>: {...}}, ...], "Pagination": ...}`.
/// `Debug` names the element types only: the elements of installation and session-server
/// responses are tokens.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope {
    /// One single-key object per element, the key naming the type.
    pub response: Vec<serde_json::Map<String, Value>>,
    /// Present on list responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let types: Vec<&str> = self
            .response
            .iter()
            .flat_map(|item| item.keys().map(String::as_str))
            .collect();
        f.debug_struct("Envelope")
            .field("response", &format_args!("<redacted> {types:?}"))
            .field("pagination", &self.pagination)
            .finish()
    }
}

impl Envelope {
    /// Builds a success envelope from `(type name, object)` pairs.
    pub fn new(items: impl IntoIterator<Item = (String, Value)>) -> Self {
        let response = items
            .into_iter()
            .map(|(key, value)| {
                let mut map = serde_json::Map::new();
                map.insert(key, value);
                map
            })
            .collect();
        Envelope {
            response,
            pagination: None,
        }
    }

    /// The first element wrapped in `type_name`, if any: bunq's responses are parsed by type
    /// key, never by position (session-server's user object can be one of four types).
    pub fn find(&self, type_name: &str) -> Option<&Value> {
        self.response.iter().find_map(|item| item.get(type_name))
    }

    /// Every element wrapped in `type_name`, in response order.
    pub fn all(&self, type_name: &str) -> impl Iterator<Item = &Value> {
        self.response
            .iter()
            .filter_map(move |item| item.get(type_name))
    }
}

/// `{"id": n}`, as wrapped in `Id` by create and update responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BunqId {
    /// The id of the created or updated object.
    pub id: u64,
}

/// One element of a bunq error body `{"Error": [{"error_description": ...}]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorItem {
    /// English text; this is what operators search for.
    pub error_description: String,
    /// The same in the requested language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description_translated: Option<String>,
}

/// A bunq error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Usually exactly one item.
    #[serde(rename = "Error")]
    pub error: Vec<ErrorItem>,
}

impl ErrorBody {
    /// Builds the body bunq sends for one error text.
    pub fn new(description: impl Into<String>) -> Self {
        let description = description.into();
        ErrorBody {
            error: vec![ErrorItem {
                error_description_translated: Some(description.clone()),
                error_description: description,
            }],
        }
    }

    /// All descriptions joined with "; ".
    pub fn description(&self) -> String {
        self.error
            .iter()
            .map(|item| item.error_description.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The request body of `POST .../ip` and `PUT .../ip/{id}`. The PUT sends only `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermittedIpWrite {
    /// Required on create; never sent on update (an entry's IP is immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// `ACTIVE` or `INACTIVE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<IpStatus>,
}

/// The timestamp format bunq uses everywhere: UTC, microseconds, no zone suffix.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_status_is_kept_verbatim() {
        let entry: PermittedIp = serde_json::from_str(
            r#"{"id":7,"ip":"1.2.3.4","status":"PENDING","created":"x","extra":1}"#,
        )
        .unwrap();
        assert_eq!(entry.status, IpStatus::Other("PENDING".into()));
        assert_eq!(serde_json::to_value(&entry.status).unwrap(), "PENDING");
    }

    #[test]
    fn envelope_finds_items_by_type_key_not_position() {
        let body =
            r#"{"Response":[{"Token":{"token":"t"}},{"Id":{"id":3}},{"UserCompany":{"id":9}}]}"#;
        let envelope: Envelope = serde_json::from_str(body).unwrap();
        assert_eq!(envelope.find("Id").unwrap()["id"], 3);
        assert_eq!(envelope.find("UserCompany").unwrap()["id"], 9);
        assert!(envelope.find("UserPerson").is_none());
    }

    #[test]
    fn list_envelope_keeps_pagination_with_null_links() {
        let body = r#"{"Response":[{"PermittedIp":{"id":1,"ip":"1.1.1.1","status":"ACTIVE"}}],
            "Pagination":{"future_url":"/v1/x?newer_id=1","newer_url":null,"older_url":null}}"#;
        let envelope: Envelope = serde_json::from_str(body).unwrap();
        let pagination = envelope.pagination.unwrap();
        assert_eq!(pagination.older_url, None);
        assert_eq!(pagination.future_url.as_deref(), Some("/v1/x?newer_id=1"));
    }

    #[test]
    fn update_body_never_carries_the_ip() {
        let body = PermittedIpWrite {
            ip: None,
            status: Some(IpStatus::Inactive),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"status":"INACTIVE"}"#
        );
    }

    #[test]
    fn envelope_debug_names_the_types_but_never_shows_a_token() {
        let envelope: Envelope = serde_json::from_str(
            r#"{"Response":[{"Id":{"id":1}},{"Token":{"token":"secret-token-0123456789"}}]}"#,
        )
        .unwrap();
        let printed = format!("{envelope:?} {envelope:#?}");
        assert!(!printed.contains("secret-token-0123456789"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(printed.contains("Token"), "{printed}");
    }

    #[test]
    fn error_body_joins_descriptions() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"Error":[{"error_description":"a","error_description_translated":"a"},{"error_description":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(body.description(), "a; b");
    }
}
