//! The bunq adapter of the reconciler: [`BunqClient`] behind the reader/writer ports of
//! [`crate::reconcile::port`], and the client settings taken from the config.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::bunq::model::{CredentialId, CredentialPasswordIp, EntryId, IpStatus, PermittedIp};
use crate::bunq::{ApiObserver, BunqClient, BunqError, ClientSettings};
use crate::config::Config;
use crate::reconcile::port::{AllowlistReader, AllowlistWriter, EntryRef};

/// Client settings for `config`: base URL (environment default or override), device
/// description, permitted IPs for registration, session renewal margin.
pub fn client_settings(
    config: &Config,
    observer: Option<Arc<dyn ApiObserver>>,
) -> Result<ClientSettings, BunqError> {
    let mut settings = ClientSettings::new(
        config.bunq.base_url.clone(),
        config.bunq.device_description.clone(),
    );
    if !config.bunq.permitted_ips.is_empty() {
        settings.permitted_ips = Some(
            config
                .bunq
                .permitted_ips
                .iter()
                .map(Ipv4Addr::to_string)
                .collect(),
        );
    }
    settings.renew_before = config.sync.renew_before;
    settings.observer = observer;
    Ok(settings)
}

impl AllowlistReader for BunqClient {
    async fn list_credentials(&self) -> Result<Vec<CredentialPasswordIp>, BunqError> {
        BunqClient::list_credentials(self).await
    }

    async fn list_ips(&self, credential: CredentialId) -> Result<Vec<PermittedIp>, BunqError> {
        BunqClient::list_ips(self, credential).await
    }

    fn registered_device_description(&self) -> Option<String> {
        BunqClient::device_description(self)
    }
}

/// The read-only bunq port: the client seen only through [`AllowlistReader`]. `run --dry-run`
/// runs through it, so its runs cannot reach a write even by mistake: this type has none.
#[derive(Clone, Copy, Debug)]
pub struct ReadOnlyBunq<'a>(pub &'a BunqClient);

impl AllowlistReader for ReadOnlyBunq<'_> {
    async fn list_credentials(&self) -> Result<Vec<CredentialPasswordIp>, BunqError> {
        BunqClient::list_credentials(self.0).await
    }

    async fn list_ips(&self, credential: CredentialId) -> Result<Vec<PermittedIp>, BunqError> {
        BunqClient::list_ips(self.0, credential).await
    }

    fn registered_device_description(&self) -> Option<String> {
        BunqClient::device_description(self.0)
    }
}

impl AllowlistWriter for BunqClient {
    async fn create_ip(
        &self,
        credential: CredentialId,
        ip: Ipv4Addr,
    ) -> Result<EntryId, BunqError> {
        BunqClient::create_ip(self, credential, ip, IpStatus::Active).await
    }

    async fn set_ip_status(&self, at: EntryRef, status: IpStatus) -> Result<(), BunqError> {
        BunqClient::update_ip_status(self, at, status)
            .await
            .map(|_| ())
    }
}
