//! [`MemoryEventBus`]: the in-process [`EventBus`] (embedded mode), with a bounded retained history.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use hybridgrid_core::{
    BusMessage, EventBus, EventBusError, check_pattern, check_subject, subject_matches,
};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast;

const BACKEND: &str = "memory";

/// In-process [`EventBus`]: a tokio broadcast channel plus the newest `history` messages for replay.
///
/// Sequence numbers start at 1 and increase in publish order. A subscriber that falls more than
/// `history` messages behind gets one [`EventBusError::Lagged`] item naming how many it lost, then
/// the stream goes on. [`MemoryEventBus::close`] ends every subscription.
///
/// ```
/// use futures::StreamExt;
/// use hybridgrid_core::EventBus;
/// use hybridgrid_queue::MemoryEventBus;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), hybridgrid_core::EventBusError> {
/// let bus = MemoryEventBus::new(1000);
/// bus.publish("runs.r1.status", "running".into()).await?;
/// let mut sub = bus.subscribe("runs.*.status", true).await?; // replays the retained message
/// bus.publish("runs.r1.status", "done".into()).await?;
/// assert_eq!(&sub.next().await.unwrap()?.payload[..], b"running");
/// assert_eq!(&sub.next().await.unwrap()?.payload[..], b"done");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryEventBus {
    inner: Arc<Inner>,
}

struct Inner {
    state: parking_lot::Mutex<State>,
    capacity: usize,
}

struct State {
    /// `None` once closed (dropping the sender ends every subscription).
    sender: Option<broadcast::Sender<BusMessage>>,
    history: VecDeque<BusMessage>,
    next_seq: u64,
}

impl Default for MemoryEventBus {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl MemoryEventBus {
    /// A bus that retains the newest `history` messages for replay (and buffers as many per
    /// subscriber). A `history` of 0 is taken as 1.
    pub fn new(history: usize) -> Self {
        let capacity = history.max(1);
        let (sender, _) = broadcast::channel(capacity);
        Self {
            inner: Arc::new(Inner {
                state: parking_lot::Mutex::new(State {
                    sender: Some(sender),
                    history: VecDeque::with_capacity(capacity.min(1024)),
                    next_seq: 1,
                }),
                capacity,
            }),
        }
    }

    /// Closes the bus: subscriptions end after what they already received, and later publishes and
    /// subscribes fail with [`EventBusError::Closed`].
    pub fn close(&self) {
        self.inner.state.lock().sender = None;
    }
}

#[async_trait]
impl EventBus for MemoryEventBus {
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), EventBusError> {
        check_subject(subject)?;
        // Store and send under one lock, so a replaying subscriber sees each message exactly once.
        let mut state = self.inner.state.lock();
        let seq = state.next_seq;
        let Some(sender) = state.sender.clone() else {
            return Err(EventBusError::Closed { backend: BACKEND });
        };
        state.next_seq = seq.saturating_add(1);
        let message = BusMessage {
            subject: subject.to_owned(),
            payload,
            seq,
        };
        if state.history.len() == self.inner.capacity {
            state.history.pop_front();
        }
        state.history.push_back(message.clone());
        // No receiver is not an error: nobody is listening right now.
        let _ = sender.send(message);
        Ok(())
    }

    async fn subscribe(
        &self,
        pattern: &str,
        replay: bool,
    ) -> Result<BoxStream<'static, Result<BusMessage, EventBusError>>, EventBusError> {
        check_pattern(pattern)?;
        let (past, receiver) = {
            let state = self.inner.state.lock();
            let Some(sender) = &state.sender else {
                return Err(EventBusError::Closed { backend: BACKEND });
            };
            let past: Vec<Result<BusMessage, EventBusError>> = if replay {
                state
                    .history
                    .iter()
                    .filter(|m| subject_matches(pattern, &m.subject))
                    .cloned()
                    .map(Ok)
                    .collect()
            } else {
                Vec::new()
            };
            (past, sender.subscribe())
        };
        let pattern = pattern.to_owned();
        let live = stream::unfold((receiver, pattern), |(mut rx, pattern)| async move {
            loop {
                match rx.recv().await {
                    Ok(m) if subject_matches(&pattern, &m.subject) => {
                        return Some((Ok(m), (rx, pattern)));
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, pattern = %pattern, "event subscriber lagged; oldest messages dropped");
                        return Some((Err(EventBusError::Lagged { missed }), (rx, pattern)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(stream::iter(past).chain(live).boxed())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn history_is_bounded() {
        let bus = MemoryEventBus::new(2);
        for i in 0..5 {
            bus.publish(&format!("r.{i}"), Bytes::new()).await.unwrap();
        }
        let sub = bus.subscribe(">", true).await.unwrap();
        let got: Vec<(String, u64)> = sub
            .take(2)
            .map(|m| {
                let m = m.unwrap();
                (m.subject, m.seq)
            })
            .collect()
            .await;
        assert_eq!(got, vec![("r.3".into(), 4), ("r.4".into(), 5)]);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told() {
        let bus = MemoryEventBus::new(2);
        let mut sub = bus.subscribe(">", false).await.unwrap();
        for i in 0..5 {
            bus.publish(&format!("r.{i}"), Bytes::new()).await.unwrap();
        }
        match sub.next().await.unwrap() {
            Err(EventBusError::Lagged { missed }) => assert_eq!(missed, 3),
            other => panic!("expected Lagged, got {other:?}"),
        }
        assert_eq!(sub.next().await.unwrap().unwrap().subject, "r.3");
    }

    #[tokio::test]
    async fn close_ends_subscriptions() {
        let bus = MemoryEventBus::default();
        let mut sub = bus.subscribe(">", false).await.unwrap();
        bus.publish("a", Bytes::new()).await.unwrap();
        bus.close();
        assert_eq!(sub.next().await.unwrap().unwrap().subject, "a");
        assert!(sub.next().await.is_none());
        assert!(matches!(
            bus.publish("a", Bytes::new()).await,
            Err(EventBusError::Closed { .. })
        ));
    }
}
