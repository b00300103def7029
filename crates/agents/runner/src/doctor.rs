//! `hg-agents doctor`: the troubleshooting guide's diagnoses, each a [`Check`] with a
//! [`Verdict`] and what to do about it.
//!
//! | check | fails (or warns) when |
//! |---|---|
//! | Redis reachable | `VALKEY_URL` does not answer (named with its address); the Redis checks below are skipped |
//! | Redis persistence | warn: no append-only file (a restart loses queued work, backoffs and the fencing counter) |
//! | leader present | no coordinator holds `coordinator:leader` |
//! | Hub reachable / Hub authorised | `HUB_URL` does not answer; 401 names `HUB_API_KEY`, 403 the missing grant |
//! | queue depths | (information) ready/in-flight/dead per task type and priority |
//! | agents in backoff | warn: names each agent and how to clear it |
//! | runner modes match the work | work is waiting that no deployed `RUNNER_MODE` takes |
//! | agent NAME | its `config.yaml` is invalid: names the file, the field and the problem |
//! | agent NAME: executor KIND | the coding-agent CLI is not installed (`Executor 'goose' not available: ...`) |
//! | agent NAME: model | the provider's API key is not set |
//! | agent NAME: credentials | a grant's credential is missing (`GITHUB_PAT`) |
//! | agent NAME: MCP server S | the server does not start (its stderr shown) or lists no tools |

use crate::activation::credentials_for;
use crate::standard::{ExecutorEnv, mcp_specs};
use hybridgrid_agents_defs::{AgentDefinition, AgentType, Definitions, Provider};
use hybridgrid_agents_hub::{HubClient, HubError};
use hybridgrid_agents_protocol::{Backends, RunnerMode, redact_url};
use hybridgrid_executors::cli::CodingAgentKind;
use hybridgrid_executors::llm::ToolRouter;
use hybridgrid_executors::mcp::{McpSession, StartOptions};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use hybridgrid_core::doctor::check;
pub use hybridgrid_core::doctor::{Check, Verdict};

fn pass(ok: bool) -> Verdict {
    if ok { Verdict::Ok } else { Verdict::Fail }
}

/// An error with its causes (`a: b: c`), for details.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            let _ = write!(s, ": {m}");
        }
        cur = c.source();
    }
    s
}

fn on_path(program: &str, path: &str) -> bool {
    std::env::split_paths(path).any(|d| d.join(program).is_file())
}

/// What the doctor looks at.
#[derive(Clone, Debug)]
pub struct Doctor {
    /// `VALKEY_URL`.
    pub valkey_url: String,
    /// `AGENTS_REDIS_PREFIX`.
    pub prefix: String,
    /// The Hub (`HUB_URL`, `HUB_API_KEY`).
    pub hub: HubClient,
    /// The agent definitions.
    pub defs: Definitions,
    /// The runner modes deployed, compared with where the work is.
    pub modes: Vec<RunnerMode>,
    /// What the runners have: `PATH` (in `extra_env`), model keys, MCP start timeout.
    pub env: ExecutorEnv,
    /// Credentials the runners have (`GITHUB_PAT`, ...), by name.
    pub credentials: BTreeMap<String, String>,
}

impl Doctor {
    /// Runs every diagnosis; Redis being down skips only the checks that need it.
    pub async fn diagnose(&self) -> Vec<Check> {
        let mut out = Vec::new();
        let addr = redact_url(&self.valkey_url);
        match Backends::connect(&self.valkey_url, &self.prefix).await {
            Err(e) => out.push(check(
                "Redis reachable",
                Verdict::Fail,
                format!(
                    "{}: start it or fix VALKEY_URL; the leader, queue and backoff checks were skipped",
                    chain(&e)
                ),
            )),
            Ok(b) => {
                out.push(check("Redis reachable", Verdict::Ok, addr.clone()));
                if b.kind == "redis" {
                    out.push(persistence(&self.valkey_url).await);
                }
                self.redis_checks(&b, &mut out).await;
            }
        }
        self.hub_checks(&mut out).await;
        self.definition_checks(&mut out).await;
        out
    }

