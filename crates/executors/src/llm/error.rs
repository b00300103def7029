//! [`LlmError`]: why a model call failed, naming the provider and the cause.

use super::config::ProviderKind;
use hybridgrid_core::Retry;
use std::time::Duration;

/// A failed model call (after retries where retrying made sense). Messages start with the
/// provider: `anthropic: authentication failed (401): check ANTHROPIC_API_KEY`. They never contain
/// the API key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The provider refused the key (401) or the key lacks permission (403).
    #[error("{provider}: authentication failed ({status}): check {key_env}")]
    Auth {
        /// Provider.
        provider: ProviderKind,
        /// 401 or 403.
        status: u16,
        /// The environment variable that should hold the key.
        key_env: &'static str,
    },
    /// Still rate-limited (429) after every retry.
    #[error("{provider}: rate limited (429) after {attempts} attempts{}", fmt_after(*retry_after))]
    RateLimited {
        /// Provider.
        provider: ProviderKind,
        /// Attempts made.
        attempts: u32,
        /// The last `Retry-After` the provider sent.
        retry_after: Option<Duration>,
    },
    /// No complete answer within the request timeout (after every retry).
    #[error("{provider}: request timed out after {after:?} ({attempts} attempts)")]
    Timeout {
        /// Provider.
        provider: ProviderKind,
        /// The per-request timeout.
        after: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// Could not connect (after every retry).
    #[error("{provider}: cannot reach {url}: {reason}")]
    Connect {
        /// Provider.
        provider: ProviderKind,
        /// The endpoint (without credentials).
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The provider answered with an error status (a 5xx after every retry, or a 4xx).
    #[error("{provider}: HTTP {status}: {message}")]
    Status {
        /// Provider.
        provider: ProviderKind,
        /// HTTP status.
        status: u16,
        /// The provider's error message (its `error.message`, else the start of the body).
        message: String,
    },
    /// The answer did not follow the wire format.
    #[error("{provider}: bad response: {reason}")]
    BadResponse {
        /// Provider.
        provider: ProviderKind,
        /// What was wrong.
        reason: String,
    },
    /// The settings cannot work (empty model, bad URL ...).
    #[error("{provider}: invalid config `{field}`: {reason}")]
    InvalidConfig {
        /// Provider.
        provider: ProviderKind,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The activation was cancelled.
    #[error("{provider}: cancelled")]
    Cancelled {
        /// Provider.
        provider: ProviderKind,
    },
}

fn fmt_after(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!(" (Retry-After {}s)", d.as_secs_f64()),
        None => String::new(),
    }
}

impl LlmError {
    /// Whether and when the same activation may be tried again.
    pub fn retry(&self) -> Retry {
        match self {
            LlmError::RateLimited { retry_after, .. } => {
                Retry::After(retry_after.unwrap_or(Duration::from_secs(30)))
            }
            LlmError::Timeout { .. } | LlmError::Connect { .. } => {
                Retry::After(Duration::from_secs(5))
            }
            LlmError::Status { status, .. } if *status >= 500 => {
                Retry::After(Duration::from_secs(10))
            }
            LlmError::Status {
                status: 408 | 409, ..
            } => Retry::Now,
            LlmError::Auth { .. }
            | LlmError::Status { .. }
            | LlmError::BadResponse { .. }
            | LlmError::InvalidConfig { .. }
            | LlmError::Cancelled { .. } => Retry::Never,
        }
    }

    /// The provider the error is about.
    pub fn provider(&self) -> ProviderKind {
        match self {
            LlmError::Auth { provider, .. }
            | LlmError::RateLimited { provider, .. }
            | LlmError::Timeout { provider, .. }
            | LlmError::Connect { provider, .. }
            | LlmError::Status { provider, .. }
            | LlmError::BadResponse { provider, .. }
            | LlmError::InvalidConfig { provider, .. }
            | LlmError::Cancelled { provider } => *provider,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_message_names_provider_status_and_env() {
        let e = LlmError::Auth {
            provider: ProviderKind::Anthropic,
            status: 401,
            key_env: "ANTHROPIC_API_KEY",
        };
        assert_eq!(
            e.to_string(),
            "anthropic: authentication failed (401): check ANTHROPIC_API_KEY"
        );
        assert_eq!(e.retry(), Retry::Never);
    }

    #[test]
    fn rate_limit_retries_after_the_hint() {
        let e = LlmError::RateLimited {
            provider: ProviderKind::OpenAi,
            attempts: 4,
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            e.to_string(),
            "openai: rate limited (429) after 4 attempts (Retry-After 2s)"
        );
        assert_eq!(e.retry(), Retry::After(Duration::from_secs(2)));
    }
}
