//! The wire contract of the bunq client, checked against mockito: for every endpoint the method,
//! path, every header, the exact body bytes and a request signature that verifies with the
//! client's public key; plus signature verification of responses, error mapping, retries,
//! session handling and the persisted context.
//!
//! The mock signs its responses with a test server key, the way bunq does.

// Helpers outside #[test] functions panic to fail the test, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunq_ipsync::bunq::context::{
    CONTEXT_FILE_NAME, Context, ContextStore, DeviceContext, InstallationContext, SessionContext,
};
use bunq_ipsync::bunq::model::{EntryRef, IpStatus};
use bunq_ipsync::bunq::{
    ApiObserver, BaseUrl, BunqClient, BunqError, ClientSettings, FinishedRequest, PrivateKey,
    PublicKey, RateLimits, RetryPolicy, TransportSettings, create_sandbox_user,
};
use bunq_ipsync::secret::Secret;
use chrono::Utc;
use mockito::{Matcher, Mock, Request, Server, ServerGuard};

use crate::support::mock_bunq::{
    self, DEVICE_BODY, INSTALLATION_TOKEN, USER_ID, assert_all, error_body, installation_body,
    never, ok_once, once, respond, session_body,
};
use crate::support::{client_key, server_key};

const API_KEY: &str = "sandbox_test_api_key_0123456789";
const SESSION_TOKEN: &str = "session-token-0123";
const UUID_V4: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$";

fn base_url(server: &ServerGuard) -> BaseUrl {
    BaseUrl::parse(&format!("{}/v1", server.url())).unwrap()
}

fn fast_transport() -> TransportSettings {
    TransportSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        },
        rate_limits: RateLimits::disabled(),
    }
}

fn settings(server: &ServerGuard) -> ClientSettings {
    let mut settings = ClientSettings::new(base_url(server), "ipsync-test");
    settings.transport = fast_transport();
    settings
}

/// The headers every request carries, with `auth` as `X-Bunq-Client-Authentication` (or none).
fn with_standard_headers(mock: Mock, auth: Option<&str>) -> Mock {
    let mock = mock
        .match_header(
            "User-Agent",
            format!("bunq-ipsync/{}", env!("CARGO_PKG_VERSION")).as_str(),
        )
        .match_header("X-Bunq-Client-Request-Id", Matcher::Regex(UUID_V4.into()))
        .match_header("Cache-Control", "no-cache")
        .match_header("X-Bunq-Geolocation", "0 0 0 0 000")
        .match_header("X-Bunq-Language", "en_US")
        .match_header("X-Bunq-Region", "nl_NL");
    match auth {
        Some(token) => mock.match_header("X-Bunq-Client-Authentication", token),
        None => mock.match_header("X-Bunq-Client-Authentication", Matcher::Missing),
    }
}

/// True when the request's `X-Bunq-Client-Signature` verifies over its exact body.
fn signature_verifies(request: &Request, key: &PublicKey) -> bool {
    let values = request.header("X-Bunq-Client-Signature");
    let [signature] = values.as_slice() else {
        return false;
    };
    let body = request.body().unwrap();
    key.verify(body, signature.to_str().unwrap()).is_ok()
}

/// A saved context with the known client key and a session valid for `expires_in`.
fn save_context(state_dir: &Path, base: &BaseUrl, api_key: &str, expires_in: chrono::Duration) {
    let mut context = Context::new(base, &Secret::new(api_key), client_key()).unwrap();
    context.installation = Some(InstallationContext {
        token: Secret::new(INSTALLATION_TOKEN),
        server_public_key: server_key().public_key().to_pem(),
    });
    context.device = Some(DeviceContext {
        id: Some(3),
        description: Some("ipsync-test".into()),
    });
    context.session = Some(SessionContext {
        token: Secret::new(SESSION_TOKEN),
        id: Some(4),
        user_id: USER_ID,
        expires_at: Utc::now() + expires_in,
        session_timeout_secs: Some(604_800),
    });
    ContextStore::open(state_dir)
        .unwrap()
        .save(&context)
        .unwrap();
}

/// A mock server and a state dir holding a saved context for [`API_KEY`] whose session expires
/// in `expires_in`.
async fn with_saved_context(expires_in: chrono::Duration) -> (ServerGuard, tempfile::TempDir) {
    let server = Server::new_async().await;
    let state = tempfile::tempdir().unwrap();
    save_context(state.path(), &base_url(&server), API_KEY, expires_in);
    (server, state)
}

/// Settings that renew a session an hour before it expires, on a clock the test moves (the
/// returned time).
fn renewing_settings(server: &ServerGuard) -> (ClientSettings, Arc<Mutex<chrono::DateTime<Utc>>>) {
    let now = Arc::new(Mutex::new(Utc::now()));
    let mut settings = settings(server);
    settings.renew_before = Duration::from_secs(3600);
    let clock = now.clone();
    settings.clock = Arc::new(move || *clock.lock().unwrap());
    (settings, now)
}

/// A mock server, a state dir and a client connected to it from a saved context.
async fn with_saved_client() -> (ServerGuard, tempfile::TempDir, BunqClient) {
    let server = Server::new_async().await;
    let state = tempfile::tempdir().unwrap();
    let client = saved_client(&server, state.path()).await;
    (server, state, client)
}

/// `BunqClient::connect` with [`API_KEY`] and the state dir `state`.
async fn connect(settings: ClientSettings, state: &Path) -> Result<BunqClient, BunqError> {
    BunqClient::connect(settings, Secret::new(API_KEY), state).await
}

/// The context saved in the state dir `state`.
fn saved_context(state: &Path) -> Context {
    ContextStore::open(state).unwrap().load().unwrap().unwrap()
}

/// A connected client from a saved context (no setup calls).
async fn saved_client(server: &ServerGuard, state: &Path) -> BunqClient {
    save_context(state, &base_url(server), API_KEY, chrono::Duration::days(7));
    connect(settings(server), state).await.unwrap()
}

/// Mocks for the three setup calls that must not happen.
async fn forbid_setup_calls(server: &mut ServerGuard) -> Vec<Mock> {
    let mut mocks = Vec::new();
    for path in [
        "/v1/installation",
        "/v1/device-server",
        "/v1/session-server",
    ] {
        mocks.push(server.mock("POST", path).expect(0).create_async().await);
    }
    mocks
}

/// A session call authenticated by the session token and signed by the known client key.
fn session_call(server: &mut ServerGuard, method: &str, path: &str) -> Mock {
    let key = client_key().public_key();
    with_standard_headers(server.mock(method, path), Some(SESSION_TOKEN))
        .match_request(move |request| signature_verifies(request, &key))
}

