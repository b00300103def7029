//! [`StandardExecutor`]: the native LLM loop (`type: native`) and the coding-agent CLIs
//! (`claude-code`, `aider`, `opencode`, `goose`), with the agent's MCP servers and Hub tools.

use crate::executor::{ActivationContext, AgentExecutor, AgentResult, AgentRun};
use crate::hub_tools::HubTools;
use async_trait::async_trait;
use hybridgrid_agents_defs::{AgentDefinition, AgentType, McpServerSpec as DefServer, Provider};
use hybridgrid_core::config::EnvSource;
use hybridgrid_executors::cli::{CliRequest, CodingAgentKind, run_cli};
use hybridgrid_executors::llm::{
    AgentRequest, CompositeTools, NoTools, ProviderConfig, ProviderKind, StopReason, ToolRouter,
    run_agent,
};
use hybridgrid_executors::mcp::{
    AllowAll, McpServerSpec, McpSession, McpTransport, PerServer, ReadOnly, StartOptions,
    ToolPolicy, serve_tools_http,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Where the executors find models and programs. `Debug` shows no key.
#[derive(Clone, Default)]
pub struct ExecutorEnv {
    /// `ANTHROPIC_BASE_URL`.
    pub anthropic_base_url: Option<String>,
    /// `ANTHROPIC_API_KEY`.
    pub anthropic_api_key: Option<String>,
    /// `OPENAI_BASE_URL`.
    pub openai_base_url: Option<String>,
    /// `OPENAI_API_KEY`.
    pub openai_api_key: Option<String>,
    /// Extra environment for CLIs and stdio MCP servers (`PATH` with the CLIs' bin directory).
    pub extra_env: BTreeMap<String, String>,
    /// MCP server start timeout.
    pub mcp_start_timeout: Duration,
    /// Per-tool-call timeout.
    pub tool_call_timeout: Duration,
}

impl std::fmt::Debug for ExecutorEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorEnv")
            .field("anthropic_base_url", &self.anthropic_base_url)
            .field("openai_base_url", &self.openai_base_url)
            .field("extra_env", &self.extra_env.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ExecutorEnv {
    /// From the environment (`ANTHROPIC_*`, `OPENAI_*`, `PATH`).
    pub fn from_env(env: &dyn EnvSource) -> Self {
        let get = |k: &str| env.var(k).filter(|v| !v.is_empty());
        let mut extra_env = BTreeMap::new();
        if let Some(p) = get("PATH") {
            extra_env.insert("PATH".to_owned(), p);
        }
        Self {
            anthropic_base_url: get("ANTHROPIC_BASE_URL"),
            anthropic_api_key: get("ANTHROPIC_API_KEY"),
            openai_base_url: get("OPENAI_BASE_URL"),
            openai_api_key: get("OPENAI_API_KEY"),
            extra_env,
            mcp_start_timeout: Duration::from_secs(30),
            tool_call_timeout: Duration::from_secs(60),
        }
    }

    fn provider(&self, def: &AgentDefinition) -> Result<ProviderConfig, String> {
        let brain = def
            .brain
            .as_ref()
            .ok_or_else(|| format!("agent {:?} has no brain (model) configured", def.name))?;
        let (kind, base, key) = match brain.provider {
            Provider::Anthropic => (
                ProviderKind::Anthropic,
                &self.anthropic_base_url,
                &self.anthropic_api_key,
            ),
            Provider::Openai => (
                ProviderKind::OpenAi,
                &self.openai_base_url,
                &self.openai_api_key,
            ),
        };
        let key = match &brain.api_key_env {
            Some(var) => std::env::var(var).ok(),
            None => key.clone(),
        }
        .unwrap_or_default();
        let mut p = ProviderConfig::new(kind, brain.model.clone(), key.as_str());
        if let Some(b) = brain.base_url.clone().or_else(|| base.clone()) {
            p = p.with_base_url(b);
        }
        p.temperature = Some(brain.temperature as f32);
        p.max_tokens = brain.max_tokens;
        Ok(p)
    }
}

/// Runs agents by their `type`.
#[derive(Debug, Clone)]
pub struct StandardExecutor {
    env: ExecutorEnv,
}

impl StandardExecutor {
    /// An executor using `env`.
    pub fn new(env: ExecutorEnv) -> Self {
        Self { env }
    }
}

/// The agent's MCP servers (except the built-in `hub`) with credentials injected by grant, and
/// the policy: a server bound to a `:read` grant is read-only, `:write` allows all.
pub(crate) fn mcp_specs(
    def: &AgentDefinition,
    credentials: &BTreeMap<String, String>,
    extra_env: &BTreeMap<String, String>,
    cwd: &std::path::Path,
) -> (Vec<McpServerSpec>, PerServer) {
    let mut specs = Vec::new();
    let mut policy = PerServer::new(Arc::new(AllowAll));
    for s in &def.capabilities.mcp_servers {
        let DefServer::Full {
            name,
            command,
            args,
            env,
            url,
            grant,
        } = s
        else {
            continue;
        };
        let mut env = env.clone();
        for (k, v) in extra_env {
            env.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if let Some(g) = grant {
            let svc = g.split(':').next().unwrap_or("").to_ascii_uppercase();
            for (k, v) in credentials {
                if k.starts_with(&format!("{svc}_")) {
                    env.insert(k.clone(), v.clone());
                }
            }
            let p: Arc<dyn ToolPolicy> =
                if def.has_grant(&format!("{}:write", svc.to_ascii_lowercase())) {
                    Arc::new(AllowAll)
                } else {
                    Arc::new(ReadOnly {
                        trust_unannotated: true,
                    })
                };
            policy = policy.with(name.clone(), p);
        }
        let transport = match (command, url) {
            (Some(c), _) => McpTransport::Stdio {
                command: c.clone(),
                args: args.clone(),
                env,
                cwd: Some(cwd.to_owned()),
            },
            (None, Some(u)) => McpTransport::Http {
                url: u.clone(),
                headers: BTreeMap::new(),
            },
            (None, None) => continue,
        };
        specs.push(McpServerSpec {
            name: name.clone(),
            transport,
        });
    }
    (specs, policy)
}

fn wants_hub(def: &AgentDefinition) -> bool {
    def.capabilities
        .mcp_servers
        .iter()
        .any(|s| matches!(s, DefServer::Named(n) if n == "hub"))
        || def.has_grant("hub:read")
}

#[async_trait]
impl AgentExecutor for StandardExecutor {
    async fn run(&self, ctx: ActivationContext) -> Result<AgentRun, String> {
        let def = ctx.definition.clone();
        let provider = self.env.provider(&def)?;
        let (specs, policy) = mcp_specs(&def, &ctx.credentials, &self.env.extra_env, &ctx.work_dir);
        let hub_tools = HubTools::new(ctx.hub.clone(), &ctx.activation_id);
        let opts = StartOptions {
            start_timeout: self.env.mcp_start_timeout,
            call_timeout: self.env.tool_call_timeout,
        };
        let system = def.system_prompt.clone();
        match def.agent_type {
            AgentType::Native => {
                let session = if specs.is_empty() {
                    None
                } else {
                    Some(Arc::new(
                        McpSession::start(specs, Arc::new(policy), opts)
                            .await
                            .map_err(|e| e.to_string())?,
                    ))
                };
                let mut routers: Vec<Arc<dyn ToolRouter>> = Vec::new();
                if wants_hub(&def) {
                    routers.push(Arc::new(hub_tools));
                }
                if let Some(s) = &session {
                    routers.push(s.clone());
                }
                let tools: Arc<dyn ToolRouter> = if routers.is_empty() {
                    Arc::new(NoTools)
                } else {
                    Arc::new(CompositeTools::new(routers).map_err(|e| e.to_string())?)
                };
                let mut req = AgentRequest::new(provider, system, ctx.prompt, tools);
                req.max_iterations = def.behavior.max_iterations;
                req.cancel = ctx.cancel.clone();
                let out = run_agent(req).await;
                if let Some(s) = session {
                    s.shutdown().await;
                }
                let out = out.map_err(|e| e.to_string())?;
                let result = match out.stop {
                    StopReason::Final => AgentResult::Answer(out.final_text.unwrap_or_default()),
                    StopReason::Skip => AgentResult::Skip,
                    StopReason::MaxIterations => AgentResult::MaxIterations(out.iterations),
                    StopReason::RepeatedToolCall { tool } => AgentResult::RepeatedToolCall(tool),
                };
                Ok(AgentRun {
                    result,
                    input_tokens: out.usage.input_tokens,
                    output_tokens: out.usage.output_tokens,
                })
            }
            cli => {
                let kind = CodingAgentKind::parse(cli.as_str())
                    .ok_or_else(|| format!("Executor '{}' not available", cli.as_str()))?;
                let mut servers = specs;
                let mut served = None;
                if wants_hub(&def) {
                    let hub_router: Arc<dyn ToolRouter> = Arc::new(hub_tools);
                    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                    let srv = serve_tools_http(hub_router, "hub", addr, ctx.cancel.child_token())
                        .await
                        .map_err(|e| e.to_string())?;
                    servers.push(McpServerSpec::http("hub", srv.url()));
                    served = Some(srv);
                }
                let prompt = if system.is_empty() {
                    ctx.prompt
                } else {
                    format!("{system}\n\n{}", ctx.prompt)
                };
                let mut req = CliRequest::new(kind, prompt, ctx.work_dir.clone(), provider);
                req.mcp_servers = servers;
                req.env = self.env.extra_env.clone();
                req.env.extend(ctx.credentials.clone());
                req.timeout = ctx.deadline;
                req.cancel = ctx.cancel.clone();
                let out = run_cli(req).await;
                if let Some(s) = served {
                    s.shutdown().await;
                }
                let out = out.map_err(|e| e.to_string())?;
                if !out.success() {
                    return Err(format!(
                        "Executor '{}' exited with {}: {}",
                        kind.name(),
                        out.exit_code,
                        out.stderr_tail.trim()
                    ));
                }
                let text = out.final_text.unwrap_or_default();
                let first = text.split_whitespace().next().unwrap_or("");
                let result = if first
                    .trim_matches(|c: char| !c.is_ascii_alphanumeric())
                    .eq_ignore_ascii_case("skip")
                {
                    AgentResult::Skip
                } else {
                    AgentResult::Answer(text)
                };
                let usage = out.usage.unwrap_or_default();
                Ok(AgentRun {
                    result,
                    input_tokens: usage.input_tokens,
                    output_tokens: usage.output_tokens,
                })
            }
        }
    }
}
