//! One model call over HTTP: request body per wire format, retries on 429/5xx/timeouts honouring
//! `Retry-After`, streaming or whole responses.

use super::config::{ProviderConfig, ProviderKind};
use super::conversation::{Prompt, Turn};
use super::error::LlmError;
use super::{anthropic, openai, sse};
use futures::StreamExt;
use hybridgrid_core::CancellationToken;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use std::sync::OnceLock;
use std::time::Duration;

/// Longest `Retry-After` honoured; a longer hint is capped to it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The process-wide HTTP client (connection pool shared by all activations).
pub(crate) fn http() -> Result<reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // reqwest is built without a default crypto provider: use ring (one TLS provider in
            // the workspace). Installing fails harmlessly when someone already installed one.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| format!("cannot build HTTP client: {e}"))
        })
        .clone()
}

/// Why one attempt failed, before deciding whether to retry.
enum Attempt {
    Retryable {
        hint: Option<Duration>,
        err: LlmError,
    },
    Fatal(LlmError),
}

/// Calls the model once (with retries) and returns its turn.
pub(crate) async fn complete(
    cfg: &ProviderConfig,
    prompt: &Prompt<'_>,
    cancel: &CancellationToken,
) -> Result<Turn, LlmError> {
    let provider = cfg.kind;
    let http = http().map_err(|reason| LlmError::InvalidConfig {
        provider,
        field: "base_url",
        reason,
    })?;
    let (url, body) = match provider {
        ProviderKind::Anthropic => (anthropic::url(cfg), anthropic::body(cfg, prompt)),
        ProviderKind::OpenAi => (openai::url(cfg), openai::body(cfg, prompt)),
    };
    let url = reqwest::Url::parse(&url).map_err(|e| LlmError::InvalidConfig {
        provider,
        field: "base_url",
        reason: format!("`{}` is not a URL: {e}", cfg.base_url),
    })?;
    let body = serde_json::to_vec(&body).map_err(|e| LlmError::BadResponse {
        provider,
        reason: e.to_string(),
    })?;
    let headers = headers(cfg)?;
    let attempts = cfg.max_retries.saturating_add(1);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let once = one_attempt(
            cfg,
            &http,
            url.clone(),
            headers.clone(),
            body.clone(),
            attempt,
        );
        let result = tokio::select! {
            r = once => r,
            () = cancel.cancelled() => return Err(LlmError::Cancelled { provider }),
        };
        let (hint, err) = match result {
            Ok(turn) => return Ok(turn),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retryable { hint, err }) => (hint, err),
        };
        if attempt >= attempts {
            return Err(err);
        }
        let wait = hint
            .map(|h| h.min(MAX_RETRY_AFTER))
            .unwrap_or_else(|| backoff(attempt));
        tracing::warn!(provider = provider.name(), attempt, error = %err, wait_ms = wait.as_millis() as u64, "llm_retry");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return Err(LlmError::Cancelled { provider }),
        }
    }
}

/// 0.5 s, 1 s, 2 s ... at most 8 s.
fn backoff(attempt: u32) -> Duration {
    let shift = attempt.saturating_sub(1).min(4);
    Duration::from_millis(500u64 << shift)
}

fn headers(cfg: &ProviderConfig) -> Result<HeaderMap, LlmError> {
    let provider = cfg.kind;
    let bad_key = || LlmError::InvalidConfig {
        provider,
        field: "api_key",
        reason: "contains characters not allowed in an HTTP header".to_owned(),
    };
    let mut h = HeaderMap::new();
    h.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    match provider {
        ProviderKind::Anthropic => {
            let mut v = HeaderValue::from_str(cfg.api_key.expose()).map_err(|_| bad_key())?;
            v.set_sensitive(true);
            h.insert("x-api-key", v);
            h.insert(
                "anthropic-version",
                HeaderValue::from_static(anthropic::API_VERSION),
            );
        }
        ProviderKind::OpenAi => {
            if !cfg.api_key.is_empty() {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", cfg.api_key.expose()))
                    .map_err(|_| bad_key())?;
                v.set_sensitive(true);
                h.insert(reqwest::header::AUTHORIZATION, v);
            }
        }
    }
    if cfg.stream {
        h.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
    }
    Ok(h)
}

/// `Retry-After` (seconds, possibly fractional) or OpenAI's `retry-after-ms`.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    get("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

