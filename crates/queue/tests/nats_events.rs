//! `NatsEventBus` against the real NATS JetStream server (127.0.0.1:4222, or `HG_TEST_NATS_URL`),
//! and the same checks on `MemoryEventBus`, so both honour one contract.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use futures::{FutureExt, StreamExt};
use hybridgrid_core::{RunId, RunStatus, TaskId};
use hybridgrid_queue::{Event, EventBus, EventFilter, EventKind, MemoryEventBus, NatsEventBus};
use hybridgrid_testkit::{service_url, unique_prefix};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

async fn next(sub: &mut futures::stream::BoxStream<'static, Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("event within 5 s")
        .expect("stream open")
}

/// Late replaying subscribers see the past in order then live events; filters by run and kind work;
/// a non-replaying subscriber sees only what is published after it subscribed.
async fn bus_contract(bus: Arc<dyn EventBus>) {
    let run = RunId::random();
    let other = RunId::random();
    bus.publish(&Event::run(run.clone(), RunStatus::Running))
        .await
        .unwrap();
    bus.publish(&Event::run(other.clone(), RunStatus::Running))
        .await
        .unwrap();
    bus.publish(
        &Event::task(run.clone(), TaskId::new("compile"), RunStatus::Failed)
            .with_data(serde_json::json!({"exit": 1})),
    )
    .await
    .unwrap();

    let mut late = bus
        .subscribe(EventFilter::run(run.clone()).replay())
        .await
        .unwrap();
    let mut tasks_only = bus
        .subscribe(EventFilter::all().kind(EventKind::Task).replay())
        .await
        .unwrap();
    let mut live = bus.subscribe(EventFilter::all()).await.unwrap();

    let e = next(&mut late).await;
    assert_eq!((e.kind, e.status), (EventKind::Run, RunStatus::Running));
    let e = next(&mut late).await;
    assert_eq!(e.task_id, Some(TaskId::new("compile")));
    assert_eq!(e.data, serde_json::json!({"exit": 1}));
    assert_eq!(next(&mut tasks_only).await.run_id, run);

    bus.publish(&Event::run(run.clone(), RunStatus::Succeeded))
        .await
        .unwrap();
    let e = next(&mut late).await;
    assert_eq!(
        (e.run_id.clone(), e.status),
        (run.clone(), RunStatus::Succeeded)
    );
    let e = next(&mut live).await;
    assert_eq!(
        (e.run_id, e.status),
        (run.clone(), RunStatus::Succeeded),
        "a live subscriber starts after the past"
    );
    bus.publish(&Event::task(
        other.clone(),
        TaskId::new("t2"),
        RunStatus::Running,
    ))
    .await
    .unwrap();
    let e = next(&mut tasks_only).await;
    assert_eq!((e.run_id, e.task_id), (other, Some(TaskId::new("t2"))));
}

#[tokio::test]
async fn nats_event_bus_honours_the_contract() {
    let url = service_url("HG_TEST_NATS_URL", "nats://127.0.0.1:4222");
    let bus = NatsEventBus::connect(&url, &unique_prefix("natsev"))
        .await
        .expect("NATS JetStream must be running on 127.0.0.1:4222");
    let outcome = AssertUnwindSafe(bus_contract(Arc::new(bus.clone())))
        .catch_unwind()
        .await;
    bus.destroy().await.unwrap(); // pass or fail, leave no stream behind
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn memory_event_bus_honours_the_contract() {
    bus_contract(Arc::new(MemoryEventBus::default())).await;
}

#[tokio::test]
async fn bad_prefix_is_refused() {
    let url = service_url("HG_TEST_NATS_URL", "nats://127.0.0.1:4222");
    let err = NatsEventBus::connect(&url, "a.b").await.err().unwrap();
    assert!(!err.retry().is_retryable(), "{err}");
}
