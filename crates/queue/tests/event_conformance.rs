//! `MemoryEventBus` and `NatsEventBus` (real NATS JetStream on 127.0.0.1:4222, or
//! `HG_TEST_NATS_URL`) pass the one EventBus conformance suite.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use futures::FutureExt;
use hybridgrid_core::{EventBus, EventBusError};
use hybridgrid_queue::{MemoryEventBus, NatsEventBus};
use hybridgrid_testkit::{event::run_event_bus_suite, service_url, unique_prefix};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

fn nats_url() -> String {
    service_url("HG_TEST_NATS_URL", "nats://127.0.0.1:4222")
}

#[tokio::test]
async fn memory_event_bus_conforms() {
    run_event_bus_suite(|_root| async { Arc::new(MemoryEventBus::default()) as Arc<dyn EventBus> })
        .await;
}

#[tokio::test]
async fn nats_event_bus_conforms() {
    let created = Arc::new(parking_lot::Mutex::new(Vec::<NatsEventBus>::new()));
    let outcome = AssertUnwindSafe(run_event_bus_suite(|root| {
        let created = created.clone();
        async move {
            let bus = NatsEventBus::connect(&nats_url(), &root, [format!("{root}.>")])
                .await
                .expect("NATS JetStream must be running on 127.0.0.1:4222");
            created.lock().push(bus.clone());
            Arc::new(bus) as Arc<dyn EventBus>
        }
    }))
    .catch_unwind()
    .await;
    let buses: Vec<NatsEventBus> = created.lock().drain(..).collect();
    for bus in buses {
        bus.destroy().await.unwrap(); // pass or fail, leave no stream behind
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn nats_refuses_subjects_outside_its_stream_and_bad_names() {
    let name = unique_prefix("evout");
    let bus = NatsEventBus::connect(&nats_url(), &name, [format!("{name}.>")])
        .await
        .unwrap();
    let err = bus
        .publish("elsewhere.x", bytes::Bytes::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, EventBusError::InvalidSubject { .. }) && err.to_string().contains(&name),
        "{err}"
    );
    assert!(bus.subscribe("elsewhere.>", false).await.is_err());
    bus.destroy().await.unwrap();

    let err = NatsEventBus::connect(&nats_url(), "a.b", ["a.>"])
        .await
        .err()
        .unwrap();
    assert!(!err.retry().is_retryable(), "{err}");
}

#[tokio::test]
async fn nats_connect_errors_hide_passwords() {
    let err = NatsEventBus::connect("nats://user:hunter2@127.0.0.1:1", "s", ["s.>"])
        .await
        .err()
        .unwrap();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
}
