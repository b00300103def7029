//! Backends chosen from config: one serde spec enum per seam, opened by the backend crates.
//!
//! Each spec is internally tagged by `backend` and refuses unknown keys. The backend crates turn a
//! spec into a trait object with one call: `hybridgrid_queue::open_queue(&QueueSpec)`,
//! `hybridgrid_queue::open_event_bus(&EventBusSpec)`, `hybridgrid_store::open_store(&StoreSpec)`,
//! `hybridgrid_cache::open_cache(&CacheSpec)`. A backend whose cargo feature is off is a
//! [`SpecError::FeatureOff`] naming the feature; a bad value is a [`SpecError::Invalid`] naming the
//! key. URLs are [`SecretUrl`]s: their `Debug` and `Display` hide passwords and tokens, and so do
//! the errors that mention them.
//!
//! ```
//! use hybridgrid_core::spec::{CacheSpec, QueueSpec};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Config { queue: QueueSpec, cache: CacheSpec }
//!
//! let cfg: Config = yaml_serde::from_str(r#"
//! queue:
//!   backend: redis
//!   url: redis://:s3cret@127.0.0.1:6379
//!   prefix: "ci:"
//! cache:
//!   backend: tiered
//!   local: { backend: disk, dir: /var/cache/hg, max_size: 10GB }
//!   shared: { backend: redis, url: "redis://127.0.0.1:6379", ttl: 7d }
//! "#).unwrap();
//! let QueueSpec::Redis { url, .. } = &cfg.queue else { panic!() };
//! assert_eq!(url.to_string(), "redis://:***@127.0.0.1:6379");
//! assert_eq!(cfg.cache.backend(), "tiered");
//! ```

use crate::config::HumanDuration;
use crate::{BoxError, Retry};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

mod values;
pub use values::{ByteSize, Secret, SecretUrl, redact};

/// Why a spec could not be opened. Messages name the key (`queue.url`) and never a secret.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The spec names a backend this build was compiled without.
    #[error("{seam} backend \"{backend}\" needs {krate}'s feature \"{feature}\"")]
    FeatureOff {
        /// `queue`, `store`, `cache` or `event bus`.
        seam: &'static str,
        /// The backend named by the spec.
        backend: &'static str,
        /// The crate that has the feature (`hybridgrid-queue`).
        krate: &'static str,
        /// The cargo feature to turn on.
        feature: &'static str,
    },
    /// A value is unusable (a URL that does not parse, a zero size, a bad name).
    #[error("invalid {key}: {message}")]
    Invalid {
        /// Dotted key (`queue.url`, `cache.shared.prefix`).
        key: String,
        /// What is wrong (secrets redacted).
        message: String,
    },
    /// The backend could not be opened (server down, directory not writable).
    #[error("cannot open {key}: {source}")]
    Open {
        /// Dotted key of the spec (`store`, `cache.local`).
        key: String,
        /// The backend's error (secrets redacted).
        #[source]
        source: BoxError,
    },
}

impl SpecError {
    /// An [`SpecError::Invalid`] for `key`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// A [`SpecError::Open`] for `key`, with every occurrence of `url`'s secret replaced by `***`.
    pub fn open(key: impl Into<String>, url: Option<&SecretUrl>, err: impl fmt::Display) -> Self {
        let message = match url {
            Some(url) => url.scrub(&err.to_string()),
            None => err.to_string(),
        };
        SpecError::Open {
            key: key.into(),
            source: message.into(),
        }
    }

    /// Puts `prefix.` in front of the key, for a spec nested in a larger config (`flow` turns
    /// `store.url` into `flow.store.url`).
    pub fn at(self, prefix: &str) -> Self {
        let join = |key: String| format!("{prefix}.{key}");
        match self {
            SpecError::Invalid { key, message } => SpecError::Invalid {
                key: join(key),
                message,
            },
            SpecError::Open { key, source } => SpecError::Open {
                key: join(key),
                source,
            },
            other => other,
        }
    }

    /// Whether opening again may work: only an [`SpecError::Open`] (the server may come up).
    pub fn retry(&self) -> Retry {
        match self {
            SpecError::Open { .. } => Retry::After(Duration::from_secs(1)),
            _ => Retry::Never,
        }
    }
}

