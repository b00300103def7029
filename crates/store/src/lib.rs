//! # hybridgrid-store
//!
//! Durable [`Store`](hybridgrid_core::Store) backends for workflows, runs and steps, with
//! compare-and-set status moves: [`SqliteStore`] (embedded default) and `PostgresStore` (fleet
//! mode), both on sqlx with runtime queries and migrations embedded in the binary and applied when
//! the store opens. Both pass `hybridgrid_testkit::store::run_store_suite`.
//!
//! ```
//! use hybridgrid_core::store::{NewRun, RunStatus, Store, StoreError, Transition};
//! use hybridgrid_store::SqliteStore;
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), StoreError> {
//! let store = SqliteStore::in_memory().await?; // or SqliteStore::open("hg.db")
//! let wf = store.save_workflow("nightly", json!({"steps": ["build", "test"]})).await?;
//! let run = store
//!     .create_run(NewRun {
//!         workflow_id: Some(wf.id.clone()),
//!         kind: "workflow".into(),
//!         input: json!({"branch": "main"}),
//!         idempotency_key: Some("nightly-2026-11-22".into()),
//!     })
//!     .await?;
//! // Only one replica can start the run: the move is compare-and-set.
//! store.transition_run(&run.id, &[RunStatus::Pending], RunStatus::Running, Transition::default()).await?;
//! let again = store
//!     .transition_run(&run.id, &[RunStatus::Pending], RunStatus::Running, Transition::default())
//!     .await;
//! assert!(matches!(again, Err(StoreError::Conflict { actual: RunStatus::Running, .. })));
//! # Ok(())
//! # }
//! ```
//!
//! ## Features
//! - `sqlite` (default): [`SqliteStore`], a file in WAL mode with a busy timeout, or in memory.
//! - `postgres`: `PostgresStore`, pooled, optionally confined to one schema (`search_path`), with
//!   pool exhaustion reported as [`StoreError::PoolExhausted`](hybridgrid_core::store::StoreError)
//!   and [`PoolStats`] for metrics. See `docs/backends/postgres.md`.
//!
//! [`open_store`] opens the backend a [`StoreSpec`](hybridgrid_core::StoreSpec) from config names;
//! a backend whose feature is off is an error naming the feature.

mod open;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::{PoolOptions, PostgresStore};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

pub use open::open_store;

/// Connection pool occupancy, for metrics (`pool_stats()` on each backend).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open (idle plus in use).
    pub size: u32,
    /// Open connections waiting for work.
    pub idle: u32,
    /// Connections lent to an operation right now.
    pub in_use: u32,
    /// The most connections the pool will open.
    pub max: u32,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl PoolStats {
    fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Self {
        let size = pool.size();
        let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size);
        PoolStats {
            size,
            idle,
            in_use: size - idle,
            max: pool.options().get_max_connections(),
        }
    }
}

/// The embedded migrations as a sqlx migrator (no `migrate!` macro, so no build-time database).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn migrator(migrations: &[(i64, &'static str, &'static str)]) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, name, sql)| {
                Migration::new(
                    version,
                    name.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}
