//! What MCP servers to start, and how long to wait for them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// One MCP server an agent uses. `Debug` shows environment and header names, never their values
/// (they carry credentials such as `GITHUB_PAT`).
#[derive(Clone)]
pub struct McpServerSpec {
    /// Name the agent's config gives it (`github`); prefixes its tools (`github__get_issue`).
    /// Letters, digits, `-` and `_` only.
    pub name: String,
    /// How to reach it.
    pub transport: McpTransport,
}

/// How to reach an MCP server.
#[derive(Clone)]
pub enum McpTransport {
    /// A subprocess speaking MCP on stdin/stdout. It runs in its own process group (killed as a
    /// whole at shutdown) with a clean environment: `PATH`, `HOME`, `USER`, `LANG`, `LC_ALL`,
    /// `TMPDIR`, `TERM` and `NODE_PATH` are passed on from this process, then `env` is applied.
    Stdio {
        /// Program (looked up on `PATH`), e.g. `npx`, `uvx`, `/usr/bin/mcp-server-time`.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment (credentials injected by grants go here).
        env: BTreeMap<String, String>,
        /// Working directory; `None` keeps this process's.
        cwd: Option<PathBuf>,
    },
    /// A streamable-HTTP MCP endpoint, e.g. `http://127.0.0.1:3001/mcp`.
    Http {
        /// Endpoint URL.
        url: String,
        /// Extra request headers (e.g. `Authorization`).
        headers: BTreeMap<String, String>,
    },
}

impl McpServerSpec {
    /// A stdio server: `command args...`, no extra environment.
    pub fn stdio(
        name: impl Into<String>,
        command: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            transport: McpTransport::Stdio {
                command: command.into(),
                args: args.into_iter().map(Into::into).collect(),
                env: BTreeMap::new(),
                cwd: None,
            },
        }
    }

    /// A streamable-HTTP server at `url`, no extra headers.
    pub fn http(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            transport: McpTransport::Http {
                url: url.into(),
                headers: BTreeMap::new(),
            },
        }
    }
}

impl fmt::Debug for McpServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpServerSpec")
            .field("name", &self.name)
            .field("transport", &self.transport)
            .finish()
    }
}

impl fmt::Debug for McpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            McpTransport::Stdio {
                command,
                args,
                env,
                cwd,
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &env.keys().collect::<Vec<_>>())
                .field("cwd", cwd)
                .finish(),
            McpTransport::Http { url, headers } => f
                .debug_struct("Http")
                .field("url", &redact_url(url))
                .field("headers", &headers.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// `url` without user info and query (which may carry tokens).
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

/// Bounds of an [`super::McpSession`].
#[derive(Clone, Copy, Debug)]
pub struct StartOptions {
    /// Time for one server to start, finish the MCP handshake and list its tools (default 30 s;
    /// `npx` fetching a package takes a while).
    pub start_timeout: Duration,
    /// Time for one tool call (default 60 s).
    pub call_timeout: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            start_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials() {
        let mut s = McpServerSpec::stdio("github", "npx", ["x"]);
        if let McpTransport::Stdio { env, .. } = &mut s.transport {
            env.insert("GITHUB_PAT".into(), "ghp_secret".into());
        }
        let shown = format!("{s:?}");
        assert!(
            shown.contains("GITHUB_PAT") && !shown.contains("ghp_secret"),
            "{shown}"
        );
        let mut h = McpServerSpec::http("x", "http://u:pw@127.0.0.1:1/mcp?token=t");
        if let McpTransport::Http { headers, .. } = &mut h.transport {
            headers.insert("Authorization".into(), "Bearer t0k".into());
        }
        let shown = format!("{h:?}");
        assert!(
            !shown.contains("pw") && !shown.contains("t0k") && !shown.contains("token"),
            "{shown}"
        );
    }
}
