//! The bunq simulator, driven over raw HTTP the way bunq is: a hand-made installation, device
//! and session with the crate's RSA primitives, every response's server signature checked.
//! Nothing here uses the bunq client, so the simulator stays an independent oracle for it.

// The whole file is test code: helpers outside `#[test]` fns may panic to report failure too,
// as clippy.toml already allows inside them.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use bunq_ipsync::bunq::crypto::PublicKey;
use bunq_ipsync::bunq::model::{Envelope, ErrorBody, IpStatus, PermittedIp, TIMESTAMP_FORMAT};
use bunq_ipsync::simulator::{
    DEFAULT_CALLER_IP, Fault, FaultKind, SeededKey, Simulator, SimulatorOptions, UserKind,
};
use futures_util::future::BoxFuture;
use reqwest::Method;
use serde_json::Value;

use crate::support::bank::active_ips;
use crate::support::{client_key, sim_options};

// ---------------------------------------------------------------------------------------------
// Helpers: keys, a raw request builder, and the context flow done by hand.

const CREDENTIALS_INCORRECT: &str =
    "User credentials are incorrect. Incorrect API key or IP address.";
const INSUFFICIENT_AUTHENTICATION: &str = "Insufficient authentication.";
const SIGNATURE_REQUIRED: &str = "For this operation a request signature is required.";
const SIGNATURE_INVALID: &str = "The request signature is invalid.";
const OTHER_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

async fn start() -> Simulator {
    start_with(sim_options()).await
}

/// A simulator with `options` (the tests change one field of [`sim_options`]).
async fn start_with(options: SimulatorOptions) -> Simulator {
    Simulator::start(options).await.unwrap()
}

fn http(timeout: Option<Duration>) -> reqwest::Client {
    let builder = bunq_ipsync::tls::client_builder()
        .no_proxy()
        .pool_max_idle_per_host(0);
    match timeout {
        Some(timeout) => builder.timeout(timeout),
        None => builder,
    }
    .build()
    .unwrap()
}

enum Sign {
    /// Sign the body with the suite's client key.
    Body,
    /// No signature header.
    Unsigned,
    /// This exact header value.
    Header(String),
}

/// A raw bunq request.
struct Call {
    method: Method,
    path: String,
    token: Option<String>,
    body: String,
    sign: Sign,
    request_id: Option<String>,
}

fn call(method: Method, path: &str, body: &str) -> Call {
    Call {
        method,
        path: path.to_owned(),
        token: None,
        body: body.to_owned(),
        sign: Sign::Body,
        request_id: Some(uuid::Uuid::new_v4().to_string()),
    }
}

fn get(path: &str) -> Call {
    call(Method::GET, path, "")
}

fn post(path: &str, body: &str) -> Call {
    call(Method::POST, path, body)
}

impl Call {
    fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    fn unsigned(mut self) -> Self {
        self.sign = Sign::Unsigned;
        self
    }

    fn signature(mut self, signature: String) -> Self {
        self.sign = Sign::Header(signature);
        self
    }

    fn request_id(mut self, id: &str) -> Self {
        self.request_id = Some(id.to_owned());
        self
    }

    async fn try_send(
        self,
        sim: &Simulator,
        client: &reqwest::Client,
    ) -> Result<Answer, reqwest::Error> {
        // `path` is relative to /v1, like the client's endpoints.
        let url = format!("{}{}", sim.base_url(), self.path);
        let mut request = client
            .request(self.method, url)
            .header("User-Agent", "simulator-test")
            .header("Cache-Control", "no-cache");
        if let Some(token) = &self.token {
            request = request.header("X-Bunq-Client-Authentication", token);
        }
        if let Some(id) = &self.request_id {
            request = request.header("X-Bunq-Client-Request-Id", id);
        }
        match self.sign {
            Sign::Body => {
                request = request.header(
                    "X-Bunq-Client-Signature",
                    client_key().sign(self.body.as_bytes()),
                )
            }
            Sign::Header(value) => request = request.header("X-Bunq-Client-Signature", value),
            Sign::Unsigned => {}
        }
        let response = request.body(self.body).send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    async fn send(self, sim: &Simulator) -> Answer {
        self.try_send(sim, &http(None)).await.unwrap()
    }

    /// Sends the call, failing with the body unless it is answered with `status`.
    async fn answered(self, sim: &Simulator, status: u16) -> Answer {
        let answer = self.send(sim).await;
        assert_eq!(
            answer.status,
            status,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        answer
    }

    /// Sends the call and asserts the bunq error it is answered with.
    async fn refused(self, sim: &Simulator, status: u16, text: &str) {
        self.refused_in("the call", sim, status, text).await;
    }

    /// [`Call::refused`], failing with the name of `case`.
    async fn refused_in(self, case: &str, sim: &Simulator, status: u16, text: &str) {
        self.send(sim).await.assert_error_in(case, status, text);
    }
}

/// A raw response.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn envelope(&self) -> Envelope {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The bunq error text; panics unless the body is a bunq error.
    fn error(&self) -> String {
        let body: ErrorBody = serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!("not an error body: {}", String::from_utf8_lossy(&self.body))
        });
        body.description()
    }

    fn signature_verifies(&self, key: &PublicKey) -> bool {
        self.header("x-bunq-server-signature")
            .is_some_and(|signature| key.verify(&self.body, signature).is_ok())
    }

    fn assert_error(&self, status: u16, text: &str) {
        self.assert_error_in("the answer", status, text);
    }

    /// [`Answer::assert_error`], failing with the name of `case`.
    fn assert_error_in(&self, case: &str, status: u16, text: &str) {
        assert_eq!(
            (self.status, self.error().as_str()),
            (status, text),
            "{case}: {}",
            String::from_utf8_lossy(&self.body)
        );
    }
}

