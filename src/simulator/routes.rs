//! The bunq endpoints the simulator serves: path parsing, the methods each allows, which token
//! each needs, and the pattern its rate limit is counted under.

use hyper::Method;

use crate::bunq::model::{CredentialId, EntryId, UserId};

/// One served endpoint, with the ids taken from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/installation`: POST, no token.
    Installation,
    /// `/device-server`: POST with the installation token registers; GET with a session lists
    /// the user's devices.
    DeviceServer,
    /// `/device-server/{id}`: GET one device, session token.
    Device(u64),
    /// `/session-server`: POST, installation token, signature required.
    SessionServer,
    /// `/session/{id}`: DELETE ends the caller's session.
    Session,
    /// `/sandbox-user-person`: POST, no token; creates a user and a `sandbox_` key.
    SandboxUserPerson,
    /// `/user/{user}`: GET the user.
    User(UserId),
    /// `/user/{user}/credential-password-ip`: GET list.
    Credentials(UserId),
    /// `/user/{user}/credential-password-ip/{cred}`: GET one.
    Credential(UserId, CredentialId),
    /// `/user/{user}/credential-password-ip/{cred}/ip`: GET list, POST create.
    Entries(UserId, CredentialId),
    /// `/user/{user}/credential-password-ip/{cred}/ip/{entry}`: GET one, PUT status.
    Entry(UserId, CredentialId, EntryId),
}

/// Which token an endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// No token at all.
    None,
    /// Only the installation token (device-server, session-server).
    Installation,
    /// Only a live session token.
    Session,
}

impl Route {
    /// Parses a path without query (`/v1/user/3/credential-password-ip`); `None` for anything
    /// the simulator does not serve.
    pub(crate) fn parse(path: &str) -> Option<Route> {
        let rest = path.strip_prefix("/v1/")?;
        let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let id = |text: &str| text.parse::<u64>().ok();
        match segments.as_slice() {
            ["installation"] => Some(Route::Installation),
            ["device-server"] => Some(Route::DeviceServer),
            ["device-server", device] => Some(Route::Device(id(device)?)),
            ["session-server"] => Some(Route::SessionServer),
            ["session", session] => id(session).map(|_| Route::Session),
            ["sandbox-user-person"] => Some(Route::SandboxUserPerson),
            ["user", user] => Some(Route::User(id(user)?)),
            ["user", user, "credential-password-ip"] => Some(Route::Credentials(id(user)?)),
            ["user", user, "credential-password-ip", cred] => {
                Some(Route::Credential(id(user)?, id(cred)?))
            }
            ["user", user, "credential-password-ip", cred, "ip"] => {
                Some(Route::Entries(id(user)?, id(cred)?))
            }
            ["user", user, "credential-password-ip", cred, "ip", entry] => {
                Some(Route::Entry(id(user)?, id(cred)?, id(entry)?))
            }
            _ => None,
        }
    }

    /// The endpoint pattern rate limits are counted under.
    pub(crate) fn pattern(&self) -> &'static str {
        match self {
            Route::Installation => "/installation",
            Route::DeviceServer => "/device-server",
            Route::Device(_) => "/device-server/{id}",
            Route::SessionServer => "/session-server",
            Route::Session => "/session/{id}",
            Route::SandboxUserPerson => "/sandbox-user-person",
            Route::User(_) => "/user/{user}",
            Route::Credentials(_) => "/user/{user}/credential-password-ip",
            Route::Credential(..) => "/user/{user}/credential-password-ip/{cred}",
            Route::Entries(..) => "/user/{user}/credential-password-ip/{cred}/ip",
            Route::Entry(..) => "/user/{user}/credential-password-ip/{cred}/ip/{entry}",
        }
    }

    /// Whether the endpoint has this method (otherwise 405).
    pub(crate) fn allows(&self, method: &Method) -> bool {
        match self {
            Route::DeviceServer => method == Method::POST || method == Method::GET,
            Route::Installation | Route::SessionServer | Route::SandboxUserPerson => {
                method == Method::POST
            }
            Route::Device(_) => method == Method::GET,
            Route::Session => method == Method::DELETE,
            Route::User(_) | Route::Credentials(_) | Route::Credential(..) => method == Method::GET,
            Route::Entries(..) => method == Method::GET || method == Method::POST,
            Route::Entry(..) => method == Method::GET || method == Method::PUT,
        }
    }

    /// The token the endpoint accepts for `method`.
    pub(crate) fn token_kind(&self, method: &Method) -> TokenKind {
        match self {
            Route::Installation | Route::SandboxUserPerson => TokenKind::None,
            Route::DeviceServer if method == Method::GET => TokenKind::Session,
            Route::DeviceServer | Route::SessionServer => TokenKind::Installation,
            _ => TokenKind::Session,
        }
    }

    /// The user id in the path, which must be the session's user.
    pub(crate) fn user(&self) -> Option<UserId> {
        match self {
            Route::User(user)
            | Route::Credentials(user)
            | Route::Credential(user, _)
            | Route::Entries(user, _)
            | Route::Entry(user, _, _) => Some(*user),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_served_path() {
        assert_eq!(Route::parse("/v1/installation"), Some(Route::Installation));
        assert_eq!(
            Route::parse("/v1/user/3/credential-password-ip/4/ip/5"),
            Some(Route::Entry(3, 4, 5))
        );
        assert_eq!(
            Route::parse("/v1/user/3/credential-password-ip/4/ip"),
            Some(Route::Entries(3, 4))
        );
        assert_eq!(Route::parse("/v1/session/0"), Some(Route::Session));
    }

    #[test]
    fn unknown_paths_and_non_numeric_ids_are_not_routes() {
        assert_eq!(Route::parse("/v2/installation"), None);
        assert_eq!(Route::parse("/v1/user/me/credential-password-ip"), None);
        assert_eq!(Route::parse("/v1/user/1/payment"), None);
    }

    #[test]
    fn ip_entries_cannot_be_deleted() {
        let entry = Route::Entry(1, 2, 3);
        assert!(entry.allows(&Method::PUT));
        assert!(!entry.allows(&Method::DELETE));
        assert!(!Route::Entries(1, 2).allows(&Method::DELETE));
    }
}
