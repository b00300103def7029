//! Errors and reply parsing for [`super::RedisQueue`].

use bytes::Bytes;
use hybridgrid_core::{Claim, DeadLetter, LeaseToken, Priority, QueueError, WorkId};
use redis::{RedisError, Value};
use std::time::Duration;

/// A failure talking to Redis, naming the operation and the queue's key prefix.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisQueueFailure {
    #[error("{op} on queue prefix {prefix:?}: {source}")]
    Command {
        op: &'static str,
        prefix: String,
        #[source]
        source: RedisError,
    },
    #[error("{op} on queue prefix {prefix:?}: no reply within {after:?}")]
    Timeout {
        op: &'static str,
        prefix: String,
        after: Duration,
    },
    #[error("{op} on queue prefix {prefix:?}: unexpected reply {reply}")]
    Reply {
        op: &'static str,
        prefix: String,
        reply: String,
    },
}

pub(crate) fn backend(failure: RedisQueueFailure) -> QueueError {
    QueueError::Backend {
        backend: "redis",
        source: Box::new(failure),
    }
}

/// Parses a claim script reply: claims (flat 6-tuples) appended to `out` and `Some(None)`, or
/// when nothing was claimed the time until something comes due (`Some(Some(d))`, or `Some(None)`
/// for never). `None` for a malformed reply.
pub(crate) fn claims(reply: &Value, out: &mut Vec<Claim>) -> Option<Option<Duration>> {
    match reply {
        Value::Int(n) if *n < 0 => Some(None),
        Value::Int(n) => Some(Some(Duration::from_millis(u64::try_from(*n).ok()?))),
        Value::Array(f) if f.len() % 6 == 0 => {
            for c in f.chunks(6) {
                out.push(Claim {
                    id: WorkId::new(text(&c[0])?),
                    token: LeaseToken::new(text(&c[1])?),
                    attempt: u32::try_from(int(&c[2])?).ok()?,
                    max_attempts: u32::try_from(int(&c[3])?).ok()?,
                    priority: text(&c[4])?.parse::<Priority>().ok()?,
                    payload: blob(&c[5])?,
                });
            }
            Some(None)
        }
        _ => None,
    }
}

pub(crate) fn dead_letter(f: &[Value]) -> Option<DeadLetter> {
    Some(DeadLetter {
        id: WorkId::new(text(f.first()?)?),
        payload: blob(f.get(1)?)?,
        attempts: u32::try_from(int(f.get(2)?)?).ok()?,
        reason: text(f.get(3)?)?,
    })
}

pub(crate) fn blob(v: &Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) => Some(Bytes::copy_from_slice(b)),
        Value::SimpleString(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
        _ => None,
    }
}

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => text(v)?.parse().ok(),
    }
}
