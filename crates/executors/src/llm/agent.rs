//! The native agent loop: model → tool calls → results → model, until a final answer, `SKIP`,
//! `max_iterations` or a repeated call.

use super::client;
use super::config::ProviderConfig;
use super::conversation::{Msg, Prompt, Usage};
use super::error::LlmError;
use super::tools::{ToolOutput, ToolRouter};
use hybridgrid_core::CancellationToken;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// One activation of a native agent.
#[derive(Clone)]
pub struct AgentRequest {
    /// The model to talk to.
    pub provider: ProviderConfig,
    /// System prompt (the agent's definition).
    pub system_prompt: String,
    /// The first user message (the notification, the exploration task).
    pub user_message: String,
    /// The tools the model may call.
    pub tools: Arc<dyn ToolRouter>,
    /// Model calls at most (default 10). `0` is treated as 1.
    pub max_iterations: u32,
    /// The same tool with the same arguments asked for this many times stops the loop with
    /// [`StopReason::RepeatedToolCall`] (that call is not run). Default 3; `0` turns the check off.
    pub repeat_limit: u32,
    /// Cancels the activation (the in-flight model call or tool call is abandoned).
    pub cancel: CancellationToken,
}

impl AgentRequest {
    /// A request with the defaults: 10 iterations, repeat limit 3, a fresh cancellation token.
    pub fn new(
        provider: ProviderConfig,
        system_prompt: impl Into<String>,
        user_message: impl Into<String>,
        tools: Arc<dyn ToolRouter>,
    ) -> Self {
        Self {
            provider,
            system_prompt: system_prompt.into(),
            user_message: user_message.into(),
            tools,
            max_iterations: 10,
            repeat_limit: 3,
            cancel: CancellationToken::new(),
        }
    }
}

impl std::fmt::Debug for AgentRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRequest")
            .field("provider", &self.provider)
            .field("max_iterations", &self.max_iterations)
            .field("repeat_limit", &self.repeat_limit)
            .finish_non_exhaustive()
    }
}

/// Why the loop ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model answered without asking for tools: `final_text` is the answer to post.
    Final,
    /// The model answered `SKIP` (its answer's first word): nothing should be posted.
    Skip,
    /// `max_iterations` model calls were made and the model still asked for tools (those last
    /// calls were not run).
    MaxIterations,
    /// The model asked for the same tool with the same arguments `repeat_limit` times.
    RepeatedToolCall {
        /// The tool.
        tool: String,
    },
}

/// One tool call the loop ran (or refused to run).
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCallRecord {
    /// 1-based model call that asked for it.
    pub iteration: u32,
    /// Tool name.
    pub name: String,
    /// Arguments the model gave.
    pub arguments: serde_json::Value,
    /// What the model was given back (a [`super::ToolError`] becomes an error output).
    pub output: ToolOutput,
}

/// The result of an activation.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentOutcome {
    /// Why it ended.
    pub stop: StopReason,
    /// The model's last text (`None` when it gave none, and for [`StopReason::Skip`]).
    pub final_text: Option<String>,
    /// Model calls made.
    pub iterations: u32,
    /// Tokens used over all model calls.
    pub usage: Usage,
    /// Every tool call, in order.
    pub tool_calls: Vec<ToolCallRecord>,
}

fn is_skip(text: &str) -> bool {
    let first = text.split_whitespace().next().unwrap_or("");
    first
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .eq_ignore_ascii_case("skip")
        && text.trim().len() <= 200
}

/// Runs the agent loop (see [`AgentRequest`] and [`StopReason`]).
///
/// A tool that fails (unknown, refused by grants, timed out) does not end the activation: the
/// model gets the failure as an error result and may go on. A model call that fails after its
/// retries ends it with the [`LlmError`].
pub async fn run_agent(req: AgentRequest) -> Result<AgentOutcome, LlmError> {
    let defs = req.tools.tools();
    let max_iterations = req.max_iterations.max(1);
    let provider = req.provider.kind.name();
    let mut messages = vec![Msg::User(req.user_message.clone())];
    let mut usage = Usage::default();
    let mut records = Vec::new();
    let mut seen: HashMap<(String, String), u32> = HashMap::new();
    let mut last_text = None;
    for iteration in 1..=max_iterations {
        if req.cancel.is_cancelled() {
            return Err(LlmError::Cancelled {
                provider: req.provider.kind,
            });
        }
        let started = Instant::now();
        let prompt = Prompt {
            system: &req.system_prompt,
            messages: &messages,
            tools: &defs,
        };
        let turn = client::complete(&req.provider, &prompt, &req.cancel).await?;
        usage.add(turn.usage);
        tracing::debug!(
            provider,
            iteration,
            tool_calls = turn.calls.len(),
            input_tokens = turn.usage.input_tokens,
            output_tokens = turn.usage.output_tokens,
            llm_duration_ms = started.elapsed().as_millis() as u64,
            "llm_iteration"
        );
        if !turn.text.trim().is_empty() {
            last_text = Some(turn.text.clone());
        }
        let outcome = |stop, final_text, records| AgentOutcome {
            stop,
            final_text,
            iterations: iteration,
            usage,
            tool_calls: records,
        };
        if turn.calls.is_empty() {
            if is_skip(&turn.text) {
                return Ok(outcome(StopReason::Skip, None, records));
            }
            return Ok(outcome(StopReason::Final, last_text, records));
        }
        if iteration == max_iterations {
            return Ok(outcome(StopReason::MaxIterations, last_text, records));
        }
        if req.repeat_limit > 0 {
            for c in &turn.calls {
                let n = seen
                    .entry((c.name.clone(), c.args.to_string()))
                    .or_insert(0);
                *n += 1;
                if *n >= req.repeat_limit {
                    tracing::warn!(provider, tool = %c.name, times = *n, "repeated_tool_call");
                    return Ok(outcome(
                        StopReason::RepeatedToolCall {
                            tool: c.name.clone(),
                        },
                        last_text,
                        records,
                    ));
                }
            }
        }
        let mut results = Vec::with_capacity(turn.calls.len());
        for c in &turn.calls {
            let out = tokio::select! {
                r = req.tools.call(&c.name, c.args.clone()) => r,
                () = req.cancel.cancelled() => return Err(LlmError::Cancelled { provider: req.provider.kind }),
            };
            let output = out.unwrap_or_else(|e| ToolOutput::error(e.to_string()));
            tracing::debug!(provider, iteration, tool = %c.name, is_error = output.is_error, "tool_call");
            records.push(ToolCallRecord {
                iteration,
                name: c.name.clone(),
                arguments: c.args.clone(),
                output: output.clone(),
            });
            results.push((c.id.clone(), output));
        }
        messages.push(Msg::Assistant {
            text: turn.text,
            calls: turn.calls,
        });
        messages.push(Msg::ToolResults(results));
    }
    // The loop returns at `iteration == max_iterations` at the latest.
    Err(LlmError::BadResponse {
        provider: req.provider.kind,
        reason: "agent loop ended without a turn".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_detection() {
        assert!(is_skip("SKIP"));
        assert!(is_skip("  skip.\n"));
        assert!(is_skip("SKIP - not relevant to me"));
        assert!(!is_skip("Skipping is not an option, here is my answer"));
        assert!(!is_skip("I think we should not skip"));
    }
}
