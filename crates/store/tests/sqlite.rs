//! `SqliteStore` against the conformance suite: a file in a temp dir, and in memory.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use hybridgrid_core::Store;
use hybridgrid_core::store::{NewRun, RunStatus, Transition};
use hybridgrid_store::SqliteStore;
use std::path::PathBuf;
use std::sync::Arc;

/// A unique temp dir, removed on drop (even when an assertion fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(hybridgrid_testkit::unique_prefix("store"));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_store_conforms() {
    let dir = Arc::new(TempDir::new());
    let d = dir.clone();
    hybridgrid_testkit::store::run_store_suite(move || {
        let path = d.0.join(format!("{}.db", uuid::Uuid::new_v4().simple()));
        async move { Arc::new(SqliteStore::open(&path).await.unwrap()) as Arc<dyn Store> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_memory_store_conforms() {
    hybridgrid_testkit::store::run_store_suite(|| async {
        Arc::new(SqliteStore::in_memory().await.unwrap()) as Arc<dyn Store>
    })
    .await;
}

#[tokio::test]
async fn in_memory_stores_are_separate() {
    let a = SqliteStore::in_memory().await.unwrap();
    let b = SqliteStore::in_memory().await.unwrap();
    a.save_workflow("only-in-a", serde_json::json!({}))
        .await
        .unwrap();
    assert!(b.workflows().await.unwrap().is_empty());
    assert_eq!(a.location(), ":memory:");
}

#[tokio::test]
async fn file_store_keeps_state_across_reopen_in_wal_mode() {
    let dir = TempDir::new();
    let path = dir.0.join("hg.db");
    let run = {
        let store = SqliteStore::open(&path).await.unwrap();
        let run = store
            .create_run(NewRun {
                workflow_id: None,
                kind: "activation".into(),
                input: serde_json::json!({"k": 1}),
                idempotency_key: Some("once".into()),
            })
            .await
            .unwrap();
        store
            .transition_run(
                &run.id,
                &[RunStatus::Pending],
                RunStatus::Running,
                Transition::default(),
            )
            .await
            .unwrap();
        let stats = store.pool_stats();
        assert!(stats.size >= 1 && stats.size <= stats.max, "{stats:?}");
        assert_eq!(stats.in_use + stats.idle, stats.size);
        store.close().await;
        run
    };
    // Reopening applies no migration twice and finds the run where it was left.
    let store = SqliteStore::open(&path).await.unwrap();
    let read = store.run(&run.id).await.unwrap();
    assert_eq!(read.status, RunStatus::Running);
    let mode: String = {
        // WAL mode is a property of the file: a plain connection sees it.
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(mode.to_lowercase(), "wal");
}

#[tokio::test]
async fn open_error_names_the_path() {
    let dir = TempDir::new();
    let path = dir.0.join("no-such-dir").join("hg.db");
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(err.retry().is_retryable(), "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}