    async fn redis_checks(&self, b: &Backends, out: &mut Vec<Check>) {
        // Leader present: a fresh candidate cannot take the lease while a leader holds it.
        match b
            .election
            .try_acquire("hg-agents-doctor", Duration::from_millis(1))
            .await
        {
            Ok(None) => out.push(check(
                "leader present",
                Verdict::Ok,
                "a coordinator holds the lease",
            )),
            Ok(Some(l)) => {
                let _ = b.election.release(&l).await;
                out.push(check(
                    "leader present",
                    Verdict::Fail,
                    "no coordinator holds the lease: nothing polls the Hub; start `hg-agents coordinator` (and check its logs for became_leader)",
                ));
            }
            Err(e) => out.push(check("leader present", Verdict::Fail, chain(&e))),
        }
        let mut inbox_ready = 0;
        let mut discovery_ready = 0;
        match b.queues.depths().await {
            Ok((i, d)) => {
                inbox_ready = i.ready_total();
                discovery_ready = d.ready_total();
                out.push(check(
                    "queue depths",
                    Verdict::Ok,
                    format!(
                        "INBOX high={} normal={} low={} in_flight={} dead={}; DISCOVERY ready={} in_flight={} dead={}",
                        i.ready[0], i.ready[1], i.ready[2], i.in_flight, i.dead, d.ready_total(), d.in_flight, d.dead
                    ),
                ));
            }
            Err(e) => out.push(check("queue depths", Verdict::Fail, chain(&e))),
        }
        match b.state.backoffs().await {
            Ok(list) => {
                let active: Vec<String> = list
                    .iter()
                    .filter(|(_, e)| e.active())
                    .map(|(a, e)| {
                        let left = e.until_ms.map_or(0, |u| {
                            u.saturating_sub(hybridgrid_agents_hub::now_secs() * 1000) / 1000
                        });
                        format!("{a} ({} consecutive failures, {left}s left)", e.failures)
                    })
                    .collect();
                out.push(if active.is_empty() {
                    check("agents in backoff", Verdict::Ok, "none")
                } else {
                    check(
                        "agents in backoff",
                        Verdict::Warn,
                        format!(
                            "{}: fix the cause (see activation_failed in the runner logs), then `hg-agents clear-backoff AGENT`",
                            active.join(", ")
                        ),
                    )
                });
            }
            Err(e) => out.push(check("agents in backoff", Verdict::Fail, chain(&e))),
        }
        let takes_inbox = self.modes.iter().any(|m| *m != RunnerMode::Exploration);
        let takes_discovery = self.modes.iter().any(|m| *m != RunnerMode::Notification);
        let mut stranded = Vec::new();
        if inbox_ready > 0 && !takes_inbox {
            stranded.push(format!(
                "{inbox_ready} INBOX item(s) wait but no runner takes INBOX (RUNNER_MODE notification or hybrid)"
            ));
        }
        if discovery_ready > 0 && !takes_discovery {
            stranded.push(format!(
                "{discovery_ready} DISCOVERY item(s) wait but no runner takes DISCOVERY (RUNNER_MODE exploration or hybrid)"
            ));
        }
        let modes: Vec<&str> = self.modes.iter().map(|m| m.as_str()).collect();
        out.push(check(
            "runner modes match the work",
            pass(stranded.is_empty()),
            if stranded.is_empty() {
                format!(
                    "modes {modes:?}; INBOX ready {inbox_ready}, DISCOVERY ready {discovery_ready}"
                )
            } else {
                format!("modes {modes:?}: {}", stranded.join("; "))
            },
        ));
    }

    async fn hub_checks(&self, out: &mut Vec<Check>) {
        match self.hub.health().await {
            Ok(()) => out.push(check(
                "Hub reachable",
                Verdict::Ok,
                self.hub.base_url().to_owned(),
            )),
            Err(e) => {
                out.push(check(
                    "Hub reachable",
                    Verdict::Fail,
                    format!("{}: check HUB_URL and the network/proxy", chain(&e)),
                ));
                if matches!(e, HubError::Unreachable { .. } | HubError::BadUrl { .. }) {
                    return;
                }
            }
        }
        match self.hub.notifications(Duration::ZERO, None, None).await {
            Ok(p) => out.push(check(
                "Hub authorised",
                Verdict::Ok,
                format!("{} unread notification(s)", p.notifications.len()),
            )),
            Err(e) => out.push(check("Hub authorised", Verdict::Fail, chain(&e))),
        }
    }

