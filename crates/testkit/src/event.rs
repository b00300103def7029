//! Conformance suite for [`EventBus`] backends.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use hybridgrid_core::EventBus;
//! # async fn demo(make_backend: impl Fn(&str) -> Arc<dyn EventBus>) {
//! // `make` gets a fresh subject root per check and returns a bus that carries `ROOT.>`.
//! hybridgrid_testkit::event::run_event_bus_suite(|root| {
//!     let bus = make_backend(&root);
//!     async move { bus }
//! })
//! .await;
//! # }
//! ```
//!
//! Every check waits at most 10 s for each message, so a backend that drops one fails rather than
//! hangs.

use crate::check;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use hybridgrid_core::{BusMessage, EventBus, EventBusError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

type Sub = BoxStream<'static, Result<BusMessage, EventBusError>>;
type CheckResult = Result<(), String>;

const WAIT: Duration = Duration::from_secs(10);

/// Runs every event bus check, each on a bus from `make(root)` for a fresh subject token `root`
/// (the bus must accept every subject under `root.>`); panics listing each failure.
pub async fn run_event_bus_suite<F, Fut>(make: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Arc<dyn EventBus>>,
{
    let mut failed = Vec::new();
    macro_rules! run {
        ($name:literal, $f:ident) => {{
            let root = crate::unique_prefix("ev");
            let bus = make(root.clone()).await;
            check(&mut failed, $name, $f(bus, root)).await;
        }};
    }
    run!("star_matches_one_token", star_wildcard);
    run!("tail_matches_one_or_more_tokens", tail_wildcard);
    run!(
        "replay_then_live_without_gap_or_duplicate",
        replay_then_live
    );
    run!("no_replay_sees_only_new_messages", live_only);
    run!("order_kept_per_publisher", order_per_publisher);
    run!("invalid_subject_rejected", invalid_subjects);
    run!("two_subscribers_each_get_everything", two_subscribers);
    assert!(
        failed.is_empty(),
        "EventBus conformance failures:\n{}",
        failed.join("\n")
    );
}

async fn next(sub: &mut Sub, what: &str) -> Result<BusMessage, String> {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Err(_) => Err(format!("no message within {WAIT:?} (waiting for {what})")),
        Ok(None) => Err(format!("stream ended (waiting for {what})")),
        Ok(Some(Err(e))) => Err(format!("stream error {e} (waiting for {what})")),
        Ok(Some(Ok(m))) => Ok(m),
    }
}

/// Reads messages until `want` subjects were seen in order, failing on anything else.
async fn expect_subjects(sub: &mut Sub, want: &[String]) -> CheckResult {
    for w in want {
        let m = next(sub, w).await?;
        if &m.subject != w {
            return Err(format!("expected {w}, got {} (seq {})", m.subject, m.seq));
        }
    }
    Ok(())
}

async fn publish(bus: &dyn EventBus, subject: &str, payload: impl Into<Bytes>) -> CheckResult {
    bus.publish(subject, payload.into())
        .await
        .map_err(|e| format!("publish {subject}: {e}"))
}

async fn subscribe(bus: &dyn EventBus, pattern: &str, replay: bool) -> Result<Sub, String> {
    bus.subscribe(pattern, replay)
        .await
        .map_err(|e| format!("subscribe {pattern} (replay {replay}): {e}"))
}

/// Publishes non-matching and matching subjects, then a matching sentinel: a live subscriber (there
/// before) and a replaying one (there after) each get exactly the matching ones, then the sentinel.
async fn filtered(
    bus: Arc<dyn EventBus>,
    pattern: String,
    publish_all: Vec<String>,
    want: Vec<String>,
    sentinel: String,
) -> CheckResult {
    let mut live = subscribe(&*bus, &pattern, false).await?;
    for s in &publish_all {
        publish(&*bus, s, s.clone()).await?;
    }
    publish(&*bus, &sentinel, "sentinel").await?;
    let mut replayed = subscribe(&*bus, &pattern, true).await?;
    let mut expected = want;
    expected.push(sentinel);
    expect_subjects(&mut live, &expected)
        .await
        .map_err(|e| format!("pattern {pattern}, live: {e}"))?;
    expect_subjects(&mut replayed, &expected)
        .await
        .map_err(|e| format!("pattern {pattern}, replayed: {e}"))
}

async fn star_wildcard(bus: Arc<dyn EventBus>, root: String) -> CheckResult {
    let s = |t: &str| format!("{root}.{t}");
    filtered(
        bus,
        s("*.x"),
        vec![s("a.x"), s("b.y"), s("b.x"), s("a.x.z"), s("x"), s("c.x")],
        vec![s("a.x"), s("b.x"), s("c.x")],
        s("end.x"),
    )
    .await
}

async fn tail_wildcard(bus: Arc<dyn EventBus>, root: String) -> CheckResult {
    let s = |t: &str| format!("{root}.{t}");
    filtered(
        bus,
        s("a.>"),
        vec![
            s("a"),
            s("a.x"),
            s("b.x"),
            s("a.x.y.z"),
            s("ab.x"),
            s("a.y"),
        ],
        vec![s("a.x"), s("a.x.y.z"), s("a.y")],
        s("a.end"),
    )
    .await
}

/// 50 messages before subscribing, 50 more published concurrently with the subscribe call: a
/// replaying subscriber sees all 100 once, in order, payloads intact.
async fn replay_then_live(bus: Arc<dyn EventBus>, root: String) -> CheckResult {
    let subject = format!("{root}.seq");
    let payload = |i: usize| -> Bytes {
        if i == 7 {
            Bytes::new() // an empty payload is a message too
        } else {
            Bytes::from(format!("m{i}:{}", "x".repeat(i * 10)))
        }
    };
    for i in 0..50 {
        publish(&*bus, &subject, payload(i)).await?;
    }
    let publisher = {
        let bus = bus.clone();
        let subject = subject.clone();
        tokio::spawn(async move {
            for i in 50..100 {
                bus.publish(&subject, payload(i))
                    .await
                    .map_err(|e| format!("publish #{i}: {e}"))?;
            }
            Ok::<(), String>(())
        })
    };
    let mut sub = subscribe(&*bus, &format!("{root}.>"), true).await?;
    let mut last_seq = 0;
    for i in 0..100 {
        let m = next(&mut sub, &format!("message #{i}")).await?;
        if m.payload != payload(i) || m.subject != subject {
            return Err(format!(
                "message #{i}: expected {:?} on {subject}, got {:?} on {}",
                payload(i),
                m.payload,
                m.subject
            ));
        }
        if m.seq != 0 && m.seq <= last_seq {
            return Err(format!("seq went from {last_seq} to {}", m.seq));
        }
        last_seq = m.seq;
    }
    publisher
        .await
        .map_err(|e| format!("publisher task: {e}"))??;
    publish(&*bus, &format!("{root}.end"), "end").await?;
    expect_subjects(&mut sub, &[format!("{root}.end")])
        .await
        .map_err(|e| format!("after the 100 (a duplicate?): {e}"))
}

async fn live_only(bus: Arc<dyn EventBus>, root: String) -> CheckResult {
    for i in 0..3 {
        publish(&*bus, &format!("{root}.old.{i}"), "old").await?;
    }
    let mut sub = subscribe(&*bus, &format!("{root}.>"), false).await?;
    publish(&*bus, &format!("{root}.new"), "new").await?;
    expect_subjects(&mut sub, &[format!("{root}.new")]).await
}

async fn order_per_publisher(bus: Arc<dyn EventBus>, root: String) -> CheckResult {
    const N: usize = 100;
    let mut sub = subscribe(&*bus, &format!("{root}.*"), false).await?;
    let mut tasks = Vec::new();
    for p in ["p1", "p2", "p3"] {
        let bus = bus.clone();
        let subject = format!("{root}.{p}");
        tasks.push(tokio::spawn(async move {
            for i in 0..N {
                bus.publish(&subject, Bytes::from(i.to_string()))
                    .await
                    .map_err(|e| format!("publish {subject} #{i}: {e}"))?;
            }
            Ok::<(), String>(())
        }));
    }
    let mut next_of = std::collections::HashMap::<String, usize>::new();
    for _ in 0..3 * N {
        let m = next(&mut sub, "the publishers' messages").await?;
        let got: usize = std::str::from_utf8(&m.payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("payload {:?} is not a number", m.payload))?;
        let want = next_of.entry(m.subject.clone()).or_default();
        if got != *want {
            return Err(format!(
                "{}: expected message #{want}, got #{got}",
                m.subject
            ));
        }
        *want += 1;
    }
    for t in tasks {
        t.await.map_err(|e| format!("publisher task: {e}"))??;
    }
    Ok(())
}

async fn invalid_subjects(bus: Arc<dyn EventBus>, root: String) -> CheckResult {
    let bad_subjects = [
        String::new(),
        format!("{root}..x"),
        format!("{root}.x."),
        format!("{root}.*"),
        format!("{root}.>"),
        format!("{root}.a b"),
    ];
    for s in &bad_subjects {
        match bus.publish(s, Bytes::from_static(b"x")).await {
            Err(e @ EventBusError::InvalidSubject { .. }) if !e.retry().is_retryable() => {}
            other => {
                return Err(format!(
                    "publish {s:?}: expected a permanent InvalidSubject, got {other:?}"
                ));
            }
        }
    }
    for p in [String::new(), format!("{root}.>.x"), format!("{root}..x")] {
        match bus.subscribe(&p, true).await {
            Err(EventBusError::InvalidSubject { .. }) => {}
            Err(e) => return Err(format!("subscribe {p:?}: expected InvalidSubject, got {e}")),
            Ok(_) => return Err(format!("subscribe {p:?}: accepted")),
        }
    }
    Ok(())
}

async fn two_subscribers(bus: Arc<dyn EventBus>, root: String) -> CheckResult {
    let pattern = format!("{root}.>");
    let mut a = subscribe(&*bus, &pattern, false).await?;
    let mut b = subscribe(&*bus, &pattern, false).await?;
    let want: Vec<String> = (0..20).map(|i| format!("{root}.m.{i}")).collect();
    for s in &want {
        publish(&*bus, s, "x").await?;
    }
    expect_subjects(&mut a, &want)
        .await
        .map_err(|e| format!("first subscriber: {e}"))?;
    expect_subjects(&mut b, &want)
        .await
        .map_err(|e| format!("second subscriber: {e}"))
}
