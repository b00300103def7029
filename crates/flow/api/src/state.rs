//! What every handler shares: the engine, the bus, the metrics and the alert rules.

use crate::backends::Bus;
use crate::config::AlertsConfig;
use crate::metrics::FlowMetrics;
use hybridgrid_flow_engine::{FlowChange, FlowEngine};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// Handler state (cheap to clone).
#[derive(Clone)]
pub(crate) struct AppState {
    pub engine: FlowEngine,
    pub bus: Bus,
    pub store_kind: &'static str,
    pub metrics: Arc<FlowMetrics>,
    pub alerts: Arc<AlertsConfig>,
    pub max_body: usize,
}

impl AppState {
    /// Recomputes the gauges read from the store (`workflows_active`) before a scrape.
    pub(crate) async fn refresh_gauges(&self) {
        let Ok(workflows) = self.engine.workflows().await else {
            return;
        };
        let mut active = 0i64;
        for wf in workflows {
            if let Ok(runs) = self.engine.runs(&wf.id, 1000).await {
                active += runs.iter().filter(|r| !r.status.is_terminal()).count() as i64;
            }
        }
        self.metrics.active.set(active);
    }
}

/// Feeds the metrics from the engine's changes until `stop`.
pub(crate) async fn count_changes(
    engine: FlowEngine,
    metrics: Arc<FlowMetrics>,
    stop: CancellationToken,
) {
    let mut rx = engine.watch();
    loop {
        let change = tokio::select! {
            _ = stop.cancelled() => return,
            c = rx.recv() => c,
        };
        match change {
            Ok(FlowChange::RunFinished {
                status,
                trigger,
                duration,
                ..
            }) => metrics.run_finished(
                status.as_str(),
                trigger.as_str(),
                Some(duration.as_secs_f64()),
            ),
            Ok(FlowChange::AgentRunFinished {
                agent,
                status,
                duration,
                ..
            }) => metrics.agent_finished(&agent, status.as_str(), Some(duration.as_secs_f64())),
            Ok(FlowChange::ApprovalDecided { waited, .. }) => {
                metrics.approval_wait.observe(waited.as_secs_f64())
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "metrics fell behind the engine's changes");
            }
            Err(RecvError::Closed) => return,
        }
    }
}
