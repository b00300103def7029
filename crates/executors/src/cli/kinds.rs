//! Per-CLI knowledge: program name, install hint, how it takes prompt, provider and MCP servers.

use super::process::{CliError, CliRequest};
use crate::llm::{ProviderKind, Usage};
use crate::mcp::{McpServerSpec, McpTransport};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// Which coding-agent CLI to run (the agent definition's `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodingAgentKind {
    /// Anthropic's Claude Code (`claude`, npm `@anthropic-ai/claude-code`, Node ≥ 22).
    ClaudeCode,
    /// Aider (`aider`, PyPI `aider-chat`). Takes no MCP servers.
    Aider,
    /// Block's goose: not in any registry this build can install from, so never available.
    Goose,
    /// OpenCode (`opencode`, npm `opencode-ai`).
    OpenCode,
}

impl CodingAgentKind {
    /// The name used in agent definitions and errors: `claude-code`, `aider`, `goose`, `opencode`.
    pub fn name(self) -> &'static str {
        match self {
            CodingAgentKind::ClaudeCode => "claude-code",
            CodingAgentKind::Aider => "aider",
            CodingAgentKind::Goose => "goose",
            CodingAgentKind::OpenCode => "opencode",
        }
    }

    /// Parses an agent definition's `type` (`claude-code`, `claude_code`, `aider`, `goose`, `opencode`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "claude-code" | "claude" => Some(CodingAgentKind::ClaudeCode),
            "aider" => Some(CodingAgentKind::Aider),
            "goose" => Some(CodingAgentKind::Goose),
            "opencode" => Some(CodingAgentKind::OpenCode),
            _ => None,
        }
    }

    /// The program looked up on `PATH`.
    pub fn program(self) -> &'static str {
        match self {
            CodingAgentKind::ClaudeCode => "claude",
            CodingAgentKind::Aider => "aider",
            CodingAgentKind::Goose => "goose",
            CodingAgentKind::OpenCode => "opencode",
        }
    }

    /// How to install it.
    pub fn install_hint(self) -> &'static str {
        match self {
            CodingAgentKind::ClaudeCode => {
                "install it with `npm install @anthropic-ai/claude-code` (needs Node >= 22: npm package `node@22`) and put its bin directory on PATH (scripts/ci-deps/llm.sh does this)"
            }
            CodingAgentKind::Aider => {
                "install it with `pip install aider-chat` (or `uv tool install aider-chat`) and put it on PATH (scripts/ci-deps/llm.sh does this)"
            }
            CodingAgentKind::Goose => {
                "goose is not published on npm, PyPI or crates.io; install the goose CLI from https://github.com/block/goose/releases into the runner image, or use type `claude-code`, `aider` or `opencode`"
            }
            CodingAgentKind::OpenCode => {
                "install it with `npm install opencode-ai` and put its bin directory on PATH (scripts/ci-deps/llm.sh does this)"
            }
        }
    }
}

impl std::fmt::Display for CodingAgentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to run: arguments, environment, files to write first.
pub(crate) struct Invocation {
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// (path, contents): written with mode 0600 before the run, removed after.
    pub files: Vec<(std::path::PathBuf, String)>,
}

fn unsupported(kind: CodingAgentKind, what: impl Into<String>) -> CliError {
    CliError::Unsupported {
        executor: kind.name(),
        what: what.into(),
    }
}

/// Anthropic base URL the way `ANTHROPIC_BASE_URL` takes it (no `/v1`).
fn anthropic_root(base: &str) -> String {
    let b = base.trim_end_matches('/');
    b.strip_suffix("/v1").unwrap_or(b).to_owned()
}

