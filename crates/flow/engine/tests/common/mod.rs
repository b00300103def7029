//! Shared helpers of the engine's integration tests: stores (SQLite file, PostgreSQL schema),
//! tiny shell agents, an engine with short timings.
#![allow(dead_code, clippy::unwrap_used)]

use hybridgrid_core::{EventBus, Store};
use hybridgrid_flow_engine::{Executors, FlowConfig, FlowEngine, TriggerOptions};
use hybridgrid_flow_model::{TriggerSource, WorkflowRun};
use hybridgrid_queue::MemoryEventBus;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    pub schema: Option<String>,
}

pub fn pg_url() -> String {
    hybridgrid_testkit::service_url(
        "HG_TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    )
}

pub async fn env(backend: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (store, schema): (Arc<dyn Store>, _) = match backend {
        "sqlite" => (
            Arc::new(
                hybridgrid_store::SqliteStore::open(dir.path().join("flow.db"))
                    .await
                    .unwrap(),
            ),
            None,
        ),
        "postgres" => {
            let schema = hybridgrid_testkit::unique_prefix("flow");
            let s = hybridgrid_store::PostgresStore::connect(
                &pg_url(),
                Some(&schema),
                Default::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} is required: {e}", pg_url()));
            (Arc::new(s), Some(schema))
        }
        other => panic!("unknown backend {other}"),
    };
    write_agents(dir.path());
    Env {
        dir,
        store,
        bus: Arc::new(MemoryEventBus::new(10_000)),
        schema,
    }
}

impl Env {
    pub fn config(&self, id: &str) -> FlowConfig {
        FlowConfig {
            engine_id: Some(id.to_owned()),
            max_parallel: 8,
            lease: hybridgrid_core::config::HumanDuration::from_secs(2),
            poll_interval: hybridgrid_core::config::HumanDuration::from_millis(50),
            work_dir: Some(self.dir.path().join("work")),
            // PostgreSQL: several write transactions in flight, as hg-flow runs it.
            writers: self.schema.as_ref().map(|_| 4),
            ..FlowConfig::default()
        }
    }

    pub async fn engine(&self, id: &str) -> FlowEngine {
        self.engine_with(self.config(id)).await
    }

    pub async fn engine_with(&self, config: FlowConfig) -> FlowEngine {
        std::fs::create_dir_all(self.dir.path().join("work")).unwrap();
        FlowEngine::start(
            config,
            self.store.clone(),
            self.bus.clone(),
            Executors::native(self.dir.path().join("work")),
        )
        .await
        .unwrap()
    }

    pub fn script(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    pub fn count_file(&self) -> PathBuf {
        self.dir.path().join("count.log")
    }

    /// Node ids the counting agents completed, one per line.
    pub fn counted(&self) -> Vec<String> {
        std::fs::read_to_string(self.count_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
            .collect()
    }

    pub async fn cleanup(self) {
        if let Some(schema) = &self.schema {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&pg_url()).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .execute(&mut c)
            .await
            .unwrap();
        }
    }

    /// Registers the test agents: `ok`, `badjson`, `exit1`, `hang`, `count`, `slow`.
    pub async fn agents(&self, engine: &FlowEngine) {
        for (name, script) in [
            ("ok", "ok.sh"),
            ("badjson", "badjson.sh"),
            ("exit1", "exit1.sh"),
            ("hang", "hang.sh"),
            ("count", "count.sh"),
            ("slow", "slow.sh"),
        ] {
            let spec = serde_json::from_value(json!({
                "name": name, "kind": "native", "command": [self.script(script)],
                "env": {"COUNT_FILE": self.count_file().display().to_string()},
                "capabilities": [{"name": "run", "outputSchema": {"type": "object", "required": ["node"]}}]
            }))
            .unwrap();
            engine.create_agent(spec).await.unwrap();
        }
    }
}

fn write_agents(dir: &Path) {
    let scripts = [
        // Echoes its node id and its input (the first argument) as one JSON document.
        (
            "ok.sh",
            "echo \"ok agent running $AGENT_NODE_ID\" >&2\nprintf '{\"node\":\"%s\",\"input\":%s}\\n' \"$AGENT_NODE_ID\" \"$1\"\n",
        ),
        ("badjson.sh", "echo 'this is not json'\n"),
        (
            "exit1.sh",
            "echo 'boom: cannot reach the scanner' >&2\nexit 1\n",
        ),
        ("hang.sh", "sleep 30\n"),
        (
            "count.sh",
            "echo \"$AGENT_RUN_ID $AGENT_NODE_ID\" >> \"$COUNT_FILE\"\nprintf '{\"node\":\"%s\"}\\n' \"$AGENT_NODE_ID\"\n",
        ),
        (
            "slow.sh",
            "sleep 1\necho \"$AGENT_RUN_ID $AGENT_NODE_ID\" >> \"$COUNT_FILE\"\nprintf '{\"node\":\"%s\"}\\n' \"$AGENT_NODE_ID\"\n",
        ),
    ];
    for (name, body) in scripts {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

pub async fn workflow(engine: &FlowEngine, def: Value) -> String {
    engine
        .create_workflow(serde_json::from_value(def).unwrap())
        .await
        .unwrap()
        .id
}

pub async fn trigger(engine: &FlowEngine, wf: &str, context: Value) -> String {
    engine
        .trigger(
            wf,
            context,
            TriggerSource::Manual,
            TriggerOptions::default(),
        )
        .await
        .unwrap()
        .run_id
}

pub async fn finished(engine: &FlowEngine, run: &str) -> WorkflowRun {
    let r = engine.wait_run(run, Duration::from_secs(60)).await.unwrap();
    assert!(
        r.status.is_terminal() || r.status == hybridgrid_flow_model::FlowRunStatus::WaitingApproval,
        "run {run} still {:?} after 60s: {r:#?}",
        r.status
    );
    r
}

pub fn node<'a>(run: &'a WorkflowRun, id: &str) -> &'a hybridgrid_flow_model::NodeRun {
    run.nodes
        .iter()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("no node {id} in {run:#?}"))
}
