//! [`McpSession`]: the MCP servers of one activation, as one [`ToolRouter`].

use super::error::McpError;
use super::policy::{McpToolInfo, ToolPolicy};
use super::spec::{McpServerSpec, McpTransport, StartOptions, redact_url};
use crate::llm::{ToolDef, ToolError, ToolOutput, ToolRouter};
use async_trait::async_trait;
use process_wrap::tokio::{CommandWrap, ProcessGroup};
use rmcp::model::{CallToolRequestParams, ContentBlock};
use rmcp::service::{Peer, RoleClient, RunningService, ServiceExt};
use rmcp::transport::TokioChildProcess;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// Separator between server and tool in the names the model sees: `github__get_issue`.
pub const NAMESPACE_SEPARATOR: &str = "__";

/// Environment variables a stdio server inherits from this process (everything else is dropped,
/// so the runner's own secrets never reach a server).
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "TERM",
    "NODE_PATH",
];

/// Lines of a server's stderr kept for error messages.
const STDERR_LINES: usize = 40;
/// Bytes of one stderr line kept.
const STDERR_LINE_BYTES: usize = 1000;

/// The end of a child's stderr, filled by a reader task.
#[derive(Default)]
pub(crate) struct StderrTail(Mutex<VecDeque<String>>);

impl StderrTail {
    fn push(&self, mut line: String) {
        if line.len() > STDERR_LINE_BYTES {
            let mut cut = STDERR_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == STDERR_LINES {
            q.pop_front();
        }
        q.push_back(line);
    }

    pub(crate) fn text(&self) -> String {
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

struct Server {
    name: String,
    peer: Peer<RoleClient>,
    service: Mutex<Option<RunningService<RoleClient, ()>>>,
    /// Process group of a stdio server (its leader's pid).
    pgid: Option<u32>,
    stderr: Arc<StderrTail>,
}

struct Route {
    server: usize,
    tool: String,
    /// `Err(reason)` when the policy refuses it (hidden from the model).
    allowed: Result<(), String>,
}

/// The MCP servers of one activation: started together, their tools namespaced
/// `server__tool` and filtered by a [`ToolPolicy`], stopped together ([`McpSession::shutdown`],
/// or on drop) with every stdio server's whole process group killed.
pub struct McpSession {
    servers: Vec<Server>,
    routes: HashMap<String, Route>,
    defs: Vec<ToolDef>,
    call_timeout: Duration,
}

impl std::fmt::Debug for McpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpSession")
            .field(
                "servers",
                &self.servers.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field(
                "tools",
                &self.defs.iter().map(|d| &d.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A name the model may use: `[a-zA-Z0-9_-]`, at most 64 characters.
fn exposed_name(server: &str, tool: &str) -> String {
    let mut n: String = format!("{server}{NAMESPACE_SEPARATOR}{tool}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    n.truncate(64);
    n
}

fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.contains(NAMESPACE_SEPARATOR)
}

/// A started server with its tools.
struct Started {
    server: Server,
    tools: Vec<rmcp::model::Tool>,
}

impl McpSession {
    /// Starts every server in parallel (each bounded by `opts.start_timeout`), lists their tools
    /// and applies `policy`. When one fails, the others are stopped and its error returned.
    pub async fn start(
        specs: Vec<McpServerSpec>,
        policy: Arc<dyn ToolPolicy>,
        opts: StartOptions,
    ) -> Result<McpSession, McpError> {
        let mut names = HashSet::new();
        for s in &specs {
            if !valid_server_name(&s.name) {
                return Err(McpError::InvalidSpec {
                    server: s.name.clone(),
                    reason: "name must be 1-32 letters, digits, '-' or '_' (no '__')".to_owned(),
                });
            }
            if !names.insert(s.name.clone()) {
                return Err(McpError::DuplicateServer {
                    server: s.name.clone(),
                });
            }
        }
        let started_at = Instant::now();
        let results =
            futures::future::join_all(specs.into_iter().map(|s| start_one(s, opts.start_timeout)))
                .await;
        let mut ok = Vec::new();
        let mut first_err = None;
        for r in results {
            match r {
                Ok(s) => ok.push(s),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let mut session = McpSession {
            servers: Vec::new(),
            routes: HashMap::new(),
            defs: Vec::new(),
            call_timeout: opts.call_timeout,
        };
        let mut listed = Vec::new();
        for s in ok {
            listed.push(s.tools);
            session.servers.push(s.server);
        }
        if let Some(e) = first_err {
            session.shutdown().await;
            return Err(e);
        }
        for (i, tools) in listed.into_iter().enumerate() {
            let server = session.servers[i].name.clone();
            for t in tools {
                let info = McpToolInfo {
                    name: t.name.to_string(),
                    description: t.description.as_deref().unwrap_or("").to_owned(),
                    read_only_hint: t.annotations.as_ref().and_then(|a| a.read_only_hint),
                    destructive_hint: t.annotations.as_ref().and_then(|a| a.destructive_hint),
                };
                let allowed = policy.check(&server, &info);
                let name = exposed_name(&server, &info.name);
                if allowed.is_ok() {
                    session.defs.push(ToolDef {
                        name: name.clone(),
                        description: info.description.clone(),
                        input_schema: serde_json::Value::Object((*t.input_schema).clone()),
                    });
                }
                if session.routes.contains_key(&name) {
                    session.shutdown().await;
                    return Err(McpError::InvalidSpec {
                        server,
                        reason: format!("two tools map to the name '{name}'"),
                    });
                }
                session.routes.insert(
                    name,
                    Route {
                        server: i,
                        tool: info.name,
                        allowed,
                    },
                );
            }
        }
        tracing::info!(
            servers = session.servers.len(),
            tools = session.defs.len(),
            hidden = session.routes.len() - session.defs.len(),
            start_ms = started_at.elapsed().as_millis() as u64,
            "mcp_session_started"
        );
        Ok(session)
    }

    /// Names of the started servers.
    pub fn servers(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.name.clone()).collect()
    }

    /// Process group ids of the stdio servers (for checks that nothing outlives the session).
    pub fn process_groups(&self) -> Vec<u32> {
        self.servers.iter().filter_map(|s| s.pgid).collect()
    }

    /// Stops every server: closes the MCP connections and kills each stdio server's whole process
    /// group, then waits (up to 3 s) until no process of those groups is left. Idempotent.
    pub async fn shutdown(&self) {
        for s in &self.servers {
            let service = s.service.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(mut service) = service {
                let _ = tokio::time::timeout(Duration::from_secs(2), service.close()).await;
            }
            if let Some(pgid) = s.pgid {
                kill_group(pgid);
            }
        }
        let groups = self.process_groups();
        let deadline = Instant::now() + Duration::from_secs(3);
        while groups.iter().any(|g| group_alive(*g)) && Instant::now() < deadline {
            for g in &groups {
                kill_group(*g);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for McpSession {
    fn drop(&mut self) {
        for s in &self.servers {
            if let Some(pgid) = s.pgid {
                kill_group(pgid);
            }
        }
    }
}

fn kill_group(pgid: u32) {
    if let Ok(p) = i32::try_from(pgid)
        && p > 1
    {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// True while a live (not zombie) process belongs to process group `pgid` (Linux `/proc`).
pub fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // Fields after the `(comm)`: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return false;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        let _ppid = f.next();
        let pgrp = f.next().and_then(|p| p.parse::<u32>().ok());
        pgrp == Some(pgid) && state != "Z" && state != "X"
    })
}

async fn start_one(spec: McpServerSpec, timeout: Duration) -> Result<Started, McpError> {
    let name = spec.name.clone();
    let stderr = Arc::new(StderrTail::default());
    let started = Instant::now();
    let (service, pgid) = match spec.transport {
        McpTransport::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            let mut cmd = tokio::process::Command::new(&command);
            cmd.args(&args).env_clear();
            for k in PASSED_ENV {
                if let Some(v) = std::env::var_os(k) {
                    cmd.env(k, v);
                }
            }
            cmd.envs(&env);
            if let Some(dir) = &cwd {
                cmd.current_dir(dir);
            }
            let mut wrap = CommandWrap::from(cmd);
            wrap.wrap(ProcessGroup::leader());
            let (proc, child_stderr) = TokioChildProcess::builder(wrap)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| McpError::Start {
                    server: name.clone(),
                    reason: format!("cannot run `{command}`: {e}"),
                    stderr_tail: String::new(),
                })?;
            let pgid = proc.id();
            let reader = child_stderr.map(|err| {
                let tail = stderr.clone();
                let server = name.clone();
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(err).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::debug!(server = %server, line = %line, "mcp_stderr");
                        tail.push(line);
                    }
                })
            });
            let handshake = tokio::time::timeout(timeout, ().serve(proc)).await;
            let fail = |reason: String| {
                if let Some(p) = pgid {
                    kill_group(p);
                }
                reason
            };
            match handshake {
                Ok(Ok(s)) => (s, pgid),
                Ok(Err(e)) => {
                    let reason = fail(format!("MCP handshake failed: {e}"));
                    // Let the reader collect what the dying process wrote.
                    if let Some(r) = reader {
                        let _ = tokio::time::timeout(Duration::from_secs(1), r).await;
                    }
                    return Err(McpError::Start {
                        server: name,
                        reason,
                        stderr_tail: stderr.text(),
                    });
                }
                Err(_) => {
                    fail(String::new());
                    return Err(McpError::StartTimeout {
                        server: name,
                        after: timeout,
                        stderr_tail: stderr.text(),
                    });
                }
            }
        }
        McpTransport::Http { url, headers } => {
            let shown = redact_url(&url);
            let http = crate::llm::http_client().map_err(|reason| McpError::Start {
                server: name.clone(),
                reason,
                stderr_tail: String::new(),
            })?;
            let mut custom = HashMap::new();
            for (k, v) in &headers {
                let k = reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                    McpError::InvalidSpec {
                        server: name.clone(),
                        reason: format!("header name '{k}' is not valid"),
                    }
                })?;
                let mut v = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
                    McpError::InvalidSpec {
                        server: name.clone(),
                        reason: format!("value of header '{k}' is not valid"),
                    }
                })?;
                v.set_sensitive(true);
                custom.insert(k, v);
            }
            let config =
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(custom);
            let transport = StreamableHttpClientTransport::with_client(http, config);
            match tokio::time::timeout(timeout, ().serve(transport)).await {
                Ok(Ok(s)) => (s, None),
                Ok(Err(e)) => {
                    return Err(McpError::Start {
                        server: name,
                        reason: format!("MCP handshake with {shown} failed: {e}"),
                        stderr_tail: String::new(),
                    });
                }
                Err(_) => {
                    return Err(McpError::StartTimeout {
                        server: name,
                        after: timeout,
                        stderr_tail: String::new(),
                    });
                }
            }
        }
    };
    let peer = service.peer().clone();
    let remaining = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(1));
    let server = Server {
        name: name.clone(),
        peer: peer.clone(),
        service: Mutex::new(Some(service)),
        pgid,
        stderr,
    };
    let tools = match tokio::time::timeout(remaining, peer.list_all_tools()).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            let tail = server.stderr.text();
            stop_server(&server).await;
            return Err(McpError::Start {
                server: name,
                reason: format!("tools/list failed: {e}"),
                stderr_tail: tail,
            });
        }
        Err(_) => {
            let tail = server.stderr.text();
            stop_server(&server).await;
            return Err(McpError::StartTimeout {
                server: name,
                after: timeout,
                stderr_tail: tail,
            });
        }
    };
    tracing::debug!(server = %name, tools = tools.len(), start_ms = started.elapsed().as_millis() as u64, "mcp_server_started");
    Ok(Started { server, tools })
}

