//! The simulated bank: users, API keys, their credentials and allowlists, installations and
//! sessions.
//!
//! This module owns the data and the invariants that do not depend on a request: ids come from
//! one increasing sequence (so "newest first" is "ids descending"), each API key has exactly one
//! credential, an entry's IP never changes. Request handling (tokens, signatures, routes) lives
//! in [`super::auth`] and [`super::api`]; they read and change the world through these methods.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;

use rsa::rand_core::{OsRng, RngCore};

use super::clock::{Clock, SimTime};
use crate::bunq::crypto::PublicKey;
use crate::bunq::model::{
    CredentialId, CredentialPasswordIp, DeviceServer, EntryId, IpStatus, PermittedDevice,
    PermittedIp, UserId,
};
use crate::secret::Secret;

/// What seeding a user and API key produced: the key to give the client under test and the ids
/// to find its objects by.
#[derive(Debug, Clone)]
pub struct SeededKey {
    /// The API key (the `secret` of device-server and session-server).
    pub api_key: Secret,
    /// The user the key belongs to (the `{user}` of `/user/{user}/...` paths).
    pub user_id: UserId,
    /// The key's credential-password-ip; it has no device and no entries until device-server.
    pub credential_id: CredentialId,
}

/// Why a seeding or inspection call on the simulator was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    /// No user with this id exists.
    #[error("no simulated user {0}")]
    UnknownUser(UserId),
    /// No credential with this id exists.
    #[error("no simulated credential {0}")]
    UnknownCredential(CredentialId),
    /// The credential has no entry with this id.
    #[error("credential {credential} has no entry {entry}")]
    UnknownEntry {
        /// The credential searched.
        credential: CredentialId,
        /// The entry not found.
        entry: EntryId,
    },
}

/// A bunq user (always a `UserPerson` here).
#[derive(Debug)]
pub(crate) struct User {
    pub(crate) id: UserId,
    pub(crate) created: String,
    pub(crate) updated: String,
    pub(crate) display_name: String,
}

/// An API key and the credential it authenticates with.
#[derive(Debug)]
pub(crate) struct ApiKey {
    pub(crate) secret: Secret,
    pub(crate) user_id: UserId,
    pub(crate) credential_id: CredentialId,
}

/// A credential-password-ip and its allowlist.
#[derive(Debug)]
pub(crate) struct Credential {
    pub(crate) id: CredentialId,
    pub(crate) user_id: UserId,
    pub(crate) created: String,
    pub(crate) updated: String,
    /// Set by device-server (or seeding): the description and IP the key was registered with.
    pub(crate) permitted_device: Option<PermittedDevice>,
    /// Entries by id; iterate in reverse for bunq's newest-first order.
    pub(crate) entries: BTreeMap<EntryId, PermittedIp>,
}

impl Credential {
    /// The wire object of the credential listing.
    pub(crate) fn to_wire(&self) -> CredentialPasswordIp {
        CredentialPasswordIp {
            id: self.id,
            created: Some(self.created.clone()),
            updated: Some(self.updated.clone()),
            status: Some("ACTIVE".to_owned()),
            expiry_time: None,
            permitted_device: self.permitted_device.clone(),
        }
    }

    /// True when at least one entry is ACTIVE.
    pub(crate) fn has_active_entries(&self) -> bool {
        self.entries
            .values()
            .any(|entry| entry.status == IpStatus::Active)
    }

    /// True when `ip` may use the credential: an ACTIVE entry for it, or an ACTIVE wildcard.
    pub(crate) fn permits(&self, ip: Ipv4Addr) -> bool {
        let ip = ip.to_string();
        self.entries
            .values()
            .any(|entry| entry.status == IpStatus::Active && (entry.ip == ip || entry.ip == "*"))
    }

    /// Entries newest first.
    pub(crate) fn entries_newest_first(&self) -> Vec<PermittedIp> {
        self.entries.values().rev().cloned().collect()
    }
}

/// A `POST /device-server`, as `GET /device-server` lists it.
#[derive(Debug)]
pub(crate) struct Device {
    /// The user of the API key that registered it.
    pub(crate) user_id: UserId,
    /// The wire object (id, times, description, IP, status).
    pub(crate) wire: DeviceServer,
}

