//! Provider settings: which wire format, where, which key, which model.

use std::fmt;
use std::time::Duration;

/// A secret string (API key, token). Its `Debug` and `Display` never show the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it (an HTTP header, a child's environment).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no value was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(<empty>)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Which wire format a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Anthropic Messages API (`POST {base_url}/v1/messages`, `tool_use` / `tool_result`).
    Anthropic,
    /// OpenAI-compatible chat completions (`POST {base_url}/chat/completions`, `tool_calls` /
    /// `role: "tool"`): OpenAI itself, vLLM, llama.cpp, Ollama, LiteLLM ...
    OpenAi,
}

impl ProviderKind {
    /// Lower-case name used in error messages and logs: `anthropic`, `openai`.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAi => "openai",
        }
    }

    /// The environment variable that conventionally holds this provider's key (named in
    /// authentication errors): `ANTHROPIC_API_KEY`, `OPENAI_API_KEY`.
    pub fn key_env(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "ANTHROPIC_API_KEY",
            ProviderKind::OpenAi => "OPENAI_API_KEY",
        }
    }

    /// The public endpoint: `https://api.anthropic.com` (no `/v1`: the path is appended) and
    /// `https://api.openai.com/v1` (with `/v1`, as OpenAI-compatible servers are usually given).
    pub fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "https://api.anthropic.com",
            ProviderKind::OpenAi => "https://api.openai.com/v1",
        }
    }

    /// Parses `anthropic` / `openai` (also `openai-compatible`, `openai_compatible`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "anthropic" | "claude" => Some(ProviderKind::Anthropic),
            "openai" | "openai-compatible" | "openai_compatible" => Some(ProviderKind::OpenAi),
            _ => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to reach one model. `Debug` redacts the key.
///
/// `base_url` conventions: for [`ProviderKind::Anthropic`] the host root (requests go to
/// `{base_url}/v1/messages`, as `ANTHROPIC_BASE_URL` works); for [`ProviderKind::OpenAi`] the API
/// root including `/v1` (requests go to `{base_url}/chat/completions`, as `OPENAI_BASE_URL`).
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// Wire format.
    pub kind: ProviderKind,
    /// Endpoint root (see the type's docs).
    pub base_url: String,
    /// API key, sent as `x-api-key` (Anthropic) or `Authorization: Bearer` (OpenAI).
    pub api_key: Secret,
    /// Model name, e.g. `claude-sonnet-4-5` or `gpt-4o-mini`.
    pub model: String,
    /// Sampling temperature; `None` leaves the provider's default.
    pub temperature: Option<f32>,
    /// Upper bound of output tokens per model call.
    pub max_tokens: u32,
    /// Bound of one HTTP request (connect + whole response, streaming included).
    pub request_timeout: Duration,
    /// Retries of one model call after a 429, a 5xx, a timeout or a connection error
    /// (so `max_retries + 1` attempts at most). `Retry-After` is honoured.
    pub max_retries: u32,
    /// Use server-sent-event streaming (`"stream": true`); the result is the same.
    pub stream: bool,
}

impl ProviderConfig {
    /// Settings for `kind` with its public endpoint and the defaults: `max_tokens` 4096, request
    /// timeout 120 s, 3 retries, streaming on, provider-default temperature.
    pub fn new(kind: ProviderKind, model: impl Into<String>, api_key: impl Into<Secret>) -> Self {
        Self {
            kind,
            base_url: kind.default_base_url().to_owned(),
            api_key: api_key.into(),
            model: model.into(),
            temperature: None,
            max_tokens: 4096,
            request_timeout: Duration::from_secs(120),
            max_retries: 3,
            stream: true,
        }
    }

    /// Same settings with another endpoint (a local model, a proxy, a fake).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_key() {
        let c = ProviderConfig::new(ProviderKind::Anthropic, "m", "sk-ant-very-secret");
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        assert_eq!(format!("{}", c.api_key), "<redacted>");
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(
            ProviderKind::parse("Anthropic"),
            Some(ProviderKind::Anthropic)
        );
        assert_eq!(
            ProviderKind::parse("openai-compatible"),
            Some(ProviderKind::OpenAi)
        );
        assert_eq!(ProviderKind::parse("gemini"), None);
    }
}
