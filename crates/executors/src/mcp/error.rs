//! [`McpError`].

use hybridgrid_core::Retry;
use std::time::Duration;

/// A failure of an MCP session or of serving our tools over MCP.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// A server did not start, did not finish the handshake, or could not list its tools.
    /// The message carries the end of what it wrote to stderr.
    #[error(
        "MCP server '{server}' failed to start: {reason}{}",
        stderr_suffix(stderr_tail)
    )]
    Start {
        /// The server's name.
        server: String,
        /// What went wrong.
        reason: String,
        /// The last lines it wrote to stderr (empty for HTTP servers).
        stderr_tail: String,
    },
    /// A server did not get ready within the start timeout.
    #[error(
        "MCP server '{server}' failed to start: not ready after {after:?}{}",
        stderr_suffix(stderr_tail)
    )]
    StartTimeout {
        /// The server's name.
        server: String,
        /// The start timeout.
        after: Duration,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// A spec cannot work (bad name, bad URL, bad header ...).
    #[error("MCP server '{server}': invalid spec: {reason}")]
    InvalidSpec {
        /// The server's name.
        server: String,
        /// What is wrong.
        reason: String,
    },
    /// Two specs have the same name.
    #[error("MCP server '{server}' is listed twice")]
    DuplicateServer {
        /// The name.
        server: String,
    },
    /// Serving tools over MCP failed (bind, transport).
    #[error("MCP serve failed: {reason}")]
    Serve {
        /// What went wrong.
        reason: String,
    },
}

fn stderr_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", tail.trim_end())
    }
}

impl McpError {
    /// Whether the same activation may be tried again.
    pub fn retry(&self) -> Retry {
        match self {
            McpError::StartTimeout { .. } => Retry::After(Duration::from_secs(30)),
            McpError::Start { .. } | McpError::Serve { .. } => {
                Retry::After(Duration::from_secs(60))
            }
            McpError::InvalidSpec { .. } | McpError::DuplicateServer { .. } => Retry::Never,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_message_carries_stderr() {
        let e = McpError::Start {
            server: "github".into(),
            reason: "connection closed".into(),
            stderr_tail: "GITHUB_PAT is not set\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "MCP server 'github' failed to start: connection closed; stderr: GITHUB_PAT is not set"
        );
    }
}
