//! A per-client token bucket (`server.rate_limit`), keyed by the peer's IP address. It guards the
//! `/api` routes only: `/health*`, `/metrics` and the UI's static files are never limited, so a
//! scraper or a load balancer's probe never sees a 429.

use crate::error::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// `server.rate_limit`: sustained requests per second per client and the burst above it.
///
/// ```yaml
/// server:
///   rate_limit:
///     per_second: 20   # 0 turns the limit off
///     burst: 40
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained requests per second per client (0 = no limit).
    pub per_second: f64,
    /// Requests a client may make at once above the sustained rate.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 50.0,
            burst: 100,
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets of every client seen recently.
pub(crate) struct RateLimiter {
    cfg: RateLimitConfig,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

const MAX_CLIENTS: usize = 10_000;

impl RateLimiter {
    pub(crate) fn new(cfg: RateLimitConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one token for `client`; `Err(seconds)` until one is available.
    pub(crate) fn check(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        if self.cfg.per_second <= 0.0 || !self.cfg.per_second.is_finite() {
            return Ok(());
        }
        let cap = f64::from(self.cfg.burst.max(1));
        let mut map = self.buckets.lock();
        if map.len() >= MAX_CLIENTS && !map.contains_key(&client) {
            // Forget clients whose bucket has refilled: they lose nothing by being forgotten.
            let rate = self.cfg.per_second;
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < cap
            });
        }
        let b = map.entry(client).or_insert(Bucket {
            tokens: cap,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.cfg.per_second).min(cap);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.cfg.per_second;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

/// Middleware: 429 with `Retry-After` when the client's bucket is empty.
pub(crate) async fn limit(
    State(limiter): State<Arc<RateLimiter>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    if let Err(secs) = limiter.check(client, Instant::now()) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many requests from {client}: the limit is {} per second with a burst of {}; retry in {secs}s",
                limiter.cfg.per_second, limiter.cfg.burst
            ),
        );
        e.retry_after = Some(secs);
        return Err(e);
    }
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let rl = RateLimiter::new(RateLimitConfig {
            per_second: 2.0,
            burst: 3,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check(a, t0).is_ok());
        }
        assert_eq!(rl.check(a, t0), Err(1));
        assert!(rl.check(b, t0).is_ok(), "clients have their own buckets");
        assert!(rl.check(a, t0 + Duration::from_millis(600)).is_ok());
        assert!(rl.check(a, t0 + Duration::from_millis(600)).is_err());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let rl = RateLimiter::new(RateLimitConfig {
            per_second: 0.0,
            burst: 0,
        });
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(rl.check(IpAddr::V4(Ipv4Addr::LOCALHOST), t0).is_ok());
        }
    }
}