fn claude_mcp_config(servers: &[McpServerSpec]) -> Value {
    let mut m = serde_json::Map::new();
    for s in servers {
        let v = match &s.transport {
            McpTransport::Stdio {
                command, args, env, ..
            } => {
                json!({"type": "stdio", "command": command, "args": args, "env": env, "alwaysLoad": true})
            }
            McpTransport::Http { url, headers } => {
                json!({"type": "http", "url": url, "headers": headers})
            }
        };
        m.insert(s.name.clone(), v);
    }
    json!({ "mcpServers": m })
}

fn opencode_config(req: &CliRequest) -> Value {
    let p = &req.provider;
    let provider = match p.kind {
        ProviderKind::OpenAi => json!({
            "npm": "@ai-sdk/openai-compatible",
            "name": "hybridgrid",
            "options": {"baseURL": p.base_url.trim_end_matches('/'), "apiKey": "{env:HG_OPENCODE_API_KEY}"},
            "models": { p.model.clone(): {"name": p.model} }
        }),
        ProviderKind::Anthropic => json!({
            "npm": "@ai-sdk/anthropic",
            "name": "hybridgrid",
            "options": {"baseURL": format!("{}/v1", anthropic_root(&p.base_url)), "apiKey": "{env:HG_OPENCODE_API_KEY}"},
            "models": { p.model.clone(): {"name": p.model} }
        }),
    };
    let mut mcp = serde_json::Map::new();
    for s in &req.mcp_servers {
        let v = match &s.transport {
            McpTransport::Stdio {
                command, args, env, ..
            } => {
                let mut cmd = vec![command.clone()];
                cmd.extend(args.iter().cloned());
                json!({"type": "local", "command": cmd, "environment": env, "enabled": true})
            }
            McpTransport::Http { url, headers } => {
                json!({"type": "remote", "url": url, "headers": headers, "enabled": true})
            }
        };
        mcp.insert(s.name.clone(), v);
    }
    json!({
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": false,
        "share": "disabled",
        "provider": { "hg": provider },
        "model": format!("hg/{}", p.model),
        "mcp": mcp,
    })
}