/// Which [`Queue`](crate::Queue) to use.
///
/// ```yaml
/// queue: { backend: memory }
/// # or
/// queue: { backend: redis, url: "redis://127.0.0.1:6379", prefix: "farm:" }
/// # or
/// queue: { backend: nats, url: "nats://127.0.0.1:4222", stream: farm_jobs }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "lowercase", deny_unknown_fields)]
pub enum QueueSpec {
    /// In process (`MemoryQueue`); nothing survives a restart.
    Memory,
    /// Redis/Valkey (`RedisQueue`, feature `redis`).
    Redis {
        /// `redis://[:password@]host:port[/db]`.
        url: SecretUrl,
        /// Put in front of every key, so several queues share one server.
        prefix: String,
    },
    /// NATS JetStream (`NatsQueue`, feature `nats`).
    Nats {
        /// `nats://[user:password@]host:port`.
        url: SecretUrl,
        /// Stream (and subject root) name: ASCII letters, digits, `_`, `-`.
        stream: String,
    },
}

/// Which [`EventBus`](crate::EventBus) to use.
///
/// ```yaml
/// events: { backend: memory, history: 10000 }
/// # or
/// events: { backend: nats, url: "nats://127.0.0.1:4222", stream: hg_events }  # subjects hg_events.>
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "lowercase", deny_unknown_fields)]
pub enum EventBusSpec {
    /// In process (`MemoryEventBus`), retaining the newest `history` messages for replay.
    Memory {
        /// Messages kept for replay (default 10000).
        #[serde(default = "default_history")]
        history: usize,
    },
    /// NATS JetStream (`NatsEventBus`, feature `nats`).
    Nats {
        /// `nats://[user:password@]host:port`.
        url: SecretUrl,
        /// Stream name: ASCII letters, digits, `_`, `-`.
        stream: String,
        /// Subjects the stream carries (default `[STREAM.>]`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subjects: Option<Vec<String>>,
        /// How long messages are kept for replay (default 24h).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_age: Option<HumanDuration>,
    },
}

fn default_history() -> usize {
    10_000
}

/// Which [`Store`](crate::Store) to use.
///
/// ```yaml
/// store: { backend: sqlite, path: /var/lib/hg/flow.db }   # or path: ":memory:"
/// # or
/// store:
///   backend: postgres
///   url: "postgres://hg@127.0.0.1:5432/hg"
///   schema: flow                    # optional
///   pool: { max_connections: 10, acquire_timeout: 5s }   # optional
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreSpec {
    /// A SQLite file in WAL mode (`SqliteStore`, feature `sqlite`, on by default); `:memory:` for
    /// an in-memory database.
    Sqlite {
        /// The database file (created if missing), or `:memory:`.
        path: PathBuf,
    },
    /// PostgreSQL (`PostgresStore`, feature `postgres`).
    Postgres {
        /// `postgres://user[:password]@host:port/db`.
        url: SecretUrl,
        /// Confine the store to this schema (created if missing).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<String>,
        /// Connection pool settings.
        #[serde(default)]
        pool: PoolSpec,
    },
}

/// Connection pool settings of a PostgreSQL store.
///
/// ```yaml
/// max_connections: 10
/// acquire_timeout: 5s
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSpec {
    /// The most connections the pool opens (default 10).
    pub max_connections: u32,
    /// How long an operation waits for a free connection (default 5s).
    pub acquire_timeout: HumanDuration,
}

impl Default for PoolSpec {
    fn default() -> Self {
        PoolSpec {
            max_connections: 10,
            acquire_timeout: HumanDuration::from_secs(5),
        }
    }
}

