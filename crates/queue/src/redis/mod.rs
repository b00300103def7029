//! Redis/Valkey backends (feature `redis`): [`RedisQueue`] and [`RedisLeaderElection`].
//!
//! Every multi-step operation is a Lua script (the `*.lua` files beside this module) that declares
//! every key it touches, run with `EVALSHA`, so each is atomic, one round trip, and works on Redis
//! Cluster. See `docs/backends/redis.md`.

mod conn;
mod election;
mod queue;
mod reply;

pub use election::RedisLeaderElection;
pub use queue::RedisQueue;

use std::time::Duration;

/// Longest duration sent to Redis, in ms (ten years): keeps scores exact in Lua's doubles.
const MAX_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
// Deadlines of now (~1.8e12 ms) + MAX_MS stay below 2^53, exact in Lua's doubles.
const _: () = assert!(4_000_000_000_000 + MAX_MS < 1 << 53);

/// A duration in whole milliseconds, capped at [`MAX_MS`].
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(MAX_MS).min(MAX_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_become_capped_whole_milliseconds() {
        assert_eq!(ms(Duration::from_micros(1500)), 1);
        assert_eq!(ms(Duration::from_secs(3)), 3000);
        assert_eq!(ms(Duration::MAX), MAX_MS);
    }
}
