//! bunq's documented rate limits, counted independently of any client.
//!
//! Per (caller IP, endpoint pattern, method) sliding windows: GET 3 per 3 s, POST 5 per 3 s, PUT
//! 2 per 3 s, DELETE 5 per 3 s (undocumented; assumed like POST) and `POST /session-server` 1 per
//! 30 s. Windows are in bunq seconds (see [`super::clock`]). A rejected call does not count
//! toward the window: a client that waits the window out gets through, whatever it tried
//! meanwhile.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use hyper::Method;

use super::clock::SimTime;
use super::wire::ApiError;

/// How many calls one window admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    /// Calls admitted per window.
    pub(crate) calls: usize,
    /// Window length in bunq seconds.
    pub(crate) window_secs: u64,
}

/// The limit bunq documents for this endpoint pattern and method.
pub(crate) fn limit_for(pattern: &str, method: &Method) -> Limit {
    if pattern == "/session-server" {
        return Limit {
            calls: 1,
            window_secs: 30,
        };
    }
    let calls = if method == Method::GET {
        3
    } else if method == Method::PUT {
        2
    } else {
        5
    };
    Limit {
        calls,
        window_secs: 3,
    }
}

/// The sliding windows, one per (IP, pattern, method).
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    /// Admission times inside the current window, oldest first.
    windows: HashMap<(Ipv4Addr, &'static str, Method), VecDeque<SimTime>>,
}

impl RateLimiter {
    /// Admits the call or answers bunq's 429.
    pub(crate) fn admit(
        &mut self,
        ip: Ipv4Addr,
        pattern: &'static str,
        method: &Method,
        now: SimTime,
    ) -> Result<(), ApiError> {
        let limit = limit_for(pattern, method);
        let window = Duration::from_secs(limit.window_secs);
        let calls = self
            .windows
            .entry((ip, pattern, method.clone()))
            .or_default();
        while calls
            .front()
            .is_some_and(|admitted| now.saturating_sub(*admitted) >= window)
        {
            calls.pop_front();
        }
        if calls.len() >= limit.calls {
            return Err(ApiError::new(
                429,
                format!(
                    "Too many requests. You can do a maximum of {} calls per {} second to this endpoint.",
                    limit.calls, limit.window_secs
                ),
            ));
        }
        calls.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const ENTRIES: &str = "/user/{user}/credential-password-ip/{cred}/ip";

    fn at(secs: f64) -> SimTime {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn fourth_get_inside_three_seconds_is_refused_with_bunq_text() {
        let mut limiter = RateLimiter::default();
        for t in [0.0, 1.0, 2.0] {
            limiter.admit(IP, ENTRIES, &Method::GET, at(t)).unwrap();
        }
        let err = limiter
            .admit(IP, ENTRIES, &Method::GET, at(2.9))
            .unwrap_err();
        assert_eq!(err.status, 429);
        assert_eq!(
            err.description,
            "Too many requests. You can do a maximum of 3 calls per 3 second to this endpoint."
        );
    }

    #[test]
    fn window_slides_from_the_oldest_admitted_call() {
        let mut limiter = RateLimiter::default();
        for t in [0.0, 1.0, 2.0] {
            limiter.admit(IP, ENTRIES, &Method::GET, at(t)).unwrap();
        }
        assert!(limiter.admit(IP, ENTRIES, &Method::GET, at(3.0)).is_ok());
        assert!(limiter.admit(IP, ENTRIES, &Method::GET, at(3.5)).is_err());
    }

    #[test]
    fn methods_patterns_and_ips_have_separate_windows() {
        let mut limiter = RateLimiter::default();
        limiter.admit(IP, ENTRIES, &Method::PUT, at(0.0)).unwrap();
        limiter.admit(IP, ENTRIES, &Method::PUT, at(0.0)).unwrap();
        assert!(limiter.admit(IP, ENTRIES, &Method::PUT, at(0.0)).is_err());
        assert!(limiter.admit(IP, ENTRIES, &Method::POST, at(0.0)).is_ok());
        assert!(
            limiter
                .admit(IP, "/user/{user}", &Method::PUT, at(0.0))
                .is_ok()
        );
        let other = Ipv4Addr::new(203, 0, 113, 1);
        assert!(limiter.admit(other, ENTRIES, &Method::PUT, at(0.0)).is_ok());
    }

    #[test]
    fn session_server_allows_one_call_per_thirty_seconds() {
        let mut limiter = RateLimiter::default();
        limiter
            .admit(IP, "/session-server", &Method::POST, at(0.0))
            .unwrap();
        let err = limiter
            .admit(IP, "/session-server", &Method::POST, at(29.0))
            .unwrap_err();
        assert!(err.description.contains("maximum of 1 calls per 30 second"));
        assert!(
            limiter
                .admit(IP, "/session-server", &Method::POST, at(30.0))
                .is_ok()
        );
    }

    #[test]
    fn post_allows_five_and_put_two() {
        assert_eq!(limit_for(ENTRIES, &Method::POST).calls, 5);
        assert_eq!(limit_for(ENTRIES, &Method::PUT).calls, 2);
        assert_eq!(limit_for(ENTRIES, &Method::GET).calls, 3);
    }
}