/// A `POST /installation`: the client's public key and its token.
#[derive(Debug)]
pub(crate) struct Installation {
    pub(crate) id: u64,
    pub(crate) token: Secret,
    /// Verifies the client's request signatures.
    pub(crate) client_key: PublicKey,
    /// Every `X-Bunq-Client-Request-Id` seen on this installation, to refuse reuse.
    pub(crate) request_ids: HashSet<String>,
    /// API keys registered on this installation with device-server.
    pub(crate) registered_keys: BTreeSet<usize>,
}

/// A session opened with session-server.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) token: Secret,
    pub(crate) user_id: UserId,
    /// The credential of the key the session was opened with; its allowlist is checked on every
    /// call.
    pub(crate) credential_id: CredentialId,
    pub(crate) installation_id: u64,
    /// Simulated time after which the token is refused.
    pub(crate) expires_at: SimTime,
    /// Ended early (by `DELETE /session`, `expire_all_sessions` or a fault).
    pub(crate) ended: bool,
}

/// A fresh 64-hex-character token, as bunq issues them.
pub(crate) fn random_hex_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    crate::hex::lower(&bytes)
}

/// Everything the simulated bank holds.
pub(crate) struct World {
    pub(crate) clock: Clock,
    /// `session_timeout` of every user, in bunq seconds.
    session_timeout_secs: u64,
    next_id: u64,
    pub(crate) users: BTreeMap<UserId, User>,
    /// API keys, addressed by index.
    pub(crate) api_keys: Vec<ApiKey>,
    pub(crate) credentials: BTreeMap<CredentialId, Credential>,
    pub(crate) installations: BTreeMap<u64, Installation>,
    pub(crate) sessions: BTreeMap<u64, Session>,
    /// Devices registered with device-server, by id.
    pub(crate) devices: BTreeMap<u64, Device>,
    /// Sessions opened so far, for tests that count renewals.
    pub(crate) sessions_created: usize,
}

impl World {
    /// An empty bank.
    pub(crate) fn new(clock: Clock, session_timeout_secs: u64) -> Self {
        World {
            clock,
            session_timeout_secs,
            next_id: 1,
            users: BTreeMap::new(),
            api_keys: Vec::new(),
            credentials: BTreeMap::new(),
            installations: BTreeMap::new(),
            sessions: BTreeMap::new(),
            devices: BTreeMap::new(),
            sessions_created: 0,
        }
    }

    /// The next id of the one increasing sequence.
    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Records an ACTIVE device of `user_id` (device-server, or seeded), as
    /// `GET /device-server` lists it; returns its id.
    pub(crate) fn add_device(&mut self, user_id: UserId, description: String, ip: Ipv4Addr) -> u64 {
        let id = self.next_id();
        let now = self.clock.timestamp();
        let wire = DeviceServer {
            id,
            created: Some(now.clone()),
            updated: Some(now),
            description: Some(description),
            ip: Some(ip.to_string()),
            status: Some("ACTIVE".to_owned()),
        };
        self.devices.insert(id, Device { user_id, wire });
        id
    }

    /// The `session_timeout` reported in user objects and applied to new sessions.
    pub(crate) fn session_timeout_secs(&self) -> u64 {
        self.session_timeout_secs
    }

    /// Creates a user and an API key; `key_prefix` is `"sandbox_"` for sandbox-user-person.
    pub(crate) fn create_user_with_api_key(&mut self, key_prefix: &str) -> SeededKey {
        let now = self.clock.timestamp();
        let user_id = self.next_id();
        self.users.insert(
            user_id,
            User {
                id: user_id,
                created: now.clone(),
                updated: now,
                display_name: format!("Simulated User {user_id}"),
            },
        );
        let api_key = Secret::new(format!("{key_prefix}{}", random_hex_token()));
        self.issue_api_key(user_id, api_key)
    }

    /// Adds another API key (with its own credential) to an existing user: the key a user
    /// rotates to.
    pub(crate) fn add_api_key(&mut self, user_id: UserId) -> Result<SeededKey, SeedError> {
        if !self.users.contains_key(&user_id) {
            return Err(SeedError::UnknownUser(user_id));
        }
        Ok(self.issue_api_key(user_id, Secret::new(random_hex_token())))
    }

