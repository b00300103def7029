//! LLM agents (feature `llm`): a flow agent of kind `llm` names, in `command[0]`, an agent
//! definition of the agent runners (`AGENT_DEFINITIONS_PATH/agents/NAME/config.yaml`, see
//! `hybridgrid_agents_defs`), and its step runs that agent through the runners' own executor
//! ([`hybridgrid_agents_runner::StandardExecutor`]: the native LLM tool loop over the Anthropic or
//! OpenAI wire format with the definition's MCP servers, or a coding-agent CLI).
//!
//! The step's input becomes the user turn: the action, the input JSON and the action's output
//! schema, with the instruction to answer with exactly one JSON document. The model's final
//! answer is the step's stdout (one surrounding Markdown code fence is removed), so the engine
//! checks it like any agent's output: not JSON, or not matching the output schema, fails the
//! step. A model that answers `SKIP`, runs out of `behavior.max_iterations` or repeats a tool
//! call ends the attempt with exit code 1 and the reason on stderr; a provider that keeps failing
//! (after the loop's own retries) is an executor failure ([`ExecError::Backend`]).

use crate::executor::{AgentCall, AgentExecutor};
use async_trait::async_trait;
use bytes::Bytes;
use hybridgrid_agents_defs::Definitions;
use hybridgrid_agents_hub::HubClient;
use hybridgrid_agents_protocol::{AgentState, MemoryAgentState, TaskType};
use hybridgrid_agents_runner::{ActivationContext, AgentResult, PostGate};
use hybridgrid_core::{CancellationToken, ExecError, TaskOutput};
use std::sync::Arc;
use std::time::Instant;

pub use hybridgrid_agents_runner::{ExecutorEnv, StandardExecutor};

/// Where LLM agents come from and what reaches the Hub for the ones with Hub grants.
#[derive(Clone)]
pub struct LlmAgents {
    defs: Definitions,
    runner: Arc<dyn hybridgrid_agents_runner::AgentExecutor>,
    hub: Option<HubClient>,
    state: Arc<dyn AgentState>,
    work_root: std::path::PathBuf,
}

impl std::fmt::Debug for LlmAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmAgents")
            .field("definitions", &self.defs.location())
            .field("hub", &self.hub.as_ref().map(HubClient::base_url))
            .finish_non_exhaustive()
    }
}

impl LlmAgents {
    /// Agents defined in `defs`, run by `runner` (usually [`StandardExecutor`] over
    /// [`ExecutorEnv::from_env`]), each attempt in a fresh directory under `work_root`. Without
    /// [`LlmAgents::with_hub`], a definition granted `hub:read` or `hub:write` fails its steps.
    pub fn new(
        defs: Definitions,
        runner: Arc<dyn hybridgrid_agents_runner::AgentExecutor>,
        work_root: impl Into<std::path::PathBuf>,
    ) -> Self {
        Self {
            defs,
            runner,
            hub: None,
            state: Arc::new(MemoryAgentState::new()),
            work_root: work_root.into(),
        }
    }

    /// Hub tools on `hub` for definitions granted `hub:read`/`hub:write` (their daily limits are
    /// counted in memory here).
    pub fn with_hub(mut self, hub: HubClient) -> Self {
        self.hub = Some(hub);
        self
    }
}

/// The user turn for one step.
fn prompt(call: &AgentCall) -> String {
    let schema = call
        .agent
        .capability(&call.action)
        .map(|c| c.output_schema.clone())
        .unwrap_or(serde_json::Value::Bool(true));
    format!(
        "Action: {action}\n\nInput (JSON):\n{input}\n\nAnswer with exactly one JSON document and \
         nothing else. It must match this JSON Schema:\n{schema}",
        action = call.action,
        input = serde_json::to_string_pretty(&call.input).unwrap_or_default(),
        schema = serde_json::to_string_pretty(&schema).unwrap_or_default(),
    )
}

/// The answer without one surrounding Markdown code fence (```` ```json ... ``` ````).
fn unfence(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let Some(body) = rest.strip_suffix("```") else {
        return t;
    };
    // The info string (`json`) runs to the end of the first line.
    match body.split_once('\n') {
        Some((info, inner)) if !info.trim().contains(char::is_whitespace) => inner.trim(),
        _ => body.trim(),
    }
}

