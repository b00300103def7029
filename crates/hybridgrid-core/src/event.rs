//! The [`EventBus`] seam: publish/subscribe on dot-separated subjects, with NATS wildcards and replay.
//!
//! A subject is one or more tokens joined by `.` (`runs.r42.task.compile`); a pattern may use `*`
//! for exactly one token and `>` (last) for one or more trailing tokens (`runs.*.task.>`). Payloads
//! are bytes: typed layers (run events, dashboards) serialize on top. Backends:
//! `hybridgrid_queue::MemoryEventBus` (in process) and `hybridgrid_queue::NatsEventBus` (JetStream),
//! both passing `hybridgrid_testkit::event::run_event_bus_suite`.
//!
//! ```
//! use hybridgrid_core::subject_matches;
//!
//! assert!(subject_matches("runs.*.status", "runs.r1.status"));
//! assert!(subject_matches("runs.>", "runs.r1.task.compile"));
//! assert!(!subject_matches("runs.>", "runs"));
//! assert!(!subject_matches("runs.*", "runs.r1.status"));
//! ```

use crate::{BoxError, Retry};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::time::Duration;

/// Longest subject or pattern accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// One message delivered to a subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusMessage {
    /// The subject it was published on (never a pattern).
    pub subject: String,
    /// The bytes as published.
    pub payload: Bytes,
    /// Per-bus sequence number, increasing in publish order; 0 when the backend has none.
    pub seq: u64,
}

/// Errors of an [`EventBus`].
#[derive(Debug, thiserror::Error)]
pub enum EventBusError {
    /// The subject or pattern is malformed, or outside what the bus carries.
    #[error("invalid subject {subject:?}: {reason}")]
    InvalidSubject {
        /// The subject or pattern as given.
        subject: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend failed (connection lost, server restarting, request refused).
    #[error("{backend} event bus failed: {source}")]
    Backend {
        /// Backend name (`nats`).
        backend: &'static str,
        /// The client's error (with what it was about).
        #[source]
        source: BoxError,
    },
    /// A subscriber fell behind and `missed` messages were dropped for it (the stream goes on).
    #[error("subscriber lagged behind: {missed} messages dropped")]
    Lagged {
        /// How many messages this subscriber lost.
        missed: u64,
    },
    /// The bus was closed; nothing more can be published or received on it.
    #[error("{backend} event bus is closed")]
    Closed {
        /// Backend name (`memory`, `nats`).
        backend: &'static str,
    },
}

impl EventBusError {
    /// Whether the operation is worth repeating (a lagged subscriber may resubscribe with replay).
    pub fn retry(&self) -> Retry {
        match self {
            EventBusError::InvalidSubject { .. } | EventBusError::Closed { .. } => Retry::Never,
            EventBusError::Backend { .. } => Retry::After(Duration::from_millis(250)),
            EventBusError::Lagged { .. } => Retry::Now,
        }
    }
}

/// Publish/subscribe on subjects. Object-safe: callers hold an `Arc<dyn EventBus>`.
///
/// Delivery is in publish order per publisher. An `Err` item in a subscription reports a problem
/// (messages lost to lag, a backend hiccup) and the stream goes on after it; the stream ends when
/// the bus is closed.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes on a subject (dot-separated tokens, no wildcards); returns once the backend
    /// accepted it (JetStream: stored and acked), so it is replayable from then on.
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), EventBusError>;

    /// Messages whose subject matches `pattern` (`*` = one token, `>` = one or more trailing
    /// tokens). With `replay`, retained messages first, then live ones, without gap or duplicate;
    /// without, only messages published after this call returned.
    async fn subscribe(
        &self,
        pattern: &str,
        replay: bool,
    ) -> Result<BoxStream<'static, Result<BusMessage, EventBusError>>, EventBusError>;
}

fn invalid(subject: &str, reason: impl Into<String>) -> EventBusError {
    EventBusError::InvalidSubject {
        subject: subject.to_owned(),
        reason: reason.into(),
    }
}

