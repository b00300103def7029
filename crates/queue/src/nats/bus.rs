//! [`NatsEventBus`]: the [`EventBus`] seam on a JetStream stream, so late subscribers can replay.

use super::connect_client;
use super::valid_name;
use crate::event::{Event, EventBus, EventBusError, EventFilter};
use async_nats::jetstream::{
    self, Context,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    stream::{self, RetentionPolicy, Stream},
};
use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use std::time::Duration;

const BACKEND: &str = "nats";

/// Settings of a [`NatsEventBus`]. `Default` gives the values documented on each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsEventBusConfig {
    /// How long events are kept for replay (default 24 h).
    pub max_age: Duration,
    /// Timeout of each JetStream request (default 5 s).
    pub request_timeout: Duration,
}

impl Default for NatsEventBusConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(24 * 3600),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// [`EventBus`] on NATS JetStream: events go to subjects `PREFIX.run.RUN` / `PREFIX.task.RUN`, kept
/// in the stream `PREFIX_events` for `max_age`. A subscription is an ordered consumer (it survives
/// reconnects and replays from where it was), filtered on the server by kind and run.
#[derive(Clone)]
pub struct NatsEventBus {
    prefix: String,
    js: Context,
    stream: Stream,
}

fn backend(subject: impl Into<String>, err: impl Into<hybridgrid_core::BoxError>) -> EventBusError {
    EventBusError::Backend {
        backend: BACKEND,
        subject: subject.into(),
        source: err.into(),
    }
}

/// A run id as one subject token (ids are UUIDs in practice; anything else is made safe, and the
/// subscriber re-checks the decoded event).
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() { "_".into() } else { t }
}

impl NatsEventBus {
    /// Connects to `url` and opens (creating if needed) the stream `PREFIX_events`.
    /// `subject_prefix` must be non-empty ASCII letters, digits, `_` or `-`.
    pub async fn connect(url: &str, subject_prefix: &str) -> Result<Self, EventBusError> {
        Self::connect_with(url, subject_prefix, NatsEventBusConfig::default()).await
    }

    /// Like [`NatsEventBus::connect`], with explicit settings.
    pub async fn connect_with(
        url: &str,
        subject_prefix: &str,
        config: NatsEventBusConfig,
    ) -> Result<Self, EventBusError> {
        if !valid_name(subject_prefix) {
            return Err(EventBusError::Invalid(format!(
                "subject prefix {subject_prefix:?}: use 1-200 ASCII letters, digits, '_' or '-'"
            )));
        }
        let client = connect_client(url, config.request_timeout)
            .await
            .map_err(|e| backend(url, e))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client);
        let name = format!("{subject_prefix}_events");
        let stream = js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                // One wildcard subject, so every filter (`P.*.RUN`, `P.task.*`) is a subset of it.
                subjects: vec![format!("{subject_prefix}.*.*")],
                retention: RetentionPolicy::Limits,
                max_age: config.max_age,
                ..Default::default()
            })
            .await
            .map_err(|e| backend(name, e))?;
        Ok(Self {
            prefix: subject_prefix.to_owned(),
            js,
            stream,
        })
    }

    /// Deletes the event stream on the server (all retained events).
    pub async fn destroy(&self) -> Result<(), EventBusError> {
        let name = format!("{}_events", self.prefix);
        self.js
            .delete_stream(&name)
            .await
            .map_err(|e| backend(name, e))?;
        Ok(())
    }

    fn filter_subject(&self, filter: &EventFilter) -> String {
        format!(
            "{}.{}.{}",
            self.prefix,
            filter.kind.map_or("*", |k| k.as_str()),
            filter
                .run_id
                .as_ref()
                .map_or_else(|| "*".to_owned(), |r| token(r.as_str()))
        )
    }
}

#[async_trait]
impl EventBus for NatsEventBus {
    async fn publish(&self, event: &Event) -> Result<(), EventBusError> {
        let subject = format!(
            "{}.{}.{}",
            self.prefix,
            event.kind.as_str(),
            token(event.run_id.as_str())
        );
        let body = serde_json::to_vec(event).map_err(|e| backend(subject.clone(), e))?;
        self.js
            .publish(subject.clone(), body.into())
            .await
            .map_err(|e| backend(subject.clone(), e))?
            .await
            .map_err(|e| backend(subject, e))?;
        Ok(())
    }

    async fn subscribe(
        &self,
        filter: EventFilter,
    ) -> Result<BoxStream<'static, Event>, EventBusError> {
        let subject = self.filter_subject(&filter);
        let consumer = self
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: subject.clone(),
                deliver_policy: if filter.replay {
                    DeliverPolicy::All
                } else {
                    DeliverPolicy::New
                },
                ..Default::default()
            })
            .await
            .map_err(|e| backend(subject.clone(), e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| backend(subject.clone(), e))?;
        let events = messages.filter_map(move |m| {
            let out = match m {
                Ok(m) => match serde_json::from_slice::<Event>(&m.message.payload) {
                    Ok(event) if filter.matches(&event) => Some(event),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(subject = %m.message.subject, error = %e,
                            "skipping an event that does not decode");
                        None
                    }
                },
                // The ordered consumer recreates itself after such errors; keep streaming.
                Err(e) => {
                    tracing::warn!(subject = %subject, error = %e, "event subscription error");
                    None
                }
            };
            futures::future::ready(out)
        });
        Ok(events.boxed())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_become_single_tokens() {
        assert_eq!(token("0191-ab_c"), "0191-ab_c");
        assert_eq!(token("a.b*c>"), "a_b_c_");
        assert_eq!(token(""), "_");
    }
}
