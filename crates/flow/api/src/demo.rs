//! `hg-flow demo`: the quick start. Serves the API and UI on SQLite and the in-process bus,
//! registers the example agents (`examples/flow/agents`) and the scan → notify workflow
//! (`examples/flow/workflows/scan-and-notify.json`), runs it over a directory (by default a sample
//! one with planted fake secrets) and reports the result and the UI's URL.

use crate::app::{App, AppError, Handle};
use crate::config::Config;
use hybridgrid_core::config::EnvSource;
use hybridgrid_flow_engine::{FlowError, TriggerOptions};
use hybridgrid_flow_model::{AgentRun, AgentSpec, TriggerSource, WorkflowRun, WorkflowSpec};
use serde_json::json;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

const SCANNER: &str = include_str!("../../../../examples/flow/agents/secret-scanner.json");
const NOTIFIER: &str = include_str!("../../../../examples/flow/agents/notifier.json");
const WORKFLOW: &str = include_str!("../../../../examples/flow/workflows/scan-and-notify.json");

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The `hg-flow` executable: agents run as `<exe> agent secret-scanner|notifier`.
    pub agent_exe: PathBuf,
    /// Directory to scan; `None` plants a sample directory with fake secrets.
    pub scan_path: Option<PathBuf>,
    /// Listen address of the API and UI.
    pub addr: String,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The app did not start.
    #[error(transparent)]
    App(#[from] AppError),
    /// The engine refused a step of the demo.
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// A file of the demo could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A shipped definition does not parse (a bug in the examples).
    #[error("example definition {name} does not parse: {message}")]
    Definition {
        /// Which file.
        name: &'static str,
        /// The parser's message.
        message: String,
    },
}

/// A finished demo run, with the server still serving.
pub struct Demo {
    /// The serving app (shut it down when done).
    pub handle: Handle,
    /// The run.
    pub run: WorkflowRun,
    /// Its agent runs.
    pub agent_runs: Vec<AgentRun>,
    /// The UI page of the run.
    pub ui_url: String,
    /// The database file.
    pub database: PathBuf,
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_owned(),
        source,
    }
}

fn plant_sample(dir: &std::path::Path) -> Result<(), DemoError> {
    let files: [(&str, String); 4] = [
        (
            "app/settings.py",
            format!(
                "DEBUG = False\nAWS_ACCESS_KEY_ID = '{}{}'\n",
                "AKIA", "IOSFODNN7EXAMPLE"
            ),
        ),
        (
            "deploy/id_rsa",
            format!("-----BEGIN {} KEY-----\nMIIEpAIBAAKCAQEA\n", "RSA PRIVATE"),
        ),
        (
            "config.yaml",
            format!("db:\n  password: \"{}\"\n", "hunter2-but-longer"),
        ),
        ("README.md", "# sample\nNothing to see here.\n".to_owned()),
    ];
    for (name, text) in files {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&p, text).map_err(io(&p))?;
    }
    Ok(())
}

fn agent(
    name: &'static str,
    text: &str,
    exe: &std::path::Path,
    sub: &str,
) -> Result<AgentSpec, DemoError> {
    let mut spec: AgentSpec = serde_json::from_str(text).map_err(|e| DemoError::Definition {
        name,
        message: e.to_string(),
    })?;
    spec.command = vec![exe.display().to_string(), "agent".into(), sub.into()];
    Ok(spec)
}

/// Starts the server, loads the examples, runs the workflow once and waits for it (≤ 2 min).
pub async fn run(opts: DemoOptions, env: &dyn EnvSource) -> Result<Demo, DemoError> {
    let dir = std::env::temp_dir().join(format!("hg-flow-demo-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let scan_path = match opts.scan_path {
        Some(p) => p,
        None => {
            let sample = dir.join("sample");
            plant_sample(&sample)?;
            sample
        }
    };
    let database = dir.join("flow.db");
    let mut cfg = Config {
        database_url: format!("sqlite://{}", database.display()),
        ..Config::default()
    };
    cfg.server.addr = opts.addr;
    cfg.engine.work_dir = Some(dir.join("work"));
    let app = App::build(cfg, env).await?;
    let handle = app.serve().await?;
    let engine = handle.engine().clone();
    engine
        .create_agent(agent(
            "secret-scanner.json",
            SCANNER,
            &opts.agent_exe,
            "secret-scanner",
        )?)
        .await?;
    engine
        .create_agent(agent(
            "notifier.json",
            NOTIFIER,
            &opts.agent_exe,
            "notifier",
        )?)
        .await?;
    let spec: WorkflowSpec = serde_json::from_str(WORKFLOW).map_err(|e| DemoError::Definition {
        name: "scan-and-notify.json",
        message: e.to_string(),
    })?;
    let wf = engine.create_workflow(spec).await?;
    let t = engine
        .trigger(
            &wf.id,
            json!({"path": scan_path.display().to_string()}),
            TriggerSource::Manual,
            TriggerOptions::default(),
        )
        .await?;
    let run = engine.wait_run(&t.run_id, Duration::from_secs(120)).await?;
    let agent_runs = engine.agent_runs(&t.run_id).await?;
    let ui_url = format!(
        "http://{}/#/workflows/{}/runs/{}",
        handle.addr(),
        wf.id,
        run.id
    );
    Ok(Demo {
        handle,
        run,
        agent_runs,
        ui_url,
        database,
    })
}

impl Demo {
    /// What the demo prints: the run's status, each step, the findings and the UI's URL.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "workflow {} run {}: {}",
            self.run.workflow_name, self.run.id, self.run.status
        );
        for a in &self.agent_runs {
            let _ = writeln!(
                s,
                "  step {:<8} {:<10} attempt {} {}",
                a.node_id,
                a.status.as_str(),
                a.attempt,
                a.error.as_deref().unwrap_or("")
            );
        }
        if let Some(scan) = self.agent_runs.iter().find(|a| a.node_id == "scan")
            && let Some(out) = &scan.output
        {
            let _ = writeln!(
                s,
                "findings: {} in {} files",
                out["count"], out["filesScanned"]
            );
            for f in out["findings"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    s,
                    "  {}:{}  {}  {}",
                    f["file"].as_str().unwrap_or("?"),
                    f["line"],
                    f["rule"].as_str().unwrap_or("?"),
                    f["preview"].as_str().unwrap_or("")
                );
            }
        }
        if let Some(notify) = self.agent_runs.iter().find(|a| a.node_id == "notify")
            && let Some(out) = &notify.output
        {
            let _ = writeln!(s, "notification: {out}");
        }
        let _ = writeln!(s, "database: {}", self.database.display());
        let _ = writeln!(s, "UI: {}", self.ui_url);
        s
    }
}