/// What a finished context gives a client.
struct Context {
    installation_token: String,
    server_key: PublicKey,
    session_token: String,
    user_id: u64,
    credential_id: u64,
}

impl Context {
    fn entries_path(&self) -> String {
        format!(
            "/user/{}/credential-password-ip/{}/ip",
            self.user_id, self.credential_id
        )
    }

    fn entry_path(&self, entry: u64) -> String {
        format!("{}/{entry}", self.entries_path())
    }

    /// A raw request carrying the session token: how every user call of a test starts.
    fn call(&self, method: Method, path: &str, body: &str) -> Call {
        call(method, path, body).token(&self.session_token)
    }

    fn get(&self, path: &str) -> Call {
        self.call(Method::GET, path, "")
    }

    fn post(&self, path: &str, body: &str) -> Call {
        self.call(Method::POST, path, body)
    }

    fn put(&self, path: &str, body: &str) -> Call {
        self.call(Method::PUT, path, body)
    }

    /// `PUT` of entry `entry` with `body`.
    fn update(&self, entry: u64, body: &str) -> Call {
        self.put(&self.entry_path(entry), body)
    }

    /// The credential's entries as the simulator stores them.
    fn entries(&self, sim: &Simulator) -> Vec<PermittedIp> {
        sim.entries(self.credential_id).unwrap()
    }

    /// Seeds an entry on the credential behind the API's back; its id.
    fn add_entry(&self, sim: &Simulator, ip: &str, status: IpStatus) -> u64 {
        sim.add_entry(self.credential_id, ip, status).unwrap()
    }

    /// [`Context::list_entries`], answered with the bunq error `status` `text`.
    async fn listing_refused(&self, sim: &Simulator, status: u16, text: &str) {
        self.list_entries(sim).await.assert_error(status, text);
    }

    /// `GET` the credential's allowlist (first page, default count) with the session token.
    async fn list_entries(&self, sim: &Simulator) -> Answer {
        self.get(&self.entries_path()).send(sim).await
    }

    /// [`Context::list_entries`] under the client request id `id`.
    async fn list_entries_as(&self, sim: &Simulator, id: &str) -> Answer {
        self.get(&self.entries_path())
            .request_id(id)
            .send(sim)
            .await
    }

    /// Fails unless a listing is refused as bunq refuses a session it no longer accepts.
    async fn assert_session_ended(&self, sim: &Simulator) {
        self.listing_refused(sim, 403, INSUFFICIENT_AUTHENTICATION)
            .await;
    }

    /// How many of the credential's stored entries hold `ip`.
    fn entries_holding(&self, sim: &Simulator, ip: &str) -> usize {
        self.entries(sim)
            .iter()
            .filter(|entry| entry.ip == ip)
            .count()
    }

    /// Creates `ip` under a fault of `kind` on the create, failing unless the client sees a
    /// transport error (no answer at all).
    async fn assert_create_lost_under(&self, sim: &Simulator, kind: FaultKind, ip: &str) {
        sim.inject(Fault::once(kind).on(Method::POST, "/ip"));
        let result = self
            .post(&self.entries_path(), &format!(r#"{{"ip":"{ip}"}}"#))
            .try_send(sim, &http(None))
            .await;
        assert!(result.is_err(), "{result:?}");
    }
}

fn installation_body() -> String {
    serde_json::json!({ "client_public_key": client_key().public_key().to_pem() }).to_string()
}

fn device_body(api_key: &str, permitted_ips: &[&str]) -> String {
    serde_json::json!({
        "description": "ipsync-test",
        "secret": api_key,
        "permitted_ips": permitted_ips,
    })
    .to_string()
}

fn session_body(api_key: &str) -> String {
    serde_json::json!({ "secret": api_key }).to_string()
}

/// `POST /device-server` for `api_key` (no extra permitted IPs) with installation `token`.
fn device_server(token: &str, api_key: &str) -> Call {
    post("/device-server", &device_body(api_key, &[])).token(token)
}

/// `POST /session-server` for `api_key` with installation `token`.
fn session_server(token: &str, api_key: &str) -> Call {
    post("/session-server", &session_body(api_key)).token(token)
}

/// POST /installation; returns the installation token and the server key.
async fn install(sim: &Simulator) -> (String, PublicKey) {
    let answer = post("/installation", &installation_body())
        .unsigned()
        .send(sim)
        .await;
    let envelope = answer.envelope();
    let token = envelope.find("Token").unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let pem = envelope.find("ServerPublicKey").unwrap()["server_public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    (token, PublicKey::from_pem(&pem).unwrap())
}

/// A new seeded key and an installation token, no device yet.
async fn installed(sim: &Simulator) -> (SeededKey, String) {
    let seeded = sim.create_user_with_api_key();
    let (token, _) = install(sim).await;
    (seeded, token)
}

/// A new seeded key with its installation and device registered, no session yet: the key, the
/// installation token and the server key.
async fn registered_device(sim: &Simulator) -> (SeededKey, String, PublicKey) {
    let seeded = sim.create_user_with_api_key();
    let (token, server_key) = install(sim).await;
    device_server(&token, seeded.api_key.expose())
        .send(sim)
        .await;
    (seeded, token, server_key)
}

/// The session-server call for a [`registered_device`] (not sent yet).
async fn new_device_session_call(sim: &Simulator) -> Call {
    let (seeded, token, _) = registered_device(sim).await;
    session_server(&token, seeded.api_key.expose())
}

/// Installation, device-server and session-server for `seeded`, from the current caller IP.
async fn context(sim: &Simulator, seeded: &SeededKey) -> Context {
    let (installation_token, server_key) = install(sim).await;
    let key = seeded.api_key.expose();
    let device = device_server(&installation_token, key).send(sim).await;
    assert_eq!(
        device.status,
        200,
        "{}",
        String::from_utf8_lossy(&device.body)
    );
    let session = session_server(&installation_token, key).send(sim).await;
    let envelope = session.envelope();
    Context {
        installation_token,
        server_key,
        session_token: envelope.find("Token").unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned(),
        user_id: envelope.find("UserPerson").unwrap()["id"].as_u64().unwrap(),
        credential_id: seeded.credential_id,
    }
}

/// A simulator with one seeded key and an open context.
async fn ready() -> (Simulator, SeededKey, Context) {
    ready_with(sim_options()).await
}

/// [`ready`] on a simulator with `options`.
async fn ready_with(options: SimulatorOptions) -> (Simulator, SeededKey, Context) {
    let sim = start_with(options).await;
    let seeded = sim.create_user_with_api_key();
    let ctx = context(&sim, &seeded).await;
    (sim, seeded, ctx)
}

/// A [`ready`] simulator with a fault of `kind` injected, and its answer to the next listing
/// (failing unless that is answered with `status`).
async fn listed_under(kind: FaultKind, status: u16) -> (Simulator, Context, Answer) {
    let (sim, _, ctx) = ready().await;
    sim.inject(Fault::once(kind));
    let answer = ctx.get(&ctx.entries_path()).answered(&sim, status).await;
    (sim, ctx, answer)
}

/// Seeds `count` entries 10.0.0.0, 10.0.0.1, ... with `status` on the context's credential.
fn seed_entries(sim: &Simulator, ctx: &Context, count: u32, status: IpStatus) {
    for n in 0..count {
        let ip = Ipv4Addr::from(0x0a00_0000 + n).to_string();
        ctx.add_entry(sim, &ip, status.clone());
    }
}

fn ids(envelope: &Envelope) -> Vec<u64> {
    envelope
        .all("PermittedIp")
        .map(|item| item["id"].as_u64().unwrap())
        .collect()
}

/// The kind of each `Response` item (its one key: `Id`, `Token`, ...), in order.
fn item_kinds(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|item| item.as_object().unwrap().keys().next().unwrap().as_str())
        .collect()
}

/// Fails unless nothing answers at `address` any more, once the server task had a turn to stop.
async fn assert_not_serving(address: std::net::SocketAddr) {
    tokio::task::yield_now().await;
    let result = http(None)
        .get(format!("http://{address}/v1/installation"))
        .send()
        .await;
    assert!(result.is_err(), "{result:?}");
}

fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit())
}

