//! Injected failures: the ways bunq, a proxy or the network misbehave that a client must survive.
//!
//! A [`Fault`] matches requests by method and path substring and fires a number of times, first
//! injected first matched. What each [`FaultKind`] does is documented on the variant; "reset"
//! means the connection is closed without any HTTP response, so the client sees a transport
//! error, never a status.

use std::time::Duration;

use hyper::Method;

/// One injected failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Only requests with this method; `None` matches every method.
    pub method: Option<Method>,
    /// Only requests whose path (with query) contains this text; `None` matches every path.
    pub path_contains: Option<String>,
    /// What happens to a matching request.
    pub kind: FaultKind,
    /// How many matching requests it fires on before it is used up.
    pub times: usize,
    /// When set, the fault fires only until this moment of tokio's clock and is then dropped:
    /// "another client keeps this endpoint's window busy for 10 s".
    pub until: Option<tokio::time::Instant>,
}

impl Fault {
    /// A fault that fires once, on the next request of any kind.
    pub fn once(kind: FaultKind) -> Self {
        Fault {
            method: None,
            path_contains: None,
            kind,
            times: 1,
            until: None,
        }
    }

    /// Restricts the fault to `method` requests whose path contains `path_contains`.
    pub fn on(mut self, method: Method, path_contains: &str) -> Self {
        self.method = Some(method);
        self.path_contains = Some(path_contains.to_owned());
        self
    }

    /// Makes the fault fire on `times` matching requests.
    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    /// Makes the fault fire on every matching request for `duration` from now (tokio's clock),
    /// however many there are.
    pub fn for_duration(mut self, duration: Duration) -> Self {
        self.times = usize::MAX;
        self.until = Some(tokio::time::Instant::now() + duration);
        self
    }

    fn expired(&self) -> bool {
        self.until
            .is_some_and(|until| tokio::time::Instant::now() >= until)
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|wanted| wanted == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|needle| path.contains(needle))
    }
}

/// What an injected fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer this status with a signed bunq error body, without applying the request
    /// (500 internal error, 491 maintenance, 429 rate limit, 409, ...).
    Status(u16),
    /// Answer 503 with an HTML body and no bunq headers, as a load balancer in front of bunq
    /// would; nothing is applied.
    Html503,
    /// Apply the request normally but send the response without `X-Bunq-Server-Signature`.
    DropSignature,
    /// Apply the request normally but send a well-formed signature that does not verify.
    GarbleSignature,
    /// Apply the request at once, then hold the response back for this long (real time, not
    /// scaled), to trip the client's timeout. A timed-out write has therefore happened.
    Delay(Duration),
    /// Close the connection without applying the request.
    ResetBeforeApply,
    /// Apply the request (a write takes effect), then close the connection without a response:
    /// the ambiguous-create case.
    ResetAfterApply,
    /// Apply the request (a write takes effect), then answer this status with a signed bunq
    /// error body instead of the real answer: bunq committed and failed afterwards.
    StatusAfterApply(u16),
    /// Apply the request (a write takes effect), then answer 200 with a signed body that is not
    /// a bunq response envelope.
    UnreadableAfterApply,
    /// End the session whose token the request carries just before handling it, as if bunq
    /// had timed it out early; the request is then answered "Insufficient authentication.".
    ExpireSession,
    /// Forget the installation whose token the request carries (and its sessions) just before
    /// handling it, as a sandbox reset or a revoked device does; the request is then answered
    /// "Insufficient authentication." after the usual checks (rate limits first). On
    /// session-server, repeated, this is a bunq that rejects every fresh installation.
    ForgetInstallation,
}

/// The injected faults still to fire, in injection order.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    faults: Vec<Fault>,
}

impl FaultQueue {
    /// Adds a fault behind the ones already waiting. A fault with `times == 0` never fires.
    pub(crate) fn push(&mut self, fault: Fault) {
        if fault.times > 0 {
            self.faults.push(fault);
        }
    }

    /// Drops every waiting fault: the bank answers normally from the next request on.
    pub(crate) fn clear(&mut self) {
        self.faults.clear();
    }

    /// The kind of the first fault matching this request, using up one of its firings.
    pub(crate) fn take(&mut self, method: &Method, path: &str) -> Option<FaultKind> {
        self.faults.retain(|fault| !fault.expired());
        let index = self
            .faults
            .iter()
            .position(|fault| fault.matches(method, path))?;
        let fault = &mut self.faults[index];
        let kind = fault.kind.clone();
        fault.times -= 1;
        if fault.times == 0 {
            self.faults.remove(index);
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_fires_only_on_matching_requests_and_only_as_often_as_asked() {
        let mut queue = FaultQueue::default();
        queue.push(
            Fault::once(FaultKind::Status(500))
                .on(Method::PUT, "/ip/")
                .times(2),
        );
        assert_eq!(queue.take(&Method::GET, "/v1/user/1/x/ip/3"), None);
        assert_eq!(queue.take(&Method::PUT, "/v1/user/1"), None);
        assert_eq!(
            queue.take(&Method::PUT, "/v1/user/1/x/ip/3"),
            Some(FaultKind::Status(500))
        );
        assert_eq!(
            queue.take(&Method::PUT, "/v1/user/1/x/ip/3"),
            Some(FaultKind::Status(500))
        );
        assert_eq!(queue.take(&Method::PUT, "/v1/user/1/x/ip/3"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fault_for_a_duration_fires_on_every_match_until_it_expires() {
        let mut queue = FaultQueue::default();
        queue.push(
            Fault::once(FaultKind::Status(429))
                .on(Method::POST, "/ip")
                .for_duration(Duration::from_secs(10)),
        );
        for _ in 0..50 {
            assert_eq!(
                queue.take(&Method::POST, "/v1/user/1/x/ip"),
                Some(FaultKind::Status(429))
            );
        }
        assert_eq!(queue.take(&Method::GET, "/v1/user/1/x/ip"), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(queue.take(&Method::POST, "/v1/user/1/x/ip"), None);
    }

    #[test]
    fn first_injected_matching_fault_fires_first() {
        let mut queue = FaultQueue::default();
        queue.push(Fault::once(FaultKind::Html503));
        queue.push(Fault::once(FaultKind::DropSignature));
        assert_eq!(queue.take(&Method::GET, "/v1/x"), Some(FaultKind::Html503));
        assert_eq!(
            queue.take(&Method::GET, "/v1/x"),
            Some(FaultKind::DropSignature)
        );
        assert_eq!(queue.take(&Method::GET, "/v1/x"), None);
    }
}
