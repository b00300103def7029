//! Backends from config: [`open_queue`] and [`open_event_bus`] turn a spec into a trait object.

use crate::{MemoryEventBus, MemoryQueue};
use hybridgrid_core::spec::{EventBusSpec, QueueSpec, SecretUrl, SpecError};
use hybridgrid_core::{EventBus, Queue};
use std::sync::Arc;

#[allow(dead_code)] // used only by the backends whose features are off
fn feature_off(seam: &'static str, backend: &'static str) -> SpecError {
    SpecError::FeatureOff {
        seam,
        backend,
        krate: "hybridgrid-queue",
        feature: backend,
    }
}

/// Checks `url`'s scheme is one of `schemes`, naming `key` otherwise.
#[allow(dead_code)] // used only by the network backends
fn check_scheme(key: &str, url: &SecretUrl, schemes: &[&str]) -> Result<(), SpecError> {
    if schemes.contains(&url.scheme()) {
        Ok(())
    } else {
        Err(SpecError::invalid(
            key,
            format!("expected a {} URL, got {url}", schemes.join("/")),
        ))
    }
}

/// Opens the queue `spec` names (connecting to its server). Errors name the key (`queue.url`) and
/// never show a password.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), hybridgrid_core::SpecError> {
/// let spec: hybridgrid_core::QueueSpec = yaml_serde::from_str("backend: memory").unwrap();
/// let queue = hybridgrid_queue::open_queue(&spec).await?;
/// assert_eq!(queue.depths().await.unwrap().ready_total(), 0);
/// # Ok(())
/// # }
/// ```
pub async fn open_queue(spec: &QueueSpec) -> Result<Arc<dyn Queue>, SpecError> {
    match spec {
        QueueSpec::Memory => Ok(Arc::new(MemoryQueue::new())),
        #[cfg(feature = "redis")]
        QueueSpec::Redis { url, prefix } => {
            check_scheme("queue.url", url, &["redis", "rediss", "redis+unix", "unix"])?;
            redis::Client::open(url.expose())
                .map_err(|e| SpecError::invalid("queue.url", url.scrub(&e.to_string())))?;
            let queue = crate::RedisQueue::connect(url.expose(), prefix.clone())
                .await
                .map_err(|e| SpecError::open("queue", Some(url), e))?;
            Ok(Arc::new(queue))
        }
        #[cfg(not(feature = "redis"))]
        QueueSpec::Redis { .. } => Err(feature_off("queue", "redis")),
        #[cfg(feature = "nats")]
        QueueSpec::Nats { url, stream } => {
            check_nats(url, stream, "queue")?;
            let queue = crate::NatsQueue::connect(url.expose(), stream)
                .await
                .map_err(|e| SpecError::open("queue", Some(url), e))?;
            Ok(Arc::new(queue))
        }
        #[cfg(not(feature = "nats"))]
        QueueSpec::Nats { .. } => Err(feature_off("queue", "nats")),
    }
}

#[cfg(feature = "nats")]
fn check_nats(url: &SecretUrl, stream: &str, seam: &str) -> Result<(), SpecError> {
    let key = format!("{seam}.url");
    check_scheme(&key, url, &["nats", "tls", "ws", "wss"])?;
    url.expose()
        .parse::<async_nats::ServerAddr>()
        .map_err(|e| SpecError::invalid(&key, url.scrub(&e.to_string())))?;
    if !crate::nats::valid_name(stream) {
        return Err(SpecError::invalid(
            format!("{seam}.stream"),
            format!("{stream:?}: use 1-200 ASCII letters, digits, '_' or '-'"),
        ));
    }
    Ok(())
}

/// Opens the event bus `spec` names. Errors name the key (`event_bus.url`) and never show a
/// password.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), hybridgrid_core::SpecError> {
/// let spec: hybridgrid_core::EventBusSpec = yaml_serde::from_str("backend: memory").unwrap();
/// let bus = hybridgrid_queue::open_event_bus(&spec).await?;
/// bus.publish("runs.r1.status", "running".into()).await.unwrap();
/// # Ok(())
/// # }
/// ```
pub async fn open_event_bus(spec: &EventBusSpec) -> Result<Arc<dyn EventBus>, SpecError> {
    match spec {
        EventBusSpec::Memory { history } => {
            if *history == 0 {
                return Err(SpecError::invalid(
                    "event_bus.history",
                    "must be at least 1, got 0",
                ));
            }
            Ok(Arc::new(MemoryEventBus::new(*history)))
        }
        #[cfg(feature = "nats")]
        EventBusSpec::Nats {
            url,
            stream,
            subjects,
            max_age,
        } => {
            check_nats(url, stream, "event_bus")?;
            let subjects = subjects
                .clone()
                .unwrap_or_else(|| vec![format!("{stream}.>")]);
            for s in &subjects {
                hybridgrid_core::check_pattern(s)
                    .map_err(|e| SpecError::invalid("event_bus.subjects", e.to_string()))?;
            }
            let mut config = crate::NatsEventBusConfig::default();
            if let Some(age) = max_age {
                config.max_age = **age;
            }
            let bus = crate::NatsEventBus::connect_with(url.expose(), stream, subjects, config)
                .await
                .map_err(|e| SpecError::open("event_bus", Some(url), e))?;
            Ok(Arc::new(bus))
        }
        #[cfg(not(feature = "nats"))]
        EventBusSpec::Nats { .. } => Err(feature_off("event bus", "nats")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Built without a backend's feature (`cargo test -p hybridgrid-queue --lib`), its spec is
    /// refused naming the feature.
    #[tokio::test]
    async fn a_backend_whose_feature_is_off_is_named() {
        let url = || SecretUrl::new("nats://127.0.0.1:4222").unwrap();
        let specs: Vec<(QueueSpec, &str, bool)> = vec![
            (
                QueueSpec::Redis {
                    url: SecretUrl::new("redis://127.0.0.1:6379").unwrap(),
                    prefix: "x".into(),
                },
                "queue backend \"redis\" needs hybridgrid-queue's feature \"redis\"",
                cfg!(feature = "redis"),
            ),
            (
                QueueSpec::Nats {
                    url: url(),
                    stream: "x".into(),
                },
                "queue backend \"nats\" needs hybridgrid-queue's feature \"nats\"",
                cfg!(feature = "nats"),
            ),
        ];
        for (spec, message, on) in specs {
            if !on {
                let err = open_queue(&spec).await.err().unwrap();
                assert_eq!(err.to_string(), message);
            }
        }
        if !cfg!(feature = "nats") {
            let spec = EventBusSpec::Nats {
                url: url(),
                stream: "x".into(),
                subjects: None,
                max_age: None,
            };
            let err = open_event_bus(&spec).await.err().unwrap();
            assert!(err.to_string().contains("feature \"nats\""), "{err}");
        }
    }
}
