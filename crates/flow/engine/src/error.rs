//! [`FlowError`]: the one error type of the engine's facade.

use hybridgrid_core::{Retry, StoreError};
use hybridgrid_flow_model::ValidationError;

/// Errors of [`FlowEngine`](crate::FlowEngine). [`FlowError::http_status`] gives the status code
/// an HTTP API answers with; the `Display` text is meant for a person.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// No such agent, workflow, run or approval (404).
    #[error("{what} {id} not found")]
    NotFound {
        /// `agent`, `workflow`, `run`, `approval`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request is malformed or the definition is invalid: unknown agent or action, unknown
    /// dependency, duplicate node, a cycle (with its path) (400). Nothing was created or changed.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// `agent`, `workflow`, `trigger`, `decision`.
        what: &'static str,
        /// What is wrong, naming the culprit.
        message: String,
    },
    /// A definition's document does not match a JSON Schema (a workflow's static inputs against
    /// its agent's input schema), or a schema does not compile (400, like every other invalid
    /// definition; the message names the node and the mismatch).
    #[error("{what} does not match its schema: {message}")]
    Unprocessable {
        /// What was checked (`workflow`, `agent`).
        what: &'static str,
        /// The mismatches.
        message: String,
    },
    /// The request conflicts with the current state: a duplicate name, a decision on an approval
    /// already decided, cancelling a finished run, triggering a workflow that is not ACTIVE (409).
    #[error("{what} {id}: {message}")]
    Conflict {
        /// `agent`, `workflow`, `run`, `approval`.
        what: &'static str,
        /// Its id or name.
        id: String,
        /// Why.
        message: String,
    },
    /// The store failed (500, or 503 when worth retrying).
    #[error("store: {0}")]
    Backend(#[source] StoreError),
}

impl FlowError {
    /// The HTTP status this error maps to: 404, 400, 409, or 503/500 for the store.
    pub fn http_status(&self) -> u16 {
        match self {
            FlowError::NotFound { .. } => 404,
            FlowError::Invalid { .. } => 400,
            FlowError::Unprocessable { .. } => 400,
            FlowError::Conflict { .. } => 409,
            FlowError::Backend(e) if e.retry().is_retryable() => 503,
            FlowError::Backend(_) => 500,
        }
    }

    /// Whether the call is worth repeating.
    pub fn retry(&self) -> Retry {
        match self {
            FlowError::Backend(e) => e.retry(),
            _ => Retry::Never,
        }
    }

    pub(crate) fn from_validation(what: &'static str, e: ValidationError) -> Self {
        if e.is_schema_mismatch() {
            FlowError::Unprocessable {
                what,
                message: e.to_string(),
            }
        } else {
            FlowError::Invalid {
                what,
                message: e.to_string(),
            }
        }
    }
}

impl From<StoreError> for FlowError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => FlowError::NotFound { what, id },
            other => FlowError::Backend(other),
        }
    }
}
