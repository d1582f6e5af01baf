//! The simulator handle and its HTTP server: hyper 1 on `127.0.0.1:0`, one task per connection.
//!
//! The server owns everything between the socket and [`super::api`]: reading the request,
//! applying injected faults, adding bunq's response headers (`X-Bunq-Client-Response-Id`, the
//! echoed `X-Bunq-Client-Request-Id`, `X-Bunq-Server-Signature` over the exact body bytes) and
//! recording the request log. The handle is also the seeding and inspection API for tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::api::{self, ApiRequest, Settings};
use super::auth::Credentials;
use super::clock::Clock;
use super::faults::{Fault, FaultKind, FaultQueue};
use super::options::SimulatorOptions;
use super::rate_limit::RateLimiter;
use super::state::{SeedError, SeededKey, World};
use super::wire::{ApiError, Reply};
use crate::bunq::crypto::{PrivateKey, PublicKey};
use crate::bunq::model::{
    CredentialId, CredentialPasswordIp, EntryId, IpStatus, PermittedDevice, PermittedIp, UserId,
};

/// Largest request body read; bunq's bodies here are a few hundred bytes.
const MAX_BODY_BYTES: usize = 1 << 20;

/// One request as the simulator saw it, for tests that assert what a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: Method,
    /// Path with query, e.g. `/v1/user/1/credential-password-ip/2/ip?count=200`.
    pub path: String,
    /// The status answered; `None` when the connection was reset without a response.
    pub status: Option<u16>,
    /// The IP the simulated bunq saw.
    pub caller_ip: Ipv4Addr,
    /// Whether the request carried `X-Bunq-Client-Signature`.
    pub signed: bool,
    /// The `X-Bunq-Client-Request-Id` sent, to check a client uses a fresh one per attempt.
    /// (Tokens and bodies are not logged: they hold secrets.)
    pub request_id: Option<String>,
    /// The injected fault that fired on this request, if any.
    pub fault: Option<FaultKind>,
}

/// A running simulated bunq. Cheap to clone; the server stops on [`Simulator::shutdown`] or when
/// the last handle is dropped.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
    /// Cancels the server when the last handle goes; the server tasks do not hold it.
    _stop_on_drop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("address", &self.inner.address)
            .finish_non_exhaustive()
    }
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// What the server tasks share with the handles.
struct Inner {
    settings: Settings,
    server_key: PrivateKey,
    address: SocketAddr,
    stop: CancellationToken,
    state: Mutex<State>,
}

/// Everything that changes, under one lock so each request sees a consistent bank.
struct State {
    world: World,
    limiter: RateLimiter,
    faults: FaultQueue,
    log: Vec<LoggedRequest>,
    caller_ip: Ipv4Addr,
}

/// The connection is closed without a response (an injected reset).
#[derive(Debug, thiserror::Error)]
#[error("simulated connection reset")]
struct ConnectionReset;

