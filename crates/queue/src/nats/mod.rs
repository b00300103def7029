//! NATS JetStream backends: [`NatsQueue`] (a [`hybridgrid_core::Queue`]) and [`NatsEventBus`].
//!
//! Layout of one queue called `NAME` (see `docs/backends/nats.md` for the full story):
//! - stream `NAME` (work-queue retention) with subjects `NAME.high`, `NAME.normal`, `NAME.low` and
//!   `NAME.delayed`, and one durable pull consumer per subject (`high`, `normal`, `low`, `delayed`);
//! - stream `NAME_dead` (limits retention, subject `NAME.dead`) for dead letters;
//! - key-value bucket `NAME_keys` mapping idempotency keys to work ids for `idempotency_window`.
//!
//! Leases: the consumers' `ack_wait` is the server-side backstop for a claimer that disappears; a
//! live claimer enforces the per-claim `lease` itself (it gives the item back with a `Nak` at the
//! deadline and sends confirmed `+WPI` progress while a lease longer than `ack_wait` is held). A
//! holder that could not confirm progress within `ack_wait` treats its lease as lost.

mod bus;
mod keys;
mod lease;
mod ops;
mod queue;

pub use bus::{NatsEventBus, NatsEventBusConfig};
pub use queue::{NatsQueue, NatsQueueConfig};

use hybridgrid_core::{BoxError, QueueError};
use std::time::{Duration, Instant};

const BACKEND: &str = "nats";

/// The longest wait, lease, delay or retry-after honoured (10 years): longer ones are cut to it,
/// so that no deadline overflows (`Instant + Duration` panics on overflow).
pub(crate) const LONGEST: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// `now + by`, with `by` cut to [`LONGEST`]; never panics.
fn deadline_after(now: Instant, by: Duration) -> Instant {
    now.checked_add(by.min(LONGEST))
        .or_else(|| now.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(now)
}

/// `d` in whole milliseconds, cut to [`LONGEST`].
fn millis(d: Duration) -> u64 {
    u64::try_from(d.min(LONGEST).as_millis()).unwrap_or(u64::MAX)
}

/// Wraps a client error as a retryable [`QueueError::Backend`], naming what failed.
fn backend(what: impl std::fmt::Display, err: impl Into<BoxError>) -> QueueError {
    QueueError::Backend {
        backend: BACKEND,
        source: format!("{what}: {}", err.into()).into(),
    }
}

/// Checks a queue name or subject prefix: it becomes a stream name and a subject token.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Connects a client that reconnects forever with a bounded backoff.
async fn connect_client(
    url: &str,
    request_timeout: Duration,
) -> Result<async_nats::Client, BoxError> {
    let options = async_nats::ConnectOptions::new()
        .connection_timeout(request_timeout)
        .request_timeout(Some(request_timeout))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis(50u64.saturating_mul(1 << attempt.min(5)))
                .min(Duration::from_secs(1))
        })
        .event_callback(|event| async move {
            tracing::info!(%event, "nats connection event");
        });
    Ok(options.connect(url).await?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_are_cut_not_overflowed() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, Duration::MAX), now + LONGEST);
        assert_eq!(
            deadline_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(millis(Duration::MAX), millis(LONGEST));
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
    }

    #[test]
    fn names_are_single_subject_tokens() {
        assert!(valid_name("hgtest_queue_0af3"));
        assert!(valid_name("farm-jobs"));
        for bad in ["", "a.b", "a*", "a>", "a b", "ü"] {
            assert!(!valid_name(bad), "{bad:?} should be refused");
        }
    }
}