/// Builds the command line and environment of `req` for its CLI.
pub(crate) fn invocation(req: &CliRequest, work_dir: &Path) -> Result<Invocation, CliError> {
    let kind = req.kind;
    let p = &req.provider;
    let mut env = BTreeMap::new();
    let mut files = Vec::new();
    let mut args = Vec::new();
    match kind {
        CodingAgentKind::ClaudeCode => {
            if p.kind != ProviderKind::Anthropic {
                return Err(unsupported(
                    kind,
                    "an OpenAI-compatible provider (claude-code speaks the Anthropic API only)",
                ));
            }
            env.insert("ANTHROPIC_BASE_URL".into(), anthropic_root(&p.base_url));
            env.insert("ANTHROPIC_API_KEY".into(), p.api_key.expose().to_owned());
            env.insert("ANTHROPIC_MODEL".into(), p.model.clone());
            env.insert("ANTHROPIC_SMALL_FAST_MODEL".into(), p.model.clone());
            env.insert(
                "CLAUDE_CODE_MAX_OUTPUT_TOKENS".into(),
                p.max_tokens.to_string(),
            );
            env.insert(
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                "1".into(),
            );
            env.insert("DISABLE_AUTOUPDATER".into(), "1".into());
            env.insert("DISABLE_TELEMETRY".into(), "1".into());
            env.insert("DISABLE_ERROR_REPORTING".into(), "1".into());
            env.insert("ENABLE_TOOL_SEARCH".into(), "false".into());
            // claude-code 2.x connects MCP servers in the background in `-p` mode, so on a busy
            // machine the first turn can find a listed server "still connecting" and its tools
            // missing; an activation must see the tools it was granted from the first turn.
            env.insert("MCP_CONNECTION_NONBLOCKING".into(), "false".into());
            args.extend([
                "-p".into(),
                req.prompt.clone(),
                "--output-format".into(),
                "json".into(),
            ]);
            args.extend(["--model".into(), p.model.clone()]);
            if !req.mcp_servers.is_empty() {
                let path = work_dir.join(".hg-mcp.json");
                files.push((
                    path.clone(),
                    claude_mcp_config(&req.mcp_servers).to_string(),
                ));
                args.extend([
                    "--mcp-config".into(),
                    path.display().to_string(),
                    "--strict-mcp-config".into(),
                ]);
            }
            let mut allowed: Vec<String> = req
                .mcp_servers
                .iter()
                .map(|s| format!("mcp__{}", s.name))
                .collect();
            allowed.extend(req.allowed_tools.iter().cloned());
            if !allowed.is_empty() {
                args.extend(["--allowedTools".into(), allowed.join(",")]);
            }
        }
        CodingAgentKind::Aider => {
            if !req.mcp_servers.is_empty() {
                return Err(unsupported(kind, "MCP servers (aider has no MCP client)"));
            }
            match p.kind {
                ProviderKind::OpenAi => {
                    env.insert(
                        "OPENAI_API_BASE".into(),
                        p.base_url.trim_end_matches('/').to_owned(),
                    );
                    env.insert("OPENAI_API_KEY".into(), p.api_key.expose().to_owned());
                    args.extend(["--model".into(), format!("openai/{}", p.model)]);
                }
                ProviderKind::Anthropic => {
                    env.insert("ANTHROPIC_API_BASE".into(), anthropic_root(&p.base_url));
                    env.insert("ANTHROPIC_BASE_URL".into(), anthropic_root(&p.base_url));
                    env.insert("ANTHROPIC_API_KEY".into(), p.api_key.expose().to_owned());
                    args.extend(["--model".into(), format!("anthropic/{}", p.model)]);
                }
            }
            args.extend(
                [
                    "--message",
                    &req.prompt,
                    "--yes-always",
                    "--no-git",
                    "--no-check-update",
                    "--analytics-disable",
                    "--no-show-model-warnings",
                    "--no-pretty",
                    "--no-fancy-input",
                    "--no-detect-urls",
                    "--no-show-release-notes",
                    "--no-auto-commits",
                ]
                .map(String::from),
            );
        }
        CodingAgentKind::OpenCode => {
            env.insert(
                "OPENCODE_CONFIG_CONTENT".into(),
                opencode_config(req).to_string(),
            );
            env.insert("HG_OPENCODE_API_KEY".into(), p.api_key.expose().to_owned());
            env.insert("OPENCODE_DISABLE_AUTOUPDATE".into(), "1".into());
            env.insert("OPENCODE_DISABLE_LSP_DOWNLOAD".into(), "true".into());
            env.insert("OPENCODE_DISABLE_DEFAULT_PLUGINS".into(), "true".into());
            env.insert("OPENCODE_DISABLE_MODELS_FETCH".into(), "true".into());
            args.extend([
                "run".into(),
                "-m".into(),
                format!("hg/{}", p.model),
                req.prompt.clone(),
            ]);
        }
        CodingAgentKind::Goose => {
            return Err(CliError::NotAvailable {
                executor: kind.name(),
                why: "the goose CLI is not installed and cannot be installed from the package registries".into(),
                fix: kind.install_hint().into(),
            });
        }
    }
    args.extend(req.extra_args.iter().cloned());
    Ok(Invocation { args, env, files })
}

/// The answer text and token usage of a finished run, from the CLI's stdout.
pub(crate) fn final_text(kind: CodingAgentKind, stdout: &str) -> (Option<String>, Option<Usage>) {
    match kind {
        CodingAgentKind::ClaudeCode => {
            // `--output-format json` prints one JSON object (the last line when there are several).
            let v = stdout
                .lines()
                .rev()
                .find_map(|l| {
                    serde_json::from_str::<Value>(l.trim())
                        .ok()
                        .filter(Value::is_object)
                })
                .or_else(|| serde_json::from_str::<Value>(stdout.trim()).ok());
            let Some(v) = v else {
                return (non_empty(stdout), None);
            };
            let text = v.get("result").and_then(Value::as_str).map(str::to_owned);
            let usage = v.get("usage").map(|u| {
                let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
                Usage {
                    input_tokens: n("input_tokens")
                        .saturating_add(n("cache_creation_input_tokens"))
                        .saturating_add(n("cache_read_input_tokens")),
                    output_tokens: n("output_tokens"),
                }
            });
            (text, usage)
        }
        CodingAgentKind::Aider => (aider_answer(stdout).or_else(|| non_empty(stdout)), None),
        _ => (non_empty(stdout), None),
    }
}

