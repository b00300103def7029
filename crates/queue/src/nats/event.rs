//! Run and task events: the [`EventBus`] seam, its in-process [`MemoryEventBus`] and the event type.
//!
//! The orchestrator publishes one [`Event`] per status change of a run or a task; dashboards and
//! waiters subscribe with an [`EventFilter`]. A subscriber that asks for a replay first gets the
//! events still retained (oldest first), then live ones, with no gap and no duplicate between them.
//! `NatsEventBus` (feature `nats`) is the fleet backend; this module is always built.

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use hybridgrid_core::{BoxError, Retry, RunId, RunStatus, TaskId};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// What an [`Event`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A whole run changed status.
    Run,
    /// One task (step) of a run changed status.
    Task,
}

impl EventKind {
    /// `run` or `task` (used in NATS subjects).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Run => "run",
            EventKind::Task => "task",
        }
    }
}

/// One status change of a run or a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Run or task event.
    pub kind: EventKind,
    /// The run it belongs to.
    pub run_id: RunId,
    /// The task, for [`EventKind::Task`].
    pub task_id: Option<TaskId>,
    /// The new status.
    pub status: RunStatus,
    /// When the change happened.
    pub at: SystemTime,
    /// Free-form details (error text, output summary, ...).
    pub data: serde_json::Value,
}

impl Event {
    /// A run event stamped now, with `data` null.
    pub fn run(run_id: RunId, status: RunStatus) -> Self {
        Self {
            kind: EventKind::Run,
            run_id,
            task_id: None,
            status,
            at: SystemTime::now(),
            data: serde_json::Value::Null,
        }
    }
    /// A task event stamped now, with `data` null.
    pub fn task(run_id: RunId, task_id: TaskId, status: RunStatus) -> Self {
        Self {
            kind: EventKind::Task,
            run_id,
            task_id: Some(task_id),
            status,
            at: SystemTime::now(),
            data: serde_json::Value::Null,
        }
    }
    /// Sets `data`.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }
}

/// Which events a subscription receives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only this kind (any kind when `None`).
    pub kind: Option<EventKind>,
    /// Only this run (any run when `None`).
    pub run_id: Option<RunId>,
    /// First deliver the retained past events (oldest first), then live ones.
    pub replay: bool,
}

impl EventFilter {
    /// Every live event, no replay.
    pub fn all() -> Self {
        Self::default()
    }
    /// Only events of `run_id`.
    pub fn run(run_id: RunId) -> Self {
        Self {
            run_id: Some(run_id),
            ..Self::default()
        }
    }
    /// Only events of `kind`.
    pub fn kind(mut self, kind: EventKind) -> Self {
        self.kind = Some(kind);
        self
    }
    /// Replays retained events first.
    pub fn replay(mut self) -> Self {
        self.replay = true;
        self
    }
    /// Whether `event` passes this filter.
    pub fn matches(&self, event: &Event) -> bool {
        self.kind.is_none_or(|k| k == event.kind)
            && self.run_id.as_ref().is_none_or(|r| *r == event.run_id)
    }
}

/// Errors of an [`EventBus`].
#[derive(Debug, thiserror::Error)]
pub enum EventBusError {
    /// The configuration is unusable (e.g. a subject prefix with a `.` or `*`).
    #[error("invalid event bus request: {0}")]
    Invalid(String),
    /// The backend failed (connection lost, server restarting).
    #[error("{backend} event bus failed on {subject}: {source}")]
    Backend {
        /// Backend name (`nats`).
        backend: &'static str,
        /// The subject or stream the operation was about.
        subject: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
}

impl EventBusError {
    /// Whether the operation is worth repeating.
    pub fn retry(&self) -> Retry {
        match self {
            EventBusError::Invalid(_) => Retry::Never,
            EventBusError::Backend { .. } => Retry::After(Duration::from_millis(250)),
        }
    }
}

/// Publishes and streams run/task events. Object-safe: callers hold an `Arc<dyn EventBus>`.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes one event; returns once the bus has stored it (replayable from then on).
    async fn publish(&self, event: &Event) -> Result<(), EventBusError>;
    /// Streams the events that pass `filter`, in publish order.
    async fn subscribe(
        &self,
        filter: EventFilter,
    ) -> Result<BoxStream<'static, Event>, EventBusError>;
}