    /// Gives `user_id` the key `api_key` with a credential of its own.
    fn issue_api_key(&mut self, user_id: UserId, api_key: Secret) -> SeededKey {
        let credential_id = self.insert_credential(user_id, None);
        self.api_keys.push(ApiKey {
            secret: api_key.clone(),
            user_id,
            credential_id,
        });
        SeededKey {
            api_key,
            user_id,
            credential_id,
        }
    }

    /// Adds a credential (another API key's, whose key is not handed out) to an existing user.
    pub(crate) fn add_credential(
        &mut self,
        user_id: UserId,
        permitted_device: Option<PermittedDevice>,
    ) -> Result<CredentialId, SeedError> {
        if !self.users.contains_key(&user_id) {
            return Err(SeedError::UnknownUser(user_id));
        }
        Ok(self.insert_credential(user_id, permitted_device))
    }

    fn insert_credential(
        &mut self,
        user_id: UserId,
        permitted_device: Option<PermittedDevice>,
    ) -> CredentialId {
        let now = self.clock.timestamp();
        let id = self.next_id();
        self.credentials.insert(
            id,
            Credential {
                id,
                user_id,
                created: now.clone(),
                updated: now,
                permitted_device,
                entries: BTreeMap::new(),
            },
        );
        id
    }

    /// The credential, mutably.
    pub(crate) fn credential_mut(
        &mut self,
        credential: CredentialId,
    ) -> Result<&mut Credential, SeedError> {
        self.credentials
            .get_mut(&credential)
            .ok_or(SeedError::UnknownCredential(credential))
    }

    /// Appends an entry (any text as IP: seeding may plant values the API refuses, like `*`).
    pub(crate) fn add_entry(
        &mut self,
        credential: CredentialId,
        ip: &str,
        status: IpStatus,
    ) -> Result<EntryId, SeedError> {
        self.credential_mut(credential)?;
        let id = self.next_id();
        let now = self.clock.timestamp();
        let credential = self.credential_mut(credential)?;
        credential.entries.insert(
            id,
            PermittedIp {
                id,
                ip: ip.to_owned(),
                status,
                created: Some(now.clone()),
                updated: Some(now.clone()),
            },
        );
        credential.updated = now;
        Ok(id)
    }

    /// Changes an entry's status.
    pub(crate) fn set_entry_status(
        &mut self,
        credential: CredentialId,
        entry: EntryId,
        status: IpStatus,
    ) -> Result<(), SeedError> {
        let now = self.clock.timestamp();
        let found = self.credential_mut(credential)?;
        let target = found
            .entries
            .get_mut(&entry)
            .ok_or(SeedError::UnknownEntry { credential, entry })?;
        target.status = status;
        target.updated = Some(now.clone());
        found.updated = now;
        Ok(())
    }

    /// The credential's entries, newest first.
    pub(crate) fn entries(&self, credential: CredentialId) -> Result<Vec<PermittedIp>, SeedError> {
        self.credentials
            .get(&credential)
            .map(Credential::entries_newest_first)
            .ok_or(SeedError::UnknownCredential(credential))
    }

    /// Index of the API key with this secret.
    pub(crate) fn api_key_index(&self, secret: &str) -> Option<usize> {
        self.api_keys
            .iter()
            .position(|key| key.secret.expose() == secret)
    }

    /// Stores a new installation and returns its id.
    pub(crate) fn create_installation(&mut self, client_key: PublicKey) -> u64 {
        let id = self.next_id();
        self.installations.insert(
            id,
            Installation {
                id,
                token: Secret::new(random_hex_token()),
                client_key,
                request_ids: HashSet::new(),
                registered_keys: BTreeSet::new(),
            },
        );
        id
    }

    /// The installation whose token this is.
    pub(crate) fn installation_by_token(&self, token: &str) -> Option<u64> {
        self.installations
            .values()
            .find(|installation| installation.token.expose() == token)
            .map(|installation| installation.id)
    }

    /// The session whose token this is, if it is still live at `now`.
    pub(crate) fn live_session_by_token(&self, token: &str, now: SimTime) -> Option<u64> {
        self.sessions
            .values()
            .find(|session| session.token.expose() == token)
            .filter(|session| !session.ended && now < session.expires_at)
            .map(|session| session.id)
    }

