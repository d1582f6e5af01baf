//! A mockito bunq: responses signed by the shared server key the way bunq signs them, the bodies
//! of the registration calls, and the three registration mocks (installation, device-server,
//! session-server) that tests refine with mockito's builder (`.expect(1)`, `.match_body(..)`)
//! before creating them.

use mockito::{Mock, ServerGuard};

use super::server_key;

/// The installation token [`installation_body`] hands out.
pub const INSTALLATION_TOKEN: &str = "installation-token-0123";
/// The user [`session_body`] names.
pub const USER_ID: u64 = 1913;
/// The device-server answer: the new device's id (321).
pub const DEVICE_BODY: &str = r#"{"Response":[{"Id":{"id":321}}]}"#;

/// A response as bunq sends it: status, response id, and the body signed by the server key.
pub fn respond(mock: Mock, status: usize, body: &str) -> Mock {
    mock.with_status(status)
        .with_header("X-Bunq-Client-Response-Id", "response-id-1")
        .with_header(
            "X-Bunq-Server-Signature",
            &server_key().sign(body.as_bytes()),
        )
        .with_body(body)
}

/// The session-server answer: session `token` of [`USER_ID`] with `timeout_secs`.
pub fn session_body(token: &str, timeout_secs: u64) -> String {
    serde_json::json!({"Response": [
        {"Id": {"id": 555}},
        {"Token": {"id": 556, "created": "2026-01-01 00:00:00.000000", "updated": "2026-01-01 00:00:00.000000", "token": token}},
        {"UserPerson": {"id": USER_ID, "display_name": "Test", "session_timeout": timeout_secs}}
    ]})
    .to_string()
}

/// The installation answer: [`INSTALLATION_TOKEN`] and the server key's public half.
pub fn installation_body() -> String {
    serde_json::json!({"Response": [
        {"Id": {"id": 1}},
        {"Token": {"id": 2, "created": "2026-01-01 00:00:00.000000", "updated": "2026-01-01 00:00:00.000000", "token": INSTALLATION_TOKEN}},
        {"ServerPublicKey": {"server_public_key": server_key().public_key().to_pem()}}
    ]})
    .to_string()
}

/// `POST /v1/installation` answered 200 with [`installation_body`] (not yet created).
pub fn installation(server: &mut ServerGuard) -> Mock {
    respond(
        server.mock("POST", "/v1/installation"),
        200,
        &installation_body(),
    )
}

/// `POST /v1/device-server` answered 200 with [`DEVICE_BODY`] (not yet created).
pub fn device(server: &mut ServerGuard) -> Mock {
    respond(server.mock("POST", "/v1/device-server"), 200, DEVICE_BODY)
}

/// `POST /v1/session-server` answered 200 with session `token` lasting `timeout_secs` (not yet
/// created).
pub fn session(server: &mut ServerGuard, token: &str, timeout_secs: u64) -> Mock {
    respond(
        server.mock("POST", "/v1/session-server"),
        200,
        &session_body(token, timeout_secs),
    )
}

/// The three registration mocks, created.
pub struct Registration {
    /// `POST /v1/installation`.
    pub installation: Mock,
    /// `POST /v1/device-server`.
    pub device: Mock,
    /// `POST /v1/session-server`.
    pub session: Mock,
}

/// All three registration calls answered, session `token` for an hour, any number of times each.
pub async fn registration(server: &mut ServerGuard, token: &str) -> Registration {
    Registration {
        installation: installation(server).create_async().await,
        device: device(server).create_async().await,
        session: session(server, token, 3600).create_async().await,
    }
}

/// `mock` created, expected exactly once (`assert_async` checks it).
pub async fn once(mock: Mock) -> Mock {
    mock.expect(1).create_async().await
}

/// `mock` created, expected never.
pub async fn never(mock: Mock) -> Mock {
    mock.expect(0).create_async().await
}

/// Asserts every mock got what it expected, in order (each [`Mock::assert_async`]).
pub async fn assert_all(mocks: &[&Mock]) {
    for mock in mocks {
        mock.assert_async().await;
    }
}

/// A bunq error body with one `error_description`.
pub fn error_body(description: &str) -> String {
    format!(r#"{{"Error":[{{"error_description":"{description}"}}]}}"#)
}

/// `mock` answered 200 with `body` (signed), created, expected exactly once.
pub async fn ok_once(mock: Mock, body: &str) -> Mock {
    once(respond(mock, 200, body)).await
}