/// In-process [`EventBus`] (embedded mode): a tokio broadcast channel plus a bounded history for replay.
///
/// A subscriber that falls more than the channel capacity behind loses the oldest events it missed
/// (logged as a warning); the history keeps the newest `history` events.
#[derive(Clone)]
pub struct MemoryEventBus {
    inner: Arc<MemoryInner>,
}

struct MemoryInner {
    sender: broadcast::Sender<Event>,
    history: parking_lot::Mutex<VecDeque<Event>>,
    capacity: usize,
}

impl Default for MemoryEventBus {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl MemoryEventBus {
    /// A bus that retains the newest `history` events for replay (and buffers as many per subscriber).
    pub fn new(history: usize) -> Self {
        let capacity = history.max(1);
        let (sender, _) = broadcast::channel(capacity);
        Self {
            inner: Arc::new(MemoryInner {
                sender,
                history: parking_lot::Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
                capacity,
            }),
        }
    }
}

#[async_trait]
impl EventBus for MemoryEventBus {
    async fn publish(&self, event: &Event) -> Result<(), EventBusError> {
        // Store and send under one lock so a concurrent replaying subscriber sees each event once.
        let mut history = self.inner.history.lock();
        if history.len() == self.inner.capacity {
            history.pop_front();
        }
        history.push_back(event.clone());
        // No receiver is not an error: nobody is listening right now.
        let _ = self.inner.sender.send(event.clone());
        Ok(())
    }

    async fn subscribe(
        &self,
        filter: EventFilter,
    ) -> Result<BoxStream<'static, Event>, EventBusError> {
        let (past, receiver) = {
            let history = self.inner.history.lock();
            let past: Vec<Event> = if filter.replay {
                history
                    .iter()
                    .filter(|e| filter.matches(e))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            (past, self.inner.sender.subscribe())
        };
        let live = stream::unfold((receiver, filter), |(mut rx, filter)| async move {
            loop {
                match rx.recv().await {
                    Ok(event) if filter.matches(&event) => return Some((event, (rx, filter))),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "event subscriber lagged; oldest events dropped");
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
    async fn replay_then_live_without_gap_and_filtered() {
        let bus: Arc<dyn EventBus> = Arc::new(MemoryEventBus::new(16));
        let run = RunId::new("r1");
        bus.publish(&Event::run(run.clone(), RunStatus::Running))
            .await
            .unwrap();
        bus.publish(&Event::run(RunId::new("other"), RunStatus::Running))
            .await
            .unwrap();
        let mut sub = bus
            .subscribe(EventFilter::run(run.clone()).replay())
            .await
            .unwrap();
        let mut live_only = bus.subscribe(EventFilter::all()).await.unwrap();
        bus.publish(&Event::task(
            run.clone(),
            TaskId::new("t"),
            RunStatus::Succeeded,
        ))
        .await
        .unwrap();
        let first = sub.next().await.unwrap();
        assert_eq!(
            (first.kind, first.status),
            (EventKind::Run, RunStatus::Running)
        );
        let second = sub.next().await.unwrap();
        assert_eq!(second.task_id, Some(TaskId::new("t")));
        let live = live_only.next().await.unwrap();
        assert_eq!(
            live.kind,
            EventKind::Task,
            "a non-replaying subscriber sees only new events"
        );
    }

    #[tokio::test]
    async fn history_is_bounded() {
        let bus = MemoryEventBus::new(2);
        for i in 0..5 {
            bus.publish(&Event::run(RunId::new(format!("r{i}")), RunStatus::Pending))
                .await
                .unwrap();
        }
        let sub = bus.subscribe(EventFilter::all().replay()).await.unwrap();
        let got: Vec<String> = sub.take(2).map(|e| e.run_id.to_string()).collect().await;
        assert_eq!(got, vec!["r3", "r4"]);
    }

    #[test]
    fn event_round_trips_through_json() {
        let e = Event::task(RunId::new("r"), TaskId::new("t"), RunStatus::Failed)
            .with_data(serde_json::json!({"error": "exit 1"}));
        let back: Event = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
