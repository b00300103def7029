//! Measures store throughput: one "run life" is create_run + Pending→Running + Running→Succeeded
//! (three writes), done sequentially and from 16 concurrent tasks, on SQLite (memory and a file in
//! a temp dir) and, with `--features postgres`, on PostgreSQL (`HG_TEST_DATABASE_URL`, in a
//! throwaway schema).
//!
//! ```text
//! cargo run --release -p hybridgrid-store --all-features --example throughput
//! ```

use hybridgrid_core::Store;
use hybridgrid_core::store::{NewRun, RunStatus, StoreError, Transition};
use hybridgrid_store::SqliteStore;
use std::sync::Arc;
use std::time::Instant;

const SEQUENTIAL: usize = 500;
const TASKS: usize = 16;
const PER_TASK: usize = 100;

async fn life(store: &dyn Store, i: usize) -> Result<(), StoreError> {
    let run = store
        .create_run(NewRun {
            workflow_id: None,
            kind: "bench".into(),
            input: serde_json::json!({"i": i, "payload": "x".repeat(200)}),
            idempotency_key: Some(format!("bench-{i}")),
        })
        .await?;
    store
        .transition_run(
            &run.id,
            &[RunStatus::Pending],
            RunStatus::Running,
            Transition::default(),
        )
        .await?;
    store
        .transition_run(
            &run.id,
            &[RunStatus::Running],
            RunStatus::Succeeded,
            Transition {
                output: Some(serde_json::json!({"ok": true})),
                error: None,
            },
        )
        .await?;
    Ok(())
}

async fn measure(name: &str, store: Arc<dyn Store>) -> Result<(), StoreError> {
    let t = Instant::now();
    for i in 0..SEQUENTIAL {
        life(store.as_ref(), i).await?;
    }
    let seq = SEQUENTIAL as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..PER_TASK {
                life(store.as_ref(), SEQUENTIAL + k * PER_TASK + j).await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| StoreError::Invalid(format!("bench task: {e}")))??;
    }
    let conc = (TASKS * PER_TASK) as f64 / t.elapsed().as_secs_f64();
    println!(
        "{name:<16} sequential {seq:>8.0} run lives/s ({:>6.0} writes/s)   {TASKS} tasks {conc:>8.0} run lives/s ({:>6.0} writes/s)",
        seq * 3.0,
        conc * 3.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    measure("sqlite :memory:", Arc::new(SqliteStore::in_memory().await?)).await?;

    let dir = std::env::temp_dir().join(format!("hg-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = SqliteStore::open(dir.join("bench.db")).await?;
    let result = measure("sqlite file/WAL", Arc::new(file)).await;
    std::fs::remove_dir_all(&dir)?;
    result?;

    #[cfg(feature = "postgres")]
    {
        use hybridgrid_store::{PoolOptions, PostgresStore};
        let url = std::env::var("HG_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("hgbench_store_{}", std::process::id());
        let store = PostgresStore::connect(&url, Some(&schema), PoolOptions::default()).await?;
        let result = measure("postgres", Arc::new(store.clone())).await;
        store.close().await;
        // Drop the throwaway schema.
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{schema}\" CASCADE"
        )))
        .execute(&mut conn)
        .await?;
        result?;
    }
    Ok(())
}
