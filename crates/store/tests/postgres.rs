//! `PostgresStore` against the real server (`HG_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`): the conformance suite, schema isolation, pool
//! exhaustion and recovery from terminated connections. A missing server fails these tests.
//! Every store lives in its own schema, dropped at the end.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use futures::FutureExt;
use hybridgrid_core::Store;
use hybridgrid_core::config::HumanDuration;
use hybridgrid_core::store::StoreError;
use hybridgrid_store::{PoolOptions, PostgresStore};
use hybridgrid_testkit::{eventually, service_url, unique_prefix};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn url() -> String {
    service_url(
        "HG_TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    )
}

/// `url` with an `application_name`, so a test can find its own pool's backends.
fn url_named(app: &str) -> String {
    let u = url();
    let sep = if u.contains('?') { '&' } else { '?' };
    format!("{u}{sep}application_name={app}")
}

fn pool(max_connections: u32, acquire_timeout: Duration) -> PoolOptions {
    PoolOptions {
        max_connections,
        acquire_timeout: HumanDuration(acquire_timeout),
    }
}

async fn admin() -> PgConnection {
    PgConnection::connect(&url())
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is required: {e}", url()))
}

async fn drop_schemas(names: &[String]) {
    let mut conn = admin().await;
    for s in names {
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{s}\" CASCADE"
        )))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("dropping schema {s}: {e}"));
    }
}

/// Runs `test`, then drops `schemas` whether it passed or panicked.
async fn with_cleanup<F: std::future::Future<Output = ()>>(schemas: &Mutex<Vec<String>>, test: F) {
    let outcome = AssertUnwindSafe(test).catch_unwind().await;
    let names = std::mem::take(&mut *schemas.lock().unwrap());
    drop_schemas(&names).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn schema_exists(name: &str) -> bool {
    let mut conn = admin().await;
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)",
    )
    .bind(name)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