fn output(exit_code: i32, stdout: String, stderr: String, started: Instant) -> TaskOutput {
    TaskOutput {
        exit_code,
        stdout: Bytes::from(stdout),
        stderr: Bytes::from(stderr),
        truncated: false,
        files: Vec::new(),
        duration: started.elapsed(),
    }
}

#[async_trait]
impl AgentExecutor for LlmAgents {
    async fn run(
        &self,
        call: AgentCall,
        cancel: CancellationToken,
    ) -> Result<TaskOutput, ExecError> {
        let started = Instant::now();
        let name = call.agent.command.first().cloned().unwrap_or_default();
        let definition =
            self.defs.get(&name).await.map_err(|e| {
                ExecError::InvalidSpec(format!("llm agent {:?}: {e}", call.agent.name))
            })?;
        let hub = match &self.hub {
            Some(h) => h.clone(),
            None if definition.has_grant("hub:read") => {
                return Err(ExecError::InvalidSpec(format!(
                    "llm agent {:?}: definition {name:?} is granted the Hub, but no Hub is configured",
                    call.agent.name
                )));
            }
            // Never called: the definition has no Hub grant, so it gets no Hub tools.
            None => HubClient::new("http://127.0.0.1:9", None).map_err(|e| ExecError::Backend {
                backend: "llm",
                source: e.into(),
            })?,
        };
        let work = tempfile::Builder::new()
            .prefix("llm-")
            .tempdir_in(&self.work_root)
            .map_err(|source| ExecError::WorkDir {
                path: self.work_root.display().to_string(),
                source,
            })?;
        let attempt_cancel = cancel.child_token();
        let ctx = ActivationContext {
            activation_id: format!("{}.{}.{}", call.run_id, call.node_id, call.attempt),
            task_type: TaskType::Inbox,
            definition: definition.clone(),
            prompt: prompt(&call),
            work_dir: work.path().to_owned(),
            credentials: Default::default(),
            hub: PostGate::new(hub, self.state.clone(), definition),
            cancel: attempt_cancel.clone(),
            deadline: call.timeout,
        };
        let ran = tokio::select! {
            r = tokio::time::timeout(call.timeout, self.runner.run(ctx)) => r,
            _ = cancel.cancelled() => return Err(ExecError::Cancelled),
        };
        // Stops what the agent started (MCP servers, a CLI's process tree) on every path.
        attempt_cancel.cancel();
        let run = match ran {
            Err(_) => {
                return Err(ExecError::DeadlineExceeded {
                    after: call.timeout,
                });
            }
            Ok(Err(e)) => {
                return Err(ExecError::Backend {
                    backend: "llm",
                    source: e.into(),
                });
            }
            Ok(Ok(run)) => run,
        };
        let tokens = format!("tokens: {} in, {} out", run.input_tokens, run.output_tokens);
        Ok(match run.result {
            AgentResult::Answer(text) => output(0, unfence(&text).to_owned(), tokens, started),
            AgentResult::Skip => output(
                1,
                String::new(),
                format!("{tokens}\nthe model answered SKIP: no output"),
                started,
            ),
            AgentResult::MaxIterations(n) => output(
                1,
                String::new(),
                format!(
                    "{tokens}\nno final answer after {n} model calls (behavior.max_iterations)"
                ),
                started,
            ),
            AgentResult::RepeatedToolCall(tool) => output(
                1,
                String::new(),
                format!(
                    "{tokens}\nthe model called {tool} again and again with the same arguments"
                ),
                started,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::unfence;

    #[test]
    fn unfence_strips_one_code_fence_only() {
        assert_eq!(unfence(" {\"a\": 1} "), "{\"a\": 1}");
        assert_eq!(unfence("```json\n{\"a\": 1}\n```"), "{\"a\": 1}");
        assert_eq!(unfence("```\n[1]\n```\n"), "[1]");
        assert_eq!(unfence("```{\"a\": 1}```"), "{\"a\": 1}");
        // Not a fence around the whole answer: left alone (and fails as invalid JSON).
        assert_eq!(unfence("here: ```json\n{}\n```"), "here: ```json\n{}\n```");
    }
}
