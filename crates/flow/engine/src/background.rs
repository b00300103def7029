//! The engine's background tasks: the claim loop (the write lanes, in `lanes`), lease renewal, the reaper (overdue runs,
//! expired approvals, runs created but never started), the outbox relay and event triggers.

use crate::TriggerOptions;
use crate::core::Core;
use crate::core::WorkflowCatalog;
use crate::plan::{pinned_of, to_approval};
use crate::runner::expires_at;
use futures::StreamExt;
use hybridgrid_core::store::RunStatus;
use hybridgrid_core::store_flow::RunFinish;
use hybridgrid_flow_model::{
    ApprovalStatus, DecisionRequest, FlowEventKind, FlowRunStatus, TriggerSource,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::task::JoinSet;

/// Most outbox entries published per batch.
const OUTBOX_BATCH: usize = 256;
/// How long the relay, woken by new events, waits for more before it publishes them.
const RELAY_GATHER: Duration = Duration::from_millis(5);
/// How long a relay holds outbox entries before another may publish them.
const OUTBOX_LEASE: Duration = Duration::from_secs(30);

pub(crate) fn spawn_all(core: &Arc<Core>, catalog: WorkflowCatalog, tasks: &mut JoinSet<()>) {
    tasks.spawn(crate::lanes::claim_loop(core.clone()));
    tasks.spawn(heartbeat(core.clone()));
    tasks.spawn(reaper(core.clone(), catalog.clone()));
    tasks.spawn(relay(core.clone()));
    tasks.spawn(event_triggers(core.clone(), catalog));
}

async fn heartbeat(core: Arc<Core>) {
    let every = (*core.config.lease / 3).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = core.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = core
            .store
            .extend_leases(&core.engine_id, *core.config.lease)
            .await
        {
            tracing::warn!(error = %e, "lease_renewal_failed");
        }
    }
}

async fn reaper(core: Arc<Core>, catalog: WorkflowCatalog) {
    let every = (*core.config.poll_interval * 4).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = core.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        reap_once(&core, &catalog).await;
    }
}

