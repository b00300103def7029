//! [`FlowConfig`]: the engine's settings.

use hybridgrid_core::config::HumanDuration;
use hybridgrid_flow_model::Decision;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Settings of a [`FlowEngine`](crate::FlowEngine). Every field has a default.
///
/// ```yaml
/// engine_id: flow-1          # stable id: a restarted engine takes its own steps back at once
/// max_parallel: 8            # steps this engine runs at the same time
/// writers: 4                 # write transactions in flight at once (default 1; hg-flow: 4 on PostgreSQL)
/// lease: 30s                 # a step's claim; renewed while it runs, taken over once expired
/// poll_interval: 250ms       # how often to look for work other engines made ready
/// node_timeout: 5m           # default per-attempt timeout of a node
/// workflow_timeout: 1h       # default deadline of a run (approval waits excluded)
/// approval_timeout: 24h      # an approval not decided by then gets `approval_default`
/// approval_default: REJECTED
/// max_stream_bytes: 262144   # stdout and stderr kept per agent run, each
/// work_dir: /var/lib/hg-flow/work
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    /// This engine's id in leases; default a random one per start (then a restarted engine waits
    /// for its old leases to expire before re-running their steps).
    pub engine_id: Option<String>,
    /// Steps this engine runs at the same time (default 8).
    pub max_parallel: usize,
    /// Write transactions the engine keeps in flight at once (unset: 1). SQLite writes one
    /// transaction at a time, so more only wait for its lock; on PostgreSQL several let commits
    /// overlap (the server flushes them together) and a new run does not wait behind a write in
    /// flight: `hg-flow` uses 4 there unless configured. Each takes a pooled connection while it
    /// writes.
    pub writers: Option<usize>,
    /// Lease of a claimed step (default 30s), renewed every third of it while the step runs.
    pub lease: HumanDuration,
    /// How often the engine looks for steps made ready elsewhere, due retries, expired
    /// approvals and overdue runs (default 250ms). Work made ready by this engine starts at once.
    pub poll_interval: HumanDuration,
    /// Default per-attempt node timeout (default 5m).
    pub node_timeout: HumanDuration,
    /// Default run deadline (default 1h); time spent waiting for approvals does not count.
    pub workflow_timeout: HumanDuration,
    /// How long an approval waits (default 24h).
    pub approval_timeout: HumanDuration,
    /// The decision applied when an approval times out (default `REJECTED`).
    pub approval_default: Decision,
    /// Bytes of stdout and of stderr kept on each agent run (default 256 KiB).
    pub max_stream_bytes: usize,
    /// Where native agents get their private work directories (default: the system temp dir).
    pub work_dir: Option<PathBuf>,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            engine_id: None,
            max_parallel: 8,
            writers: None,
            lease: HumanDuration::from_secs(30),
            poll_interval: HumanDuration::from_millis(250),
            node_timeout: HumanDuration::from_secs(300),
            workflow_timeout: HumanDuration::from_secs(3600),
            approval_timeout: HumanDuration::from_secs(24 * 3600),
            approval_default: Decision::Rejected,
            max_stream_bytes: 256 << 10,
            work_dir: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape_and_refuses_unknown_keys() {
        let c: FlowConfig = serde_json::from_value(serde_json::json!({
            "engine_id": "flow-1", "max_parallel": 4, "lease": "10s", "approval_default": "APPROVED"
        }))
        .unwrap();
        assert_eq!(c.max_parallel, 4);
        assert_eq!(c.lease.as_secs(), 10);
        assert_eq!(c.approval_default, Decision::Approved);
        assert_eq!(c.approval_timeout.as_secs(), 86_400);
        assert!(serde_json::from_value::<FlowConfig>(serde_json::json!({"leese": "1s"})).is_err());
    }
}