impl Simulator {
    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime. Fails when
    /// `time_scale` is not finite and positive, or when the port cannot be bound.
    pub async fn start(options: SimulatorOptions) -> std::io::Result<Simulator> {
        if !(options.time_scale.is_finite() && options.time_scale > 0.0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "time_scale must be finite and positive",
            ));
        }
        let server_key = match options.server_key {
            Some(key) => key,
            None => PrivateKey::generate().map_err(std::io::Error::other)?,
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let settings = Settings {
            rate_limits: options.rate_limits,
            reject_status: options.expired_session_status,
            strict_device_signature: options.strict_device_signature,
            escape_slashes: options.escape_slashes,
            server_public_key_pem: server_key.public_key().to_pem(),
            user_wrapper: options.user_kind.wrapper(),
        };
        let stop = CancellationToken::new();
        let inner = Arc::new(Inner {
            settings,
            server_key,
            address,
            stop: stop.clone(),
            state: Mutex::new(State {
                world: World::new(Clock::new(options.time_scale), options.session_timeout_secs),
                limiter: RateLimiter::default(),
                faults: FaultQueue::default(),
                log: Vec::new(),
                caller_ip: options.caller_ip,
            }),
        });
        tokio::spawn(accept_loop(listener, Arc::clone(&inner)));
        Ok(Simulator {
            inner,
            _stop_on_drop: Arc::new(StopOnDrop(stop)),
        })
    }

    /// The base URL to give a client: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.inner.address)
    }

    /// The bound socket address.
    pub fn address(&self) -> SocketAddr {
        self.inner.address
    }

    /// Stops accepting and closes open connections. Other handles keep the seeded data readable.
    pub fn shutdown(&self) {
        self.inner.stop.cancel();
    }

    /// The key every response is signed with (also returned by installation).
    pub fn server_public_key(&self) -> PublicKey {
        self.inner.server_key.public_key()
    }

    /// Creates a user and an API key whose credential has no device and no entries yet.
    pub fn create_user_with_api_key(&self) -> SeededKey {
        self.state().world.create_user_with_api_key("")
    }

    /// Adds a credential for another API key of `user_id` (whose key is not handed out), as in
    /// multi-key accounts. The optional device is what the credential listing shows as
    /// `permitted_device`; no entries are created, add them with [`Simulator::add_entry`].
    pub fn add_credential(
        &self,
        user_id: UserId,
        device_description: Option<&str>,
        device_ip: Option<Ipv4Addr>,
    ) -> Result<CredentialId, SeedError> {
        let device =
            (device_description.is_some() || device_ip.is_some()).then(|| PermittedDevice {
                description: device_description.map(str::to_owned),
                ip: device_ip.map(|ip| ip.to_string()),
            });
        self.state().world.add_credential(user_id, device)
    }

    /// Adds an allowlist entry out of band. `ip` is free text so tests can plant what the API
    /// refuses (an app-set `*`, an IPv6 address).
    pub fn add_entry(
        &self,
        credential: CredentialId,
        ip: &str,
        status: IpStatus,
    ) -> Result<EntryId, SeedError> {
        self.state().world.add_entry(credential, ip, status)
    }

    /// Replaces the device the credential listing shows as `permitted_device`, out of band
    /// (a device renamed or re-registered elsewhere), so tests can make the daemon's own
    /// credential unrecognisable.
    pub fn set_permitted_device(
        &self,
        credential: CredentialId,
        device_description: Option<&str>,
        device_ip: Option<Ipv4Addr>,
    ) -> Result<(), SeedError> {
        let device =
            (device_description.is_some() || device_ip.is_some()).then(|| PermittedDevice {
                description: device_description.map(str::to_owned),
                ip: device_ip.map(|ip| ip.to_string()),
            });
        self.state()
            .world
            .credential_mut(credential)?
            .permitted_device = device;
        Ok(())
    }

    /// Registers a device for `user` out of band (another API key's, or the app's), as
    /// `GET /device-server` then lists it; returns its id.
    pub fn add_device(
        &self,
        user: UserId,
        description: &str,
        ip: Ipv4Addr,
    ) -> Result<u64, SeedError> {
        let mut state = self.state();
        let world = &mut state.world;
        if !world.users.contains_key(&user) {
            return Err(SeedError::UnknownUser(user));
        }
        let id = world.add_device(user, description.to_owned(), ip);
        Ok(id)
    }

    /// Changes an entry's status out of band ("someone toggled it in the app").
    pub fn set_entry_status(
        &self,
        credential: CredentialId,
        entry: EntryId,
        status: IpStatus,
    ) -> Result<(), SeedError> {
        self.state()
            .world
            .set_entry_status(credential, entry, status)
    }

    /// The credential's entries as bunq would list them, newest first.
    pub fn entries(&self, credential: CredentialId) -> Result<Vec<PermittedIp>, SeedError> {
        self.state().world.entries(credential)
    }

    /// The credential as the listing shows it (with its `permitted_device`).
    pub fn credential(&self, credential: CredentialId) -> Result<CredentialPasswordIp, SeedError> {
        self.state()
            .world
            .credentials
            .get(&credential)
            .map(|found| found.to_wire())
            .ok_or(SeedError::UnknownCredential(credential))
    }

    /// Sets the IP the simulated bunq sees for every following request.
    pub fn set_caller_ip(&self, ip: Ipv4Addr) {
        self.state().caller_ip = ip;
    }

    /// The IP the simulated bunq currently sees.
    pub fn caller_ip(&self) -> Ipv4Addr {
        self.state().caller_ip
    }

    /// Ends every session now, as bunq does when it logs clients out early.
    pub fn expire_all_sessions(&self) {
        self.state().world.expire_all_sessions();
    }

    /// Forgets every installation and its sessions, as a sandbox reset or a revoked device does:
    /// their tokens are answered "Insufficient authentication." from now on.
    pub fn forget_installations(&self) {
        self.state().world.forget_installations();
    }

    /// How many sessions session-server has opened, to count a client's renewals.
    pub fn sessions_created(&self) -> usize {
        self.state().world.sessions_created
    }

    /// Every request answered (or reset) so far, oldest first.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.state().log.clone()
    }

    /// Forgets the request log.
    pub fn clear_request_log(&self) {
        self.state().log.clear();
    }

    /// Queues a fault; the first queued fault matching a request fires.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state()
    }
}

