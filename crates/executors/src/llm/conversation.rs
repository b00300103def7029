//! The provider-neutral conversation the agent loop keeps, and one model turn.

use super::tools::ToolOutput;

/// One tool call the model asked for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ToolCall {
    /// The provider's id for it (echoed in the result).
    pub id: String,
    pub name: String,
    pub args: serde_json::Value,
}

/// A message of the conversation.
#[derive(Clone, Debug)]
pub(crate) enum Msg {
    User(String),
    Assistant {
        text: String,
        calls: Vec<ToolCall>,
    },
    /// Results of the previous assistant message's calls, in order: (call id, output).
    ToolResults(Vec<(String, ToolOutput)>),
}

/// Tokens one call (or a whole activation) used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens (Anthropic `input_tokens` + cache tokens; OpenAI `prompt_tokens`).
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
}

impl Usage {
    pub(crate) fn add(&mut self, other: Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
    }
}

/// One model answer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Turn {
    pub text: String,
    pub calls: Vec<ToolCall>,
    pub usage: Usage,
}

/// A request the provider adapters turn into a wire body.
pub(crate) struct Prompt<'a> {
    pub system: &'a str,
    pub messages: &'a [Msg],
    pub tools: &'a [super::tools::ToolDef],
}
