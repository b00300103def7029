//! Queues and event buses chosen by YAML specs, each exercised against its real server (Redis on
//! 127.0.0.1:6379, NATS JetStream on 127.0.0.1:4222, or `HG_TEST_REDIS_URL` / `HG_TEST_NATS_URL`);
//! bad specs are one-line errors naming the key and hiding passwords.

#![cfg(all(feature = "redis", feature = "nats"))]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use bytes::Bytes;
use futures::StreamExt;
use hybridgrid_core::{EventBusSpec, NewWork, Queue, QueueSpec, SpecError, WorkerId};
use hybridgrid_queue::{NatsQueue, open_event_bus, open_queue};
use hybridgrid_testkit::redis::RedisPrefix;
use hybridgrid_testkit::{service_url, unique_prefix};
use std::sync::Arc;
use std::time::Duration;

fn redis_url() -> String {
    service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}
fn nats_url() -> String {
    service_url("HG_TEST_NATS_URL", "nats://127.0.0.1:4222")
}

fn queue_spec(yaml: &str) -> QueueSpec {
    yaml_serde::from_str(yaml).unwrap()
}

async fn round_trip(queue: Arc<dyn Queue>) {
    queue
        .enqueue(NewWork::new(&b"from config"[..]))
        .await
        .unwrap();
    let claim = queue
        .claim(
            &WorkerId::new("w"),
            Duration::from_secs(30),
            Duration::from_secs(5),
        )
        .await
        .unwrap()
        .expect("the enqueued item");
    assert_eq!(&claim.payload[..], b"from config");
    queue.ack(&claim.token).await.unwrap();
}

#[tokio::test]
async fn yaml_picks_the_memory_queue() {
    round_trip(open_queue(&queue_spec("backend: memory")).await.unwrap()).await;
}

#[tokio::test]
async fn yaml_picks_the_redis_queue() {
    let prefix = RedisPrefix::new(&redis_url(), "cfgq");
    let spec = queue_spec(&format!(
        "{{ backend: redis, url: \"{}\", prefix: \"{}\" }}",
        redis_url(),
        prefix.prefix()
    ));
    round_trip(open_queue(&spec).await.unwrap()).await;
    assert!(
        prefix.key_count().await > 0,
        "the queue wrote under its prefix"
    );
    prefix.cleanup().await;
}

#[tokio::test]
async fn yaml_picks_the_nats_queue() {
    let stream = unique_prefix("cfgq");
    let spec = queue_spec(&format!(
        "{{ backend: nats, url: \"{}\", stream: {stream} }}",
        nats_url()
    ));
    round_trip(open_queue(&spec).await.unwrap()).await;
    NatsQueue::connect(&nats_url(), &stream)
        .await
        .unwrap()
        .destroy()
        .await
        .unwrap();
}

#[tokio::test]
async fn yaml_picks_each_event_bus() {
    let stream = unique_prefix("cfgev");
    for yaml in [
        "backend: memory".to_owned(),
        format!(
            "{{ backend: nats, url: \"{}\", stream: {stream}, max_age: 1h }}",
            nats_url()
        ),
    ] {
        let spec: EventBusSpec = yaml_serde::from_str(&yaml).unwrap();
        let bus = open_event_bus(&spec).await.unwrap();
        let subject = format!("{stream}.run.status");
        bus.publish(&subject, Bytes::from_static(b"up"))
            .await
            .unwrap();
        let mut sub = bus.subscribe(&format!("{stream}.>"), true).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("replayed within 5 s")
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.subject.as_str(), &m.payload[..]),
            (subject.as_str(), &b"up"[..]),
            "{yaml}"
        );
    }
    hybridgrid_queue::NatsEventBus::connect(&nats_url(), &stream, [format!("{stream}.>")])
        .await
        .unwrap()
        .destroy()
        .await
        .unwrap();
}

fn one_line(err: &SpecError, key: &str) {
    let text = err.to_string();
    eprintln!("{text}");
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(text.contains(key), "{text} should name {key}");
    assert!(
        !text.contains("hunter2") && !format!("{err:?}").contains("hunter2"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_specs_name_the_key_and_hide_the_password() {
    // Wrong scheme.
    let err = open_queue(&queue_spec(
        "{ backend: redis, url: \"http://:hunter2@127.0.0.1:6379\", prefix: p }",
    ))
    .await
    .err()
    .unwrap();
    one_line(&err, "queue.url");
    // Nobody listening: an open error, retryable, naming the spec and not the password.
    let err = open_queue(&queue_spec(
        "{ backend: redis, url: \"redis://:hunter2@127.0.0.1:1\", prefix: p }",
    ))
    .await
    .err()
    .unwrap();
    one_line(&err, "queue");
    assert!(err.retry().is_retryable(), "{err}");
    let err = open_queue(&queue_spec(
        "{ backend: nats, url: \"nats://u:hunter2@127.0.0.1:4222\", stream: \"a.b\" }",
    ))
    .await
    .err()
    .unwrap();
    one_line(&err, "queue.stream");
    let err = open_queue(&queue_spec(
        "{ backend: nats, url: \"nats://u:hunter2@127.0.0.1:1\", stream: ok }",
    ))
    .await
    .err()
    .unwrap();
    one_line(&err, "queue");
    let spec: EventBusSpec =
        yaml_serde::from_str("{ backend: nats, url: \"redis://h\", stream: s }").unwrap();
    one_line(&open_event_bus(&spec).await.err().unwrap(), "event_bus.url");
    let spec: EventBusSpec = yaml_serde::from_str(
        "{ backend: nats, url: \"nats://127.0.0.1:4222\", stream: s, subjects: [\"a..b\"] }",
    )
    .unwrap();
    one_line(
        &open_event_bus(&spec).await.err().unwrap(),
        "event_bus.subjects",
    );
}
