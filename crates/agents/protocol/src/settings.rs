//! Every environment setting of `hg-agents`, read through an injectable [`EnvSource`] and
//! validated at once: [`Settings::from_env`] returns all problems together.

use hybridgrid_core::config::{EnvSource, HumanDuration};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Which work a runner claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RunnerMode {
    /// INBOX only (mentions, replies).
    Notification,
    /// DISCOVERY only.
    Exploration,
    /// Both (default).
    #[default]
    Hybrid,
}

impl RunnerMode {
    /// `notification`, `exploration` or `hybrid`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerMode::Notification => "notification",
            RunnerMode::Exploration => "exploration",
            RunnerMode::Hybrid => "hybrid",
        }
    }
    /// Whether this mode claims `task_type`.
    pub fn takes(self, task_type: crate::TaskType) -> bool {
        matches!(
            (self, task_type),
            (RunnerMode::Hybrid, _)
                | (RunnerMode::Notification, crate::TaskType::Inbox)
                | (RunnerMode::Exploration, crate::TaskType::Discovery)
        )
    }
}

impl fmt::Display for RunnerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunnerMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "notification" => Ok(RunnerMode::Notification),
            "exploration" => Ok(RunnerMode::Exploration),
            "hybrid" => Ok(RunnerMode::Hybrid),
            other => Err(format!(
                "unknown runner mode {other:?} (expected notification, exploration or hybrid)"
            )),
        }
    }
}

/// One bad or missing setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

/// Every bad or missing setting found at startup.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SettingErrors(pub Vec<SettingError>);

impl fmt::Display for SettingErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} invalid setting(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// The settings of every role (each role uses what it needs).
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `HUB_URL` | required | the Hub's base URL (`http://hub:8000`) |
/// | `HUB_API_KEY` | none | bearer key for the Hub (secret) |
/// | `VALKEY_URL` (or `REDIS_URL`) | required | `redis://host:6379/0`; `memory://` for one process |
/// | `AGENTS_REDIS_PREFIX` | empty | prefix of every Redis key (tests, several deployments on one server) |
/// | `RUNNER_MODE` | `hybrid` | `notification`, `exploration` or `hybrid` |
/// | `MAX_CONCURRENT_ACTIVATIONS` | 1 | activations one runner runs at once |
/// | `ACTIVATION_TIMEOUT` | 600 (s) | one activation's deadline (`900`, `15m`) |
/// | `MIN_STALENESS_SECONDS` | 3600 | agents idle this long get DISCOVERY work |
/// | `POLL_INTERVAL` | 5s | coordinator's pause between polls |
/// | `LONG_POLL_SECONDS` | 20 | Hub long-poll wait (0: plain polling) |
/// | `LEADER_LEASE` | 15s | coordinator leadership lease |
/// | `WORK_LEASE` | 60s | a claimed item's lease, extended every third of it while the activation runs |
/// | `AGENT_DEFINITIONS_PATH` | `/configs/agent-definitions` | local definitions (`agents/NAME/config.yaml`) |
/// | `AGENT_DEFINITIONS_URL` | none | remote definitions base URL (overrides the path) |
/// | `AGENT_DEFINITIONS_TTL` | 60s | remote cache TTL |
/// | `ADMIN_ADDR` | `0.0.0.0:9090` | `/health`, `/metrics`, `/api/v1/...` |
/// | `RUNNER_ID` | host name + pid | this process's name in leases and logs |
/// | `AGENT_BACKOFF_BASE` | 60s | first backoff after 5 consecutive failures (doubling, at most 1 h) |
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// `HUB_URL`.
    pub hub_url: String,
    /// `HUB_API_KEY` (never printed).
    pub hub_api_key: Option<String>,
    /// `VALKEY_URL` / `REDIS_URL`.
    pub valkey_url: String,
    /// `AGENTS_REDIS_PREFIX`.
    pub prefix: String,
    /// `RUNNER_MODE`.
    pub runner_mode: RunnerMode,
    /// `MAX_CONCURRENT_ACTIVATIONS`.
    pub max_concurrent_activations: usize,
    /// `ACTIVATION_TIMEOUT`.
    pub activation_timeout: Duration,
    /// `MIN_STALENESS_SECONDS`.
    pub min_staleness: Duration,
    /// `POLL_INTERVAL`.
    pub poll_interval: Duration,
    /// `LONG_POLL_SECONDS`.
    pub long_poll: Duration,
    /// `LEADER_LEASE`.
    pub leader_lease: Duration,
    /// `WORK_LEASE`.
    pub work_lease: Duration,
    /// `AGENT_DEFINITIONS_PATH`.
    pub definitions_path: String,
    /// `AGENT_DEFINITIONS_URL`.
    pub definitions_url: Option<String>,
    /// `AGENT_DEFINITIONS_TTL`.
    pub definitions_ttl: Duration,
    /// `ADMIN_ADDR`.
    pub admin_addr: String,
    /// `RUNNER_ID`.
    pub id: String,
    /// `AGENT_BACKOFF_BASE`.
    pub backoff_base: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("hub_url", &self.hub_url)
            .field(
                "hub_api_key",
                &self.hub_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("valkey_url", &redact_url(&self.valkey_url))
            .field("prefix", &self.prefix)
            .field("runner_mode", &self.runner_mode)
            .field(
                "max_concurrent_activations",
                &self.max_concurrent_activations,
            )
            .field("activation_timeout", &self.activation_timeout)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// `redis://user:secret@host` → `redis://user:***@host` (for logs and errors).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            if creds.contains(':') {
                format!("{}{user}:***{}", &url[..s + 3], &url[at..])
            } else {
                format!("{}***{}", &url[..s + 3], &url[at..])
            }
        }
        _ => url.to_owned(),
    }
}

