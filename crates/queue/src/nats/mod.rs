//! NATS JetStream backends: [`NatsQueue`] (a [`hybridgrid_core::Queue`]) and [`NatsEventBus`].
//!
//! Layout of one queue called `NAME` (see `docs/backends/nats.md` for the full story):
//! - stream `NAME` (work-queue retention) with subjects `NAME.high`, `NAME.normal`, `NAME.low` and
//!   `NAME.delayed`, and one durable pull consumer per subject (`high`, `normal`, `low`, `delayed`);
//! - stream `NAME_dead` (limits retention, subject `NAME.dead`) for dead letters;
//! - key-value bucket `NAME_keys` mapping idempotency keys to work ids for `idempotency_window`.
//!
//! Leases: the consumers' `ack_wait` is the server-side backstop for a claimer that disappears; a
//! live claimer enforces the per-claim `lease` itself (it re-queues the item at the deadline and
//! sends `+WPI` progress while a lease longer than `ack_wait` is held).

mod bus;
mod lease;
mod ops;
mod queue;

pub use bus::{NatsEventBus, NatsEventBusConfig};
pub use queue::{NatsQueue, NatsQueueConfig};

use hybridgrid_core::{BoxError, QueueError};
use std::time::Duration;

const BACKEND: &str = "nats";

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
    fn names_are_single_subject_tokens() {
        assert!(valid_name("hgtest_queue_0af3"));
        assert!(valid_name("farm-jobs"));
        for bad in ["", "a.b", "a*", "a>", "a b", "ü"] {
            assert!(!valid_name(bad), "{bad:?} should be refused");
        }
    }
}
