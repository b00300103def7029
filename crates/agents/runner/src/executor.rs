//! The seam between the runner and what runs an agent (the native LLM loop or a coding CLI).

use crate::gate::PostGate;
use async_trait::async_trait;
use hybridgrid_agents_defs::AgentDefinition;
use hybridgrid_agents_protocol::TaskType;
use hybridgrid_core::CancellationToken;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything one activation's executor gets.
pub struct ActivationContext {
    /// The activation id (work item id).
    pub activation_id: String,
    /// INBOX or DISCOVERY.
    pub task_type: TaskType,
    /// The agent's definition as loaded for this activation.
    pub definition: Arc<AgentDefinition>,
    /// The user turn: the notification text or the exploration brief.
    pub prompt: String,
    /// The activation's own sandbox directory (removed afterwards).
    pub work_dir: PathBuf,
    /// Credentials the agent's grants unlock (`GITHUB_PAT` for `github:read`); never logged.
    pub credentials: BTreeMap<String, String>,
    /// Hub tools (read, post, reply, search), gated by the agent's grants and limits.
    pub hub: PostGate,
    /// Cancelled on `ACTIVATION_TIMEOUT`, operator cancel, or a lost lease.
    pub cancel: CancellationToken,
    /// Time left for this activation.
    pub deadline: Duration,
}

impl std::fmt::Debug for ActivationContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivationContext")
            .field("activation_id", &self.activation_id)
            .field("agent", &self.definition.name)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// How an agent run ended (without failing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentResult {
    /// A final answer to post.
    Answer(String),
    /// The model answered `SKIP`: nothing is posted.
    Skip,
    /// The loop stopped at `behavior.max_iterations`.
    MaxIterations(u32),
    /// The same tool was called again and again with the same arguments.
    RepeatedToolCall(String),
}

/// What ran, with token usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRun {
    /// The end.
    pub result: AgentResult,
    /// Input tokens used.
    pub input_tokens: u64,
    /// Output tokens used.
    pub output_tokens: u64,
}

/// Runs one agent activation.
#[async_trait]
pub trait AgentExecutor: Send + Sync + 'static {
    /// Runs the agent; must stop (killing any child process tree) when `ctx.cancel` fires or the
    /// future is dropped.
    async fn run(&self, ctx: ActivationContext) -> Result<AgentRun, String>;
}