struct Reader<'a> {
    env: &'a dyn EnvSource,
    errors: Vec<SettingError>,
}

impl Reader<'_> {
    fn get(&self, var: &str) -> Option<String> {
        self.env.var(var).filter(|v| !v.trim().is_empty())
    }
    fn required(&mut self, var: &'static str, hint: &str) -> String {
        match self.get(var) {
            Some(v) => v,
            None => {
                self.errors.push(SettingError {
                    var,
                    problem: format!("missing ({hint})"),
                });
                String::new()
            }
        }
    }
    fn parse<T: FromStr>(&mut self, var: &'static str, default: T) -> T
    where
        T::Err: fmt::Display,
    {
        match self.get(var) {
            None => default,
            Some(raw) => raw.trim().parse().unwrap_or_else(|e| {
                self.errors.push(SettingError {
                    var,
                    problem: format!("{raw:?} is invalid: {e}"),
                });
                default
            }),
        }
    }
    fn duration(&mut self, var: &'static str, default: Duration) -> Duration {
        let d: HumanDuration = self.parse(var, HumanDuration(default));
        d.0
    }
    fn positive(&mut self, var: &'static str, d: Duration) -> Duration {
        if d.is_zero() {
            self.errors.push(SettingError {
                var,
                problem: "must be greater than zero".into(),
            });
        }
        d
    }
}

impl Settings {
    /// The backoff policy of `AGENT_BACKOFF_BASE`.
    pub fn backoff_policy(&self) -> crate::BackoffPolicy {
        crate::BackoffPolicy::with_base(self.backoff_base)
    }

