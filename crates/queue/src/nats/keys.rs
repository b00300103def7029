//! Idempotency keys of [`super::NatsQueue`]: publish first, record after.
//!
//! An enqueue with a key:
//! 1. reads the key's record in `NAME_keys`: present means [`Enqueued::Duplicate`] of the id it holds;
//! 2. publishes the item with a work id derived from the queue name and the key, and the
//!    `Nats-Msg-Id` `ID:enqueue`: a repeat of this publish within the stream's duplicate window
//!    (a retry after a lost acknowledgement, a racing enqueue of the same key, a crash and restart)
//!    is dropped by the server, which answers `duplicate`;
//! 3. records `key -> id` (accepted once per key: `Nats-Expected-Last-Subject-Sequence: 0`).
//!
//! A crash or a dropped future at any point leaves no key that points at nothing: the key is only
//! written once the item is stored. Between 2 and 3 the item exists and the key is not yet
//! written; a retry within the duplicate window finds the server's de-duplication and completes the
//! record, with the same id.

use super::backend;
use super::queue::Inner;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;
use hybridgrid_core::{QueueError, WorkId};

/// Idempotency keys may hold any characters; subjects may not, so they are stored hex-encoded.
pub(super) fn hex_key(idempotency_key: &str) -> String {
    idempotency_key
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The work id of a keyed item: the same for every enqueue of `key` on queue `queue`, so that the
/// server's `Nats-Msg-Id` de-duplication can answer a repeated publish with the first one's id.
pub(super) fn keyed_id(queue: &str, key: &str) -> WorkId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"hybridgrid-queue/nats/key/v1\0");
    hasher.update(queue.as_bytes());
    hasher.update(b"\0");
    hasher.update(key.as_bytes());
    let hash = hasher.finalize();
    let hex = hash.to_hex();
    WorkId::new(format!("k-{}", &hex.as_str()[..32]))
}

impl Inner {
    pub(super) fn key_subject(&self, key: &str) -> String {
        format!("{}.key.{}", self.name, hex_key(key))
    }

    /// The id recorded for `key`, if it is known within the window.
    pub(super) async fn lookup_key(&self, key: &str) -> Result<Option<WorkId>, QueueError> {
        match self
            .keys
            .get_last_raw_message_by_subject(&self.key_subject(key))
            .await
        {
            Ok(m) => Ok(Some(WorkId::new(
                String::from_utf8_lossy(&m.payload).into_owned(),
            ))),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(backend(format!("read idempotency key {key:?}"), e)),
        }
    }

    /// Records `key -> id` once the item is stored. A record already there (a racing enqueue of
    /// the same key got there first) holds the same id, since keyed ids are derived from the key.
    pub(super) async fn record_key(&self, key: &str, id: &WorkId) -> Result<(), QueueError> {
        let subject = self.key_subject(key);
        let published = match self
            .js
            .send_publish(
                subject,
                PublishMessage::build()
                    .payload(Bytes::from(id.to_string()))
                    .expected_last_subject_sequence(0),
            )
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match published {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(()),
            Err(e) => Err(backend(format!("record idempotency key {key:?}"), e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hex() {
        assert_eq!(hex_key("a.b c"), "612e622063");
    }

    #[test]
    fn keyed_ids_are_stable_and_distinct() {
        assert_eq!(keyed_id("q", "job-a"), keyed_id("q", "job-a"));
        assert_ne!(keyed_id("q", "job-a"), keyed_id("q", "job-b"));
        assert_ne!(keyed_id("q", "job-a"), keyed_id("r", "job-a"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(keyed_id("ab", "c"), keyed_id("a", "bc"));
        assert_eq!(keyed_id("q", "x").as_str().len(), 34);
    }
}
