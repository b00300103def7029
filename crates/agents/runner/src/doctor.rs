//! `hg-agents doctor`: the guide's diagnoses, each a [`Check`] with a verdict and a hint.

use hybridgrid_agents_defs::{AgentType, Definitions, McpServerSpec as DefServer};
use hybridgrid_agents_hub::{HubClient, HubError};
use hybridgrid_agents_protocol::{Backends, RunnerMode};
use hybridgrid_executors::cli::CodingAgentKind;
use std::time::Duration;

/// One diagnosis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it is fine.
    pub ok: bool,
    /// What was found, and what to do when not ok.
    pub detail: String,
}

fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail: detail.into(),
    }
}

fn on_path(program: &str, path: &str) -> bool {
    std::env::split_paths(path).any(|d| d.join(program).is_file())
}

/// Runs every diagnosis. `path` is the `PATH` the runners use; `modes` the runner modes deployed.
pub async fn diagnose(
    backends: &Backends,
    hub: &HubClient,
    defs: &Definitions,
    modes: &[RunnerMode],
    path: &str,
) -> Vec<Check> {
    let mut out = Vec::new();
    // Leader present: a fresh candidate cannot acquire the lease while a leader holds it.
    match backends
        .election
        .try_acquire("hg-agents-doctor", Duration::from_millis(1))
        .await
    {
        Ok(None) => out.push(check(
            "leader present",
            true,
            "a coordinator holds the lease",
        )),
        Ok(Some(l)) => {
            let _ = backends.election.release(&l).await;
            out.push(check(
                "leader present",
                false,
                "no coordinator holds the lease: start `hg-agents coordinator` (check its Redis connectivity)",
            ));
        }
        Err(e) => out.push(check("leader present", false, format!("Redis: {e}"))),
    }
    match hub.health().await {
        Ok(()) => out.push(check("Hub reachable", true, hub.base_url().to_owned())),
        Err(e) => out.push(check("Hub reachable", false, e.to_string())),
    }
    match hub.notifications(Duration::ZERO, None, None).await {
        Ok(p) => out.push(check(
            "Hub authorised",
            true,
            format!("{} unread notification(s)", p.notifications.len()),
        )),
        Err(e @ (HubError::Unauthorized { .. } | HubError::Forbidden { .. })) => {
            out.push(check("Hub authorised", false, e.to_string()));
        }
        Err(e) => out.push(check("Hub authorised", false, e.to_string())),
    }
    let mut inbox_ready = 0;
    let mut discovery_ready = 0;
    match backends.queues.depths().await {
        Ok((i, d)) => {
            inbox_ready = i.ready_total();
            discovery_ready = d.ready_total();
            out.push(check(
                "queue depths",
                true,
                format!(
                    "INBOX high={} normal={} low={} in_flight={} dead={}; DISCOVERY ready={} in_flight={} dead={}",
                    i.ready[0], i.ready[1], i.ready[2], i.in_flight, i.dead, d.ready_total(), d.in_flight, d.dead
                ),
            ));
        }
        Err(e) => out.push(check("queue depths", false, e.to_string())),
    }
    match backends.state.backoffs().await {
        Ok(b) => {
            let active: Vec<String> = b
                .iter()
                .filter(|(_, e)| e.active())
                .map(|(a, e)| format!("{a} ({} failures)", e.failures))
                .collect();
            out.push(check(
                "agents in backoff",
                active.is_empty(),
                if active.is_empty() {
                    "none".to_owned()
                } else {
                    format!(
                        "{}: fix the cause, then `hg-agents clear-backoff AGENT`",
                        active.join(", ")
                    )
                },
            ));
        }
        Err(e) => out.push(check("agents in backoff", false, e.to_string())),
    }
    let takes_inbox = modes.iter().any(|m| *m != RunnerMode::Exploration);
    let takes_discovery = modes.iter().any(|m| *m != RunnerMode::Notification);
    let mismatch = (inbox_ready > 0 && !takes_inbox) || (discovery_ready > 0 && !takes_discovery);
    out.push(check(
        "runner modes match the work",
        !mismatch,
        format!(
            "modes {:?}; INBOX ready {inbox_ready}, DISCOVERY ready {discovery_ready}{}",
            modes.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
            if mismatch {
                ": deploy a runner whose RUNNER_MODE takes that work (hybrid takes both)"
            } else {
                ""
            }
        ),
    ));
    match defs.names().await {
        Err(e) => out.push(check("agent definitions", false, e.to_string())),
        Ok(names) => {
            out.push(check(
                "agent definitions",
                true,
                format!("{} at {}", names.len(), defs.location()),
            ));
            for n in names {
                match defs.get(&n).await {
                    Err(e) => out.push(check(&format!("agent {n}"), false, e.to_string())),
                    Ok(d) => {
                        if let Some(kind) = CodingAgentKind::parse(d.agent_type.as_str())
                            && d.agent_type != AgentType::Native
                        {
                            let ok =
                                kind != CodingAgentKind::Goose && on_path(kind.program(), path);
                            out.push(check(
                                &format!("agent {n}: executor {}", kind.name()),
                                ok,
                                if ok {
                                    format!("{} found on PATH", kind.program())
                                } else {
                                    format!(
                                        "Executor '{}' not available: {}",
                                        kind.name(),
                                        kind.install_hint()
                                    )
                                },
                            ));
                        }
                        for s in &d.capabilities.mcp_servers {
                            if let DefServer::Full {
                                name,
                                command: Some(c),
                                ..
                            } = s
                            {
                                let ok = c.contains('/') && std::path::Path::new(c).is_file()
                                    || on_path(c, path);
                                out.push(check(
                                    &format!("agent {n}: MCP server {name}"),
                                    ok,
                                    if ok { format!("{c} found") } else { format!("MCP server '{name}' failed to start: {c} is not on PATH") },
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}