// ---------------------------------------------------------------------------------------------
// 1. Envelopes and the context flow.

#[tokio::test]
async fn installation_answers_id_token_and_server_key_in_that_order() {
    let sim = start().await;
    let answer = post("/installation", &installation_body())
        .unsigned()
        .answered(&sim, 200)
        .await;
    let json = answer.json();
    let items = json["Response"].as_array().unwrap();
    assert_eq!(item_kinds(items), ["Id", "Token", "ServerPublicKey"]);
    let token = &items[1]["Token"];
    assert!(is_hex64(token["token"].as_str().unwrap()), "{token}");
    let created = token["created"].as_str().unwrap();
    assert!(chrono::NaiveDateTime::parse_from_str(created, TIMESTAMP_FORMAT).is_ok());
    let pem = items[2]["ServerPublicKey"]["server_public_key"]
        .as_str()
        .unwrap();
    assert_eq!(PublicKey::from_pem(pem).unwrap(), sim.server_public_key());
    assert!(answer.signature_verifies(&sim.server_public_key()));
}

#[tokio::test]
async fn device_server_answers_a_bare_id_and_binds_the_caller() {
    let sim = start().await;
    let seeded = sim.create_user_with_api_key();
    let (token, server_key) = install(&sim).await;
    let answer = device_server(&token, seeded.api_key.expose())
        .answered(&sim, 200)
        .await;
    let json = answer.json();
    assert!(json["Response"][0]["Id"]["id"].as_u64().is_some(), "{json}");
    assert_eq!(json["Response"].as_array().unwrap().len(), 1);
    assert!(answer.signature_verifies(&server_key));
    let device = sim
        .credential(seeded.credential_id)
        .unwrap()
        .permitted_device
        .unwrap();
    assert_eq!(device.description.as_deref(), Some("ipsync-test"));
    assert_eq!(device.ip, Some(DEFAULT_CALLER_IP.to_string()));
}

#[tokio::test]
async fn session_server_answers_id_token_and_user_person_in_that_order() {
    let sim = start().await;
    let (seeded, token, server_key) = registered_device(&sim).await;
    let answer = session_server(&token, seeded.api_key.expose())
        .answered(&sim, 200)
        .await;
    assert!(answer.signature_verifies(&server_key));
    let json = answer.json();
    let items = json["Response"].as_array().unwrap();
    assert_eq!(item_kinds(items), ["Id", "Token", "UserPerson"]);
    assert!(is_hex64(items[1]["Token"]["token"].as_str().unwrap()));
    assert_eq!(items[2]["UserPerson"]["id"], seeded.user_id);
    assert_eq!(items[2]["UserPerson"]["session_timeout"], 604_800);
    assert_eq!(sim.sessions_created(), 1);
}

#[tokio::test]
async fn session_server_can_answer_a_user_company() {
    let sim = start_with(SimulatorOptions {
        user_kind: UserKind::Company,
        ..sim_options()
    })
    .await;
    let (seeded, token, _) = registered_device(&sim).await;
    let envelope = session_server(&token, seeded.api_key.expose())
        .send(&sim)
        .await
        .envelope();
    assert!(envelope.find("UserPerson").is_none());
    let user = envelope.find("UserCompany").unwrap();
    assert_eq!(user["id"], seeded.user_id);
    assert_eq!(user["session_timeout"], 604_800);
}