fn check_tokens(s: &str, wildcards: bool) -> Result<(), EventBusError> {
    if s.is_empty() {
        return Err(invalid(s, "empty"));
    }
    if s.len() > MAX_SUBJECT_LEN {
        return Err(invalid(s, format!("longer than {MAX_SUBJECT_LEN} bytes")));
    }
    let tokens: Vec<&str> = s.split('.').collect();
    let last = tokens.len() - 1;
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err(invalid(s, "empty token (leading, trailing or double '.')"));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(s, "whitespace or control character"));
        }
        match *t {
            "*" | ">" if !wildcards => {
                return Err(invalid(s, "wildcards are only allowed in patterns"));
            }
            ">" if i != last => return Err(invalid(s, "'>' must be the last token")),
            "*" | ">" => {}
            t if t.contains(['*', '>']) => {
                return Err(invalid(s, "'*' and '>' must be whole tokens"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a subject to publish on: non-empty tokens, no whitespace, no wildcards.
pub fn check_subject(subject: &str) -> Result<(), EventBusError> {
    check_tokens(subject, false)
}

/// Checks a subscription pattern: like a subject, plus whole-token `*` anywhere and `>` last.
pub fn check_pattern(pattern: &str) -> Result<(), EventBusError> {
    check_tokens(pattern, true)
}

/// Whether `subject` matches `pattern` with NATS semantics: `*` matches exactly one token, a final
/// `>` one or more tokens, any other token itself. False when either is malformed.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    if check_pattern(pattern).is_err() || check_subject(subject).is_err() {
        return false;
    }
    let mut subject = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject.next()) {
            (">", Some(_)) => return true,
            (_, None) => return false,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wildcards() {
        let cases = [
            ("a.b.c", "a.b.c", true),
            ("a.b.c", "a.b", false),
            ("a.b", "a.b.c", false),
            ("a.*.c", "a.x.c", true),
            ("a.*.c", "a.x.y.c", false),
            ("*", "a", true),
            ("*", "a.b", false),
            (">", "a", true),
            (">", "a.b.c", true),
            ("a.>", "a", false),
            ("a.>", "a.b", true),
            ("a.>", "a.b.c", true),
            ("a.*.>", "a.b", false),
            ("a.*.>", "a.b.c", true),
            ("a.b", "a.c", false),
            // malformed inputs never match
            ("a.>.c", "a.b.c", false),
            ("a..b", "a..b", false),
            ("a.b", "a.*", false),
            ("a*", "a*", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(subject_matches(p, s), want, "pattern {p:?} subject {s:?}");
        }
    }

    #[test]
    fn validation_names_the_problem() {
        for bad in ["", "a..b", ".a", "a.", "a b", "a.*", "a.>", "a*b", "a\n"] {
            let err = check_subject(bad).unwrap_err();
            assert!(!err.retry().is_retryable(), "{err}");
            assert!(
                matches!(err, EventBusError::InvalidSubject { .. }),
                "{bad:?}"
            );
        }
        for bad in ["", "a.>.b", "a..*", "a*", ">a", "a.b>"] {
            assert!(check_pattern(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "a.*", "a.>", "*.*.>", ">", "runs.0191-ab_C.task"] {
            check_pattern(good).unwrap();
        }
        assert!(check_subject(&"a".repeat(MAX_SUBJECT_LEN + 1)).is_err());
    }

    fn token() -> impl Strategy<Value = String> {
        "[a-z0-9_-]{1,4}"
    }

    fn subject() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(token(), 1..6)
    }

    proptest! {
        #[test]
        fn a_subject_matches_itself(s in subject()) {
            let s = s.join(".");
            prop_assert!(subject_matches(&s, &s));
            prop_assert!(subject_matches(">", &s));
        }

        #[test]
        fn stars_match_same_length_only(s in subject(), mask in prop::collection::vec(any::<bool>(), 6), extra in token()) {
            let pattern: Vec<&str> = s.iter().zip(&mask).map(|(t, star)| if *star { "*" } else { t.as_str() }).collect();
            let pattern = pattern.join(".");
            prop_assert!(subject_matches(&pattern, &s.join(".")));
            let longer = format!("{}.{extra}", s.join("."));
            prop_assert!(!subject_matches(&pattern, &longer));
        }

        #[test]
        fn tail_matches_strictly_longer(s in subject(), cut in 0usize..6) {
            let cut = cut.min(s.len());
            let prefix = &s[..cut];
            let pattern = if prefix.is_empty() { ">".to_owned() } else { format!("{}.>", prefix.join(".")) };
            prop_assert_eq!(subject_matches(&pattern, &s.join(".")), s.len() > cut);
        }

        #[test]
        fn a_changed_literal_does_not_match(s in subject(), at in 0usize..6) {
            let at = at % s.len();
            let mut p = s.clone();
            p[at] = format!("{}x", p[at]);
            prop_assert!(!subject_matches(&p.join("."), &s.join(".")));
        }
    }
}
