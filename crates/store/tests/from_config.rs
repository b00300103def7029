//! Stores chosen by YAML specs, each exercised for real: a SQLite file in a temp dir and the
//! PostgreSQL server (`HG_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`);
//! bad specs are one-line errors naming the key and hiding passwords.

#![cfg(all(feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use hybridgrid_core::store::{NewRun, RunStatus, Store, Transition};
use hybridgrid_core::{SpecError, StoreSpec};
use hybridgrid_store::open_store;
use hybridgrid_testkit::{service_url, unique_prefix};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::sync::Arc;

fn url() -> String {
    service_url(
        "HG_TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    )
}

fn spec(yaml: &str) -> StoreSpec {
    yaml_serde::from_str(yaml).unwrap()
}

async fn exercise(store: Arc<dyn Store>) {
    let run = store
        .create_run(NewRun {
            workflow_id: None,
            kind: "config-test".into(),
            input: serde_json::json!({"n": 1}),
            idempotency_key: None,
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
    assert_eq!(store.run(&run.id).await.unwrap().status, RunStatus::Running);
}

#[tokio::test]
async fn yaml_picks_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow.db");
    let yaml = format!("{{ backend: sqlite, path: \"{}\" }}", path.display());
    exercise(open_store(&spec(&yaml)).await.unwrap()).await;
    assert!(path.exists(), "the database file was created");
    exercise(
        open_store(&spec("{ backend: sqlite, path: \":memory:\" }"))
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn yaml_picks_postgres_in_its_own_schema() {
    let schema = unique_prefix("cfgstore");
    let yaml = format!(
        "{{ backend: postgres, url: \"{}\", schema: {schema}, pool: {{ max_connections: 2, acquire_timeout: 3s }} }}",
        url()
    );
    let store = open_store(&spec(&yaml)).await.unwrap();
    exercise(store).await;
    let mut admin = PgConnection::connect(&url()).await.unwrap();
    let (n,): (i64,) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{schema}\".runs"
    )))
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(n, 1, "the run is in the spec's schema");
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
}

fn one_line(err: &SpecError, key: &str) {
    let text = err.to_string();
    eprintln!("{text}");
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(text.contains(key), "{text} should name {key}");
    assert!(
        !text.contains("hunter2") && !format!("{err:?}").contains("hunter2"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_specs_name_the_key_and_hide_the_password() {
    let cases = [
        (
            "{ backend: postgres, url: \"mysql://u:hunter2@h/db\" }",
            "store.url",
        ),
        (
            "{ backend: postgres, url: \"postgres://u:hunter2@127.0.0.1:5432/test\", pool: { max_connections: 0 } }",
            "store.pool.max_connections",
        ),
        (
            "{ backend: postgres, url: \"postgres://postgres:hunter2@127.0.0.1:5432/test\", schema: \"bad name\" }",
            "store.schema",
        ),
        (
            "{ backend: postgres, url: \"postgres://postgres:hunter2@127.0.0.1:1/test\", pool: { acquire_timeout: 1s } }",
            "store",
        ),
        ("{ backend: sqlite, path: /proc/no/such/dir/x.db }", "store"),
    ];
    for (yaml, key) in cases {
        let err = open_store(&spec(yaml)).await.err().unwrap();
        one_line(&err, key);
    }
}
