//! [`PostgresStore`]: the fleet backend, a pooled PostgreSQL database, optionally confined to one
//! schema.

use crate::{PoolStats, migrator};
use hybridgrid_core::config::HumanDuration;
use hybridgrid_core::store::StoreError;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use std::str::FromStr;

/// Backend name in errors, logs and metrics.
const BACKEND: &str = "postgres";
/// A pooled connection idle this long is pinged before it is handed out.
const PING_AFTER_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Connection pool settings of a [`PostgresStore`].
///
/// ```yaml
/// max_connections: 10
/// acquire_timeout: 5s
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolOptions {
    /// The most connections the pool opens (default 10). Keep the sum over all replicas under the
    /// server's `max_connections`.
    pub max_connections: u32,
    /// How long an operation waits for a free connection before it fails with
    /// [`StoreError::PoolExhausted`] (default 5s).
    pub acquire_timeout: HumanDuration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 10,
            acquire_timeout: HumanDuration::from_secs(5),
        }
    }
}

/// A [`Store`](hybridgrid_core::Store) in PostgreSQL.
///
/// The pool replaces broken connections by itself (one idle for a second or more is checked
/// before use; one that fails is dropped), so after a server
/// restart or a terminated backend, operations fail with a retryable [`StoreError::Backend`] while
/// the server is away and succeed again once it is back.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: Option<String>,
    target: String,
    /// None: PostgreSQL runs write transactions side by side (row locks, `SKIP LOCKED`).
    write_gate: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`), confined to `schema` if given (created if
    /// missing, and put first on every connection's `search_path`), and applies pending migrations.
    ///
    /// Errors name the server and database (never the password); a schema name that is not a
    /// plain identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes) is [`StoreError::Invalid`].
    pub async fn connect(
        url: &str,
        schema: Option<&str>,
        pool: PoolOptions,
    ) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("PostgreSQL URL is not valid: {e}")))?;
        let target = format!(
            "postgres://{}@{}:{}/{}{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(""),
            schema.map(|s| format!(" (schema {s})")).unwrap_or_default()
        );
        if pool.max_connections == 0 {
            return Err(StoreError::Invalid(format!(
                "{target}: max_connections must be at least 1"
            )));
        }
        if let Some(schema) = schema {
            validate_schema(schema)?;
            let mut conn = options.connect().await.map_err(|e| {
                crate::sql::backend_err(BACKEND, format!("connecting to {target}"), e)
            })?;
            sqlx::query(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&mut conn)
            .await
            .map_err(|e| {
                crate::sql::backend_err(BACKEND, format!("creating schema on {target}"), e)
            })?;
            // Closing politely is best effort: the schema exists either way.
            let _ = conn.close().await;
            options = options.options([("search_path", schema)]);
        }
        let pg = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(*pool.acquire_timeout)
            // A connection handed out again at once is not pinged first (that would be one more
            // round trip per transaction, the engine's hot path); one that sat idle for a while
            // may have been cut off (server restart, idle timeout) and is checked first.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| crate::sql::backend_err(BACKEND, format!("connecting to {target}"), e))?;
        migrator(&[
            (
                1,
                "init",
                include_str!("../migrations/postgres/0001_init.sql"),
            ),
            (
                2,
                "flow",
                include_str!("../migrations/postgres/0002_flow.sql"),
            ),
        ])
        .run(&pg)
        .await
        .map_err(|e| {
            crate::sql::backend_err(BACKEND, format!("applying migrations to {target}"), e)
        })?;
        tracing::info!(backend = BACKEND, %target, max_connections = pool.max_connections, "store connected");
        Ok(Self {
            pool: pg,
            schema: schema.map(str::to_owned),
            target,
            write_gate: None,
        })
    }

    /// The schema this store is confined to, if any.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Connections open, idle and in use, for metrics.
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats::of(&self.pool)
    }

    /// Closes every connection; later operations fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl std::fmt::Display for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.target)
    }
}

/// Accepts plain lower-case identifiers only, so the name can be spliced into DDL unescaped.
fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let head_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let tail_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if head_ok && tail_ok && schema.len() <= 63 {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "schema name {schema:?} is not a plain identifier ([a-z_][a-z0-9_]*, at most 63 bytes)"
        )))
    }
}

use crate::sql::POSTGRES as DIALECT;

crate::sql::impl_sql_store!(PostgresStore, sqlx::postgres::PgRow);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["hg", "_x", "hgtest_store_0123abcd", &"a".repeat(63)] {
            assert!(validate_schema(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1abc", "Hg", "a-b", "a\"; DROP", "a b", &"a".repeat(64)] {
            assert!(
                matches!(validate_schema(bad), Err(StoreError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn pool_options_parse_from_yaml_shape() {
        let p: PoolOptions = serde_json::from_value(
            serde_json::json!({"max_connections": 3, "acquire_timeout": "250ms"}),
        )
        .expect("valid pool options");
        assert_eq!(p.max_connections, 3);
        assert_eq!(p.acquire_timeout.as_millis(), 250);
        assert!(serde_json::from_value::<PoolOptions>(serde_json::json!({"max_conn": 3})).is_err());
    }
}
