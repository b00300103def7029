//! Opening the store and the event bus from `DATABASE_URL` and `NATS_URL`.
//!
//! `DATABASE_URL`: `sqlite://path` (also `sqlite:path` or a bare path; `sqlite::memory:` for a
//! throw-away store) opens a SQLite file; `postgres://` or `postgresql://` connects to PostgreSQL
//! (`?schema=NAME` confines the store to a schema). Migrations are applied as the store opens.
//! `NATS_URL` empty: the in-process bus; else a NATS JetStream stream carrying `events.subjects`.

use hybridgrid_core::spec::{SecretUrl, redact};
use hybridgrid_core::{EventBus, Store};
use hybridgrid_queue::{MemoryEventBus, NatsEventBus};
use hybridgrid_store::{PoolOptions, PostgresStore, SqliteStore};
use std::sync::Arc;
use std::time::Duration;

/// Why a backend could not be opened; the text names the (redacted) URL.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The store did not open.
    #[error("opening the database {url}: {message}")]
    Store {
        /// The redacted URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The bus did not open.
    #[error("connecting to NATS at {url}: {message}")]
    Bus {
        /// The redacted URL.
        url: String,
        /// Why.
        message: String,
    },
}

/// `text` with the secrets of `url` replaced by `***`.
pub(crate) fn scrub(url: &str, text: &str) -> String {
    match SecretUrl::new(url) {
        Ok(s) => s.scrub(text),
        Err(_) => text.to_owned(),
    }
}

/// Which store backend a URL names.
pub(crate) fn store_kind(url: &str) -> &'static str {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        "postgres"
    } else {
        "sqlite"
    }
}

fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

/// Opens the store `url` names (migrations applied).
pub(crate) async fn open_store(url: &str) -> Result<Arc<dyn Store>, BackendError> {
    let err = |e: &dyn std::fmt::Display| BackendError::Store {
        url: redact(url),
        message: scrub(url, &e.to_string()),
    };
    if store_kind(url) == "postgres" {
        let (base, schema) = match url.split_once('?') {
            Some((b, q)) => {
                let mut schema = None;
                let mut rest = Vec::new();
                for kv in q.split('&') {
                    match kv.strip_prefix("schema=") {
                        Some(s) => schema = Some(s.to_owned()),
                        None => rest.push(kv),
                    }
                }
                let base = if rest.is_empty() {
                    b.to_owned()
                } else {
                    format!("{b}?{}", rest.join("&"))
                };
                (base, schema)
            }
            None => (url.to_owned(), None),
        };
        let s = PostgresStore::connect(&base, schema.as_deref(), PoolOptions::default())
            .await
            .map_err(|e| err(&e))?;
        return Ok(Arc::new(s));
    }
    let path = sqlite_path(url);
    let s = if path == ":memory:" {
        SqliteStore::in_memory().await
    } else {
        if let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| err(&e))?;
        }
        SqliteStore::open(path).await
    }
    .map_err(|e| err(&e))?;
    Ok(Arc::new(s))
}

/// The event bus and how to check it.
#[derive(Clone)]
pub(crate) enum Bus {
    Memory(Arc<MemoryEventBus>),
    Nats { bus: Arc<NatsEventBus>, url: String },
}

impl Bus {
    pub(crate) fn dyn_bus(&self) -> Arc<dyn EventBus> {
        match self {
            Bus::Memory(b) => b.clone(),
            Bus::Nats { bus, .. } => bus.clone(),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Bus::Memory(_) => "in-process",
            Bus::Nats { .. } => "nats",
        }
    }

    /// Whether the bus answers: always for the in-process bus; for NATS, the server's `INFO`
    /// greeting on a fresh connection.
    pub(crate) async fn check(&self) -> Result<(), String> {
        match self {
            Bus::Memory(_) => Ok(()),
            Bus::Nats { url, .. } => nats_ping(url).await,
        }
    }
}

/// Connects to the NATS server at `url` and reads its `INFO` line (bounded to 3 s).
pub(crate) async fn nats_ping(url: &str) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let first = url.split(',').next().unwrap_or(url).trim();
    let hostport = first
        .strip_prefix("nats://")
        .or_else(|| first.strip_prefix("tls://"))
        .unwrap_or(first);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let hostport = hostport.trim_end_matches('/');
    let addr = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:4222")
    };
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf)
            .await
            .map_err(|e| format!("no greeting from {addr}: {e}"))?;
        if &buf == b"INFO " {
            Ok(())
        } else {
            Err(format!("{addr} did not greet like a NATS server"))
        }
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .map_err(|_| format!("{addr} did not answer within 3 s"))?
}

/// Opens the bus: in process when `url` is empty, else NATS JetStream stream `stream`.
pub(crate) async fn open_bus(
    url: &str,
    stream: &str,
    subjects: &[String],
) -> Result<Bus, BackendError> {
    if url.trim().is_empty() {
        return Ok(Bus::Memory(Arc::new(MemoryEventBus::new(10_000))));
    }
    let bus = NatsEventBus::connect(url, stream, subjects.iter().cloned())
        .await
        .map_err(|e| BackendError::Bus {
            url: redact(url),
            message: scrub(url, &e.to_string()),
        })?;
    Ok(Bus::Nats {
        bus: Arc::new(bus),
        url: url.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(store_kind("postgres://u@h/db"), "postgres");
        assert_eq!(store_kind("postgresql://u@h/db"), "postgres");
        assert_eq!(store_kind("sqlite://x.db"), "sqlite");
        assert_eq!(sqlite_path("sqlite://a/b.db"), "a/b.db");
        assert_eq!(sqlite_path("sqlite:b.db"), "b.db");
        assert_eq!(sqlite_path("/x/b.db"), "/x/b.db");
    }
}