/// Which [`Cache`](crate::Cache) to use; `tiered` nests two specs.
///
/// ```yaml
/// cache: { backend: disk, dir: /var/cache/hg, max_size: 10GB }
/// # or
/// cache: { backend: redis, url: "redis://127.0.0.1:6379", prefix: "hg:", ttl: 7d }
/// # or: local disk in front of a shared Redis tier
/// cache:
///   backend: tiered
///   local: { backend: disk, dir: /var/cache/hg, max_size: 10GB }
///   shared: { backend: redis, url: "redis://cache-host:6379" }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "lowercase", deny_unknown_fields)]
pub enum CacheSpec {
    /// A local directory bounded in size, least recently used entries evicted (`DiskCache`).
    Disk {
        /// The cache directory (created if missing).
        dir: PathBuf,
        /// Bound on the bytes of all entries.
        max_size: ByteSize,
        /// `fsync` each entry before it is renamed into place (default false).
        #[serde(default)]
        fsync: bool,
    },
    /// A shared tier in Redis/Valkey (`RedisCache`, feature `redis`).
    Redis {
        /// `redis://[:password@]host:port[/db]`.
        url: SecretUrl,
        /// Put in front of every key (default `hg:`).
        #[serde(default = "default_cache_prefix")]
        prefix: String,
        /// Expiry of each entry (default none: bound the server with `maxmemory`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl: Option<HumanDuration>,
        /// How long one command may take (default 5s).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response_timeout: Option<HumanDuration>,
        /// Largest entry accepted (default 64MiB); reads fetch at most this much too.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_entry_size: Option<ByteSize>,
        /// Shared secret of the farm: entries carry a BLAKE3 keyed MAC made with it, and readers
        /// refuse (count, log, miss) any entry whose MAC does not verify. Without it, entries
        /// carry a plain checksum and anyone who can write the server can serve any object.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<Secret>,
        /// This client only reads (a Redis ACL user without write commands): `put` is refused
        /// locally with [`CacheError::ReadOnly`](crate::CacheError::ReadOnly), never sent.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        read_only: bool,
    },
    /// `local` in front of `shared`: reads try local first and fill it from shared; writes go to both.
    Tiered {
        /// The fast tier (usually `disk`).
        local: Box<CacheSpec>,
        /// The shared tier (usually `redis`).
        shared: Box<CacheSpec>,
        /// Whether `put` returns before the shared tier stored the entry (default false: a
        /// short-lived process such as a compiler wrapper would lose unfinished puts at exit).
        #[serde(default)]
        background_puts: bool,
    },
}

fn default_cache_prefix() -> String {
    "hg:".into()
}

/// Reads `{backend: NAME, ...rest}` as the externally tagged `{NAME: {...rest}}` that the derive
/// (with `remote = "Self"`) understands, keeping the path of a bad key in the message (serde's own
/// internally tagged enums lose it).
fn untag(mut value: serde_json::Value, units: &[&str]) -> Result<serde_json::Value, String> {
    let serde_json::Value::Object(map) = &mut value else {
        return Err("expected a mapping with a `backend` key".into());
    };
    let backend = match map.remove("backend") {
        Some(serde_json::Value::String(b)) => b,
        Some(other) => return Err(format!("backend: expected a name, got {other}")),
        None => return Err("missing key `backend`".into()),
    };
    if units.contains(&backend.as_str()) {
        if let Some(key) = map.keys().next() {
            return Err(format!(
                "unknown key `{key}`: backend {backend} takes no other keys"
            ));
        }
        return Ok(serde_json::Value::String(backend));
    }
    let rest = std::mem::take(map);
    Ok(serde_json::Value::Object(
        [(backend, serde_json::Value::Object(rest))]
            .into_iter()
            .collect(),
    ))
}

/// Turns the derive's `{NAME: {...}}` (or `"NAME"`) back into `{backend: NAME, ...}`.
fn tag(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(backend) => {
            serde_json::json!({ "backend": backend })
        }
        serde_json::Value::Object(map) if map.len() == 1 => {
            let Some((backend, fields)) = map.into_iter().next() else {
                return serde_json::Value::Null;
            };
            let mut out = serde_json::Map::new();
            out.insert("backend".into(), serde_json::Value::String(backend));
            if let serde_json::Value::Object(fields) = fields {
                out.extend(fields);
            }
            serde_json::Value::Object(out)
        }
        other => other,
    }
}

macro_rules! tagged_serde {
    ($ty:ident, [$($unit:literal),*]) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let value = $ty::serialize(self, serde_json::value::Serializer)
                    .map_err(serde::ser::Error::custom)?;
                tag(value).serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = serde_json::Value::deserialize(d)?;
                let value = untag(value, &[$($unit),*]).map_err(serde::de::Error::custom)?;
                let mut track = serde_path_to_error::Track::new();
                let tracked = serde_path_to_error::Deserializer::new(value, &mut track);
                $ty::deserialize(tracked).map_err(|e| {
                    let path = track.path().to_string();
                    // The first segment is the backend name; the rest is the key inside it.
                    match path.split_once('.') {
                        Some((_, key)) if !key.is_empty() => {
                            serde::de::Error::custom(format!("{key}: {e}"))
                        }
                        _ if e.to_string().starts_with("unknown variant") => {
                            serde::de::Error::custom(format!("backend: {e}"))
                        }
                        _ => serde::de::Error::custom(e),
                    }
                })
            }
        }
    };
}

