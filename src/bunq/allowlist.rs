//! The typed endpoints of the permitted-IP allowlists: credentials (`credential-password-ip`)
//! and their IP entries (`.../ip`).
//!
//! Lists fetch every page: `count=200` (bunq's maximum), then `Pagination.older_url` until it is
//! null. A list page holding an element of an unexpected type is a protocol error rather than
//! something to skip: an allowlist that silently loses entries would make the reconciler act
//! on a wrong picture.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::de::DeserializeOwned;

use crate::bunq::client::BunqClient;
use crate::bunq::error::BunqError;
use crate::bunq::model::{
    CredentialId, CredentialPasswordIp, EntryId, EntryRef, Envelope, IpStatus, PermittedIp,
    PermittedIpWrite,
};
use crate::bunq::session::parse_id;
use crate::bunq::transport::{RetryMode, Route, to_body};

/// `GET /user/{user}/credential-password-ip`.
pub const LIST_CREDENTIALS: Route = Route::get("/user/{user}/credential-password-ip");
/// `GET /user/{user}/credential-password-ip/{cred}`.
pub const GET_CREDENTIAL: Route = Route::get("/user/{user}/credential-password-ip/{cred}");
/// `GET /user/{user}/credential-password-ip/{cred}/ip`.
pub const LIST_IPS: Route = Route::get("/user/{user}/credential-password-ip/{cred}/ip");
/// `GET /user/{user}/credential-password-ip/{cred}/ip/{id}`.
pub const GET_IP: Route = Route::get("/user/{user}/credential-password-ip/{cred}/ip/{id}");
/// `POST /user/{user}/credential-password-ip/{cred}/ip`.
pub const CREATE_IP: Route = Route::post("/user/{user}/credential-password-ip/{cred}/ip");
/// `PUT /user/{user}/credential-password-ip/{cred}/ip/{id}`.
pub const UPDATE_IP: Route = Route::put("/user/{user}/credential-password-ip/{cred}/ip/{id}");

/// bunq's largest page size.
pub const PAGE_SIZE: u32 = 200;
/// A guard against a server that never ends a pagination chain.
const MAX_PAGES: usize = 1000;

const CREDENTIAL_TYPE: &str = "CredentialPasswordIp";
const IP_TYPE: &str = "PermittedIp";

impl BunqClient {
    /// Every credential (API key) of the user, all pages.
    pub async fn list_credentials(&self) -> Result<Vec<CredentialPasswordIp>, BunqError> {
        self.list_all(&LIST_CREDENTIALS, CREDENTIAL_TYPE, &[]).await
    }

    /// One credential.
    pub async fn get_credential(
        &self,
        credential: CredentialId,
    ) -> Result<CredentialPasswordIp, BunqError> {
        self.get_one(&GET_CREDENTIAL, CREDENTIAL_TYPE, &[credential])
            .await
    }

    /// Every IP entry of a credential (id, ip, status, created, updated), all pages, in bunq's
    /// order (newest first).
    pub async fn list_ips(&self, credential: CredentialId) -> Result<Vec<PermittedIp>, BunqError> {
        self.list_all(&LIST_IPS, IP_TYPE, &[credential]).await
    }

    /// One IP entry.
    pub async fn get_ip(
        &self,
        credential: CredentialId,
        entry: EntryId,
    ) -> Result<PermittedIp, BunqError> {
        self.get_one(&GET_IP, IP_TYPE, &[credential, entry]).await
    }

    /// Adds `ip` with `status` to a credential's allowlist and returns the new entry's id.
    ///
    /// **Never retried** on 5xx, timeouts, network errors or an unreadable answer: bunq may have
    /// created the entry even though no success arrived, and a blind retry would create a
    /// duplicate. After such an error the caller must re-list the credential's IPs before
    /// deciding what to do (see [`BunqError::is_unclear_write`]). Two refusals are sent again,
    /// because bunq made nothing: a 429 (after the endpoint's rate-limit window, see
    /// [`crate::bunq::retry`]) and a session rejection (once, with a new session).
    pub async fn create_ip(
        &self,
        credential: CredentialId,
        ip: Ipv4Addr,
        status: IpStatus,
    ) -> Result<EntryId, BunqError> {
        let write = PermittedIpWrite {
            ip: Some(ip.to_string()),
            status: Some(status),
        };
        self.write_entry(
            &CREATE_IP,
            &[credential],
            &write,
            RetryMode::RateLimitedOnly,
        )
        .await
    }

    /// Sets the status of an existing entry (its IP cannot change) and returns the entry id bunq
    /// reports. Sends `{"status": ...}` only. Idempotent, so transient failures are retried.
    pub async fn update_ip_status(
        &self,
        at: EntryRef,
        status: IpStatus,
    ) -> Result<EntryId, BunqError> {
        let write = PermittedIpWrite {
            ip: None,
            status: Some(status),
        };
        self.write_entry(
            &UPDATE_IP,
            &[at.credential, at.entry],
            &write,
            RetryMode::Transient,
        )
        .await
    }

    /// Sends `write` to `route` (its placeholders filled with `ids`, see [`Route::path`]) and
    /// returns the entry id bunq answers with.
    async fn write_entry(
        &self,
        route: &Route,
        ids: &[u64],
        write: &PermittedIpWrite,
        retry: RetryMode,
    ) -> Result<EntryId, BunqError> {
        let body = to_body(route, write)?;
        let path = |user| route.path(user, ids);
        let envelope = self.call_envelope(route, &path, Some(body), retry).await?;
        parse_id(&envelope, route)
    }

