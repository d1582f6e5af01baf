//! The simulator's HTTP side: accepting connections, reading a request, applying the injected
//! fault around the bank's answer, and writing bunq's response headers with the server
//! signature over the exact body bytes. Every request ends in the request log.

use std::net::Ipv4Addr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::{Inner, LoggedRequest, State};
use crate::simulator::api::{self, ApiRequest};
use crate::simulator::auth::Credentials;
use crate::simulator::faults::FaultKind;
use crate::simulator::serve::accept_until;
use crate::simulator::wire::{ApiError, Reply};

/// Largest request body read; bunq's bodies here are a few hundred bytes.
const MAX_BODY_BYTES: usize = 1 << 20;

/// The connection is closed without a response (an injected reset).
#[derive(Debug, thiserror::Error)]
#[error("simulated connection reset")]
struct ConnectionReset;

/// Serves the simulated bank on `listener` until the simulator stops.
pub(super) async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let stop = inner.stop.clone();
    accept_until(listener, stop, move |request| {
        serve(Arc::clone(&inner), request)
    })
    .await;
}

/// What the server reads off one HTTP request before anything is decided.
struct Received {
    method: Method,
    /// Path with query, as logged.
    path_and_query: String,
    token: Option<String>,
    signature: Option<String>,
    request_id: Option<String>,
    body: Bytes,
}

impl Received {
    /// Reads the headers the API layer needs and the whole body (bounded).
    async fn read(request: Request<Incoming>) -> Result<Received, ConnectionReset> {
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
        Ok(Received {
            method,
            path_and_query,
            token,
            signature,
            request_id,
            body,
        })
    }
}

/// One request: faults before the bank sees it, the bank's answer, faults after it, the log.
async fn serve(
    inner: Arc<Inner>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ConnectionReset> {
    let received = Received::read(request).await?;
    let (fault, caller_ip) = {
        let mut state = inner.state();
        (
            state
                .faults
                .take(&received.method, &received.path_and_query),
            state.caller_ip,
        )
    };
    let mut log = LoggedRequest {
        method: received.method.clone(),
        path: received.path_and_query.clone(),
        status: None,
        caller_ip,
        signed: received.signature.is_some(),
        request_id: received.request_id.clone(),
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
        _ => answer(&inner, &received, fault.as_ref(), caller_ip),
    };
    let reply = replace_after_apply(&inner, reply, fault.as_ref());
    match &fault {
        Some(FaultKind::ResetAfterApply) => {
            inner.state().log.push(log);
            return Err(ConnectionReset);
        }
        Some(FaultKind::Delay(delay)) => tokio::time::sleep(*delay).await,
        _ => {}
    }

    let response = respond(
        &inner,
        &reply,
        received.request_id.as_deref(),
        fault.as_ref(),
    );
    log.status = Some(reply.status);
    inner.state().log.push(log);
    Ok(response)
}

/// The bank's answer, after the faults that change the bank first (a session ended, an
/// installation forgotten) have done so.
fn answer(
    inner: &Inner,
    received: &Received,
    fault: Option<&FaultKind>,
    caller_ip: Ipv4Addr,
) -> Reply {
    let path_and_query = received.path_and_query.as_str();
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let token = received.token.as_deref();
    let api_request = ApiRequest {
        method: &received.method,
        path,
        query,
        credentials: Credentials {
            token,
            signature: received.signature.as_deref(),
            request_id: received.request_id.as_deref(),
            body: &received.body,
        },
        caller_ip,
    };
    let mut state = inner.state();
    let State { world, limiter, .. } = &mut *state;
    if let Some(token) = token {
        match fault {
            Some(FaultKind::ExpireSession) => world.end_session_by_token(token),
            Some(FaultKind::ForgetInstallation) => world.forget_installation_by_token(token),
            _ => {}
        }
    }
    api::handle(world, limiter, &inner.settings, &api_request)
}

/// The faults that let the bank apply a request and then answer something else.
fn replace_after_apply(inner: &Inner, reply: Reply, fault: Option<&FaultKind>) -> Reply {
    match fault {
        Some(FaultKind::StatusAfterApply(status)) => {
            ApiError::new(*status, injected_error_text(*status))
                .into_reply(inner.settings.escape_slashes)
        }
        Some(FaultKind::UnreadableAfterApply) => Reply {
            status: 200,
            body: br#"{"Response":"the body was cut short"#.to_vec(),
        },
        _ => reply,
    }
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
    fn injected_statuses_carry_bunq_like_texts() {
        assert!(injected_error_text(429).starts_with("Too many requests."));
        assert!(injected_error_text(491).contains("maintenance"));
        assert_eq!(injected_error_text(409), "Simulated error 409.");
    }
}