/// Aider prints a banner (`Aider v…`, `Model: …`, `Git repo: …`, `Repo-map: …`), the answer,
/// then `Tokens: …`: the answer is what lies between.
fn aider_answer(stdout: &str) -> Option<String> {
    let lines: Vec<&str> = stdout.lines().collect();
    let banner_end = lines.iter().rposition(|l| {
        [
            "Aider v",
            "Model:",
            "Main model:",
            "Weak model:",
            "Editor model:",
            "Git repo:",
            "Repo-map:",
        ]
        .iter()
        .any(|p| l.starts_with(p))
    })?;
    let rest = &lines[banner_end + 1..];
    let end = rest
        .iter()
        .rposition(|l| l.starts_with("Tokens:"))
        .unwrap_or(rest.len());
    non_empty(&rest[..end].join("\n"))
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ProviderConfig;

    #[test]
    fn claude_code_gets_base_url_key_and_mcp_config() {
        let provider = ProviderConfig::new(ProviderKind::Anthropic, "m1", "k1")
            .with_base_url("http://127.0.0.1:5/v1");
        let mut req = CliRequest::new(CodingAgentKind::ClaudeCode, "do it", "/w".into(), provider);
        req.mcp_servers.push(McpServerSpec::stdio(
            "time",
            "mcp-server-time",
            Vec::<String>::new(),
        ));
        let inv = invocation(&req, Path::new("/w")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.env["ANTHROPIC_BASE_URL"], "http://127.0.0.1:5");
        assert_eq!(inv.env["ANTHROPIC_API_KEY"], "k1");
        assert!(
            inv.args
                .windows(2)
                .any(|w| w[0] == "--allowedTools" && w[1] == "mcp__time")
        );
        assert!(inv.args.contains(&"--strict-mcp-config".to_owned()));
        assert!(inv.files[0].1.contains("mcp-server-time"));
    }

    #[test]
    fn goose_is_never_available() {
        let provider = ProviderConfig::new(ProviderKind::OpenAi, "m", "k");
        let req = CliRequest::new(CodingAgentKind::Goose, "x", "/w".into(), provider);
        let e = invocation(&req, Path::new("/w"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("Executor 'goose' not available: "), "{e}");
    }

    #[test]
    fn aider_answer_is_cut_out_of_the_banner() {
        let out = "Analytics have been permanently disabled.\n\nAider v0.86.2\nModel: openai/m with whole edit format\nGit repo: none\nRepo-map: disabled\n\nThe answer is 42.\nTokens: 595 sent, 6 received.\n";
        assert_eq!(
            final_text(CodingAgentKind::Aider, out).0.as_deref(),
            Some("The answer is 42.")
        );
        assert_eq!(
            final_text(CodingAgentKind::Aider, "plain").0.as_deref(),
            Some("plain")
        );
    }

    #[test]
    fn claude_json_result_is_read() {
        let out = r#"{"type":"result","subtype":"success","is_error":false,"result":"Done.","usage":{"input_tokens":3,"output_tokens":4}}"#;
        let (t, u) = final_text(CodingAgentKind::ClaudeCode, out);
        assert_eq!(t.as_deref(), Some("Done."));
        assert_eq!(
            u,
            Some(Usage {
                input_tokens: 3,
                output_tokens: 4
            })
        );
    }
}
