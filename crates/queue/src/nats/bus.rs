//! [`NatsEventBus`]: the [`EventBus`] seam on a JetStream stream, so late subscribers can replay.

use super::connect_client;
use super::valid_name;
use async_nats::jetstream::{
    self, Context,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    stream::{self, RetentionPolicy, Stream},
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use hybridgrid_core::{
    BusMessage, EventBus, EventBusError, check_pattern, check_subject, subject_matches,
};
use std::time::Duration;

const BACKEND: &str = "nats";

/// Settings of a [`NatsEventBus`]. `Default` gives the values documented on each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsEventBusConfig {
    /// How long messages are kept for replay (default 24 h).
    pub max_age: Duration,
    /// How many messages are kept for replay at most (default 1,000,000; oldest go first).
    pub max_messages: i64,
    /// Timeout of each JetStream request (default 5 s).
    pub request_timeout: Duration,
}

impl Default for NatsEventBusConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(24 * 3600),
            max_messages: 1_000_000,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// [`EventBus`] on NATS JetStream: messages are stored in one stream (limits retention, kept for
/// `max_age`), so a subscriber can replay them. A subscription is an ordered consumer filtered on
/// the server by the pattern: it replays then follows live messages without gap, and survives
/// reconnects. `seq` is the JetStream stream sequence.
///
/// A subject must be inside the stream's subjects (publishing elsewhere is an
/// [`EventBusError::InvalidSubject`] rather than a message lost to no stream).
#[derive(Clone)]
pub struct NatsEventBus {
    name: String,
    subjects: Vec<String>,
    js: Context,
    stream: Stream,
}

fn backend(what: impl std::fmt::Display, err: impl std::fmt::Display) -> EventBusError {
    EventBusError::Backend {
        backend: BACKEND,
        source: format!("{what}: {err}").into(),
    }
}

/// Whether some subject matches both patterns (token-wise; `>` takes one or more tokens).
fn patterns_overlap(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
            _ => return false,
        }
    }
}

impl NatsEventBus {
    /// Connects to `url` and opens (creating if needed) the stream `stream_name` capturing
    /// `subjects` (patterns such as `hg.events.>`). An existing stream keeps its own subjects.
    pub async fn connect<I, S>(
        url: &str,
        stream_name: &str,
        subjects: I,
    ) -> Result<Self, EventBusError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::connect_with(url, stream_name, subjects, NatsEventBusConfig::default()).await
    }

    /// Like [`NatsEventBus::connect`], with explicit settings.
    pub async fn connect_with<I, S>(
        url: &str,
        stream_name: &str,
        subjects: I,
        config: NatsEventBusConfig,
    ) -> Result<Self, EventBusError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        if !valid_name(stream_name) {
            return Err(EventBusError::InvalidSubject {
                subject: stream_name.to_owned(),
                reason: "a stream name is 1-200 ASCII letters, digits, '_' or '-'".into(),
            });
        }
        let subjects: Vec<String> = subjects.into_iter().map(Into::into).collect();
        if subjects.is_empty() {
            return Err(EventBusError::InvalidSubject {
                subject: String::new(),
                reason: format!("stream {stream_name} needs at least one subject"),
            });
        }
        for s in &subjects {
            check_pattern(s)?;
        }
        let client = connect_client(url, config.request_timeout)
            .await
            .map_err(|e| backend(format_args!("connect to {}", redact(url)), e))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client);
        let mut stream = js
            .get_or_create_stream(stream::Config {
                name: stream_name.to_owned(),
                subjects,
                retention: RetentionPolicy::Limits,
                max_age: config.max_age,
                max_messages: config.max_messages,
                ..Default::default()
            })
            .await
            .map_err(|e| backend(format_args!("open stream {stream_name}"), e))?;
        let subjects = stream
            .info()
            .await
            .map_err(|e| backend(format_args!("stream {stream_name} info"), e))?
            .config
            .subjects
            .clone();
        Ok(Self {
            name: stream_name.to_owned(),
            subjects,
            js,
            stream,
        })
    }

    /// The stream's subjects (what this bus carries).
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }

    /// Deletes the stream on the server (all retained messages).
    pub async fn destroy(&self) -> Result<(), EventBusError> {
        self.js
            .delete_stream(&self.name)
            .await
            .map_err(|e| backend(format_args!("delete stream {}", self.name), e))?;
        Ok(())
    }

    fn outside(&self, subject: &str) -> EventBusError {
        EventBusError::InvalidSubject {
            subject: subject.to_owned(),
            reason: format!(
                "outside stream {}'s subjects {:?}",
                self.name, self.subjects
            ),
        }
    }
}

/// `url` without its user info (passwords and tokens never reach a message).
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        },
    }
}

#[async_trait]
impl EventBus for NatsEventBus {
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), EventBusError> {
        check_subject(subject)?;
        if !self.subjects.iter().any(|s| subject_matches(s, subject)) {
            return Err(self.outside(subject));
        }
        self.js
            .publish(subject.to_owned(), payload)
            .await
            .map_err(|e| backend(format_args!("publish on {subject}"), e))?
            .await
            .map_err(|e| backend(format_args!("ack of {subject}"), e))?;
        Ok(())
    }

    async fn subscribe(
        &self,
        pattern: &str,
        replay: bool,
    ) -> Result<BoxStream<'static, Result<BusMessage, EventBusError>>, EventBusError> {
        check_pattern(pattern)?;
        if !self.subjects.iter().any(|s| patterns_overlap(s, pattern)) {
            return Err(self.outside(pattern));
        }
        let consumer = self
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: pattern.to_owned(),
                deliver_policy: if replay {
                    DeliverPolicy::All
                } else {
                    DeliverPolicy::New
                },
                ..Default::default()
            })
            .await
            .map_err(|e| backend(format_args!("subscribe to {pattern}"), e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| backend(format_args!("subscribe to {pattern}"), e))?;
        let pattern = pattern.to_owned();
        let out = messages.map(move |m| match m {
            Ok(m) => {
                let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
                Ok(BusMessage {
                    subject: m.message.subject.to_string(),
                    payload: m.message.payload.clone(),
                    seq,
                })
            }
            // The ordered consumer recreates itself after such errors and resumes after the last
            // message it delivered; report and go on.
            Err(e) => {
                tracing::warn!(pattern = %pattern, error = %e, "event subscription error");
                Err(backend(format_args!("subscription {pattern}"), e))
            }
        });
        Ok(out.boxed())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn overlap() {
        assert!(patterns_overlap("hg.>", "hg.a.*"));
        assert!(patterns_overlap("hg.*", "*.x"));
        assert!(patterns_overlap(">", "a"));
        assert!(!patterns_overlap("hg.>", "hg"));
        assert!(!patterns_overlap("hg.*", "hg.a.b"));
        assert!(!patterns_overlap("hg.>", "other.>"));
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("nats://u:secret@h:4222"), "nats://***@h:4222");
        assert_eq!(redact("nats://h:4222"), "nats://h:4222");
        assert_eq!(redact("tok@h"), "***@h");
    }
}
