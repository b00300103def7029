//! `KeyedBreaker` logs its transitions with the documented messages and fields.
//! (Its own test binary: tracing caches callsite interest process-wide, so a scoped subscriber
//! must be the first to see these callsites.)

#![allow(clippy::unwrap_used)]

use hybridgrid_core::clock::{Clock, ManualClock};
use hybridgrid_core::{CircuitBreaker, Outcome};
use hybridgrid_scheduler::{BreakerConfig, KeyedBreaker};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One captured event: level, message and the other fields as `name=value`.
#[derive(Debug, Default)]
struct Captured {
    level: String,
    message: String,
    fields: Vec<String>,
}

impl Visit for Captured {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push(format!("{}={value:?}", field.name()));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields.push(format!("{}={value}", field.name()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.push(format!("{}={value}", field.name()));
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut c = Captured {
            level: event.metadata().level().to_string(),
            ..Default::default()
        };
        event.record(&mut c);
        self.0.lock().unwrap().push(c);
    }
}

#[test]
fn transitions_are_logged_with_worker_rate_and_reason() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::with_default(subscriber, || {
        let clock = ManualClock::new();
        let b = KeyedBreaker::new(
            BreakerConfig::default(),
            Arc::new(clock.clone()) as Arc<dyn Clock>,
        )
        .unwrap();
        for _ in 0..5 {
            b.record("w7", Outcome::Failure);
        }
        clock.advance(Duration::from_secs(30));
        b.try_acquire("w7").unwrap();
        b.record("w7", Outcome::Success);
        b.trip("w7", "output_mismatch");
    });
    let events = capture.0.lock().unwrap();
    let lines: Vec<String> = events
        .iter()
        .map(|e| format!("{} {} {}", e.level, e.message, e.fields.join(" ")))
        .collect();
    assert_eq!(
        lines,
        [
            "WARN circuit opened worker=w7 failure_rate=1 reason=failure_rate",
            "INFO circuit half-open worker=w7",
            "INFO circuit closed worker=w7",
            "WARN circuit opened worker=w7 failure_rate=0 reason=output_mismatch",
        ]
    );
}
