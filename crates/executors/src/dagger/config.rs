//! Settings of the [`super::DaggerExecutor`] and its errors.

use hybridgrid_core::config::EnvSource;
use hybridgrid_core::{BoxError, ExecError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// Settings of a [`super::DaggerExecutor`]: where the engine session listens and how to log in.
///
/// ```yaml
/// dagger:
///   port: 36409          # DAGGER_SESSION_PORT of the `dagger run` session
///   token: "..."         # DAGGER_SESSION_TOKEN (never logged)
///   image: alpine:3.20   # for tasks that name none
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaggerConfig {
    /// Host of the session API. Default `127.0.0.1`: a session listens on loopback only.
    pub host: String,
    /// Port of the session API (`DAGGER_SESSION_PORT`); 0 is unset.
    pub port: u16,
    /// Session token (`DAGGER_SESSION_TOKEN`), sent as the Basic-auth user name.
    pub token: String,
    /// Image for tasks whose spec names none (`TaskSpec::image` wins when set).
    pub image: Option<String>,
    /// Host directory for each task's input and export directories (the engine reads and
    /// writes them: it must run on this host). Default `$TMPDIR/hybridgrid-dagger`.
    pub work_root: PathBuf,
    /// Absolute path under which the task's work directory is mounted in the container
    /// (`<container_root>/hg-<task id>`). Default `/work`.
    pub container_root: String,
}

impl Default for DaggerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 0,
            token: String::new(),
            image: None,
            work_root: std::env::temp_dir().join("hybridgrid-dagger"),
            container_root: "/work".to_owned(),
        }
    }
}

impl fmt::Debug for DaggerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaggerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("token", &"<redacted>")
            .field("image", &self.image)
            .field("work_root", &self.work_root)
            .field("container_root", &self.container_root)
            .finish()
    }
}

impl DaggerConfig {
    /// The defaults with `port` and `token` from `DAGGER_SESSION_PORT` and
    /// `DAGGER_SESSION_TOKEN`, as `dagger run` sets them for the program it runs.
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ExecError> {
        let port = env.var("DAGGER_SESSION_PORT").ok_or_else(|| invalid(
            "DAGGER_SESSION_PORT is not set: run under `dagger run`, or set it and DAGGER_SESSION_TOKEN to a running session's".to_owned(),
        ))?;
        let port = port.trim().parse::<u16>().map_err(|_| {
            invalid(format!(
                "DAGGER_SESSION_PORT = {port:?} is not a port number"
            ))
        })?;
        let token = env
            .var("DAGGER_SESSION_TOKEN")
            .ok_or_else(|| invalid("DAGGER_SESSION_TOKEN is not set".to_owned()))?;
        Ok(Self {
            port,
            token,
            ..Self::default()
        })
    }
}

fn invalid(reason: String) -> ExecError {
    DaggerError::InvalidConfig { reason }.into()
}

/// Why the Dagger engine could not run a task. Reaches callers as the `source` of
/// [`ExecError::Backend`] with `backend: "dagger"`. Never contains the session token.
#[derive(Debug, thiserror::Error)]
pub enum DaggerError {
    /// The session API does not answer.
    #[error(
        "Dagger engine not reachable at {url} ({reason}): run this program under `dagger run`, \
         or set DAGGER_SESSION_PORT and DAGGER_SESSION_TOKEN to a running session's"
    )]
    Unavailable {
        /// The session URL.
        url: String,
        /// The client's error.
        reason: String,
    },
    /// The engine refused the session token (HTTP 401).
    #[error(
        "the Dagger engine at {url} refused the session token (401): check DAGGER_SESSION_TOKEN"
    )]
    Unauthorized {
        /// The session URL.
        url: String,
    },
    /// The engine answered the query with GraphQL errors.
    #[error("Dagger query failed at {path}: {message}")]
    Query {
        /// The errors' messages, joined.
        message: String,
        /// Where in the query the first error was (`container.from.withExec`), or `query`.
        path: String,
    },
    /// The engine's answer is not what the API promises.
    #[error("unexpected answer from the Dagger engine: {reason}")]
    BadResponse {
        /// What was wrong.
        reason: String,
    },
    /// A setting is unusable.
    #[error("bad dagger executor settings: {reason}")]
    InvalidConfig {
        /// What is wrong, naming the field or variable.
        reason: String,
    },
    /// Any other transport failure.
    #[error("talking to the Dagger engine: {0}")]
    Transport(#[source] BoxError),
}

impl From<DaggerError> for ExecError {
    fn from(e: DaggerError) -> Self {
        ExecError::Backend {
            backend: "dagger",
            source: Box::new(e),
        }
    }
}
