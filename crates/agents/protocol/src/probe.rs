//! [`redis_persistence`]: what the server at `VALKEY_URL` keeps across a restart (for `doctor`).

use crate::backends::BackendError;
use crate::settings::redact_url;

/// The persistence a Redis/Valkey server reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persistence {
    /// `INFO persistence` `aof_enabled:1` (`appendonly yes`).
    pub aof_enabled: bool,
    /// `CONFIG GET save` (RDB snapshot schedule, `""` when off); `None` when CONFIG is refused
    /// (managed servers often disable it).
    pub rdb_save: Option<String>,
}

/// Reads the persistence settings of the server at `url`.
#[cfg(feature = "redis")]
pub async fn redis_persistence(url: &str) -> Result<Persistence, BackendError> {
    use std::time::Duration;
    let unreachable = |e: &dyn std::fmt::Display| BackendError::Unreachable {
        url: redact_url(url),
        reason: e.to_string().replace(url, &redact_url(url)),
    };
    let client = redis::Client::open(url).map_err(|e| unreachable(&e))?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| unreachable(&"no answer within 3s"))?
    .map_err(|e| unreachable(&e))?;
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut conn)
        .await
        .map_err(|e| unreachable(&e))?;
    let aof_enabled = info.lines().any(|l| l.trim() == "aof_enabled:1");
    let rdb_save = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query_async::<Vec<String>>(&mut conn)
        .await
        .ok()
        .and_then(|v| v.get(1).cloned());
    Ok(Persistence {
        aof_enabled,
        rdb_save,
    })
}

/// Reads the persistence settings of the server at `url` (needs the `redis` feature).
#[cfg(not(feature = "redis"))]
pub async fn redis_persistence(url: &str) -> Result<Persistence, BackendError> {
    Err(BackendError::Unsupported {
        url: redact_url(url),
        reason: "built without the `redis` feature".into(),
    })
}