async fn stop_server(s: &Server) {
    let service = s.service.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(mut service) = service {
        let _ = tokio::time::timeout(Duration::from_secs(2), service.close()).await;
    }
    if let Some(p) = s.pgid {
        kill_group(p);
    }
}

/// Text of an MCP tool result for the model: text blocks as they are, other blocks as JSON;
/// structured content when there is no text.
fn result_text(content: &[ContentBlock], structured: Option<&serde_json::Value>) -> String {
    let mut parts = Vec::new();
    for c in content {
        match c.as_text() {
            Some(t) => parts.push(t.text.clone()),
            None => parts.push(serde_json::to_string(c).unwrap_or_default()),
        }
    }
    if parts.is_empty()
        && let Some(s) = structured
    {
        parts.push(s.to_string());
    }
    parts.join("\n")
}

#[async_trait]
impl ToolRouter for McpSession {
    fn tools(&self) -> Vec<ToolDef> {
        self.defs.clone()
    }

    async fn call(&self, name: &str, args: serde_json::Value) -> Result<ToolOutput, ToolError> {
        let route = self.routes.get(name).ok_or_else(|| ToolError::Unknown {
            name: name.to_owned(),
        })?;
        if let Err(reason) = &route.allowed {
            tracing::info!(tool = name, "mcp_tool_refused");
            return Err(ToolError::Refused {
                name: name.to_owned(),
                reason: reason.clone(),
            });
        }
        let server = self
            .servers
            .get(route.server)
            .ok_or_else(|| ToolError::Unknown {
                name: name.to_owned(),
            })?;
        let arguments = match args {
            serde_json::Value::Object(m) => m,
            serde_json::Value::Null => serde_json::Map::new(),
            other => {
                return Err(ToolError::InvalidArguments {
                    name: name.to_owned(),
                    reason: format!("expected a JSON object, got {other}"),
                });
            }
        };
        let params = CallToolRequestParams::new(route.tool.clone()).with_arguments(arguments);
        let started = Instant::now();
        let result = tokio::time::timeout(self.call_timeout, server.peer.call_tool(params)).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Err(_) => Err(ToolError::Timeout {
                name: name.to_owned(),
                after: self.call_timeout,
            }),
            Ok(Err(e)) => {
                tracing::debug!(server = %server.name, tool = %route.tool, elapsed_ms, error = %e, "mcp_tool_call");
                Err(ToolError::Failed {
                    name: name.to_owned(),
                    reason: e.to_string(),
                })
            }
            Ok(Ok(r)) => {
                tracing::debug!(server = %server.name, tool = %route.tool, elapsed_ms, "mcp_tool_call");
                Ok(ToolOutput {
                    content: result_text(&r.content, r.structured_content.as_ref()),
                    is_error: r.is_error.unwrap_or(false),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_namespaced_and_sanitised() {
        assert_eq!(exposed_name("github", "get_issue"), "github__get_issue");
        assert_eq!(exposed_name("fs", "read.file/x"), "fs__read_file_x");
        assert_eq!(exposed_name("s", &"x".repeat(100)).len(), 64);
        assert!(valid_server_name("git-hub_1"));
        assert!(!valid_server_name("a__b"));
        assert!(!valid_server_name("a b"));
    }

    #[test]
    fn stderr_tail_keeps_the_end() {
        let t = StderrTail::default();
        for i in 0..100 {
            t.push(format!("line {i}"));
        }
        let text = t.text();
        assert!(
            text.starts_with("line 60") && text.ends_with("line 99"),
            "{text}"
        );
    }
}