impl Inner {
    /// The state; a panic under the lock (a bug) must not take every later request down too.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let stream = tokio::select! {
            () = inner.stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                // Out of file descriptors and the like: keep serving the open connections.
                Err(_) => continue,
            },
        };
        let connection_inner = Arc::clone(&inner);
        tokio::spawn(async move {
            let stop = connection_inner.stop.clone();
            let service = service_fn(move |request| serve(Arc::clone(&connection_inner), request));
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                // A failed or reset connection is the client's problem to see, not ours.
                _ = connection => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

async fn serve(
    inner: Arc<Inner>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ConnectionReset> {
    let method = request.method().clone();
    let path_and_query = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let token = header("x-bunq-client-authentication");
    let signature = header("x-bunq-client-signature");
    let request_id = header("x-bunq-client-request-id");
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(ConnectionReset),
    };

    let (fault, caller_ip) = {
        let mut state = inner.state();
        (state.faults.take(&method, &path_and_query), state.caller_ip)
    };
    let mut log = LoggedRequest {
        method: method.clone(),
        path: path_and_query.clone(),
        status: None,
        caller_ip,
        signed: signature.is_some(),
        request_id: request_id.clone(),
        fault: fault.clone(),
    };

    let reply = match &fault {
        Some(FaultKind::ResetBeforeApply) => {
            inner.state().log.push(log);
            return Err(ConnectionReset);
        }
        Some(FaultKind::Html503) => {
            log.status = Some(503);
            inner.state().log.push(log);
            return Ok(html_503());
        }
        Some(FaultKind::Status(status)) => ApiError::new(*status, injected_error_text(*status))
            .into_reply(inner.settings.escape_slashes),
        _ => {
            let (path, query) = path_and_query
                .split_once('?')
                .unwrap_or((path_and_query.as_str(), ""));
            let api_request = ApiRequest {
                method: &method,
                path,
                query,
                credentials: Credentials {
                    token: token.as_deref(),
                    signature: signature.as_deref(),
                    request_id: request_id.as_deref(),
                    body: &body,
                },
                caller_ip,
            };
            let mut state = inner.state();
            let State { world, limiter, .. } = &mut *state;
            if fault == Some(FaultKind::ExpireSession)
                && let Some(token) = token.as_deref()
            {
                world.end_session_by_token(token);
            }
            if fault == Some(FaultKind::ForgetInstallation)
                && let Some(token) = token.as_deref()
            {
                world.forget_installation_by_token(token);
            }
            api::handle(world, limiter, &inner.settings, &api_request)
        }
    };

    let reply = match &fault {
        Some(FaultKind::StatusAfterApply(status)) => {
            ApiError::new(*status, injected_error_text(*status))
                .into_reply(inner.settings.escape_slashes)
        }
        Some(FaultKind::UnreadableAfterApply) => Reply {
            status: 200,
            body: br#"{"Response":"the body was cut short"#.to_vec(),
        },
        _ => reply,
    };
    match &fault {
        Some(FaultKind::ResetAfterApply) => {
            inner.state().log.push(log);
            return Err(ConnectionReset);
        }
        Some(FaultKind::Delay(delay)) => tokio::time::sleep(*delay).await,
        _ => {}
    }

    let response = respond(&inner, &reply, request_id.as_deref(), fault.as_ref());
    log.status = Some(reply.status);
    inner.state().log.push(log);
    Ok(response)
}

/// Builds the HTTP response with bunq's headers and the server signature.
fn respond(
    inner: &Inner,
    reply: &Reply,
    request_id: Option<&str>,
    fault: Option<&FaultKind>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body.clone())));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(value) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-bunq-client-response-id", value);
    }
    if let Some(value) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert("x-bunq-client-request-id", value);
    }
    let signature = match fault {
        Some(FaultKind::DropSignature) => None,
        Some(FaultKind::GarbleSignature) => {
            // Well-formed and made with the right key, but over other bytes: it cannot verify.
            let mut other = reply.body.clone();
            other.extend_from_slice(b" ");
            Some(inner.server_key.sign(&other))
        }
        _ => Some(inner.server_key.sign(&reply.body)),
    };
    if let Some(value) = signature.and_then(|sig| HeaderValue::from_str(&sig).ok()) {
        headers.insert("x-bunq-server-signature", value);
    }
    response
}

fn injected_error_text(status: u16) -> String {
    match status {
        429 => "Too many requests. You can do a maximum of 3 calls per 3 second to this endpoint."
            .to_owned(),
        491 => "bunq is in maintenance. Please try again later.".to_owned(),
        500 => "Something went wrong on our side. Please try again later.".to_owned(),
        other => format!("Simulated error {other}."),
    }
}

fn html_503() -> Response<Full<Bytes>> {
    let body = "<html><head><title>503 Service Temporarily Unavailable</title></head>\
                <body><h1>503 Service Temporarily Unavailable</h1></body></html>";
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_can_be_shared_across_tasks_and_threads() {
        fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
        assert_shareable::<Simulator>();
    }

    #[test]
    fn injected_statuses_carry_bunq_like_texts() {
        assert!(injected_error_text(429).starts_with("Too many requests."));
        assert!(injected_error_text(491).contains("maintenance"));
        assert_eq!(injected_error_text(409), "Simulated error 409.");
    }

    #[tokio::test]
    async fn non_positive_time_scale_is_refused() {
        for time_scale in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let options = SimulatorOptions {
                time_scale,
                ..SimulatorOptions::default()
            };
            let err = Simulator::start(options).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        }
    }
}