    async fn definition_checks(&self, out: &mut Vec<Check>) {
        let names = match self.defs.names().await {
            Err(e) => {
                out.push(check("agent definitions", Verdict::Fail, chain(&e)));
                return;
            }
            Ok(n) => n,
        };
        out.push(check(
            "agent definitions",
            pass(!names.is_empty()),
            if names.is_empty() {
                format!(
                    "none at {} (expected agents/NAME/config.yaml)",
                    self.defs.location()
                )
            } else {
                format!("{} at {}", names.len(), self.defs.location())
            },
        ));
        for n in names {
            match self.defs.get(&n).await {
                Err(e) => out.push(check(format!("agent {n}"), Verdict::Fail, chain(&e))),
                Ok(d) => self.agent_checks(&d, out).await,
            }
        }
    }

    async fn agent_checks(&self, d: &Arc<AgentDefinition>, out: &mut Vec<Check>) {
        let n = &d.name;
        let path = self.env.extra_env.get("PATH").cloned().unwrap_or_default();
        if d.agent_type != AgentType::Native
            && let Some(kind) = CodingAgentKind::parse(d.agent_type.as_str())
        {
            let ok = kind != CodingAgentKind::Goose && on_path(kind.program(), &path);
            out.push(check(
                format!("agent {n}: executor {}", kind.name()),
                pass(ok),
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
        if let Some(brain) = &d.brain {
            let (var, have) = match &brain.api_key_env {
                Some(v) => (v.clone(), std::env::var(v).is_ok_and(|k| !k.is_empty())),
                None => match brain.provider {
                    Provider::Anthropic => (
                        "ANTHROPIC_API_KEY".to_owned(),
                        self.env.anthropic_api_key.is_some(),
                    ),
                    Provider::Openai => (
                        "OPENAI_API_KEY".to_owned(),
                        self.env.openai_api_key.is_some(),
                    ),
                },
            };
            out.push(check(
                format!("agent {n}: model"),
                pass(have),
                if have {
                    format!("{:?} {} ({var} set)", brain.provider, brain.model)
                } else {
                    format!(
                        "{:?} {}: {var} is not set on the runners",
                        brain.provider, brain.model
                    )
                },
            ));
        }
        let credentials = match credentials_for(d, &self.credentials) {
            Ok(c) => c,
            Err(e) => {
                out.push(check(format!("agent {n}: credentials"), Verdict::Fail, e));
                return;
            }
        };
        let dir = match tempfile::tempdir() {
            Ok(t) => t,
            Err(e) => {
                out.push(check(
                    format!("agent {n}: MCP servers"),
                    Verdict::Fail,
                    format!("creating a scratch directory: {e}"),
                ));
                return;
            }
        };
        let (specs, policy) = mcp_specs(d, &credentials, &self.env.extra_env, dir.path());
        let policy = Arc::new(policy);
        let opts = StartOptions {
            start_timeout: self.env.mcp_start_timeout,
            call_timeout: self.env.tool_call_timeout,
        };
        // One session per server, in parallel: each gets its own verdict.
        let started = futures::future::join_all(specs.into_iter().map(|spec| {
            let policy = policy.clone();
            async move {
                let name = spec.name.clone();
                (name, McpSession::start(vec![spec], policy, opts).await)
            }
        }))
        .await;
        for (server, r) in started {
            let label = format!("agent {n}: MCP server {server}");
            match r {
                Ok(s) => {
                    let tools = s.tools().len();
                    s.shutdown().await;
                    out.push(check(
                        &label,
                        pass(tools > 0),
                        format!("started, {tools} tool(s) visible to the agent"),
                    ));
                }
                Err(e) => out.push(check(&label, Verdict::Fail, chain(&e))),
            }
        }
    }
}

/// Redis persistence: without an append-only file a restart loses everything since the last
/// snapshot, and the fencing counter restarts, so a new leader's token can be one already seen.
async fn persistence(url: &str) -> Check {
    match hybridgrid_agents_protocol::redis_persistence(url).await {
        Ok(p) if p.aof_enabled => check(
            "Redis persistence",
            Verdict::Ok,
            format!("appendonly yes at {}", redact_url(url)),
        ),
        Ok(p) => check(
            "Redis persistence",
            Verdict::Warn,
            format!(
                "Redis at {} has no append-only file (appendonly no{}): a restart loses queued work, backoffs and the fencing counter; set `appendonly yes`",
                redact_url(url),
                match p.rdb_save.as_deref() {
                    Some("") => ", snapshots off".to_owned(),
                    Some(s) => format!(", snapshots only: save {s:?}"),
                    None => String::new(),
                }
            ),
        ),
        Err(e) => check(
            "Redis persistence",
            Verdict::Warn,
            format!("could not read INFO persistence: {}", chain(&e)),
        ),
    }
}