    /// Reads and validates every setting; all problems are returned together.
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, SettingErrors> {
        let mut r = Reader {
            env,
            errors: Vec::new(),
        };
        let hub_url = r.required("HUB_URL", "the Hub's base URL, e.g. http://hub:8000");
        if !(hub_url.is_empty()
            || hub_url.starts_with("http://")
            || hub_url.starts_with("https://"))
        {
            r.errors.push(SettingError {
                var: "HUB_URL",
                problem: format!("{hub_url:?} is not an http:// or https:// URL"),
            });
        }
        let valkey_url = match r.get("VALKEY_URL").or_else(|| r.get("REDIS_URL")) {
            Some(u) => u,
            None => r.required(
                "VALKEY_URL",
                "redis://host:6379, or memory:// for one process",
            ),
        };
        if !valkey_url.is_empty()
            && !["redis://", "rediss://", "memory://"]
                .iter()
                .any(|s| valkey_url.starts_with(s))
        {
            r.errors.push(SettingError {
                var: "VALKEY_URL",
                problem: format!(
                    "{:?} must start with redis://, rediss:// or memory://",
                    redact_url(&valkey_url)
                ),
            });
        }
        let runner_mode = r.parse("RUNNER_MODE", RunnerMode::Hybrid);
        let max_concurrent_activations: usize = r.parse("MAX_CONCURRENT_ACTIVATIONS", 1);
        if max_concurrent_activations == 0 {
            r.errors.push(SettingError {
                var: "MAX_CONCURRENT_ACTIVATIONS",
                problem: "must be at least 1".into(),
            });
        }
        let activation_timeout = r.duration("ACTIVATION_TIMEOUT", Duration::from_secs(600));
        let activation_timeout = r.positive("ACTIVATION_TIMEOUT", activation_timeout);
        let min_staleness = Duration::from_secs(r.parse("MIN_STALENESS_SECONDS", 3600u64));
        let poll_interval = r.duration("POLL_INTERVAL", Duration::from_secs(5));
        let long_poll = Duration::from_secs(r.parse("LONG_POLL_SECONDS", 20u64));
        let leader_lease = r.duration("LEADER_LEASE", Duration::from_secs(15));
        let leader_lease = r.positive("LEADER_LEASE", leader_lease);
        let work_lease = r.duration("WORK_LEASE", Duration::from_secs(60));
        let work_lease = r.positive("WORK_LEASE", work_lease);
        let definitions_ttl = r.duration("AGENT_DEFINITIONS_TTL", Duration::from_secs(60));
        let backoff_base = r.duration("AGENT_BACKOFF_BASE", Duration::from_secs(60));
        let backoff_base = r.positive("AGENT_BACKOFF_BASE", backoff_base);
        let id = r.get("RUNNER_ID").unwrap_or_else(|| {
            let host = r.get("HOSTNAME").unwrap_or_else(|| "hg-agents".into());
            format!("{host}-{}", std::process::id())
        });
        let settings = Settings {
            hub_url: hub_url.trim_end_matches('/').to_owned(),
            hub_api_key: r.get("HUB_API_KEY"),
            valkey_url,
            prefix: r.get("AGENTS_REDIS_PREFIX").unwrap_or_default(),
            runner_mode,
            max_concurrent_activations,
            activation_timeout,
            min_staleness,
            poll_interval,
            long_poll,
            leader_lease,
            work_lease,
            definitions_path: r
                .get("AGENT_DEFINITIONS_PATH")
                .unwrap_or_else(|| "/configs/agent-definitions".into()),
            definitions_url: r.get("AGENT_DEFINITIONS_URL"),
            definitions_ttl,
            admin_addr: r.get("ADMIN_ADDR").unwrap_or_else(|| "0.0.0.0:9090".into()),
            id,
            backoff_base,
        };
        if r.errors.is_empty() {
            Ok(settings)
        } else {
            Err(SettingErrors(r.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_bad_setting_is_listed_at_once() {
        let e = Settings::from_env(&env(&[
            ("RUNNER_MODE", "turbo"),
            ("MAX_CONCURRENT_ACTIVATIONS", "0"),
            ("ACTIVATION_TIMEOUT", "soon"),
        ]))
        .err()
        .map(|e| e.0.iter().map(|e| e.var).collect::<Vec<_>>());
        assert_eq!(
            e,
            Some(vec![
                "HUB_URL",
                "VALKEY_URL",
                "RUNNER_MODE",
                "MAX_CONCURRENT_ACTIVATIONS",
                "ACTIVATION_TIMEOUT"
            ])
        );
    }

    #[test]
    fn defaults_and_values() {
        let s = Settings::from_env(&env(&[
            ("HUB_URL", "http://hub:8000/"),
            ("VALKEY_URL", "redis://u:pw@valkey:6379"),
            ("HUB_API_KEY", "sekrit"),
            ("ACTIVATION_TIMEOUT", "900"),
            ("RUNNER_MODE", "notification"),
        ]))
        .ok();
        let s = s.as_ref();
        assert_eq!(s.map(|s| s.hub_url.as_str()), Some("http://hub:8000"));
        assert_eq!(
            s.map(|s| s.activation_timeout),
            Some(Duration::from_secs(900))
        );
        assert_eq!(s.map(|s| s.runner_mode), Some(RunnerMode::Notification));
        assert_eq!(s.map(|s| s.max_concurrent_activations), Some(1));
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("sekrit") && !dbg.contains("pw@"), "{dbg}");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("redis://u:pw@h:1"), "redis://u:***@h:1");
        assert_eq!(redact_url("redis://tok@h"), "redis://***@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }
}