    /// The one object of `type_name` that `route` (its placeholders filled with `ids`) answers,
    /// retried on transient failures.
    pub(crate) async fn get_one<T: DeserializeOwned>(
        &self,
        route: &Route,
        type_name: &str,
        ids: &[u64],
    ) -> Result<T, BunqError> {
        let path = |user| route.path(user, ids);
        let envelope = self
            .call_envelope(route, &path, None, RetryMode::Transient)
            .await?;
        single(route, &envelope, type_name)
    }

    /// Fetches the list at `route` (its placeholders filled with `ids`), [`PAGE_SIZE`] a page,
    /// and follows `older_url` to the end.
    pub(crate) async fn list_all<T: DeserializeOwned>(
        &self,
        route: &Route,
        type_name: &str,
        ids: &[u64],
    ) -> Result<Vec<T>, BunqError> {
        let first_page = |user| format!("{}?count={PAGE_SIZE}", route.path(user, ids));
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            let envelope = match &next {
                None => {
                    self.call_envelope(route, &first_page, None, RetryMode::Transient)
                        .await?
                }
                Some(path) => {
                    self.call_envelope(route, &|_| path.clone(), None, RetryMode::Transient)
                        .await?
                }
            };
            items.extend(page_items::<T>(route, &envelope, type_name)?);
            let older = envelope
                .pagination
                .as_ref()
                .and_then(|pagination| pagination.older_url.as_deref());
            let Some(link) = older else {
                return Ok(items);
            };
            let path = self
                .base_url()
                .relative_path_of_link(link)
                .map_err(|err| with_endpoint(route, err))?;
            if !seen.insert(path.clone()) {
                return Err(protocol(
                    route,
                    format!("pagination loops back to {link:?}"),
                ));
            }
            next = Some(path);
        }
        Err(protocol(
            route,
            format!("more than {MAX_PAGES} pages; refusing to continue"),
        ))
    }
}

/// The items of one list page, all of which must be of `type_name`.
pub fn page_items<T: DeserializeOwned>(
    route: &Route,
    envelope: &Envelope,
    type_name: &str,
) -> Result<Vec<T>, BunqError> {
    envelope
        .response
        .iter()
        .map(|element| {
            let value = element.get(type_name).ok_or_else(|| {
                let found: Vec<&str> = element.keys().map(String::as_str).collect();
                protocol(
                    route,
                    format!("expected only {type_name} items, found {found:?}"),
                )
            })?;
            serde_json::from_value(value.clone())
                .map_err(|err| protocol(route, format!("malformed {type_name} ({err})")))
        })
        .collect()
}

fn single<T: DeserializeOwned>(
    route: &Route,
    envelope: &Envelope,
    type_name: &str,
) -> Result<T, BunqError> {
    let value = envelope
        .find(type_name)
        .ok_or_else(|| protocol(route, format!("no {type_name} in the response")))?;
    serde_json::from_value(value.clone())
        .map_err(|err| protocol(route, format!("malformed {type_name} ({err})")))
}

fn protocol(route: &Route, message: String) -> BunqError {
    BunqError::Protocol {
        endpoint: route.endpoint(),
        message,
    }
}

fn with_endpoint(route: &Route, err: BunqError) -> BunqError {
    match err {
        BunqError::Protocol { message, .. } => protocol(route, message),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_items_parse_every_permitted_ip_with_ids() {
        let envelope: Envelope = serde_json::from_str(
            r#"{"Response":[{"PermittedIp":{"id":2,"ip":"1.1.1.1","status":"ACTIVE","created":"c","updated":"u"}},
                {"PermittedIp":{"id":1,"ip":"2.2.2.2","status":"INACTIVE"}}],
                "Pagination":{"future_url":null,"newer_url":null,"older_url":null}}"#,
        )
        .unwrap();
        let items: Vec<PermittedIp> = page_items(&LIST_IPS, &envelope, IP_TYPE).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].id, 2);
        assert_eq!(items[0].created.as_deref(), Some("c"));
        assert_eq!(items[1].status, IpStatus::Inactive);
    }

    #[test]
    fn a_page_with_a_foreign_item_type_is_a_protocol_error_not_a_shorter_list() {
        let envelope: Envelope = serde_json::from_str(
            r#"{"Response":[{"PermittedIp":{"id":2,"ip":"1.1.1.1","status":"ACTIVE"}},{"PermittedIpV2":{"id":1}}]}"#,
        )
        .unwrap();
        let err = page_items::<PermittedIp>(&LIST_IPS, &envelope, IP_TYPE).unwrap_err();
        assert!(matches!(err, BunqError::Protocol { .. }), "{err}");
        assert!(err.to_string().contains("PermittedIpV2"), "{err}");
    }

    #[test]
    fn create_body_is_ip_then_status() {
        let body = to_body(
            &CREATE_IP,
            &PermittedIpWrite {
                ip: Some(Ipv4Addr::new(5, 6, 7, 8).to_string()),
                status: Some(IpStatus::Active),
            },
        )
        .unwrap();
        assert_eq!(body.as_slice(), br#"{"ip":"5.6.7.8","status":"ACTIVE"}"#);
    }
}