tagged_serde!(QueueSpec, ["memory"]);
tagged_serde!(EventBusSpec, []);
tagged_serde!(StoreSpec, []);
tagged_serde!(CacheSpec, []);

impl QueueSpec {
    /// The backend's name as written in config.
    pub fn backend(&self) -> &'static str {
        match self {
            QueueSpec::Memory => "memory",
            QueueSpec::Redis { .. } => "redis",
            QueueSpec::Nats { .. } => "nats",
        }
    }
}

impl EventBusSpec {
    /// The backend's name as written in config.
    pub fn backend(&self) -> &'static str {
        match self {
            EventBusSpec::Memory { .. } => "memory",
            EventBusSpec::Nats { .. } => "nats",
        }
    }
}

impl StoreSpec {
    /// The backend's name as written in config.
    pub fn backend(&self) -> &'static str {
        match self {
            StoreSpec::Sqlite { .. } => "sqlite",
            StoreSpec::Postgres { .. } => "postgres",
        }
    }
}

impl CacheSpec {
    /// The backend's name as written in config.
    pub fn backend(&self) -> &'static str {
        match self {
            CacheSpec::Disk { .. } => "disk",
            CacheSpec::Redis { .. } => "redis",
            CacheSpec::Tiered { .. } => "tiered",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::load;
    use std::collections::BTreeMap;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Config {
        queue: Option<QueueSpec>,
        store: Option<StoreSpec>,
        cache: Option<CacheSpec>,
        events: Option<EventBusSpec>,
    }

    fn parse(yaml: &str) -> Result<Config, String> {
        let dir = std::env::temp_dir().join(format!("hgspec-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&dir, yaml).unwrap();
        let out = load::<Config>(Some(&dir), &BTreeMap::new(), &[]).map_err(|e| e.to_string());
        std::fs::remove_file(&dir).unwrap();
        out
    }

    #[test]
    fn every_backend_parses() {
        let cfg = parse(
            r#"
queue: { backend: nats, url: "nats://127.0.0.1:4222", stream: jobs }
store: { backend: postgres, url: "postgres://u:pw@h/db", pool: { max_connections: 3 } }
cache:
  backend: tiered
  local: { backend: disk, dir: /tmp/c, max_size: 1.5GiB }
  shared: { backend: redis, url: "redis://h:6379", ttl: 1h }
events: { backend: memory }
"#,
        )
        .unwrap();
        assert_eq!(
            cfg.queue,
            Some(QueueSpec::Nats {
                url: SecretUrl::new("nats://127.0.0.1:4222").unwrap(),
                stream: "jobs".into()
            })
        );
        let Some(StoreSpec::Postgres { pool, url, .. }) = cfg.store else {
            panic!()
        };
        assert_eq!(pool.max_connections, 3);
        assert_eq!(pool.acquire_timeout, HumanDuration::from_secs(5));
        assert_eq!(url.to_string(), "postgres://u:***@h/db");
        let Some(CacheSpec::Tiered { local, shared, .. }) = cfg.cache else {
            panic!()
        };
        assert!(matches!(*local, CacheSpec::Disk { max_size, .. } if max_size.0 == 3 << 29));
        assert!(
            matches!(*shared, CacheSpec::Redis { ref prefix, ttl: Some(t), .. }
            if prefix == "hg:" && *t == Duration::from_secs(3600))
        );
        assert_eq!(cfg.events, Some(EventBusSpec::Memory { history: 10_000 }));
    }

    #[test]
    fn bad_specs_are_one_line_errors_naming_the_key() {
        let cases = [
            ("queue: { backend: kafka }", "queue: backend", "kafka"),
            ("queue: { backend: redis, prefix: x }", "queue", "url"),
            (
                "queue: { backend: redis, url: \"redis://h\", prefix: x, extra: 1 }",
                "queue",
                "extra",
            ),
            (
                "store: { backend: postgres, url: \"localhost:5432\" }",
                "store: url",
                "scheme://",
            ),
            (
                "cache: { backend: disk, dir: /c, max_size: 10 parsecs }",
                "cache: max_size",
                "parsecs",
            ),
            (
                "cache: { backend: tiered, local: { backend: disk, dir: /c, max_size: 1 }, shared: { backend: nope } }",
                "cache: shared",
                "nope",
            ),
        ];
        for (yaml, key, word) in cases {
            let err = parse(yaml).unwrap_err();
            assert!(!err.contains('\n'), "one line: {err}");
            assert!(
                err.contains(key) && err.contains(word),
                "{yaml}: {err} should name {key} and {word}"
            );
        }
    }

    #[test]
    fn secrets_never_show() {
        for (raw, shown) in [
            ("redis://:pw1@h:6379", "redis://:***@h:6379"),
            ("postgres://u:pw2@h/db", "postgres://u:***@h/db"),
            ("nats://tok3n@h:4222", "nats://***@h:4222"),
            ("redis://h:6379", "redis://h:6379"),
            (
                "postgres://h/db?password=pw4&x=1",
                "postgres://h/db?password=***&x=1",
            ),
        ] {
            let url = SecretUrl::new(raw).unwrap();
            assert_eq!(url.to_string(), shown);
            assert!(!format!("{url:?}").contains("pw"), "{url:?}");
            assert_eq!(url.expose(), raw);
        }
        let url = SecretUrl::new("redis://:hunter2@h").unwrap();
        let err = SpecError::open(
            "cache",
            Some(&url),
            "failed on redis://:hunter2@h (hunter2)",
        );
        assert_eq!(
            err.to_string(),
            "cannot open cache: failed on redis://:***@h (***)"
        );
        let err = SecretUrl::new("user:hunter2@h").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn specs_round_trip() {
        let specs = [
            serde_json::to_value(QueueSpec::Memory).unwrap(),
            serde_json::to_value(EventBusSpec::Memory { history: 5 }).unwrap(),
            serde_json::to_value(CacheSpec::Tiered {
                local: Box::new(CacheSpec::Disk {
                    dir: "/c".into(),
                    max_size: ByteSize(1 << 30),
                    fsync: false,
                }),
                shared: Box::new(CacheSpec::Redis {
                    url: SecretUrl::new("redis://:pw@h").unwrap(),
                    prefix: "p:".into(),
                    ttl: None,
                    response_timeout: None,
                    max_entry_size: None,
                    secret: None,
                    read_only: false,
                }),
                background_puts: false,
            })
            .unwrap(),
        ];
        assert_eq!(specs[0], serde_json::json!({"backend": "memory"}));
        assert_eq!(
            specs[1],
            serde_json::json!({"backend": "memory", "history": 5})
        );
        assert_eq!(
            specs[2],
            serde_json::json!({"backend": "tiered",
                "local": {"backend": "disk", "dir": "/c", "max_size": "1GiB", "fsync": false},
                "shared": {"backend": "redis", "url": "redis://:pw@h", "prefix": "p:"},
                "background_puts": false})
        );
        let back: CacheSpec = serde_json::from_value(specs[2].clone()).unwrap();
        assert_eq!(back.backend(), "tiered");
        let back: QueueSpec = serde_json::from_value(specs[0].clone()).unwrap();
        assert_eq!(back, QueueSpec::Memory);
    }

    #[test]
    fn sizes() {
        for (s, n) in [
            ("512", 512),
            ("1k", 1024),
            ("10GB", 10_000_000_000),
            ("2MiB", 2 << 20),
            ("1.5GiB", 3 << 29),
            ("64 kB", 64_000),
        ] {
            assert_eq!(s.parse::<ByteSize>().unwrap().0, n, "{s}");
        }
        for bad in ["", "-1", "1 parsec", "99999999999TB", "1e400"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?}");
        }
        assert_eq!(ByteSize(2 << 20).to_string(), "2MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }

    #[test]
    fn key_prefix_nests() {
        let err = SpecError::invalid("store.url", "bad").at("flow");
        assert_eq!(err.to_string(), "invalid flow.store.url: bad");
        let off = SpecError::FeatureOff {
            seam: "queue",
            backend: "redis",
            krate: "hybridgrid-queue",
            feature: "redis",
        };
        assert_eq!(
            off.to_string(),
            "queue backend \"redis\" needs hybridgrid-queue's feature \"redis\""
        );
        assert!(!off.retry().is_retryable());
    }
}
