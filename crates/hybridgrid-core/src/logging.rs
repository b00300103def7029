//! Logging setup shared by every binary: `logging.level` and `logging.format: json|text`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation (default).
    #[default]
    Info,
    /// Problems that healed.
    Warn,
    /// Failures.
    Error,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => {
                return Err(format!(
                    "unknown log level {s:?} (expected trace, debug, info, warn or error)"
                ));
            }
        })
    }
}

impl Serialize for LogLevel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `key=value` text for people (default).
    #[default]
    Text,
    /// One JSON object per line, for collectors.
    Json,
}

/// The `logging:` section of every binary's config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Verbosity (`HG_LOG_LEVEL`).
    pub level: LogLevel,
    /// Format (`HG_LOG_FORMAT`).
    pub format: LogFormat,
}

/// Environment aliases the guides use for the logging section.
pub const LOGGING_ENV_ALIASES: &[(&str, &str)] = &[
    ("HG_LOG_LEVEL", "logging.level"),
    ("HG_LOG_FORMAT", "logging.format"),
];

/// Installs the global `tracing` subscriber, writing to stderr. Calling it twice is harmless.
pub fn init_logging(cfg: &LoggingConfig) {
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "{},mdns_sd=warn,h2=warn,hyper=warn,tower=warn,sqlx=warn",
        cfg.level
    ));
    // Colour only for a person at a terminal: never in a pipe, a file or a log collector, and
    // never when NO_COLOR is set.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