/// The credential most tests read, and its answers.
const CREDENTIAL_PATH: &str = "/v1/user/1913/credential-password-ip/77";
const CREDENTIAL_BODY: &str = r#"{"Response":[{"CredentialPasswordIp":{"id":77}}]}"#;
const ACTIVE_CREDENTIAL_BODY: &str =
    r#"{"Response":[{"CredentialPasswordIp":{"id":77,"status":"ACTIVE"}}]}"#;

/// The create of 5.6.7.8 (ACTIVE) on credential 77, expected once with exactly that body and
/// answered with entry `id`.
async fn expect_create_5678(server: &mut ServerGuard, id: u64) -> Mock {
    let body = format!(r#"{{"Response":[{{"Id":{{"id":{id}}}}}]}}"#);
    let call = session_call(server, "POST", IP_LIST_PATH)
        .match_body(r#"{"ip":"5.6.7.8","status":"ACTIVE"}"#);
    ok_once(call, &body).await
}

/// `client` creates 5.6.7.8 (ACTIVE) on credential 77.
async fn create_5678(client: &BunqClient) -> Result<u64, BunqError> {
    client
        .create_ip(77, Ipv4Addr::new(5, 6, 7, 8), IpStatus::Active)
        .await
}

/// `mock` answered 200 with `body` under `key`'s signature over `signed`.
fn signed_over(mock: Mock, key: &PrivateKey, signed: &str, body: &str) -> Mock {
    mock.with_status(200)
        .with_header("X-Bunq-Server-Signature", &key.sign(signed.as_bytes()))
        .with_body(body)
}

/// `GET` of [`CREDENTIAL_PATH`] under any session token.
fn any_credential_get(server: &mut ServerGuard) -> Mock {
    server.mock("GET", CREDENTIAL_PATH)
}

/// `GET` of [`CREDENTIAL_PATH`] authenticated by `token`.
fn credential_get(server: &mut ServerGuard, token: &str) -> Mock {
    any_credential_get(server).match_header("X-Bunq-Client-Authentication", token)
}

/// `POST /v1/session-server` with the standard headers, authenticated by the installation token.
fn session_server_call(server: &mut ServerGuard) -> Mock {
    with_standard_headers(
        server.mock("POST", "/v1/session-server"),
        Some(INSTALLATION_TOKEN),
    )
}

/// `mock` answered with `status` and `body` alone: no response id and no server signature, as
/// a proxy or a forger answers (bunq itself signs every answer, see [`respond`]).
fn unsigned(mock: Mock, status: usize, body: &str) -> Mock {
    mock.with_status(status).with_body(body)
}

/// `mock` refused as bunq refuses a session it no longer accepts (403, "Insufficient
/// authentication."), [`unsigned`].
fn unsigned_session_rejection(mock: Mock) -> Mock {
    unsigned(mock, 403, &error_body("Insufficient authentication."))
}

/// Fails unless `result` is an error that [`BunqError::is_security`] calls a security error.
#[track_caller]
fn assert_security_error<T>(result: Result<T, BunqError>) {
    match result {
        Err(err) => assert!(err.is_security(), "{err}"),
        Ok(_) => panic!("succeeded; expected a security error"),
    }
}

/// Fails unless `result` is an error that [`BunqError::is_session_rejected`] calls a session
/// rejection.
#[track_caller]
fn assert_session_rejected<T>(result: Result<T, BunqError>) {
    match result {
        Err(err) => assert!(err.is_session_rejected(), "{err}"),
        Ok(_) => panic!("succeeded; expected a session rejection"),
    }
}

/// The credential GET answered once with a bunq error of `status` and `description` under a
/// signature that does not verify ([`respond_with_a_bad_signature`]).
async fn badly_signed_credential_error(
    server: &mut ServerGuard,
    status: usize,
    description: &str,
) -> Mock {
    once(respond_with_a_bad_signature(
        any_credential_get(server),
        status,
        &error_body(description),
    ))
    .await
}

const IP_LIST_PATH: &str = "/v1/user/1913/credential-password-ip/77/ip";

fn ip_page(ids: &[u64], older_url: Option<&str>) -> String {
    let items: Vec<_> = ids
        .iter()
        .map(|id| {
            serde_json::json!({"PermittedIp": {
                "id": id, "ip": format!("10.0.0.{id}"), "status": "ACTIVE",
                "created": "2026-01-01 00:00:00.000000", "updated": "2026-01-02 00:00:00.000000",
                "future_field": true
            }})
        })
        .collect();
    serde_json::json!({"Response": items, "Pagination": {
        "future_url": null, "newer_url": null, "older_url": older_url
    }})
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// Registration

#[tokio::test]
async fn connect_registers_installation_device_and_session_with_exact_requests() {
    let mut server = Server::new_async().await;
    let client_public: Arc<Mutex<Option<PublicKey>>> = Arc::default();

    let captured = client_public.clone();
    let installation = respond(
        with_standard_headers(server.mock("POST", "/v1/installation"), None)
            .match_header("X-Bunq-Client-Signature", Matcher::Missing)
            .match_request(move |request| {
                let body = request.body().unwrap();
                let parsed: serde_json::Value = serde_json::from_slice(body).unwrap();
                let pem = parsed["client_public_key"].as_str().unwrap_or_default();
                let expected = format!(
                    "{{\"client_public_key\":{}}}",
                    serde_json::to_string(pem).unwrap()
                );
                let ok = body == expected.as_bytes()
                    && pem.starts_with("-----BEGIN PUBLIC KEY-----\n")
                    && pem.ends_with("-----END PUBLIC KEY-----\n");
                if let (true, Ok(key)) = (ok, PublicKey::from_pem(pem)) {
                    *captured.lock().unwrap() = Some(key);
                    return true;
                }
                false
            }),
        200,
        &installation_body(),
    )
    .expect(1)
    .create_async()
    .await;

    let key = client_public.clone();
    let device = respond(
        with_standard_headers(
            server.mock("POST", "/v1/device-server"),
            Some(INSTALLATION_TOKEN),
        )
        .match_body(format!(r#"{{"description":"ipsync-test","secret":"{API_KEY}"}}"#).as_str())
        .match_request(move |request| {
            let key = key.lock().unwrap().clone();
            key.is_some_and(|key| signature_verifies(request, &key))
        }),
        200,
        DEVICE_BODY,
    )
    .expect(1)
    .create_async()
    .await;

    let key = client_public.clone();
    let session = respond(
        session_server_call(&mut server)
            .match_body(format!(r#"{{"secret":"{API_KEY}"}}"#).as_str())
            .match_request(move |request| {
                let key = key.lock().unwrap().clone();
                key.is_some_and(|key| signature_verifies(request, &key))
            }),
        200,
        &session_body(SESSION_TOKEN, 3600),
    )
    .expect(1)
    .create_async()
    .await;

    let state = tempfile::tempdir().unwrap();
    let before = Utc::now();
    let client = connect(settings(&server), state.path()).await.unwrap();

    assert_all(&[&installation, &device, &session]).await;
    assert_eq!(client.user_id(), USER_ID);
    assert_eq!(client.device_description().as_deref(), Some("ipsync-test"));
    assert_eq!(client.session_timeout(), Some(Duration::from_secs(3600)));
    let expires = client.session_expires_at();
    assert!(expires >= before + chrono::Duration::seconds(3600));
    assert!(expires <= Utc::now() + chrono::Duration::seconds(3600));
}

#[tokio::test]
async fn registration_saves_the_context_with_modes_0600_and_0700() {
    let mut server = Server::new_async().await;
    let _registration = mock_bunq::registration(&mut server, SESSION_TOKEN).await;
    let parent = tempfile::tempdir().unwrap();
    let state = parent.path().join("state");
    connect(settings(&server), &state).await.unwrap();

    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    let file = state.join(CONTEXT_FILE_NAME);
    assert_eq!(mode(&file), 0o600);
    let saved = saved_context(&state);
    assert_eq!(saved.device.unwrap().id, Some(321));
    assert_eq!(saved.session.unwrap().token.expose(), SESSION_TOKEN);
    assert!(!std::fs::read_to_string(file).unwrap().contains(API_KEY));
}

#[tokio::test]
async fn device_server_sends_permitted_ips_when_configured() {
    let mut server = Server::new_async().await;
    let _installation = mock_bunq::installation(&mut server).create_async().await;
    let device = ok_once(server
            .mock("POST", "/v1/device-server")
            .match_body(
                format!(
                    r#"{{"description":"ipsync-test","secret":"{API_KEY}","permitted_ips":["1.2.3.4","*"]}}"#
                )
                .as_str(),
            ), DEVICE_BODY).await;
    let _session = mock_bunq::session(&mut server, SESSION_TOKEN, 3600)
        .create_async()
        .await;
    let mut settings = settings(&server);
    settings.permitted_ips = Some(vec!["1.2.3.4".into(), "*".into()]);
    let state = tempfile::tempdir().unwrap();
    connect(settings, state.path()).await.unwrap();
    device.assert_async().await;
}

#[tokio::test]
async fn registration_resumes_after_the_last_saved_step() {
    let mut server = Server::new_async().await;
    let state = tempfile::tempdir().unwrap();
    // A previous run got through installation only.
    let mut context =
        Context::new(&base_url(&server), &Secret::new(API_KEY), client_key()).unwrap();
    context.installation = Some(InstallationContext {
        token: Secret::new(INSTALLATION_TOKEN),
        server_public_key: server_key().public_key().to_pem(),
    });
    ContextStore::open(state.path())
        .unwrap()
        .save(&context)
        .unwrap();

    let installation = never(server.mock("POST", "/v1/installation")).await;
    let key = client_key().public_key();
    let device = ok_once(
        with_standard_headers(
            server.mock("POST", "/v1/device-server"),
            Some(INSTALLATION_TOKEN),
        )
        .match_request(move |request| signature_verifies(request, &key)),
        DEVICE_BODY,
    )
    .await;
    let session = once(mock_bunq::session(&mut server, SESSION_TOKEN, 3600)).await;
    connect(settings(&server), state.path()).await.unwrap();
    assert_all(&[&installation, &device, &session]).await;
}

#[tokio::test]
async fn restart_with_a_saved_context_makes_no_setup_call() {
    let mut server = Server::new_async().await;
    let setup = forbid_setup_calls(&mut server).await;
    let list = ok_once(
        session_call(
            &mut server,
            "GET",
            "/v1/user/1913/credential-password-ip?count=200",
        ),
        r#"{"Response":[],"Pagination":{"future_url":null,"newer_url":null,"older_url":null}}"#,
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let client = saved_client(&server, state.path()).await;
    assert!(client.list_credentials().await.unwrap().is_empty());
    for mock in setup {
        mock.assert_async().await;
    }
    list.assert_async().await;
}

#[tokio::test]
async fn context_of_another_api_key_triggers_a_clean_registration() {
    let mut server = Server::new_async().await;
    let state = tempfile::tempdir().unwrap();
    save_context(
        state.path(),
        &base_url(&server),
        "some_other_api_key",
        chrono::Duration::days(7),
    );
    let installation = once(mock_bunq::installation(&mut server)).await;
    let device = ok_once(
        server
            .mock("POST", "/v1/device-server")
            .match_header("X-Bunq-Client-Authentication", INSTALLATION_TOKEN),
        DEVICE_BODY,
    )
    .await;
    let session = once(mock_bunq::session(&mut server, "brand-new-session", 3600)).await;
    connect(settings(&server), state.path()).await.unwrap();
    assert_all(&[&installation, &device, &session]).await;
    let saved = saved_context(state.path());
    assert!(
        saved
            .mismatch(&base_url(&server), &Secret::new(API_KEY))
            .is_none()
    );
    // A new client key was generated: nothing of the other key's registration was reused.
    assert_ne!(
        saved.client_key().unwrap().public_key(),
        client_key().public_key()
    );
}

#[tokio::test]
async fn corrupt_context_is_a_clear_error_and_sends_nothing() {
    let mut server = Server::new_async().await;
    let setup = forbid_setup_calls(&mut server).await;
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        state.path().join(CONTEXT_FILE_NAME),
        b"{\"format_version\": 1, ",
    )
    .unwrap();
    let err = connect(settings(&server), state.path()).await.unwrap_err();
    assert!(matches!(err, BunqError::ContextCorrupt { .. }), "{err}");
    assert!(err.to_string().contains(CONTEXT_FILE_NAME), "{err}");
    for mock in setup {
        mock.assert_async().await;
    }
}

#[test]
fn plain_http_to_a_non_loopback_host_is_refused() {
    let err = BaseUrl::parse("http://api.bunq.com/v1").unwrap_err();
    assert!(matches!(err, BunqError::BaseUrl { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Sessions

#[tokio::test]
async fn connect_renews_a_saved_session_that_expires_within_renew_before() {
    let (mut server, state) = with_saved_context(chrono::Duration::minutes(5)).await;
    let key = client_key().public_key();
    let session = ok_once(
        session_server_call(&mut server)
            .match_body(format!(r#"{{"secret":"{API_KEY}"}}"#).as_str())
            .match_request(move |request| signature_verifies(request, &key)),
        &session_body("renewed-session", 604_800),
    )
    .await;
    let list = ok_once(
        server
            .mock("GET", "/v1/user/1913/credential-password-ip?count=200")
            .match_header("X-Bunq-Client-Authentication", "renewed-session"),
        r#"{"Response":[],"Pagination":{"future_url":null,"newer_url":null,"older_url":null}}"#,
    )
    .await;
    let mut settings = settings(&server);
    settings.renew_before = Duration::from_secs(600);
    let client = connect(settings, state.path()).await.unwrap();
    client.list_credentials().await.unwrap();
    assert_all(&[&session, &list]).await;
    assert!(client.session_expires_at() > Utc::now() + chrono::Duration::days(6));
}

#[tokio::test]
async fn a_call_renews_a_session_that_is_within_renew_before() {
    let (mut server, state) = with_saved_context(chrono::Duration::hours(2)).await;
    let (settings, now) = renewing_settings(&server);
    let session = ok_once(
        session_server_call(&mut server),
        &session_body("renewed-by-call", 604_800),
    )
    .await;
    let get = ok_once(
        session_call(&mut server, "GET", CREDENTIAL_PATH),
        CREDENTIAL_BODY,
    )
    .await;
    let renewed_get = ok_once(
        credential_get(&mut server, "renewed-by-call"),
        CREDENTIAL_BODY,
    )
    .await;
    let client = connect(settings, state.path()).await.unwrap();

    // Two hours left, renew_before one hour: the saved session is used as is.
    client.get_credential(77).await.unwrap();
    assert!(!session.matched_async().await);
    get.assert_async().await;

    // 61 minutes later, 59 minutes are left: the next call renews first.
    *now.lock().unwrap() += chrono::Duration::minutes(61);
    client.get_credential(77).await.unwrap();
    assert_all(&[&session, &renewed_get]).await;
}

#[tokio::test]
async fn renew_session_uses_the_new_token_afterwards_and_saves_it() {
    let (mut server, state, client) = with_saved_client().await;
    let session = ok_once(
        session_server_call(&mut server),
        &session_body("fresh-session", 604_800),
    )
    .await;
    let get = ok_once(
        credential_get(&mut server, "fresh-session"),
        CREDENTIAL_BODY,
    )
    .await;
    client.renew_session().await.unwrap();
    client.get_credential(77).await.unwrap();
    assert_all(&[&session, &get]).await;
    let saved = saved_context(state.path());
    assert_eq!(saved.session.unwrap().token.expose(), "fresh-session");
}

#[tokio::test]
async fn rejected_session_opens_one_new_session_and_retries_once() {
    let (mut server, _state, client) = with_saved_client().await;
    let rejected = once(credential_get(&mut server, SESSION_TOKEN)
        .with_status(403)
        .with_body(r#"{"Error":[{"error_description":"Insufficient authentication.","error_description_translated":"Insufficient authentication."}]}"#)).await;
    let session = once(mock_bunq::session(&mut server, "second-session", 604_800)).await;
    let accepted = ok_once(
        credential_get(&mut server, "second-session"),
        ACTIVE_CREDENTIAL_BODY,
    )
    .await;
    let credential = client.get_credential(77).await.unwrap();
    assert_eq!(credential.id, 77);
    assert_all(&[&rejected, &session, &accepted]).await;
}

#[tokio::test]
async fn a_second_session_rejection_is_returned_without_another_session() {
    let (mut server, _state, client) = with_saved_client().await;
    let rejected = unsigned_session_rejection(any_credential_get(&mut server))
        .expect(2)
        .create_async()
        .await;
    let session = once(mock_bunq::session(&mut server, "second-session", 604_800)).await;
    assert_session_rejected(client.get_credential(77).await);
    assert_all(&[&rejected, &session]).await;
}

// ---------------------------------------------------------------------------------------------
// Endpoints

#[tokio::test]
async fn list_credentials_sends_a_signed_get_and_parses_credentials() {
    let (mut server, _state, client) = with_saved_client().await;
    let list = ok_once(session_call(&mut server, "GET", "/v1/user/1913/credential-password-ip?count=200")
            .match_body(""), r#"{"Response":[{"CredentialPasswordIp":{"id":77,"created":"c","updated":"u","status":"ACTIVE",
            "expiry_time":null,"token_value":null,"permitted_device":{"description":"ipsync-test","ip":"1.2.3.4"}}}],
            "Pagination":{"future_url":null,"newer_url":null,"older_url":null}}"#).await;
    let credentials = client.list_credentials().await.unwrap();
    list.assert_async().await;
    assert_eq!(credentials.len(), 1);
    assert_eq!(credentials[0].id, 77);
    let device = credentials[0].permitted_device.as_ref().unwrap();
    assert_eq!(device.description.as_deref(), Some("ipsync-test"));
}

#[tokio::test]
async fn list_credentials_follows_older_url() {
    let (mut server, _state, client) = with_saved_client().await;
    let first = ok_once(session_call(&mut server, "GET", "/v1/user/1913/credential-password-ip?count=200"), r#"{"Response":[{"CredentialPasswordIp":{"id":80}}],"Pagination":{"future_url":null,"newer_url":null,
            "older_url":"\/v1\/user\/1913\/credential-password-ip?count=200&older_id=80"}}"#).await;
    let second = ok_once(session_call(
            &mut server,
            "GET",
            "/v1/user/1913/credential-password-ip?count=200&older_id=80",
        ), r#"{"Response":[{"CredentialPasswordIp":{"id":79}}],"Pagination":{"future_url":null,"newer_url":null,"older_url":null}}"#).await;
    let ids: Vec<u64> = client
        .list_credentials()
        .await
        .unwrap()
        .iter()
        .map(|credential| credential.id)
        .collect();
    assert_eq!(ids, vec![80, 79]);
    assert_all(&[&first, &second]).await;
}

#[tokio::test]
async fn get_credential_sends_a_signed_get_to_the_credential_path() {
    let (mut server, _state, client) = with_saved_client().await;
    let get = ok_once(
        session_call(&mut server, "GET", CREDENTIAL_PATH).match_body(""),
        ACTIVE_CREDENTIAL_BODY,
    )
    .await;
    let credential = client.get_credential(77).await.unwrap();
    get.assert_async().await;
    assert_eq!(credential.status.as_deref(), Some("ACTIVE"));
}

#[tokio::test]
async fn list_ips_follows_older_url_across_three_pages_keeping_ids_and_timestamps() {
    let (mut server, _state, client) = with_saved_client().await;
    let first_path = format!("{IP_LIST_PATH}?count=200");
    let second_path = format!("{IP_LIST_PATH}?count=200&older_id=5");
    let third_path = format!("{IP_LIST_PATH}?count=200&older_id=3");
    let pages = [
        respond(
            session_call(&mut server, "GET", &first_path).match_body(""),
            200,
            &ip_page(&[6, 5], Some(&second_path)),
        ),
        respond(
            session_call(&mut server, "GET", &second_path).match_body(""),
            200,
            &ip_page(&[4, 3], Some(&third_path)),
        ),
        respond(
            session_call(&mut server, "GET", &third_path).match_body(""),
            200,
            &ip_page(&[1], None),
        ),
    ];
    let mut mocks = Vec::new();
    for page in pages {
        mocks.push(page.expect(1).create_async().await);
    }
    let entries = client.list_ips(77).await.unwrap();
    for mock in mocks {
        mock.assert_async().await;
    }
    let ids: Vec<u64> = entries.iter().map(|entry| entry.id).collect();
    assert_eq!(ids, vec![6, 5, 4, 3, 1]);
    assert_eq!(entries[0].ip, "10.0.0.6");
    assert_eq!(entries[0].status, IpStatus::Active);
    assert_eq!(
        entries[0].created.as_deref(),
        Some("2026-01-01 00:00:00.000000")
    );
    assert_eq!(
        entries[0].updated.as_deref(),
        Some("2026-01-02 00:00:00.000000")
    );
}

#[tokio::test]
async fn a_pagination_link_to_another_host_is_refused() {
    let (mut server, _state, client) = with_saved_client().await;
    let _first = respond(
        session_call(&mut server, "GET", &format!("{IP_LIST_PATH}?count=200")),
        200,
        &ip_page(
            &[2],
            Some("https://elsewhere.example/v1/user/1913/x?older_id=2"),
        ),
    )
    .create_async()
    .await;
    let err = client.list_ips(77).await.unwrap_err();
    assert!(matches!(err, BunqError::Protocol { .. }), "{err}");
}

#[tokio::test]
async fn get_ip_sends_a_signed_get_to_the_entry_path() {
    let (mut server, _state, client) = with_saved_client().await;
    let get = ok_once(
        session_call(&mut server, "GET", &format!("{IP_LIST_PATH}/9")).match_body(""),
        r#"{"Response":[{"PermittedIp":{"id":9,"ip":"1.2.3.4","status":"INACTIVE"}}]}"#,
    )
    .await;
    let entry = client.get_ip(77, 9).await.unwrap();
    get.assert_async().await;
    assert_eq!(entry.ip, "1.2.3.4");
    assert_eq!(entry.status, IpStatus::Inactive);
}

#[tokio::test]
async fn create_ip_posts_exactly_ip_and_status_and_returns_the_new_id() {
    let (mut server, _state, client) = with_saved_client().await;
    let create = expect_create_5678(&mut server, 925).await;
    let id = create_5678(&client).await.unwrap();
    create.assert_async().await;
    assert_eq!(id, 925);
}

#[tokio::test]
async fn update_ip_puts_only_the_status() {
    let (mut server, _state, client) = with_saved_client().await;
    let update = ok_once(
        session_call(&mut server, "PUT", &format!("{IP_LIST_PATH}/877"))
            .match_body(r#"{"status":"INACTIVE"}"#),
        r#"{"Response":[{"Id":{"id":877}}]}"#,
    )
    .await;
    let id = client
        .update_ip_status(EntryRef::new(77, 877), IpStatus::Inactive)
        .await
        .unwrap();
    update.assert_async().await;
    assert_eq!(id, 877);
}

#[tokio::test]
async fn sandbox_user_is_created_without_token_or_signature() {
    let mut server = Server::new_async().await;
    let create = once(with_standard_headers(server.mock("POST", "/v1/sandbox-user-person"), None)
        .match_header("X-Bunq-Client-Signature", Matcher::Missing)
        .match_body("")
        .with_status(200)
        .with_body(r#"{"Response":[{"ApiKey":{"api_key":"sandbox_new_key","user":{"UserPerson":{"id":44}}}}]}"#)).await;
    let user = create_sandbox_user(&base_url(&server), &fast_transport())
        .await
        .unwrap();
    create.assert_async().await;
    assert_eq!(user.api_key.expose(), "sandbox_new_key");
    assert_eq!(user.user_id, Some(44));
    assert!(!format!("{user:?}").contains("sandbox_new_key"));
}

// ---------------------------------------------------------------------------------------------
// Response verification, errors, retries

#[tokio::test]
async fn missing_server_signature_on_a_200_is_a_security_error_and_not_retried() {
    let (mut server, _state, client) = with_saved_client().await;
    let get = once(unsigned(
        any_credential_get(&mut server),
        200,
        CREDENTIAL_BODY,
    ))
    .await;
    let err = client.get_credential(77).await.unwrap_err();
    assert!(matches!(err, BunqError::ResponseSignature { .. }), "{err}");
    assert!(err.is_security());
    get.assert_async().await;
}

#[tokio::test]
async fn tampered_response_body_fails_verification_and_is_not_retried() {
    let (mut server, _state, client) = with_saved_client().await;
    let genuine = r#"{"Response":[{"PermittedIp":{"id":9,"ip":"1.2.3.4","status":"INACTIVE"}}]}"#;
    let tampered = r#"{"Response":[{"PermittedIp":{"id":9,"ip":"6.6.6.6","status":"ACTIVE"}}]}"#;
    let get = once(signed_over(
        server.mock("GET", &format!("{IP_LIST_PATH}/9") as &str),
        server_key(),
        genuine,
        tampered,
    ))
    .await;
    let err = client.get_ip(77, 9).await.unwrap_err();
    assert!(matches!(err, BunqError::ResponseSignature { .. }), "{err}");
    get.assert_async().await;
}

#[tokio::test]
async fn signature_by_another_key_fails_verification() {
    let (mut server, _state, client) = with_saved_client().await;
    let body = CREDENTIAL_BODY;
    let get = once(signed_over(
        any_credential_get(&mut server),
        client_key(),
        body,
        body,
    ))
    .await;
    let err = client.get_credential(77).await.unwrap_err();
    assert!(matches!(err, BunqError::ResponseSignature { .. }), "{err}");
    get.assert_async().await;
}

#[tokio::test]
async fn error_body_becomes_an_api_error_with_status_description_and_response_id() {
    let (mut server, _state, client) = with_saved_client().await;
    let _get = once(any_credential_get(&mut server)
        .with_status(400)
        .with_header("X-Bunq-Client-Response-Id", "resp-400")
        .with_body(r#"{"Error":[{"error_description":"User credentials are incorrect. Incorrect API key or IP address.","error_description_translated":"x"}]}"#)).await;
    let err = client.get_credential(77).await.unwrap_err();
    let credentials_incorrect = "User credentials are incorrect. Incorrect API key or IP address.";
    let credential_route = "GET /user/{user}/credential-password-ip/{cred}";
    assert!(
        matches!(&err, BunqError::Api { status: 400, description, response_id, endpoint }
            if description == credentials_incorrect
                && response_id.as_deref() == Some("resp-400")
                && endpoint == credential_route),
        "{err:?}"
    );
    assert!(err.is_credentials_rejected());
    assert!(!err.to_string().contains(SESSION_TOKEN));
}

#[tokio::test]
async fn rate_limited_request_is_retried_with_a_new_request_id_and_succeeds() {
    let (mut server, _state, client) = with_saved_client().await;
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = |ids: Arc<Mutex<Vec<String>>>| {
        move |request: &Request| {
            let id = request.header("X-Bunq-Client-Request-Id")[0]
                .to_str()
                .unwrap()
                .to_owned();
            ids.lock().unwrap().push(id);
            true
        }
    };
    let limited = once(
        any_credential_get(&mut server)
            .match_request(record(ids.clone()))
            .with_status(429)
            .with_body(error_body(
                "Too many requests. You can do a maximum of 3 calls per 3 second to this endpoint.",
            )),
    )
    .await;
    let ok = ok_once(
        session_call(&mut server, "GET", CREDENTIAL_PATH).match_request(record(ids.clone())),
        CREDENTIAL_BODY,
    )
    .await;
    assert_eq!(client.get_credential(77).await.unwrap().id, 77);
    assert_all(&[&limited, &ok]).await;
    let ids = ids.lock().unwrap();
    assert!(ids.len() >= 2);
    assert_ne!(ids[0], ids[ids.len() - 1]);
}

#[tokio::test]
async fn server_errors_are_retried_up_to_the_attempt_limit() {
    let (mut server, _state, client) = with_saved_client().await;
    let failing = unsigned(
        any_credential_get(&mut server),
        503,
        "<html><body>Service Unavailable</body></html>",
    )
    .expect(3)
    .create_async()
    .await;
    let err = client.get_credential(77).await.unwrap_err();
    failing.assert_async().await;
    match err {
        BunqError::Api {
            status,
            description,
            ..
        } => {
            assert_eq!(status, 503);
            assert!(description.contains("Service Unavailable"), "{description}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn create_ip_is_not_retried_on_a_server_error() {
    let (mut server, _state, client) = with_saved_client().await;
    let create = once(unsigned(
        server.mock("POST", IP_LIST_PATH),
        500,
        &error_body("Internal error"),
    ))
    .await;
    let err = client
        .create_ip(77, Ipv4Addr::new(5, 6, 7, 8), IpStatus::Active)
        .await
        .unwrap_err();
    assert!(matches!(err, BunqError::Api { status: 500, .. }), "{err}");
    create.assert_async().await;
}

#[tokio::test]
async fn update_ip_is_retried_on_a_server_error() {
    let (mut server, _state, client) = with_saved_client().await;
    let failing = once(
        server
            .mock("PUT", &format!("{IP_LIST_PATH}/877") as &str)
            .with_status(500),
    )
    .await;
    let ok = ok_once(
        session_call(&mut server, "PUT", &format!("{IP_LIST_PATH}/877")),
        r#"{"Response":[{"Id":{"id":877}}]}"#,
    )
    .await;
    client
        .update_ip_status(EntryRef::new(77, 877), IpStatus::Active)
        .await
        .unwrap();
    assert_all(&[&failing, &ok]).await;
}

#[tokio::test]
async fn connection_failure_is_a_transport_error_after_bounded_retries() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = create_sandbox_user(
        &BaseUrl::parse(&format!("http://127.0.0.1:{port}/v1")).unwrap(),
        &fast_transport(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BunqError::Transport { .. }), "{err}");
    assert!(err.is_transient());
}

#[derive(Default)]
struct CountingObserver {
    finished: Mutex<Vec<(String, String, Option<u16>)>>,
    rate_limited: Mutex<Vec<String>>,
    sessions: Mutex<u32>,
}

impl ApiObserver for CountingObserver {
    fn request_finished(&self, request: &FinishedRequest<'_>) {
        self.finished.lock().unwrap().push((
            request.method.to_owned(),
            request.route_pattern.to_owned(),
            request.status,
        ));
    }
    fn rate_limited(&self, route_pattern: &str) {
        self.rate_limited
            .lock()
            .unwrap()
            .push(route_pattern.to_owned());
    }
    fn session_created(&self, _expires_at: chrono::DateTime<Utc>) {
        *self.sessions.lock().unwrap() += 1;
    }
}

#[tokio::test]
async fn observer_sees_every_attempt_by_route_pattern() {
    let (mut server, state) = with_saved_context(chrono::Duration::days(7)).await;
    let observer = Arc::new(CountingObserver::default());
    let mut settings = settings(&server);
    settings.observer = Some(observer.clone());
    let client = connect(settings, state.path()).await.unwrap();
    let _limited = once(any_credential_get(&mut server).with_status(429)).await;
    let _ok = respond(any_credential_get(&mut server), 200, CREDENTIAL_BODY)
        .create_async()
        .await;
    let _session = mock_bunq::session(&mut server, "s2", 604_800)
        .create_async()
        .await;
    client.get_credential(77).await.unwrap();
    client.renew_session().await.unwrap();
    let pattern = "/user/{user}/credential-password-ip/{cred}";
    let finished = observer.finished.lock().unwrap().clone();
    assert_eq!(
        finished,
        vec![
            ("GET".to_owned(), pattern.to_owned(), Some(429)),
            ("GET".to_owned(), pattern.to_owned(), Some(200)),
            ("POST".to_owned(), "/session-server".to_owned(), Some(200)),
        ]
    );
    assert_eq!(
        *observer.rate_limited.lock().unwrap(),
        vec![pattern.to_owned()]
    );
    assert_eq!(*observer.sessions.lock().unwrap(), 1);
}

#[test]
fn client_can_be_shared_between_tasks() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<BunqClient>();
    assert_send_sync::<Arc<BunqClient>>();
}

#[tokio::test]
async fn renewing_twice_in_a_row_opens_only_one_session() {
    let (mut server, _state, client) = with_saved_client().await;
    let session = once(mock_bunq::session(&mut server, "fresh-session", 604_800)).await;
    let first = client.renew_session().await.unwrap();
    let second = client.renew_session().await.unwrap();
    session.assert_async().await;
    assert_eq!(first, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rejections_open_a_single_new_session() {
    let mut server = Server::new_async().await;
    let state = tempfile::tempdir().unwrap();
    let client = Arc::new(saved_client(&server, state.path()).await);
    let rejected = unsigned_session_rejection(credential_get(&mut server, SESSION_TOKEN))
        .expect_at_least(1)
        .create_async()
        .await;
    let session = once(mock_bunq::session(&mut server, "shared-session", 604_800)).await;
    let accepted = respond(
        credential_get(&mut server, "shared-session"),
        200,
        CREDENTIAL_BODY,
    )
    .expect_at_least(1)
    .create_async()
    .await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move { client.get_credential(77).await }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().id, 77);
    }
    assert_all(&[&rejected, &session, &accepted]).await;
}

/// Compiles only if every public future of the client can move between threads (the daemon
/// spawns them on a multi-threaded runtime).
#[allow(dead_code)]
fn every_client_future_is_send(client: &'static BunqClient, state: &'static Path) {
    fn is_send<T: Send>(_: T) {}
    is_send(BunqClient::connect(
        ClientSettings::new(BaseUrl::sandbox(), "x"),
        Secret::new("k"),
        state,
    ));
    is_send(client.list_credentials());
    is_send(client.get_credential(1));
    is_send(client.list_ips(1));
    is_send(client.get_ip(1, 2));
    is_send(client.create_ip(1, Ipv4Addr::LOCALHOST, IpStatus::Active));
    is_send(client.update_ip_status(EntryRef::new(1, 2), IpStatus::Inactive));
    is_send(client.renew_session());
    is_send(client.ensure_session());
    is_send(create_sandbox_user(&BaseUrl::sandbox(), &fast_transport()));
}

#[tokio::test]
async fn unanswered_request_times_out_as_a_transient_transport_error() {
    // Accepts connections (the kernel's backlog) but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut transport = fast_transport();
    transport.request_timeout = Duration::from_millis(20);
    transport.retry.max_attempts = 2;
    let err = create_sandbox_user(
        &BaseUrl::parse(&format!("http://127.0.0.1:{port}/v1")).unwrap(),
        &transport,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, BunqError::Transport { timeout: true, .. }),
        "{err}"
    );
    assert!(err.is_transient());
    drop(listener);
}

/// A client whose GET window is one hour long, so a held request stays held.
async fn client_with_hourly_get_limit(
    server: &ServerGuard,
    state: &Path,
    max: usize,
) -> BunqClient {
    save_context(state, &base_url(server), API_KEY, chrono::Duration::days(7));
    let mut settings = settings(server);
    let mut limits = RateLimits::bunq();
    limits.get = bunq_ipsync::bunq::Limit::new(max, Duration::from_secs(3600));
    settings.transport.rate_limits = limits;
    connect(settings, state).await.unwrap()
}

#[tokio::test]
async fn the_rate_limiter_holds_a_request_beyond_the_window_limit() {
    let mut server = Server::new_async().await;
    let state = tempfile::tempdir().unwrap();
    let client = client_with_hourly_get_limit(&server, state.path(), 3).await;
    let get = respond(any_credential_get(&mut server), 200, CREDENTIAL_BODY)
        .expect(3)
        .create_async()
        .await;
    for _ in 0..3 {
        client.get_credential(77).await.unwrap();
    }
    let fourth = tokio::time::timeout(Duration::from_millis(50), client.get_credential(77)).await;
    assert!(fourth.is_err(), "the fourth GET was not held back");
    get.assert_async().await;
}

#[tokio::test]
async fn the_rate_limiter_is_acquired_before_a_retry_too() {
    let mut server = Server::new_async().await;
    let state = tempfile::tempdir().unwrap();
    let client = client_with_hourly_get_limit(&server, state.path(), 1).await;
    let limited = once(any_credential_get(&mut server).with_status(429)).await;
    let call = tokio::spawn(async move { client.get_credential(77).await });
    // Wait for the first attempt however loaded the machine is, then give an unheld retry
    // ample time to arrive: it would be a second hit (and an error answer ending the call).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !limited.matched_async().await {
        assert!(tokio::time::Instant::now() < deadline, "no first attempt");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !call.is_finished(),
        "the retry was not held back by the limiter"
    );
    limited.assert_async().await;
    call.abort();
}

#[tokio::test]
async fn a_rejected_saved_installation_is_replaced_by_one_clean_registration() {
    // The saved session is stale, so connect opens a new one with the saved installation token.
    let (mut server, state) = with_saved_context(chrono::Duration::seconds(30)).await;
    let rejected = once(unsigned_session_rejection(
        server
            .mock("POST", "/v1/session-server")
            .match_header("X-Bunq-Client-Authentication", INSTALLATION_TOKEN),
    ))
    .await;
    let new_installation = serde_json::json!({"Response": [
        {"Id": {"id": 1}},
        {"Token": {"id": 2, "token": "installation-2"}},
        {"ServerPublicKey": {"server_public_key": server_key().public_key().to_pem()}}
    ]})
    .to_string();
    let installation = ok_once(server.mock("POST", "/v1/installation"), &new_installation).await;
    let device = ok_once(
        server
            .mock("POST", "/v1/device-server")
            .match_header("X-Bunq-Client-Authentication", "installation-2"),
        r#"{"Response":[{"Id":{"id":322}}]}"#,
    )
    .await;
    let session = ok_once(
        server
            .mock("POST", "/v1/session-server")
            .match_header("X-Bunq-Client-Authentication", "installation-2"),
        &session_body("session-after-reinstall", 604_800),
    )
    .await;
    connect(settings(&server), state.path()).await.unwrap();
    assert_all(&[&rejected, &installation, &device, &session]).await;
    let saved = saved_context(state.path());
    assert_eq!(saved.installation.unwrap().token.expose(), "installation-2");
}

#[tokio::test]
async fn a_rejected_fresh_installation_is_an_error_not_a_loop() {
    let mut server = Server::new_async().await;
    let installation = once(mock_bunq::installation(&mut server)).await;
    let _device = mock_bunq::device(&mut server).create_async().await;
    let session = once(unsigned_session_rejection(
        server.mock("POST", "/v1/session-server"),
    ))
    .await;
    let state = tempfile::tempdir().unwrap();
    assert_session_rejected(connect(settings(&server), state.path()).await);
    assert_all(&[&installation, &session]).await;
}

#[tokio::test]
async fn unsigned_session_server_response_fails_registration() {
    let mut server = Server::new_async().await;
    let _installation = mock_bunq::installation(&mut server).create_async().await;
    let _device = mock_bunq::device(&mut server).create_async().await;
    let session = once(unsigned(
        server.mock("POST", "/v1/session-server"),
        200,
        &session_body("forged-session", 604_800),
    ))
    .await;
    let state = tempfile::tempdir().unwrap();
    let err = connect(settings(&server), state.path()).await.unwrap_err();
    assert!(matches!(err, BunqError::ResponseSignature { .. }), "{err}");
    session.assert_async().await;
    let saved = saved_context(state.path());
    assert!(saved.session.is_none(), "an unverified session was saved");
}

#[tokio::test]
async fn debug_output_of_client_and_settings_shows_no_secret() {
    let server = Server::new_async().await;
    let state = tempfile::tempdir().unwrap();
    let client = saved_client(&server, state.path()).await;
    let printed = format!("{client:?} {:?}", settings(&server));
    for secret in [API_KEY, SESSION_TOKEN, INSTALLATION_TOKEN, "PRIVATE KEY"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
}

#[tokio::test]
async fn ensure_session_renews_only_when_due() {
    let (mut server, state) = with_saved_context(chrono::Duration::hours(2)).await;
    let (settings, now) = renewing_settings(&server);
    let session = once(mock_bunq::session(&mut server, "due-session", 604_800)).await;
    let client = connect(settings, state.path()).await.unwrap();
    let before = client.ensure_session().await.unwrap();
    assert!(!session.matched_async().await);
    *now.lock().unwrap() += chrono::Duration::minutes(90);
    let after = client.ensure_session().await.unwrap();
    session.assert_async().await;
    assert!(after > before);
}

// ---------------------------------------------------------------------------------------------
// Issue 9: session rejection by status, verified error responses, 429 storms.

/// A signature over other bytes than the body: present, well-formed, and wrong.
fn respond_with_a_bad_signature(mock: Mock, status: usize, body: &str) -> Mock {
    mock.with_status(status)
        .with_header("X-Bunq-Client-Response-Id", "response-id-forged")
        .with_header(
            "X-Bunq-Server-Signature",
            &server_key().sign(format!("{body} ").as_bytes()),
        )
        .with_body(body)
}

#[tokio::test]
async fn a_session_call_answered_401_with_any_wording_opens_one_new_session_and_retries_once() {
    for (status, text) in [
        (401, "Session timeout."),
        (403, "Insufficient authorisation."),
    ] {
        let mut server = Server::new_async().await;
        let state = tempfile::tempdir().unwrap();
        let client = saved_client(&server, state.path()).await;
        let body = error_body(text);
        // Signed like bunq signs it: verified, then acted on.
        let rejected = once(respond(
            credential_get(&mut server, SESSION_TOKEN),
            status,
            &body,
        ))
        .await;
        let session = once(
            mock_bunq::session(&mut server, "second-session", 604_800)
                .match_header("X-Bunq-Client-Authentication", INSTALLATION_TOKEN),
        )
        .await;
        let accepted = ok_once(
            credential_get(&mut server, "second-session"),
            ACTIVE_CREDENTIAL_BODY,
        )
        .await;
        let credential = client.get_credential(77).await.unwrap();
        assert_eq!(credential.id, 77, "{status} {text}");
        assert_all(&[&rejected, &session, &accepted]).await;
    }
}

#[tokio::test]
async fn an_error_response_with_an_invalid_server_signature_is_a_security_error_and_nothing_follows()
 {
    let (mut server, _state, client) = with_saved_client().await;
    let rejected =
        badly_signed_credential_error(&mut server, 403, "Insufficient authentication.").await;
    let session = never(server.mock("POST", "/v1/session-server")).await;
    assert_security_error(client.get_credential(77).await);
    assert_all(&[&rejected, &session]).await;
}

#[tokio::test]
async fn a_server_error_with_an_invalid_server_signature_is_not_retried() {
    let (mut server, _state, client) = with_saved_client().await;
    let failing = badly_signed_credential_error(&mut server, 503, "Service unavailable.").await;
    assert_security_error(client.get_credential(77).await);
    failing.assert_async().await;
}

#[tokio::test]
async fn a_forged_installation_rejection_discards_nothing_and_registers_nothing() {
    // Stale session: connect opens a new one with the saved installation token.
    let (mut server, state) = with_saved_context(chrono::Duration::seconds(30)).await;
    let before = std::fs::read(state.path().join(CONTEXT_FILE_NAME)).unwrap();
    let rejected = once(respond_with_a_bad_signature(
        server
            .mock("POST", "/v1/session-server")
            .match_header("X-Bunq-Client-Authentication", INSTALLATION_TOKEN),
        403,
        &error_body("Insufficient authentication."),
    ))
    .await;
    let installation = never(server.mock("POST", "/v1/installation")).await;
    let device = never(server.mock("POST", "/v1/device-server")).await;
    assert_security_error(connect(settings(&server), state.path()).await);
    assert_all(&[&rejected, &installation, &device]).await;
    let after = std::fs::read(state.path().join(CONTEXT_FILE_NAME)).unwrap();
    assert_eq!(before, after, "the saved installation was kept as it was");
}

#[tokio::test]
async fn a_session_server_refusing_the_credentials_with_403_keeps_the_saved_installation() {
    // "User credentials are incorrect" is not bunq forgetting the installation, whatever the
    // status: the error is returned and the installation is kept.
    let (mut server, state) = with_saved_context(chrono::Duration::seconds(30)).await;
    let before = std::fs::read(state.path().join(CONTEXT_FILE_NAME)).unwrap();
    let rejected = once(respond(
        server.mock("POST", "/v1/session-server"),
        403,
        &error_body("User credentials are incorrect. Incorrect API key or IP address."),
    ))
    .await;
    let installation = never(server.mock("POST", "/v1/installation")).await;
    let err = connect(settings(&server), state.path()).await.unwrap_err();
    assert!(err.is_credentials_rejected(), "{err}");
    assert_all(&[&rejected, &installation]).await;
    let after = std::fs::read(state.path().join(CONTEXT_FILE_NAME)).unwrap();
    assert_eq!(before, after);
}

/// `mock` answered 429 "Too many requests." `times` times, created.
async fn too_many_requests(mock: Mock, times: usize) -> Mock {
    respond(mock, 429, &error_body("Too many requests."))
        .expect(times)
        .create_async()
        .await
}

#[tokio::test]
async fn a_429_is_retried_beyond_the_transient_attempt_budget_until_it_succeeds() {
    // fast_transport allows 3 attempts for transient failures; a rate limit gets at least 6.
    let (mut server, _state, client) = with_saved_client().await;
    let limited = too_many_requests(any_credential_get(&mut server), 5).await;
    let ok = ok_once(any_credential_get(&mut server), CREDENTIAL_BODY).await;
    assert_eq!(client.get_credential(77).await.unwrap().id, 77);
    assert_all(&[&limited, &ok]).await;
}

#[tokio::test]
async fn create_ip_answered_429_is_retried_and_creates_once() {
    let (mut server, _state, client) = with_saved_client().await;
    let limited = too_many_requests(server.mock("POST", IP_LIST_PATH), 2).await;
    let created = expect_create_5678(&mut server, 901).await;
    let id = create_5678(&client).await.unwrap();
    assert_eq!(id, 901);
    assert_all(&[&limited, &created]).await;
}
