//! The daemon's own device at bunq: reading it back (`GET /device-server`) when the saved context
//! does not say how it was registered.
//!
//! The own-IP rule finds the daemon's own credential by its `permitted_device.description`, so
//! it needs the description the device was registered with. A registration of this client saves
//! it; a context imported from the official SDK does not have it (the SDK records neither the
//! device id nor its description). Without it the planner blocks every deactivation (fail
//! closed), so the client asks bunq once and saves the answer.
//!
//! Which device is ours: with a saved id, the device of that id. Without one, the only ACTIVE
//! device bunq lists. Several ACTIVE devices cannot be told apart from here (each API key of
//! the user may have registered one), so the choice is left open rather than guessed; the
//! config's `bunq.device_description` then names the device.

use crate::bunq::client::BunqClient;
use crate::bunq::error::BunqError;
use crate::bunq::model::DeviceServer;
use crate::bunq::transport::Route;

/// `GET /device-server`.
pub const LIST_DEVICES: Route = Route::get("/device-server");
/// `GET /device-server/{id}`.
pub const GET_DEVICE: Route = Route::get("/device-server/{id}");

const DEVICE_TYPE: &str = "DeviceServer";

impl BunqClient {
    /// Every device registered for the user, all pages.
    pub async fn list_devices(&self) -> Result<Vec<DeviceServer>, BunqError> {
        self.list_all(&LIST_DEVICES, DEVICE_TYPE, &[]).await
    }

    /// One device.
    pub async fn get_device(&self, id: u64) -> Result<DeviceServer, BunqError> {
        self.get_one(&GET_DEVICE, DEVICE_TYPE, &[id]).await
    }

    /// After a connect: when the saved device has no description (a context imported from the
    /// SDK), reads the own device from bunq and adopts its description, so that the own-ip rule
    /// can find the own credential. Never fails the connect: when bunq cannot say, the
    /// description stays unknown and the planner keeps blocking deactivations (fail closed).
    pub(crate) async fn learn_own_device(&self) {
        let Some(known_id) = self.device_to_learn().await else {
            return;
        };
        match self.find_own_device(known_id).await {
            Ok(Ok(device)) => self.adopt_device(&device).await,
            Ok(Err(unknown)) => tracing::warn!(
                reason = %unknown,
                "cannot tell this daemon's device from bunq's list; set bunq.device_description \
                 to the description it was registered with, or every deactivation stays blocked \
                 (own-ip)"
            ),
            Err(err) => tracing::warn!(
                error = %err,
                "cannot read the own device from bunq; the next connect tries again, and until \
                 then every deactivation stays blocked (own-ip) unless bunq.device_description \
                 names the device"
            ),
        }
    }

    /// Reads the own device from bunq: by `known_id` when the context has one, else the one
    /// ACTIVE device of the user.
    pub(crate) async fn find_own_device(
        &self,
        known_id: Option<u64>,
    ) -> Result<Result<DeviceServer, UnknownDevice>, BunqError> {
        Ok(match known_id {
            Some(id) => Ok(self.get_device(id).await?),
            None => own_device(self.list_devices().await?),
        })
    }
}

/// Why the own device could not be chosen from bunq's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnknownDevice {
    /// bunq lists no ACTIVE device.
    NoActiveDevice,
    /// Several ACTIVE devices; their descriptions, to name one in the config.
    Ambiguous(Vec<String>),
}

impl std::fmt::Display for UnknownDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnknownDevice::NoActiveDevice => write!(f, "bunq lists no ACTIVE device"),
            UnknownDevice::Ambiguous(descriptions) => write!(
                f,
                "bunq lists {} ACTIVE devices ({}), and nothing saved says which one is this \
                 daemon's",
                descriptions.len(),
                descriptions
                    .iter()
                    .map(|description| format!("{description:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The one ACTIVE device of `devices`; pure, so the choice is tested without a server.
pub fn own_device(devices: Vec<DeviceServer>) -> Result<DeviceServer, UnknownDevice> {
    let mut active: Vec<DeviceServer> = devices
        .into_iter()
        .filter(|device| device.status.as_deref() == Some("ACTIVE"))
        .collect();
    match active.len() {
        0 => Err(UnknownDevice::NoActiveDevice),
        1 => Ok(active.remove(0)),
        _ => Err(UnknownDevice::Ambiguous(
            active
                .into_iter()
                .map(|device| device.description.unwrap_or_default())
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: u64, description: &str, status: &str) -> DeviceServer {
        DeviceServer {
            id,
            created: None,
            updated: None,
            description: Some(description.to_owned()),
            ip: Some("198.51.100.7".to_owned()),
            status: Some(status.to_owned()),
        }
    }

    #[test]
    fn the_only_active_device_is_the_own_one_whatever_else_is_listed() {
        let devices = vec![
            device(1, "old laptop", "OBSOLETE"),
            device(2, "sdk-server", "ACTIVE"),
            device(3, "blocked", "BLOCKED"),
        ];
        assert_eq!(own_device(devices).map(|found| found.id), Ok(2));
    }

    #[test]
    fn several_active_devices_are_not_guessed_between() {
        let devices = vec![device(1, "a", "ACTIVE"), device(2, "b", "ACTIVE")];
        let err = own_device(devices).unwrap_err();
        assert_eq!(err, UnknownDevice::Ambiguous(vec!["a".into(), "b".into()]));
        assert!(err.to_string().contains("2 ACTIVE devices (\"a\", \"b\")"));
    }

    #[test]
    fn no_active_device_is_said_so() {
        assert_eq!(
            own_device(vec![device(1, "a", "OBSOLETE")]),
            Err(UnknownDevice::NoActiveDevice)
        );
        assert_eq!(own_device(Vec::new()), Err(UnknownDevice::NoActiveDevice));
    }
}