    /// Opens a session for the API key at `key_index` on `installation_id`.
    pub(crate) fn create_session(&mut self, installation_id: u64, key_index: usize) -> Option<u64> {
        let key = self.api_keys.get(key_index)?;
        let (user_id, credential_id) = (key.user_id, key.credential_id);
        let id = self.next_id();
        let expires_at =
            self.clock.now() + std::time::Duration::from_secs(self.session_timeout_secs);
        self.sessions.insert(
            id,
            Session {
                id,
                token: Secret::new(random_hex_token()),
                user_id,
                credential_id,
                installation_id,
                expires_at,
                ended: false,
            },
        );
        self.sessions_created += 1;
        Some(id)
    }

    /// Ends the session carrying this token, if any (a fault's early expiry).
    pub(crate) fn end_session_by_token(&mut self, token: &str) {
        for session in self.sessions.values_mut() {
            if session.token.expose() == token {
                session.ended = true;
            }
        }
    }

    /// Ends every session: the server logged everybody out.
    pub(crate) fn expire_all_sessions(&mut self) {
        for session in self.sessions.values_mut() {
            session.ended = true;
        }
    }

    /// Drops the installation whose token is `token`, and its sessions.
    pub(crate) fn forget_installation_by_token(&mut self, token: &str) {
        let forgotten: Vec<u64> = self
            .installations
            .values()
            .filter(|installation| installation.token.expose() == token)
            .map(|installation| installation.id)
            .collect();
        for id in &forgotten {
            self.installations.remove(id);
        }
        self.sessions
            .retain(|_, session| !forgotten.contains(&session.installation_id));
    }

    /// Drops every installation and session; ids are never reused.
    pub(crate) fn forget_installations(&mut self) {
        self.installations.clear();
        self.sessions.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        World::new(Clock::new(1.0), 604_800)
    }

    #[test]
    fn tokens_are_64_lowercase_hex_characters() {
        let token = random_hex_token();
        assert_eq!(token.len(), 64);
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(token, random_hex_token());
    }

    #[tokio::test]
    async fn seeded_key_has_a_credential_without_entries() {
        let mut world = world();
        let seeded = world.create_user_with_api_key("");
        assert_eq!(world.entries(seeded.credential_id).unwrap(), vec![]);
        assert_eq!(
            world.credentials[&seeded.credential_id].user_id,
            seeded.user_id
        );
        assert_eq!(
            world.api_key_index(seeded.api_key.expose()),
            Some(0),
            "the key authenticates"
        );
    }

    #[tokio::test]
    async fn entries_are_listed_newest_first() {
        let mut world = world();
        let seeded = world.create_user_with_api_key("");
        let first = world
            .add_entry(seeded.credential_id, "1.1.1.1", IpStatus::Active)
            .unwrap();
        let second = world
            .add_entry(seeded.credential_id, "2.2.2.2", IpStatus::Inactive)
            .unwrap();
        let ids: Vec<_> = world
            .entries(seeded.credential_id)
            .unwrap()
            .iter()
            .map(|entry| entry.id)
            .collect();
        assert_eq!(ids, vec![second, first]);
    }

    #[tokio::test]
    async fn only_active_entries_and_active_wildcards_permit() {
        let mut world = world();
        let cred = world.create_user_with_api_key("").credential_id;
        let ip = Ipv4Addr::new(198, 51, 100, 7);
        let entry = world
            .add_entry(cred, "198.51.100.7", IpStatus::Inactive)
            .unwrap();
        assert!(!world.credentials[&cred].permits(ip));
        world
            .set_entry_status(cred, entry, IpStatus::Active)
            .unwrap();
        assert!(world.credentials[&cred].permits(ip));
        world
            .set_entry_status(cred, entry, IpStatus::Inactive)
            .unwrap();
        world.add_entry(cred, "*", IpStatus::Active).unwrap();
        assert!(world.credentials[&cred].permits(ip));
    }

    #[tokio::test]
    async fn seeding_unknown_objects_is_an_error() {
        let mut world = world();
        assert_eq!(
            world.add_credential(99, None),
            Err(SeedError::UnknownUser(99))
        );
        assert_eq!(
            world.add_entry(99, "1.1.1.1", IpStatus::Active),
            Err(SeedError::UnknownCredential(99))
        );
        let cred = world.create_user_with_api_key("").credential_id;
        assert_eq!(
            world.set_entry_status(cred, 99, IpStatus::Active),
            Err(SeedError::UnknownEntry {
                credential: cred,
                entry: 99
            })
        );
    }
}
