//! Message metadata carried in NATS headers, and the client-side state of one held lease.

use async_nats::HeaderMap;
use async_nats::jetstream;
use hybridgrid_core::{LeaseToken, Priority, WorkId, WorkerId};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, Notify};

pub(super) const H_WORK_ID: &str = "Hg-Work-Id";
pub(super) const H_MAX_ATTEMPTS: &str = "Hg-Max-Attempts";
/// Claims the item had before this message was published (a nack or expiry re-publishes it).
pub(super) const H_PRIOR_ATTEMPTS: &str = "Hg-Prior-Attempts";
pub(super) const H_PRIORITY: &str = "Hg-Priority";
/// Unix milliseconds before which a `NAME.delayed` message must not become claimable.
pub(super) const H_NOT_BEFORE: &str = "Hg-Not-Before";
pub(super) const H_ATTEMPTS: &str = "Hg-Attempts";
pub(super) const H_REASON: &str = "Hg-Reason";

/// What the queue knows about an item, read from (and written to) its message headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Meta {
    pub work_id: WorkId,
    pub max_attempts: u32,
    pub prior_attempts: u32,
    pub priority: Priority,
    pub not_before_ms: Option<u64>,
}

impl Meta {
    pub fn to_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(H_WORK_ID, self.work_id.as_str());
        h.insert(H_MAX_ATTEMPTS, self.max_attempts.to_string());
        h.insert(H_PRIOR_ATTEMPTS, self.prior_attempts.to_string());
        h.insert(H_PRIORITY, self.priority.as_str());
        if let Some(ms) = self.not_before_ms {
            h.insert(H_NOT_BEFORE, ms.to_string());
        }
        h
    }

    /// Parses the headers; the error names the missing or malformed header.
    pub fn from_headers(h: Option<&HeaderMap>) -> Result<Self, String> {
        let h = h.ok_or("message has no headers")?;
        let get = |name: &str| {
            h.get(name)
                .map(|v| v.as_str().to_owned())
                .ok_or_else(|| format!("header {name} missing"))
        };
        let num = |name: &str| -> Result<u32, String> {
            get(name)?
                .parse()
                .map_err(|e| format!("header {name} is not a number: {e}"))
        };
        Ok(Self {
            work_id: WorkId::new(get(H_WORK_ID)?),
            max_attempts: num(H_MAX_ATTEMPTS)?,
            prior_attempts: num(H_PRIOR_ATTEMPTS)?,
            priority: get(H_PRIORITY)?
                .parse()
                .map_err(|e| format!("header {H_PRIORITY}: {e}"))?,
            not_before_ms: match h.get(H_NOT_BEFORE) {
                None => None,
                Some(v) => Some(
                    v.as_str()
                        .parse()
                        .map_err(|e| format!("header {H_NOT_BEFORE} is not a number: {e}"))?,
                ),
            },
        })
    }
}

/// Milliseconds since the Unix epoch, now.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One lease held by this client.
pub(super) struct Lease {
    pub token: LeaseToken,
    pub msg: jetstream::Message,
    pub meta: Meta,
    pub attempt: u32,
    pub worker: WorkerId,
    pub state: Mutex<LeaseState>,
    /// Wakes the keeper task after `extend` or a settle.
    pub changed: Notify,
}

/// Mutable part of a [`Lease`]; its mutex orders ack/nack/extend against the keeper's expiry.
pub(super) struct LeaseState {
    /// When the client-side lease ends (set by claim and `extend`).
    pub deadline: Instant,
    /// Until when the server is known to keep the delivery ours: the moment the fetch (or the last
    /// progress signal the server confirmed) was *sent*, plus the consumer's `ack_wait`. The server
    /// received it later, so it redelivers no earlier than this. Past it, the item may be in other
    /// hands, and an ack or nack from us would settle the other holder's delivery (the server
    /// does not check whose delivery an ack names).
    pub server_deadline: Instant,
    /// Acked, nacked, expired or lost: the token is dead.
    pub done: bool,
}

impl LeaseState {
    /// When the keeper must next act: the lease deadline, or earlier to send progress so the server
    /// does not redeliver while the lease is still held. `margin` is a third of `ack_wait`.
    pub fn next_wake(&self, margin: Duration) -> Instant {
        if self.needs_progress_before_deadline(margin) {
            let progress_at = self
                .server_deadline
                .checked_sub(margin)
                .unwrap_or(self.server_deadline);
            self.deadline.min(progress_at)
        } else {
            self.deadline
        }
    }

    /// Whether the lease outlives what the server grants without a progress signal.
    pub fn needs_progress_before_deadline(&self, margin: Duration) -> bool {
        self.deadline
            .checked_add(margin)
            .is_none_or(|t| t >= self.server_deadline)
    }

    /// Whether the server may have handed the item to another claimer by `now`: no confirmed sign
    /// of life for `ack_wait`, less `guard` (the time an ack needs to reach the server).
    pub fn server_may_have_redelivered(&self, now: Instant, guard: Duration) -> bool {
        now.checked_add(guard)
            .is_none_or(|t| t >= self.server_deadline)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_through_headers() {
        let meta = Meta {
            work_id: WorkId::new("w1"),
            max_attempts: 5,
            prior_attempts: 2,
            priority: Priority::Low,
            not_before_ms: Some(1_700_000_000_000),
        };
        assert_eq!(Meta::from_headers(Some(&meta.to_headers())), Ok(meta));
    }

    #[test]
    fn malformed_headers_name_the_culprit() {
        let mut h = HeaderMap::new();
        h.insert(H_WORK_ID, "w");
        h.insert(H_MAX_ATTEMPTS, "three");
        let err = Meta::from_headers(Some(&h)).unwrap_err();
        assert!(err.contains(H_MAX_ATTEMPTS), "{err}");
        assert!(Meta::from_headers(None).is_err());
    }

    #[test]
    fn progress_only_when_lease_outlives_server_window() {
        let now = Instant::now();
        let ack_wait = Duration::from_secs(3);
        let margin = ack_wait / 3;
        let short = LeaseState {
            deadline: now + Duration::from_millis(500),
            server_deadline: now + ack_wait,
            done: false,
        };
        assert!(!short.needs_progress_before_deadline(margin));
        assert_eq!(short.next_wake(margin), short.deadline);
        let long = LeaseState {
            deadline: now + Duration::from_secs(10),
            server_deadline: now + ack_wait,
            done: false,
        };
        assert!(long.needs_progress_before_deadline(margin));
        assert_eq!(long.next_wake(margin), now + Duration::from_secs(2));
    }

    #[test]
    fn lease_is_lost_once_the_server_window_may_have_passed() {
        let now = Instant::now();
        let guard = Duration::from_millis(100);
        let state = LeaseState {
            deadline: now + Duration::from_secs(60),
            server_deadline: now + Duration::from_secs(1),
            done: false,
        };
        assert!(!state.server_may_have_redelivered(now, guard));
        assert!(state.server_may_have_redelivered(now + Duration::from_millis(900), guard));
        assert!(state.server_may_have_redelivered(now + Duration::from_secs(5), guard));
    }
}