/// Backends of this application (pool connections) and what they wait on.
async fn backends(app: &str) -> Vec<(i32, Option<String>)> {
    let mut conn = admin().await;
    sqlx::query_as::<_, (i32, Option<String>)>(
        "SELECT pid, wait_event_type FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(app)
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// Holds an ACCESS EXCLUSIVE lock on `schema.runs` until dropped (or rolled back).
async fn lock_runs(schema: &str) -> PgConnection {
    let mut conn = admin().await;
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "LOCK TABLE \"{schema}\".runs IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

/// Waits until one of `app`'s backends waits on a lock, and returns its pid.
async fn blocked_backend(app: &str) -> i32 {
    eventually(Duration::from_secs(10), || async {
        backends(app)
            .await
            .into_iter()
            .find(|(_, wait)| wait.as_deref() == Some("Lock"))
            .map(|(pid, _)| pid)
    })
    .await
    .expect("a store query blocked on the table lock")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_conforms() {
    let url = url();
    let schemas = Arc::new(Mutex::new(Vec::new()));
    let made = schemas.clone();
    let suite = hybridgrid_testkit::store::run_store_suite(move || {
        let schema = unique_prefix("store");
        made.lock().unwrap().push(schema.clone());
        let url = url.clone();
        async move {
            let store =
                PostgresStore::connect(&url, Some(&schema), pool(4, Duration::from_secs(10)))
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL is required: {e}"));
            Arc::new(store) as Arc<dyn Store>
        }
    });
    with_cleanup(&schemas, suite).await;
}

#[tokio::test]
async fn schemas_isolate_stores_and_reconnecting_migrates_nothing_twice() {
    let (a_name, b_name) = (unique_prefix("store"), unique_prefix("store"));
    let schemas = Mutex::new(vec![a_name.clone(), b_name.clone()]);
    with_cleanup(&schemas, async {
        let opts = pool(2, Duration::from_secs(10));
        let a = PostgresStore::connect(&url(), Some(&a_name), opts)
            .await
            .unwrap();
        let b = PostgresStore::connect(&url(), Some(&b_name), opts)
            .await
            .unwrap();
        assert_eq!(a.schema(), Some(a_name.as_str()));
        let wf = a.save_workflow("flow", json!({"in": "a"})).await.unwrap();
        assert!(
            b.workflows().await.unwrap().is_empty(),
            "schema b sees schema a's rows"
        );
        // A second store on the same schema finds the tables migrated and the data there.
        let a2 = PostgresStore::connect(&url(), Some(&a_name), opts)
            .await
            .unwrap();
        assert_eq!(a2.workflow(&wf.id).await.unwrap(), wf);
        let text = a2.to_string();
        assert!(
            text.contains("127.0.0.1") && text.contains(&a_name),
            "{text}"
        );
        for s in [&a, &a2, &b] {
            s.close().await;
        }
    })
    .await;
    assert!(!schema_exists(&a_name).await && !schema_exists(&b_name).await);
}

#[tokio::test]
async fn bad_schema_name_is_invalid_and_unreachable_server_is_retryable() {
    let err = PostgresStore::connect(&url(), Some("x; DROP TABLE y"), PoolOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    // Nothing listens on port 1: the error names the target and is worth retrying.
    let err = PostgresStore::connect(
        "postgres://postgres@127.0.0.1:1/test",
        None,
        pool(1, Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err}");
    assert!(err.retry().is_retryable(), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1/test"), "{err}");
}

#[tokio::test]
async fn exhausted_pool_names_the_wait() {
    let schema = unique_prefix("store");
    let app = unique_prefix("app");
    let schemas = Mutex::new(vec![schema.clone()]);
    with_cleanup(&schemas, async {
        let wait = Duration::from_millis(300);
        let store = Arc::new(
            PostgresStore::connect(&url_named(&app), Some(&schema), pool(1, wait))
                .await
                .unwrap(),
        );
        // The only connection blocks on a lock held elsewhere.
        let mut locker = lock_runs(&schema).await;
        let blocked = tokio::spawn({
            let store = store.clone();
            async move { store.runs(None, 10).await }
        });
        blocked_backend(&app).await;
        let stats = store.pool_stats();
        assert_eq!(
            (stats.size, stats.in_use, stats.max),
            (1, 1, 1),
            "{stats:?}"
        );

        let err = store.workflows().await.unwrap_err();
        match &err {
            StoreError::PoolExhausted { backend, waited } => {
                assert_eq!((*backend, *waited), ("postgres", wait));
            }
            other => panic!("expected PoolExhausted, got {other:?}"),
        }
        assert!(err.retry().is_retryable());
        assert!(err.to_string().contains("300ms"), "{err}");

        // Once the lock goes, the blocked call finishes and the pool serves again.
        sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
        assert!(blocked.await.unwrap().unwrap().is_empty());
        assert!(store.workflows().await.unwrap().is_empty());
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn store_recovers_after_its_connections_are_terminated() {
    let schema = unique_prefix("store");
    let app = unique_prefix("app");
    let schemas = Mutex::new(vec![schema.clone()]);
    with_cleanup(&schemas, async {
        let store = Arc::new(
            PostgresStore::connect(
                &url_named(&app),
                Some(&schema),
                pool(3, Duration::from_secs(5)),
            )
            .await
            .unwrap(),
        );
        let wf = store.save_workflow("flow", json!({"v": 1})).await.unwrap();

        // 1. A query in flight when its backend is killed fails with a retryable Backend error.
        let mut locker = lock_runs(&schema).await;
        let in_flight = tokio::spawn({
            let store = store.clone();
            async move { store.runs(None, 10).await }
        });
        let pid = blocked_backend(&app).await;
        let mut conn = admin().await;
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(killed);
        let err = in_flight.await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Backend {
                    backend: "postgres",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.retry().is_retryable(), "{err}");
        sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();

        // 2. Every pooled connection is killed (as in a server restart); the store serves again
        //    on new connections, and any error on the way is retryable.
        let before: Vec<i32> = backends(&app).await.into_iter().map(|(p, _)| p).collect();
        assert!(!before.is_empty());
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&app)
        .execute(&mut conn)
        .await
        .unwrap();
        let errors = Mutex::new(Vec::new());
        let back = eventually(Duration::from_secs(15), || async {
            match store.workflow(&wf.id).await {
                Ok(w) => Some(w),
                Err(e) => {
                    errors.lock().unwrap().push(e);
                    None
                }
            }
        })
        .await
        .expect("the store works again after its connections were terminated");
        assert_eq!(back, wf);
        for e in errors.lock().unwrap().iter() {
            assert!(
                e.retry().is_retryable(),
                "non-retryable error during the outage: {e}"
            );
        }
        // The store's connections now are new backends (a killed one leaves the list shortly).
        let live = eventually(Duration::from_secs(10), || async {
            let after: Vec<i32> = backends(&app).await.into_iter().map(|(p, _)| p).collect();
            let fresh = !after.is_empty() && after.iter().all(|p| !before.contains(p));
            fresh.then_some(after)
        })
        .await;
        assert!(
            live.is_some(),
            "the pool still uses terminated backends {before:?}"
        );
        // Writes work too.
        store.save_workflow("flow", json!({"v": 2})).await.unwrap();
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn nul_in_a_document_is_invalid_and_a_newer_schema_is_refused() {
    let schema = unique_prefix("store");
    let schemas = Mutex::new(vec![schema.clone()]);
    with_cleanup(&schemas, async {
        let opts = pool(2, Duration::from_secs(10));
        let store = PostgresStore::connect(&url(), Some(&schema), opts).await.unwrap();
        let err = store.save_workflow("nul", json!({"s": "a\u{0}b"})).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
        store.close().await;

        // A migration this build does not know (applied by a newer build) stops connect.
        let mut conn = admin().await;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{schema}\"._sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (999, 'from the future', true, '\\x00', 0)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        let err = PostgresStore::connect(&url(), Some(&schema), opts).await.unwrap_err();
        assert!(err.to_string().contains("applying migrations"), "{err}");
        assert!(err.to_string().contains("999"), "{err}");
    })
    .await;
}