#[tokio::test]
async fn every_response_carries_a_response_id_and_echoes_the_request_id() {
    let (sim, _, ctx) = ready().await;
    for answer in [
        ctx.get(&ctx.entries_path())
            .request_id("req-1")
            .send(&sim)
            .await,
        ctx.get("/user/999999/credential-password-ip")
            .request_id("req-2")
            .send(&sim)
            .await,
    ] {
        let response_id = answer.header("x-bunq-client-response-id").unwrap();
        assert!(uuid::Uuid::parse_str(response_id).is_ok(), "{response_id}");
        assert!(
            answer
                .header("x-bunq-client-request-id")
                .unwrap()
                .starts_with("req-")
        );
    }
}

#[tokio::test]
async fn error_responses_are_signed_over_their_exact_bytes() {
    let (sim, _, ctx) = ready().await;
    let answer = get(&ctx.entries_path())
        .token("nonsense")
        .answered(&sim, 403)
        .await;
    assert!(answer.signature_verifies(&ctx.server_key));
    let json = answer.json();
    assert_eq!(
        json["Error"][0]["error_description_translated"],
        INSUFFICIENT_AUTHENTICATION
    );
}

#[tokio::test]
async fn bodies_escape_slashes_so_only_raw_byte_verification_works() {
    let (sim, _, ctx) = ready().await;
    for status in [IpStatus::Active, IpStatus::Inactive] {
        ctx.add_entry(&sim, "10.0.0.1", status);
    }
    let answer = ctx
        .get(&format!("{}?count=1", ctx.entries_path()))
        .send(&sim)
        .await;
    let raw = String::from_utf8(answer.body.clone()).unwrap();
    assert!(raw.contains(r#""older_url":"\/v1\/user\/"#), "{raw}");
    assert!(answer.signature_verifies(&ctx.server_key));
    let reencoded = serde_json::to_vec(&answer.json()).unwrap();
    let signature = answer.header("x-bunq-server-signature").unwrap();
    assert!(ctx.server_key.verify(&reencoded, signature).is_err());
}

// ---------------------------------------------------------------------------------------------
// 2. Token model.

#[tokio::test]
async fn session_token_is_refused_on_session_server() {
    let (sim, seeded, ctx) = ready().await;
    ctx.post("/session-server", &session_body(seeded.api_key.expose()))
        .refused(&sim, 403, INSUFFICIENT_AUTHENTICATION)
        .await;
}

#[tokio::test]
async fn installation_token_is_refused_on_user_calls() {
    let (sim, _, ctx) = ready().await;
    get(&ctx.entries_path())
        .token(&ctx.installation_token)
        .refused(&sim, 403, INSUFFICIENT_AUTHENTICATION)
        .await;
}

#[tokio::test]
async fn missing_token_is_refused_on_device_server() {
    let sim = start().await;
    let seeded = sim.create_user_with_api_key();
    post("/device-server", &device_body(seeded.api_key.expose(), &[]))
        .refused(&sim, 403, INSUFFICIENT_AUTHENTICATION)
        .await;
}

#[tokio::test]
async fn bad_token_status_is_configurable_to_401() {
    let sim = start_with(SimulatorOptions {
        expired_session_status: 401,
        ..sim_options()
    })
    .await;
    get("/user/1/credential-password-ip")
        .token("0000")
        .refused(&sim, 401, INSUFFICIENT_AUTHENTICATION)
        .await;
}

/// A registration call built on a fresh simulator.
type RegistrationCall = for<'a> fn(&'a Simulator) -> BoxFuture<'a, Call>;

/// Each case: a key the simulator does not accept (yet) is refused with the credentials error.
#[tokio::test]
async fn credential_refusals() {
    let cases: [(&str, RegistrationCall); 2] = [
        (
            "session_server_needs_device_server_for_the_key_first",
            |sim| {
                Box::pin(async move {
                    let (seeded, token) = installed(sim).await;
                    session_server(&token, seeded.api_key.expose())
                })
            },
        ),
        (
            "unknown_api_key_is_refused_with_the_credentials_error",
            |sim| {
                Box::pin(async move {
                    let (token, _) = install(sim).await;
                    device_server(&token, "not-a-key")
                })
            },
        ),
    ];
    for (case, call) in cases {
        let sim = start().await;
        call(&sim)
            .await
            .refused_in(case, &sim, 400, CREDENTIALS_INCORRECT)
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Request signatures.

/// How a case signs its call.
type SignedAs = fn(Call) -> Call;

/// Each case: a session-server call of a registered device, signed as the case says, and the
/// status and error the simulator refuses it with.
#[tokio::test]
async fn session_server_signature_refusals() {
    let cases: [(&str, SignedAs, u16, &str); 2] = [
        (
            "session_server_without_signature_is_466",
            Call::unsigned,
            466,
            SIGNATURE_REQUIRED,
        ),
        (
            "session_server_with_a_wrong_signature_is_400",
            |call| call.signature(client_key().sign(b"other bytes")),
            400,
            SIGNATURE_INVALID,
        ),
    ];
    for (case, sign, status, error) in cases {
        let sim = start().await;
        sign(new_device_session_call(&sim).await)
            .refused_in(case, &sim, status, error)
            .await;
    }
}

#[tokio::test]
async fn wrong_signature_on_a_get_is_400_but_none_is_fine() {
    let (sim, _, ctx) = ready().await;
    ctx.get(&ctx.entries_path())
        .signature("bm90IGEgc2lnbmF0dXJl".to_owned())
        .refused(&sim, 400, SIGNATURE_INVALID)
        .await;
    ctx.get(&ctx.entries_path())
        .unsigned()
        .answered(&sim, 200)
        .await;
}

#[tokio::test]
async fn unsigned_post_without_content_type_is_accepted() {
    let (sim, _, ctx) = ready().await;
    ctx.post(&ctx.entries_path(), r#"{"ip":"10.1.1.1"}"#)
        .unsigned()
        .answered(&sim, 200)
        .await;
}

#[tokio::test]
async fn device_server_verifies_a_present_signature() {
    let sim = start().await;
    let (seeded, token) = installed(&sim).await;
    device_server(&token, seeded.api_key.expose())
        .signature(client_key().sign(b"{}"))
        .refused(&sim, 400, SIGNATURE_INVALID)
        .await;
    device_server(&token, seeded.api_key.expose())
        .unsigned()
        .answered(&sim, 200)
        .await;
}

#[tokio::test]
async fn strict_mode_requires_a_signature_on_device_server() {
    let sim = start_with(SimulatorOptions {
        strict_device_signature: true,
        ..sim_options()
    })
    .await;
    let (seeded, token) = installed(&sim).await;
    device_server(&token, seeded.api_key.expose())
        .unsigned()
        .refused(&sim, 466, SIGNATURE_REQUIRED)
        .await;
}

#[tokio::test]
async fn reused_request_id_is_refused_on_the_same_installation() {
    let (sim, _, ctx) = ready().await;
    let first = ctx.list_entries_as(&sim, "same-id").await;
    assert_eq!(first.status, 200);
    let second = ctx.list_entries_as(&sim, "same-id").await;
    assert_eq!(second.status, 400);
    assert!(
        second.error().contains("X-Bunq-Client-Request-Id"),
        "{}",
        second.error()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. IP enforcement.

#[tokio::test]
async fn device_server_makes_the_caller_and_permitted_ips_active() {
    let sim = start().await;
    let (seeded, token) = installed(&sim).await;
    post(
        "/device-server",
        &device_body(seeded.api_key.expose(), &["10.0.0.2", "10.0.0.3"]),
    )
    .token(&token)
    .send(&sim)
    .await;
    assert_eq!(
        active_ips(&sim, seeded.credential_id),
        ["10.0.0.2", "10.0.0.3", "198.51.100.7"]
    );
}

#[tokio::test]
async fn device_server_from_an_ip_outside_an_existing_allowlist_is_refused() {
    let sim = start().await;
    let seeded = sim.create_user_with_api_key();
    sim.add_entry(seeded.credential_id, "10.9.9.9", IpStatus::Active)
        .unwrap();
    let (token, _) = install(&sim).await;
    device_server(&token, seeded.api_key.expose())
        .refused(&sim, 400, CREDENTIALS_INCORRECT)
        .await;
    assert_eq!(sim.entries(seeded.credential_id).unwrap().len(), 1);
}

#[tokio::test]
async fn session_server_from_an_inactive_ip_is_refused() {
    let sim = start().await;
    let session = new_device_session_call(&sim).await;
    sim.set_caller_ip(OTHER_IP);
    session.refused(&sim, 400, CREDENTIALS_INCORRECT).await;
}

#[tokio::test]
async fn session_call_from_a_non_active_ip_gets_the_credentials_error() {
    let (sim, _, ctx) = ready().await;
    sim.set_caller_ip(OTHER_IP);
    ctx.listing_refused(&sim, 400, CREDENTIALS_INCORRECT).await;
    let entry = ctx.add_entry(&sim, "203.0.113.9", IpStatus::Active);
    let allowed = ctx.list_entries(&sim).await;
    assert_eq!(allowed.status, 200);
    sim.set_entry_status(ctx.credential_id, entry, IpStatus::Inactive)
        .unwrap();
    ctx.listing_refused(&sim, 400, CREDENTIALS_INCORRECT).await;
}

#[tokio::test]
async fn deactivating_the_callers_own_ip_locks_it_out_on_the_next_call() {
    let (sim, _, ctx) = ready().await;
    let own = ctx.entries(&sim)[0].id;
    ctx.update(own, r#"{"status":"INACTIVE"}"#)
        .answered(&sim, 200)
        .await;
    ctx.listing_refused(&sim, 400, CREDENTIALS_INCORRECT).await;
}

#[tokio::test]
async fn active_wildcard_entry_admits_any_caller() {
    let (sim, _, ctx) = ready().await;
    ctx.add_entry(&sim, "*", IpStatus::Active);
    sim.set_caller_ip(OTHER_IP);
    let answer = ctx.list_entries(&sim).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn path_user_must_be_the_sessions_user() {
    let (sim, _, ctx) = ready().await;
    let other = sim.create_user_with_api_key();
    ctx.get(&format!("/user/{}/credential-password-ip", other.user_id))
        .answered(&sim, 403)
        .await;
    ctx.get(&format!(
        "/user/{}/credential-password-ip/{}/ip",
        ctx.user_id, other.credential_id
    ))
    .answered(&sim, 404)
    .await;
}

// ---------------------------------------------------------------------------------------------
// 6. Credentials and IP entries.

#[tokio::test]
async fn credential_listing_shows_each_keys_device_with_pagination() {
    let (sim, seeded, ctx) = ready().await;
    let other = sim
        .add_credential(seeded.user_id, Some("laptop"), Some(OTHER_IP))
        .unwrap();
    let answer = ctx
        .get(&format!("/user/{}/credential-password-ip", ctx.user_id))
        .send(&sim)
        .await;
    let json = answer.json();
    assert!(
        json["Pagination"]
            .as_object()
            .unwrap()
            .contains_key("older_url")
    );
    let envelope = answer.envelope();
    let listed: Vec<(u64, String)> = envelope
        .all("CredentialPasswordIp")
        .map(|item| {
            assert_eq!(item["status"], "ACTIVE");
            (
                item["id"].as_u64().unwrap(),
                item["permitted_device"]["description"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (other, "laptop".to_owned()),
            (ctx.credential_id, "ipsync-test".to_owned())
        ]
    );
    let one = ctx
        .get(&format!(
            "/user/{}/credential-password-ip/{}",
            ctx.user_id, ctx.credential_id
        ))
        .send(&sim)
        .await
        .envelope();
    assert_eq!(
        one.find("CredentialPasswordIp").unwrap()["permitted_device"]["ip"],
        DEFAULT_CALLER_IP.to_string()
    );
}

#[tokio::test]
async fn created_entry_defaults_to_active_and_is_listed_first() {
    let (sim, _, ctx) = ready().await;
    let answer = ctx
        .post(&ctx.entries_path(), r#"{"ip":"10.2.2.2"}"#)
        .send(&sim)
        .await;
    assert_eq!(answer.json()["Response"].as_array().unwrap().len(), 1);
    let id = answer.envelope().find("Id").unwrap()["id"]
        .as_u64()
        .unwrap();
    let listed = ctx.list_entries(&sim).await;
    let envelope = listed.envelope();
    let first: PermittedIp =
        serde_json::from_value(envelope.all("PermittedIp").next().unwrap().clone()).unwrap();
    assert_eq!((first.id, first.ip.as_str()), (id, "10.2.2.2"));
    assert_eq!(first.status, IpStatus::Active);
    assert!(first.created.is_some() && first.updated.is_some());
    let read = ctx.get(&ctx.entry_path(id)).send(&sim).await;
    assert_eq!(
        read.envelope().find("PermittedIp").unwrap()["ip"],
        "10.2.2.2"
    );
}

#[tokio::test]
async fn created_entry_keeps_an_explicit_inactive_status() {
    let (sim, _, ctx) = ready().await;
    ctx.post(
        &ctx.entries_path(),
        r#"{"ip":"10.2.2.2","status":"INACTIVE"}"#,
    )
    .send(&sim)
    .await;
    assert_eq!(ctx.entries(&sim)[0].status, IpStatus::Inactive);
}

#[tokio::test]
async fn update_toggles_the_status_and_answers_the_same_id() {
    let (sim, _, ctx) = ready().await;
    let entry = ctx.add_entry(&sim, "10.3.3.3", IpStatus::Inactive);
    let answer = ctx.update(entry, r#"{"status":"ACTIVE"}"#).send(&sim).await;
    assert_eq!(
        answer.body,
        format!(r#"{{"Response":[{{"Id":{{"id":{entry}}}}}]}}"#).into_bytes()
    );
    assert_eq!(ctx.entries(&sim)[0].status, IpStatus::Active);
}

#[tokio::test]
async fn update_with_a_different_ip_is_refused_and_changes_nothing() {
    let (sim, _, ctx) = ready().await;
    let entry = ctx.add_entry(&sim, "10.3.3.3", IpStatus::Active);
    ctx.update(entry, r#"{"ip":"10.4.4.4","status":"INACTIVE"}"#)
        .answered(&sim, 400)
        .await;
    let stored = &ctx.entries(&sim)[0];
    assert_eq!(
        (stored.ip.as_str(), &stored.status),
        ("10.3.3.3", &IpStatus::Active)
    );
    ctx.update(entry, r#"{"ip":"10.3.3.3","status":"INACTIVE"}"#)
        .answered(&sim, 200)
        .await;
}

#[tokio::test]
async fn entries_cannot_be_deleted() {
    let (sim, _, ctx) = ready().await;
    let entry = ctx.entries(&sim)[0].id;
    ctx.call(Method::DELETE, &ctx.entry_path(entry), "")
        .answered(&sim, 405)
        .await;
    assert_eq!(ctx.entries(&sim).len(), 1);
}

#[tokio::test]
async fn wildcard_ipv6_and_missing_ip_are_refused_on_create() {
    let (sim, _, ctx) = ready().await;
    for body in [
        r#"{"ip":"*"}"#,
        r#"{"ip":"2001:db8::1"}"#,
        r#"{"ip":"10.0.0.0/24"}"#,
        r#"{"status":"ACTIVE"}"#,
        r#"{"ip":"10.0.0.1","status":"MAYBE"}"#,
    ] {
        let answer = ctx.post(&ctx.entries_path(), body).send(&sim).await;
        assert_eq!(answer.status, 400, "{body}");
    }
    assert_eq!(ctx.entries(&sim).len(), 1);
}

#[tokio::test]
async fn second_entry_for_the_same_ip_is_allowed_and_visible() {
    let (sim, _, ctx) = ready().await;
    for _ in 0..2 {
        ctx.post(&ctx.entries_path(), r#"{"ip":"10.5.5.5"}"#)
            .send(&sim)
            .await;
    }
    assert_eq!(ctx.entries_holding(&sim, "10.5.5.5"), 2);
}

// ---------------------------------------------------------------------------------------------
// 9. Pagination.

#[tokio::test]
async fn pagination_walks_450_entries_in_three_pages_of_200() {
    let (sim, _, ctx) = ready().await;
    seed_entries(&sim, &ctx, 449, IpStatus::Inactive);
    let mut url = format!("{}?count=200", ctx.entries_path());
    let mut pages = Vec::new();
    loop {
        let answer = ctx.get(&url).send(&sim).await;
        assert!(answer.signature_verifies(&ctx.server_key));
        let envelope = answer.envelope();
        pages.push(ids(&envelope));
        match envelope.pagination.unwrap().older_url {
            Some(older) => {
                assert!(
                    older.starts_with("/v1/user/") && older.contains("count=200"),
                    "{older}"
                );
                url = older.strip_prefix("/v1").unwrap().to_owned();
            }
            None => break,
        }
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [200, 200, 50]
    );
    let all: Vec<u64> = pages.concat();
    assert!(
        all.windows(2).all(|pair| pair[0] > pair[1]),
        "ids strictly descending"
    );
    assert_eq!(all.len(), 450);
}

#[tokio::test]
async fn list_defaults_to_ten_items_and_refuses_more_than_two_hundred() {
    let (sim, _, ctx) = ready().await;
    seed_entries(&sim, &ctx, 20, IpStatus::Active);
    let page = ctx.list_entries(&sim).await.envelope();
    assert_eq!(ids(&page).len(), 10);
    let pagination = page.pagination.unwrap();
    assert!(pagination.future_url.is_some() && pagination.newer_url.is_none());
    ctx.get(&format!("{}?count=201", ctx.entries_path()))
        .answered(&sim, 400)
        .await;
}

#[tokio::test]
async fn newer_url_leads_back_to_the_previous_page() {
    let (sim, _, ctx) = ready().await;
    seed_entries(&sim, &ctx, 5, IpStatus::Active);
    let first = ctx
        .get(&format!("{}?count=2", ctx.entries_path()))
        .send(&sim)
        .await
        .envelope();
    let older = first.pagination.clone().unwrap().older_url.unwrap();
    let second = ctx
        .get(older.strip_prefix("/v1").unwrap())
        .send(&sim)
        .await
        .envelope();
    let newer = second.pagination.unwrap().newer_url.unwrap();
    let back = ctx
        .get(newer.strip_prefix("/v1").unwrap())
        .send(&sim)
        .await
        .envelope();
    assert_eq!(ids(&back), ids(&first));
}

// ---------------------------------------------------------------------------------------------
// 8. Rate limits.

async fn rate_limited() -> (Simulator, SeededKey, Context) {
    ready_with(SimulatorOptions {
        rate_limits: true,
        ..sim_options()
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn fourth_get_in_three_seconds_is_429_and_passes_after_the_window() {
    let (sim, _, ctx) = rate_limited().await;
    for _ in 0..3 {
        let answer = ctx.list_entries(&sim).await;
        assert_eq!(answer.status, 200);
    }
    ctx.listing_refused(
        &sim,
        429,
        "Too many requests. You can do a maximum of 3 calls per 3 second to this endpoint.",
    )
    .await;
    tokio::time::advance(Duration::from_secs(3)).await;
    let answer = ctx.list_entries(&sim).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test(start_paused = true)]
async fn third_put_in_three_seconds_is_429() {
    let (sim, _, ctx) = rate_limited().await;
    let entry = ctx.entries(&sim)[0].id;
    for _ in 0..2 {
        let answer = ctx.update(entry, r#"{"status":"ACTIVE"}"#).send(&sim).await;
        assert_eq!(answer.status, 200);
    }
    let third = ctx
        .update(entry, r#"{"status":"ACTIVE"}"#)
        .answered(&sim, 429)
        .await;
    assert!(third.error().contains("maximum of 2 calls per 3 second"));
}

#[tokio::test(start_paused = true)]
async fn second_session_server_call_in_thirty_seconds_is_429() {
    let (sim, seeded, ctx) = rate_limited().await;
    let body = session_body(seeded.api_key.expose());
    let again = post("/session-server", &body)
        .token(&ctx.installation_token)
        .answered(&sim, 429)
        .await;
    assert!(again.error().contains("maximum of 1 calls per 30 second"));
    tokio::time::advance(Duration::from_secs(30)).await;
    post("/session-server", &body)
        .token(&ctx.installation_token)
        .answered(&sim, 200)
        .await;
}

#[tokio::test(start_paused = true)]
async fn time_scale_shrinks_the_windows() {
    let (sim, _, ctx) = ready_with(SimulatorOptions {
        rate_limits: true,
        time_scale: 0.01,
        ..sim_options()
    })
    .await;
    for _ in 0..3 {
        ctx.list_entries(&sim).await;
    }
    let limited = ctx.list_entries(&sim).await;
    assert_eq!(limited.status, 429);
    tokio::time::advance(Duration::from_millis(30)).await;
    let answer = ctx.list_entries(&sim).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn rate_limits_can_be_switched_off() {
    let (sim, _, ctx) = ready().await;
    for _ in 0..6 {
        let answer = ctx.list_entries(&sim).await;
        assert_eq!(answer.status, 200);
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Session lifetime.

#[tokio::test(start_paused = true)]
async fn session_token_is_refused_after_session_timeout() {
    let (sim, _, ctx) = ready_with(SimulatorOptions {
        session_timeout_secs: 300,
        ..sim_options()
    })
    .await;
    tokio::time::advance(Duration::from_secs(299)).await;
    let alive = ctx.list_entries(&sim).await;
    assert_eq!(alive.status, 200);
    tokio::time::advance(Duration::from_secs(1)).await;
    ctx.assert_session_ended(&sim).await;
}

#[tokio::test]
async fn expire_all_sessions_ends_sessions_but_not_installations() {
    let (sim, seeded, ctx) = ready().await;
    sim.expire_all_sessions();
    ctx.assert_session_ended(&sim).await;
    session_server(&ctx.installation_token, seeded.api_key.expose())
        .answered(&sim, 200)
        .await;
    assert_eq!(sim.sessions_created(), 2);
}

#[tokio::test]
async fn delete_session_ends_the_callers_session() {
    let (sim, _, ctx) = ready().await;
    let answer = ctx.call(Method::DELETE, "/session/0", "").send(&sim).await;
    assert_eq!(answer.body, br#"{"Response":[]}"#);
    let after = ctx.list_entries(&sim).await;
    assert_eq!(after.status, 403);
}

// ---------------------------------------------------------------------------------------------
// Faults.

#[tokio::test]
async fn status_fault_answers_a_signed_bunq_error_without_applying() {
    let (sim, _, ctx) = ready().await;
    for status in [500, 491, 429] {
        sim.inject(Fault::once(FaultKind::Status(status)).on(Method::POST, "/ip"));
        let answer = ctx
            .post(&ctx.entries_path(), r#"{"ip":"10.6.6.6"}"#)
            .send(&sim)
            .await;
        assert_eq!(answer.status, status);
        assert!(!answer.error().is_empty());
        assert!(answer.signature_verifies(&ctx.server_key));
    }
    assert_eq!(ctx.entries(&sim).len(), 1);
}

#[tokio::test]
async fn html_503_fault_answers_html_without_bunq_headers() {
    let (_sim, _ctx, answer) = listed_under(FaultKind::Html503, 503).await;
    assert_eq!(answer.header("content-type"), Some("text/html"));
    assert!(String::from_utf8_lossy(&answer.body).starts_with("<html>"));
    assert!(answer.header("x-bunq-server-signature").is_none());
}

#[tokio::test]
async fn drop_signature_fault_sends_no_server_signature() {
    let (_sim, _ctx, answer) = listed_under(FaultKind::DropSignature, 200).await;
    assert!(answer.header("x-bunq-server-signature").is_none());
    assert!(answer.header("x-bunq-client-response-id").is_some());
}

#[tokio::test]
async fn garble_signature_fault_sends_a_signature_that_does_not_verify() {
    let (sim, ctx, answer) = listed_under(FaultKind::GarbleSignature, 200).await;
    assert!(answer.header("x-bunq-server-signature").is_some());
    assert!(!answer.signature_verifies(&ctx.server_key));
    let next = ctx.list_entries(&sim).await;
    assert!(next.signature_verifies(&ctx.server_key), "fault fires once");
}

#[tokio::test(start_paused = true)]
async fn delay_fault_trips_the_client_timeout_after_applying() {
    let (sim, _, ctx) = ready().await;
    sim.inject(Fault::once(FaultKind::Delay(Duration::from_secs(60))).on(Method::POST, "/ip"));
    let err = ctx
        .post(&ctx.entries_path(), r#"{"ip":"10.7.7.7"}"#)
        .try_send(&sim, &http(Some(Duration::from_secs(5))))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(ctx.entries(&sim).iter().any(|e| e.ip == "10.7.7.7"));
}

#[tokio::test]
async fn reset_before_apply_is_a_transport_error_and_changes_nothing() {
    let (sim, _, ctx) = ready().await;
    ctx.assert_create_lost_under(&sim, FaultKind::ResetBeforeApply, "10.8.8.8")
        .await;
    assert_eq!(ctx.entries(&sim).len(), 1);
}

#[tokio::test]
async fn reset_after_apply_applies_the_write_but_the_client_sees_a_transport_error() {
    let (sim, _, ctx) = ready().await;
    ctx.assert_create_lost_under(&sim, FaultKind::ResetAfterApply, "10.8.8.8")
        .await;
    assert_eq!(
        ctx.entries_holding(&sim, "10.8.8.8"),
        1,
        "applied exactly once"
    );
}

#[tokio::test]
async fn expire_session_fault_ends_the_session_early() {
    let (sim, _, ctx) = ready().await;
    sim.inject(Fault::once(FaultKind::ExpireSession).on(Method::GET, "/ip"));
    for _ in 0..2 {
        ctx.assert_session_ended(&sim).await;
    }
}

#[tokio::test]
async fn request_log_records_statuses_and_resets() {
    let (sim, _, ctx) = ready().await;
    sim.clear_request_log();
    sim.inject(Fault::once(FaultKind::ResetBeforeApply));
    let _ = ctx
        .get(&ctx.entries_path())
        .try_send(&sim, &http(None))
        .await;
    let path = format!("{}?count=5", ctx.entries_path());
    ctx.get(&path)
        .unsigned()
        .request_id("logged-id")
        .send(&sim)
        .await;
    let log = sim.request_log();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].status, log[0].fault.clone()),
        (None, Some(FaultKind::ResetBeforeApply))
    );
    assert_eq!(log[1].method, Method::GET);
    assert_eq!(log[1].path, format!("/v1{path}"));
    assert_eq!(log[1].status, Some(200));
    assert!(!log[1].signed);
    assert_eq!(log[1].caller_ip, DEFAULT_CALLER_IP);
    assert_eq!(log[1].request_id.as_deref(), Some("logged-id"));
}

// ---------------------------------------------------------------------------------------------
// 10. Sandbox users and the handle.

#[tokio::test]
async fn sandbox_user_person_hands_out_a_working_sandbox_key() {
    let sim = start().await;
    let answer = post("/sandbox-user-person", "").unsigned().send(&sim).await;
    let envelope = answer.envelope();
    let api_key = envelope.find("ApiKey").unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(api_key.starts_with("sandbox_"), "{api_key}");
    let (token, _) = install(&sim).await;
    device_server(&token, &api_key).answered(&sim, 200).await;
    session_server(&token, &api_key).answered(&sim, 200).await;
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let sim = start().await;
    get("/user/1/payment").answered(&sim, 404).await;
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sim = start().await;
    let address = sim.address();
    sim.shutdown();
    assert_not_serving(address).await;
}

#[tokio::test]
async fn dropping_the_last_handle_stops_serving() {
    let sim = start().await;
    let address = sim.address();
    let clone = sim.clone();
    drop(sim);
    let still = post("/installation", &installation_body())
        .unsigned()
        .send(&clone)
        .await;
    assert_eq!(still.status, 200, "a clone keeps it alive");
    drop(clone);
    assert_not_serving(address).await;
}

#[test]
fn seeded_key_never_prints_the_api_key() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sim = start().await;
        let seeded = sim.create_user_with_api_key();
        let printed = format!("{seeded:?}");
        assert!(!printed.contains(seeded.api_key.expose()), "{printed}");
    });
}
