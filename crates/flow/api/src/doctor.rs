//! `hg-flow doctor`: the runbook's checks, each with a verdict a person can act on — the database
//! reachable and migrated, NATS reachable, runs stuck past their deadline, agents whose command
//! or image is missing.

use crate::backends;
use crate::config::Config;
use hybridgrid_core::config::EnvSource;
use hybridgrid_core::doctor::check;
use hybridgrid_core::spec::redact;
use hybridgrid_flow_model::{AgentKind, AgentSpec};
use std::path::Path;
use std::time::Duration;

pub use hybridgrid_core::doctor::{Check, Report, Verdict};

/// Adds a check that passed (`ok`) or failed.
fn push(r: &mut Report, name: impl Into<String>, ok: bool, detail: impl Into<String>) {
    let verdict = if ok { Verdict::Ok } else { Verdict::Fail };
    r.push(check(name, verdict, detail));
}

fn on_path(program: &str, env: &dyn EnvSource) -> bool {
    if program.contains('/') {
        return is_executable(Path::new(program));
    }
    env.var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .any(|d| is_executable(&Path::new(d).join(program)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

async fn image_present(image: &str) -> Result<bool, String> {
    let fut = tokio::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(Ok(st)) => Ok(st.success()),
        Ok(Err(e)) => Err(format!("cannot run docker: {e}")),
        Err(_) => Err("docker image inspect did not answer within 10 s".into()),
    }
}

async fn check_agent(a: &AgentSpec, env: &dyn EnvSource) -> (Verdict, String) {
    match a.kind {
        AgentKind::Native => match a.command.first() {
            None => (Verdict::Fail, "native agent has no command".into()),
            Some(p) if on_path(p, env) => (Verdict::Ok, format!("command {p} found")),
            Some(p) => (
                Verdict::Fail,
                format!(
                    "command {p} is not an executable file (nor on PATH): install it or fix the agent's command"
                ),
            ),
        },
        AgentKind::Container => match a.image.as_deref() {
            None => (Verdict::Fail, "container agent has no image".into()),
            Some(img) => match image_present(img).await {
                Ok(true) => (Verdict::Ok, format!("image {img} present")),
                Ok(false) => (
                    Verdict::Fail,
                    format!(
                        "image {img} is not in the local Docker engine: build or load it (no registry pulls)"
                    ),
                ),
                Err(e) => (Verdict::Fail, format!("image {img}: {e}")),
            },
        },
        AgentKind::Llm | AgentKind::Dagger => (
            Verdict::Warn,
            format!(
                "{} agent: not checked here (its endpoint is reached at run time)",
                a.kind
            ),
        ),
    }
}

/// Runs every check; never fails itself (a failed check is a line of the report).
pub async fn run(cfg: &Config, env: &dyn EnvSource) -> Report {
    let mut r = Report::default();
    let db = redact(&cfg.database_url);
    let store = match backends::open_store(&cfg.database_url).await {
        Ok(s) => {
            push(
                &mut r,
                "database",
                true,
                format!("{db} reachable, migrations applied"),
            );
            Some(s)
        }
        Err(e) => {
            push(
                &mut r,
                "database",
                false,
                format!("{e}: check DATABASE_URL and that the server is up"),
            );
            None
        }
    };
    if cfg.nats_url.trim().is_empty() {
        push(
            &mut r,
            "nats",
            true,
            "NATS_URL not set: the in-process bus is used (single orchestrator)",
        );
    } else {
        match backends::nats_ping(&cfg.nats_url).await {
            Ok(()) => push(
                &mut r,
                "nats",
                true,
                format!("{} reachable", redact(&cfg.nats_url)),
            ),
            Err(e) => push(
                &mut r,
                "nats",
                false,
                format!("{}: {e}", redact(&cfg.nats_url)),
            ),
        }
    }
    let Some(store) = store else {
        return r;
    };
    // Read the store directly: the doctor never starts an engine, so it runs, claims and reaps
    // nothing.
    match store.overdue_runs(std::time::SystemTime::now(), 1000).await {
        Ok(runs) if runs.is_empty() => {
            push(&mut r, "stuck runs", true, "no run is past its deadline")
        }
        Ok(runs) => {
            let list: Vec<String> = runs
                .iter()
                .map(|x| {
                    let late = x
                        .deadline
                        .and_then(|d| d.elapsed().ok())
                        .map(|e| format!("{}s past its deadline", e.as_secs()))
                        .unwrap_or_else(|| "past its deadline".into());
                    format!("{} ({:?}, {late})", x.id, x.status)
                })
                .collect();
            push(
                &mut r,
                "stuck runs",
                false,
                format!(
                    "{} run(s) past their deadline: {}; a running hg-flow serve fails them (its reaper), or cancel them with POST /api/workflows/runs/<id>/cancel",
                    runs.len(),
                    list.join(", ")
                ),
            );
        }
        Err(e) => push(
            &mut r,
            "stuck runs",
            false,
            format!("cannot list runs: {e}"),
        ),
    }
    match store.records("agent").await {
        Ok(records) => {
            if records.is_empty() {
                push(&mut r, "agents", true, "no agents registered");
            }
            for rec in records {
                match serde_json::from_value::<AgentSpec>(rec.doc) {
                    Ok(spec) => {
                        let (verdict, detail) = check_agent(&spec, env).await;
                        r.push(check(format!("agent {}", spec.name), verdict, detail));
                    }
                    Err(e) => push(
                        &mut r,
                        format!("agent {}", rec.name),
                        false,
                        format!("stored definition does not parse: {e}"),
                    ),
                }
            }
        }
        Err(e) => push(&mut r, "agents", false, format!("cannot list agents: {e}")),
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn path_lookup() {
        let env = BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]);
        assert!(on_path("sh", &env));
        assert!(on_path("/bin/sh", &env));
        assert!(!on_path("definitely-not-a-program-xyz", &env));
        let dir = std::env::temp_dir().join(format!("hg-doctor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("plain.txt");
        std::fs::write(&plain, "x").unwrap();
        assert!(!on_path(plain.to_str().unwrap(), &env), "not executable");
        assert!(!on_path(dir.to_str().unwrap(), &env), "a directory");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_lines() {
        let mut r = Report::default();
        push(&mut r, "database", true, "ok");
        push(&mut r, "nats", false, "down");
        let text = r.to_string();
        assert!(!r.ok());
        assert!(text.contains("[FAIL] nats: down"), "{text}");
        assert!(text.contains("1 of 2 checks failed"), "{text}");
    }
}
