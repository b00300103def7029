//! [`SqliteStore`]: the embedded backend, a SQLite file in WAL mode (or a database in memory).

use crate::{PoolStats, migrator};
use hybridgrid_core::store::StoreError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Backend name in errors, logs and metrics.
const BACKEND: &str = "sqlite";
/// How long a writer waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections to a database file: readers run side by side in WAL mode; writers take turns.
const FILE_CONNECTIONS: u32 = 4;
/// How long an operation waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// A [`Store`](hybridgrid_core::Store) in a SQLite database: a file in WAL mode with a busy timeout,
/// or a private in-memory database. The schema is migrated when the store opens.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    target: String,
    /// Taken by the durable-DAG write transactions of this store for as long as they run:
    /// SQLite has one writer at a time, and waiting here (in order) beats its busy handler.
    write_gate: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database file at `path` and applies pending migrations.
    /// Errors name the path.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let location = path.display().to_string();
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(FILE_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| {
                crate::sql::backend_err(BACKEND, format!("opening SQLite database {location}"), e)
            })?;
        Self::migrated(pool, location).await
    }

    /// A fresh database that lives in memory and disappears when the store is dropped.
    /// It uses a single connection, so every operation sees the same database.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| crate::sql::backend_err(BACKEND, "configuring in-memory SQLite", e))?
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| crate::sql::backend_err(BACKEND, "opening in-memory SQLite", e))?;
        Self::migrated(pool, ":memory:".to_owned()).await
    }

    async fn migrated(pool: SqlitePool, location: String) -> Result<Self, StoreError> {
        migrator(&[
            (
                1,
                "init",
                include_str!("../migrations/sqlite/0001_init.sql"),
            ),
            (
                2,
                "flow",
                include_str!("../migrations/sqlite/0002_flow.sql"),
            ),
        ])
        .run(&pool)
        .await
        .map_err(|e| {
            crate::sql::backend_err(
                BACKEND,
                format!("applying migrations to SQLite database {location}"),
                e,
            )
        })?;
        tracing::info!(backend = BACKEND, %location, "store opened");
        Ok(Self {
            pool,
            target: location,
            write_gate: Some(Default::default()),
        })
    }

    /// The file path, or `:memory:`.
    pub fn location(&self) -> &str {
        &self.target
    }

    /// Connections open, idle and in use, for metrics.
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats::of(&self.pool)
    }

    /// Closes every connection (checkpointing the WAL); later operations fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

use crate::sql::SQLITE as DIALECT;

crate::sql::impl_sql_store!(SqliteStore, sqlx::sqlite::SqliteRow);