fn endpoint(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.set_query(None);
    u.to_string()
}

async fn one_attempt(
    cfg: &ProviderConfig,
    http: &reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    body: Vec<u8>,
    attempt: u32,
) -> Result<Turn, Attempt> {
    let provider = cfg.kind;
    let timeout = cfg.request_timeout;
    let timed_out = || Attempt::Retryable {
        hint: None,
        err: LlmError::Timeout {
            provider,
            after: timeout,
            attempts: attempt,
        },
    };
    let shown = endpoint(&url);
    let fut = async {
        let resp = http
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    timed_out()
                } else {
                    Attempt::Retryable {
                        hint: None,
                        err: LlmError::Connect {
                            provider,
                            url: shown.clone(),
                            reason: error_chain(&e),
                        },
                    }
                }
            })?;
        let status = resp.status();
        if !status.is_success() {
            let hint = retry_after(resp.headers());
            let text = resp.text().await.unwrap_or_default();
            return Err(status_error(provider, status, hint, &text, attempt));
        }
        let bad = |reason: String| Attempt::Fatal(LlmError::BadResponse { provider, reason });
        let is_stream = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_stream {
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| read_error(provider, &shown, e, attempt, timeout))?;
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| bad(format!("body is not JSON: {e}")))?;
            return match provider {
                ProviderKind::Anthropic => anthropic::parse(&v),
                ProviderKind::OpenAi => openai::parse(&v),
            }
            .map_err(bad);
        }
        let mut decoder = sse::Decoder::default();
        let mut a = anthropic::Stream::default();
        let mut o = openai::Stream::default();
        let mut feed = |ev: &sse::Event| match provider {
            ProviderKind::Anthropic => a.event(ev),
            ProviderKind::OpenAi => o.event(ev),
        };
        let mut stream = resp.bytes_stream();
        let mut done = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| read_error(provider, &shown, e, attempt, timeout))?;
            for ev in decoder.push(&chunk).map_err(bad)? {
                done = feed(&ev).map_err(bad)?;
            }
            if done {
                break;
            }
        }
        if !done && let Some(ev) = decoder.finish() {
            feed(&ev).map_err(bad)?;
        }
        match provider {
            ProviderKind::Anthropic => a.finish(),
            ProviderKind::OpenAi => o.finish(),
        }
        .map_err(bad)
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(timed_out()),
    }
}

fn read_error(
    provider: ProviderKind,
    url: &str,
    e: reqwest::Error,
    attempt: u32,
    after: Duration,
) -> Attempt {
    if e.is_timeout() {
        return Attempt::Retryable {
            hint: None,
            err: LlmError::Timeout {
                provider,
                after,
                attempts: attempt,
            },
        };
    }
    Attempt::Retryable {
        hint: None,
        err: LlmError::Connect {
            provider,
            url: url.to_owned(),
            reason: format!("response cut off: {}", error_chain(&e)),
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The provider's own error message (`error.message` in both formats), else the body's start.
fn provider_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        });
    let mut m = from_json.unwrap_or_else(|| body.trim().to_owned());
    if m.len() > 300 {
        let mut cut = 300;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
        m.push('…');
    }
    if m.is_empty() {
        "(empty body)".to_owned()
    } else {
        m
    }
}

fn status_error(
    provider: ProviderKind,
    status: StatusCode,
    hint: Option<Duration>,
    body: &str,
    attempt: u32,
) -> Attempt {
    let code = status.as_u16();
    match code {
        401 | 403 => Attempt::Fatal(LlmError::Auth {
            provider,
            status: code,
            key_env: provider.key_env(),
        }),
        429 => Attempt::Retryable {
            hint,
            err: LlmError::RateLimited {
                provider,
                attempts: attempt,
                retry_after: hint,
            },
        },
        408 | 500..=599 => Attempt::Retryable {
            hint,
            err: LlmError::Status {
                provider,
                status: code,
                message: provider_message(body),
            },
        },
        _ => Attempt::Fatal(LlmError::Status {
            provider,
            status: code,
            message: provider_message(body),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn provider_message_prefers_error_message() {
        assert_eq!(
            provider_message(r#"{"type":"error","error":{"type":"x","message":"bad model"}}"#),
            "bad model"
        );
        assert_eq!(provider_message("oops"), "oops");
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(50), Duration::from_secs(8));
    }
}