pub(crate) async fn reap_once(core: &Arc<Core>, catalog: &WorkflowCatalog) {
    // Runs past their deadline.
    match core.store.overdue_runs(SystemTime::now(), 100).await {
        Ok(runs) => {
            for run in runs {
                let Ok(pinned) = pinned_of(&run) else {
                    continue;
                };
                let id = run.id.to_string();
                let error = "workflow timeout: the run passed its deadline".to_owned();
                let ev = core.event(FlowEventKind::RunFailed, &id, &pinned, |e| {
                    e.run_status = Some(FlowRunStatus::Failed);
                    e.error = Some(error.clone());
                });
                match core
                    .store
                    .finish_run(RunFinish {
                        run: run.id.clone(),
                        from: vec![RunStatus::Running],
                        to: RunStatus::Failed,
                        error: error.clone(),
                        events: vec![ev],
                    })
                    .await
                {
                    Ok(done) => {
                        tracing::warn!(run = %id, "run_reaped: deadline passed");
                        core.outbox.notify_one();
                        core.run_finished(&done, &pinned);
                    }
                    Err(e) => tracing::debug!(run = %id, error = %e, "reaping raced"),
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing overdue runs failed"),
    }
    // Approvals past their timeout get the default decision.
    match core.store.approval_steps(true, 500).await {
        Ok(steps) => {
            let now = SystemTime::now();
            for s in steps {
                let Some(a) = to_approval(&s) else { continue };
                if a.status == ApprovalStatus::Waiting && expires_at(&a).is_some_and(|t| t <= now) {
                    let req = DecisionRequest {
                        decision: core.config.approval_default,
                        by: "timeout".into(),
                        notes: Some(format!(
                            "no decision within {}; default decision applied",
                            core.config.approval_timeout
                        )),
                    };
                    if let Err(e) = crate::facade::decide_in(core, &a.id, req).await {
                        tracing::debug!(approval = %a.id, error = %e, "approval timeout raced");
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing approvals failed"),
    }
    // Runs created but never started (the engine died between the two writes).
    if let Ok(runs) = core.store.runs(Some(RunStatus::Pending), 100).await {
        let old = SystemTime::now() - Duration::from_secs(5);
        for run in runs
            .into_iter()
            .filter(|r| r.created_at < old && r.kind == "workflow")
        {
            if let Err(e) = core.start_pending(&run, &HashMap::new()).await {
                tracing::debug!(run = %run.id, error = %e, "starting a pending run raced");
            }
        }
    }
    catalog.refresh(core).await;
}

async fn relay(core: Arc<Core>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let batch = match core
            .store
            .claim_outbox(&core.engine_id, OUTBOX_LEASE, OUTBOX_BATCH)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "outbox_claim_failed");
                Vec::new()
            }
        };
        let mut published = Vec::with_capacity(batch.len());
        let mut failed = false;
        for m in &batch {
            match core
                .bus
                .publish(&m.subject, bytes::Bytes::from(m.payload.clone()))
                .await
            {
                Ok(()) => published.push(m.seq),
                Err(e) => {
                    tracing::warn!(subject = %m.subject, error = %e, retry_in_ms = backoff.as_millis() as u64, "event_publish_failed: kept in the outbox");
                    failed = true;
                    break;
                }
            }
        }
        if !published.is_empty()
            && let Err(e) = core.store.ack_outbox(&published).await
        {
            tracing::warn!(error = %e, "outbox_ack_failed: events may be published twice");
        }
        if failed {
            // Entries not published stay claimed until their lease ends; release by waiting.
            tokio::select! {
                _ = core.shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            if backoff >= Duration::from_secs(5) {
                backoff = Duration::from_secs(5);
            }
            continue;
        }
        backoff = Duration::from_millis(100);
        if batch.len() == OUTBOX_BATCH {
            continue;
        }
        tokio::select! {
            _ = core.shutdown.cancelled() => return,
            _ = core.outbox.notified() => {
                // Let the events of the transitions committing meanwhile join this batch: one
                // claim and one ack for many events, not two transactions per transition.
                tokio::select! {
                    _ = core.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RELAY_GATHER) => {}
                }
            }
            _ = tokio::time::sleep(*core.config.poll_interval * 2) => {}
        }
    }
}

/// Starts workflows whose trigger is `{type: event, pattern}` on matching bus messages: one
/// subscription per distinct pattern, kept in step with the catalog (checked every second), and
/// re-made after a bus failure. A message starts each ACTIVE workflow with that pattern once
/// (the idempotency key holds the message's sequence, so several engines start one run).
async fn event_triggers(core: Arc<Core>, catalog: WorkflowCatalog) {
    let mut subs: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let wanted = catalog.patterns();
        subs.retain(|p, h| {
            let keep = wanted.contains(p) && !h.is_finished();
            if !keep {
                h.abort();
            }
            keep
        });
        for p in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = subs.entry(p.clone()) {
                slot.insert(tokio::spawn(subscribe_pattern(
                    core.clone(),
                    catalog.clone(),
                    p,
                )));
            }
        }
        tokio::select! {
            _ = core.shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = catalog.changed() => {}
        }
    }
    for (_, h) in subs {
        h.abort();
    }
}

async fn subscribe_pattern(core: Arc<Core>, catalog: WorkflowCatalog, pattern: String) {
    let mut stream = match core.bus.subscribe(&pattern, false).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%pattern, error = %e, "event trigger subscription failed; retrying in 1s");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        }
    };
    tracing::info!(%pattern, "event_trigger_subscribed");
    while let Some(msg) = stream.next().await {
        let Ok(msg) = msg else { continue };
        for wf in catalog.with_pattern(&pattern) {
            let payload: serde_json::Value =
                serde_json::from_slice(&msg.payload).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&msg.payload).into_owned())
                });
            let context = serde_json::json!({
                "event": {"subject": msg.subject, "seq": msg.seq, "payload": payload}
            });
            let key = (msg.seq > 0).then(|| format!("event:{wf}:{}:{}", msg.subject, msg.seq));
            match crate::facade::trigger_in(
                &core,
                &wf,
                context,
                TriggerSource::Event,
                TriggerOptions {
                    idempotency_key: key,
                },
            )
            .await
            {
                Ok(t) => {
                    tracing::info!(workflow = %wf, subject = %msg.subject, run = %t.run_id, duplicate = t.duplicate, "event_triggered")
                }
                Err(e) => {
                    tracing::warn!(workflow = %wf, subject = %msg.subject, error = %e, "event trigger failed")
                }
            }
        }
    }
}
