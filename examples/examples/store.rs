//! Workflows and runs in a SQLite file, the store chosen by a YAML `StoreSpec` (change it to
//! `{ backend: postgres, url: ... }` and nothing else changes). Status moves are compare-and-set,
//! so only one of two replicas can start a run.
//!
//! Run: `cargo run -p hybridgrid-examples --example store`

use anyhow::{Context, ensure};
use hybridgrid_core::StoreSpec;
use hybridgrid_core::store::{NewRun, RunStatus, StoreError, Transition};
use hybridgrid_store::open_store;
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let yaml = format!("backend: sqlite\npath: {:?}\n", dir.path().join("flow.db"));
    let spec: StoreSpec = yaml_serde::from_str(&yaml).context("store spec")?;
    let store = open_store(&spec).await?;

    let wf = store
        .save_workflow("nightly", json!({"steps": ["build", "test"]}))
        .await?;
    let run = store
        .create_run(NewRun {
            workflow_id: Some(wf.id.clone()),
            kind: "workflow".into(),
            input: json!({"branch": "main"}),
            idempotency_key: Some("nightly-2026-12-01".into()),
        })
        .await?;
    println!("created run {} of workflow {}", run.id, wf.id);

    store
        .transition_run(
            &run.id,
            &[RunStatus::Pending],
            RunStatus::Running,
            Transition::default(),
        )
        .await?;
    // A second replica trying the same move loses: the run is no longer pending.
    let again = store
        .transition_run(
            &run.id,
            &[RunStatus::Pending],
            RunStatus::Running,
            Transition::default(),
        )
        .await;
    ensure!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "the second start is a conflict, got {again:?}"
    );
    println!(
        "second start refused: {}",
        again.err().map(|e| e.to_string()).unwrap_or_default()
    );

    store
        .transition_run(
            &run.id,
            &[RunStatus::Running],
            RunStatus::Succeeded,
            Transition::default(),
        )
        .await?;

    // Reopen the file: the state survived.
    drop(store);
    let store = open_store(&spec).await?;
    let back = store.run(&run.id).await?;
    println!(
        "after reopening {}: run {} is {:?}",
        dir.path().display(),
        back.id,
        back.status
    );
    ensure!(
        back.status == RunStatus::Succeeded,
        "state survives a reopen"
    );
    Ok(())
}
