//! The orchestrator's Prometheus metrics, with the guide's names: `workflow_runs_total{status,trigger}`,
//! `workflow_success_rate`, `workflow_duration_seconds`, `agent_runs_total{agent,status}`,
//! `agent_duration_seconds{agent}`, `workflows_active`, `approval_wait_seconds`; and the process's
//! memory (`process_resident_memory_bytes`, `process_heap_size_bytes`: what the runbook's
//! `grep heap_size_bytes` looks for), read from `/proc/self/statm` at each scrape.
//!
//! They are fed from the engine's watch of run changes (see `App`), so every transition the engine
//! makes is counted once, whoever asked for it (API, webhook, event trigger, retry).

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Labels of `workflow_runs_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RunLabels {
    pub status: String,
    pub trigger: String,
}

/// Labels of `agent_runs_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AgentLabels {
    pub agent: String,
    pub status: String,
}

/// Labels of `flow_webhook_deliveries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WebhookLabels {
    pub source: String,
}

/// Labels of `agent_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AgentOnly {
    pub agent: String,
}

fn seconds_histogram() -> Histogram {
    Histogram::new([
        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
    ])
}

/// The metric handles and their registry.
pub(crate) struct FlowMetrics {
    pub runs: Family<RunLabels, Counter>,
    pub success_rate: Gauge<f64, AtomicU64>,
    pub duration: Histogram,
    pub agent_runs: Family<AgentLabels, Counter>,
    pub agent_duration: Family<AgentOnly, Histogram>,
    pub active: Gauge,
    pub approval_wait: Histogram,
    pub webhooks: Family<WebhookLabels, Counter>,
    resident: Gauge,
    heap: Gauge,
    outcomes: Mutex<(u64, u64)>,
    pub registry: Registry,
}

impl FlowMetrics {
    pub(crate) fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let m = FlowMetrics {
            runs: Family::default(),
            success_rate: Gauge::default(),
            duration: seconds_histogram(),
            agent_runs: Family::default(),
            agent_duration: Family::new_with_constructor(seconds_histogram),
            active: Gauge::default(),
            approval_wait: seconds_histogram(),
            webhooks: Family::default(),
            resident: Gauge::default(),
            heap: Gauge::default(),
            outcomes: Mutex::new((0, 0)),
            registry: Registry::default(),
        };
        registry.register(
            "workflow_runs",
            "Workflow runs that reached a final status, by status and trigger",
            m.runs.clone(),
        );
        registry.register(
            "workflow_success_rate",
            "Share of finished runs that succeeded (SUCCESS / (SUCCESS + FAILED)), 1 before any run finished",
            m.success_rate.clone(),
        );
        registry.register(
            "workflow_duration_seconds",
            "Wall time of finished workflow runs",
            m.duration.clone(),
        );
        registry.register(
            "agent_runs",
            "Agent runs that reached a final status, by agent and status",
            m.agent_runs.clone(),
        );
        registry.register(
            "agent_duration_seconds",
            "Wall time of finished agent runs, by agent",
            m.agent_duration.clone(),
        );
        registry.register(
            "workflows_active",
            "Workflow runs in flight now (RUNNING or WAITING_APPROVAL)",
            m.active.clone(),
        );
        registry.register(
            "approval_wait_seconds",
            "Time from an approval request to its decision",
            m.approval_wait.clone(),
        );
        registry.register(
            "flow_webhook_deliveries",
            "Alert webhook deliveries received, by source (alertmanager, grafana)",
            m.webhooks.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the hg-flow process",
            m.resident.clone(),
        );
        registry.register(
            "process_heap_size_bytes",
            "Data segment (heap and anonymous mappings) of the hg-flow process",
            m.heap.clone(),
        );
        m.success_rate.set(1.0);
        Arc::new(FlowMetrics { registry, ..m })
    }

    /// Counts a run that reached a final `status`.
    pub(crate) fn run_finished(&self, status: &str, trigger: &str, seconds: Option<f64>) {
        self.runs
            .get_or_create(&RunLabels {
                status: status.to_owned(),
                trigger: trigger.to_owned(),
            })
            .inc();
        if let Some(s) = seconds {
            self.duration.observe(s.max(0.0));
        }
        let mut o = self.outcomes.lock();
        match status {
            "SUCCESS" | "SUCCEEDED" | "COMPLETED" => o.0 += 1,
            "FAILED" => o.1 += 1,
            _ => return,
        }
        let total = o.0 + o.1;
        if total > 0 {
            self.success_rate.set(o.0 as f64 / total as f64);
        }
    }

    /// Counts an agent run that reached a final `status`.
    pub(crate) fn agent_finished(&self, agent: &str, status: &str, seconds: Option<f64>) {
        self.agent_runs
            .get_or_create(&AgentLabels {
                agent: agent.to_owned(),
                status: status.to_owned(),
            })
            .inc();
        if let Some(s) = seconds {
            self.agent_duration
                .get_or_create(&AgentOnly {
                    agent: agent.to_owned(),
                })
                .observe(s.max(0.0));
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        if let Some((resident, data)) = statm() {
            self.resident.set(resident);
            self.heap.set(data);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Resident and data-segment bytes from `/proc/self/statm` (pages of 4 KiB).
fn statm() -> Option<(i64, i64)> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let f: Vec<i64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let page = 4096i64;
    Some((
        f.get(1)?.saturating_mul(page),
        f.get(5)?.saturating_mul(page),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_guide() {
        let m = FlowMetrics::new();
        m.run_finished("SUCCESS", "manual", Some(1.5));
        m.run_finished("FAILED", "alert", Some(0.5));
        m.agent_finished("scanner", "FAILED", Some(0.2));
        m.active.set(2);
        m.approval_wait.observe(3.0);
        let text = m.encode().unwrap();
        for needle in [
            "workflow_runs_total{status=\"SUCCESS\",trigger=\"manual\"} 1",
            "workflow_success_rate 0.5",
            "workflow_duration_seconds_bucket",
            "agent_runs_total{agent=\"scanner\",status=\"FAILED\"} 1",
            "agent_duration_seconds_count{agent=\"scanner\"} 1",
            "workflows_active 2",
            "approval_wait_seconds_count 1",
            "process_resident_memory_bytes ",
            "process_heap_size_bytes ",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        let heap: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_heap_size_bytes "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(heap > 0.0, "{text}");
    }
}
