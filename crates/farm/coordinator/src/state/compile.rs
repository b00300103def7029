//! Running one compile request: admission, placement, the call to the worker, retries on
//! another worker, and the fallback (with its reason) when the farm cannot take the task.

use super::{CoordinatorState, Liveness};
use crate::peers::Caller;
use hybridgrid_farm_protocol::{PREPROCESSED_INPUT, parse_command};
use hybridgrid_transport::auth::sanitize;
use hybridgrid_transport::serve::GaugeGuard;

use hybridgrid_core::{Outcome, PROTOCOL_VERSION, Toolchain, WorkerId};
use hybridgrid_scheduler::{NoPlacement, Placement, PlacementRequest};
use hybridgrid_transport::execute_link::ExecuteLink;
use hybridgrid_transport::pb;
use hybridgrid_transport::{check_version, failure_kind_name};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::warn;

/// How long a request may wait for a free slot before the client is told to compile locally.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(60);

/// How a call to a worker ended without an answer.
enum CallEnd {
    Timeout,
    Lost,
}

/// A response telling the client to compile locally, with the reason and a detail.
fn fallback(reason: &str, detail: String) -> pb::CompileResponse {
    pb::CompileResponse {
        result: Some(pb::compile_response::Result::Fallback(pb::Fallback {
            reason: reason.to_owned(),
            detail,
        })),
    }
}

impl CoordinatorState {
    fn record_fallback(&self, reason: &str) {
        self.metrics.fallbacks.add(reason, 1);
        self.metrics.tasks_fallback.inc();
    }

    /// Waits for a placement, up to [`MAX_QUEUE_WAIT`] while every matching worker is busy.
    async fn place(&self, req: &PlacementRequest) -> Result<Placement, NoPlacement> {
        let deadline = Instant::now() + MAX_QUEUE_WAIT;
        let mut queued: Option<GaugeGuard> = None;
        let result = loop {
            let notified = self.slot_freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.registry.place(req) {
                Ok(p) => break Ok(p),
                Err(NoPlacement::AllBusy) if Instant::now() < deadline => {
                    if queued.is_none() {
                        queued = Some(GaugeGuard::hold(&self.metrics.queue_depth).0);
                    }
                    // Also wake periodically: a circuit turning half-open frees capacity without a notification.
                    let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
                }
                Err(e) => break Err(e),
            }
        };
        drop(queued);
        result
    }

    fn link_of(&self, id: &WorkerId) -> Option<(Arc<ExecuteLink>, CancellationToken)> {
        self.workers
            .lock()
            .get(id)
            .filter(|k| k.liveness == Liveness::Up)
            .map(|k| (k.link.clone(), k.lease.clone()))
    }

    /// Runs one compile request for `caller` to completion or fallback.
    pub(crate) async fn compile(
        &self,
        req: pb::CompileRequest,
        caller: &Caller,
    ) -> Result<pb::CompileResponse, Status> {
        check_version(req.protocol_version, "client")?;
        // The wire toolchain goes to the worker as it came; one converted copy is for placement.
        let wire_toolchain = req.toolchain.ok_or_else(|| {
            Status::invalid_argument("malformed message: missing field toolchain")
        })?;
        let toolchain: Toolchain = wire_toolchain.clone().into();
        let mut spec = req
            .spec
            .ok_or_else(|| Status::invalid_argument("malformed message: missing field spec"))?;
        // Validate once here so a malformed spec is refused before it reaches any worker.
        let asked = spec.validate()?;
        if toolchain.binary_hash.is_empty() {
            // An exact compile needs the exact binary: no hash matches nothing.
            self.record_fallback("no_matching_toolchain");
            return Ok(fallback(
                "no_matching_toolchain",
                "the request names a toolchain without a binary hash".into(),
            ));
        }
        // The coordinator's own verdict on the request: a worker refusing a request that passes
        // it (INVALID_SPEC) is failing, not the request.
        let rooted = super::rooted::is_rooted(&spec);
        let distributable = if rooted {
            super::rooted::distributable(&spec)
        } else {
            matches!(
                parse_command(&spec.command),
                hybridgrid_compiler::Invocation::Distributable(_)
            ) && spec.inputs.iter().any(|f| f.path == PREPROCESSED_INPUT)
        };
        if !distributable {
            self.record_fallback("rejected_by_coordinator");
            return Ok(fallback(
                "rejected_by_coordinator",
                "not a compile the farm runs exactly (the client should run it locally)".into(),
            ));
        }
        if spec.id.is_empty() || spec.id.len() > 64 {
            spec.id = hybridgrid_core::TaskId::random().to_string();
        }
        // Per-call deadline from the coordinator's own config, whatever the client asked.
        let task_timeout = asked.min(*self.config.task_timeout);
        spec.timeout_ms = u64::try_from(task_timeout.as_millis()).unwrap_or(u64::MAX);
        // The worker enforces the task's deadline itself; the call waits a little longer.
        let grace = (task_timeout / 10).clamp(Duration::from_millis(500), Duration::from_secs(10));
        let call_timeout = task_timeout.saturating_add(grace);
        let task_id = spec.id.clone();
        // Encoded once per attempt from this one copy: never cloned per worker tried.
        let request = Arc::new(pb::ExecuteRequest {
            protocol_version: PROTOCOL_VERSION,
            spec: Some(spec),
            toolchain: Some(wire_toolchain),
        });
        let received = Instant::now();
        let Ok(_admitted) = tokio::time::timeout(MAX_QUEUE_WAIT, self.admission.acquire())
            .await
            .map_err(|_| ())
            .and_then(|r| r.map_err(|_| ()))
        else {
            self.record_fallback("admission_full");
            return Ok(fallback(
                "admission_full",
                format!(
                    "coordinator.max_concurrent_tasks={} reached",
                    self.config.max_concurrent_tasks
                ),
            ));
        };
        let toolchain_text = |t: &Toolchain| format!("{} {} {}", t.name, t.version, t.target);
        let mut placement_req = PlacementRequest {
            toolchain: Some(toolchain),
            ..Default::default()
        };
        if rooted {
            // Only workers that run rooted compiles can take it.
            let (without, any) = self.without_rooted();
            if !any {
                self.record_fallback("no_rooted_worker");
                return Ok(fallback(
                    "no_rooted_worker",
                    "no worker runs rooted compiles (clang DWARF 5)".into(),
                ));
            }
            placement_req.exclude = without;
        }
        let mut last_error = String::new();
        for attempt in 1..=self.config.max_attempts.max(1) {
            let placement = match self.place(&placement_req).await {
                Ok(p) => p,
                Err(NoPlacement::AllExcluded) => break,
                Err(reason) => {
                    self.record_fallback(reason.as_str());
                    return Ok(fallback(
                        reason.as_str(),
                        format!(
                            "{reason} (toolchain {})",
                            placement_req
                                .toolchain
                                .as_ref()
                                .map(toolchain_text)
                                .unwrap_or_default()
                        ),
                    ));
                }
            };
            if attempt == 1 {
                self.metrics
                    .schedule_seconds
                    .observe(received.elapsed().as_secs_f64());
            }
            let worker = placement.worker_id().clone();
            let Some((link, lease)) = self.link_of(&worker) else {
                drop(placement);
                placement_req.exclude.push(worker);
                continue;
            };
            let (in_flight, now) = GaugeGuard::hold(&self.metrics.in_flight);
            self.peak_in_flight
                .fetch_max(now.max(0) as u64, Ordering::Relaxed);
            self.history.note_in_flight(now.max(0) as u64);
            let started = Instant::now();
            let call = link.execute(request.clone(), call_timeout);
            let result = tokio::select! {
                r = tokio::time::timeout(call_timeout, call) => r.map_err(|_| CallEnd::Timeout),
                _ = lease.cancelled() => Err(CallEnd::Lost),
            };
            drop(in_flight);
            let elapsed = started.elapsed();
            use pb::execute_response::Result as R;
            use pb::task_failure::Kind;
            let failure_kind: &str = match result {
                Ok(Ok(resp)) if resp.worker_id != worker.as_str() => {
                    placement.complete(Outcome::Failure, elapsed);
                    last_error = format!(
                        "worker {} answered as {:?}",
                        sanitize(worker.as_str(), 128),
                        sanitize(&resp.worker_id, 128)
                    );
                    "wrong_worker"
                }
                Ok(Ok(resp)) => match resp.result {
                    Some(R::Output(out)) => {
                        placement.complete(Outcome::Success, elapsed);
                        self.slot_freed.notify_one();
                        self.done.fetch_add(1, Ordering::Relaxed);
                        if out.exit_code != 0 {
                            self.compile_errors.fetch_add(1, Ordering::Relaxed);
                        }
                        self.metrics.tasks_remote.inc();
                        self.metrics.task_seconds.observe(elapsed.as_secs_f64());
                        self.mismatches.served(&task_id, &worker, caller);
                        return Ok(pb::CompileResponse {
                            result: Some(pb::compile_response::Result::Completed(pb::Completed {
                                output: Some(out),
                                worker_id: worker.to_string(),
                                attempts: attempt,
                            })),
                        });
                    }
                    Some(R::Failure(f)) => {
                        let kind = Kind::try_from(f.kind).unwrap_or(Kind::Unspecified);
                        last_error = sanitize(&f.message, 512);
                        match kind {
                            // The output is over the limits the request itself set.
                            Kind::OutputTooLarge => {
                                placement.complete(Outcome::Success, elapsed);
                                self.slot_freed.notify_one();
                                self.record_fallback("rejected_by_worker");
                                return Ok(fallback("rejected_by_worker", last_error));
                            }
                            // The worker lacks the request's exact system headers.
                            _ if super::rooted::header_mismatch(kind, &f.message) => {
                                placement.complete(Outcome::Success, elapsed);
                                self.slot_freed.notify_one();
                                self.record_fallback("system_headers_differ");
                                return Ok(fallback("system_headers_differ", last_error));
                            }
                            // Busy is not sickness: free the slot without a verdict.
                            Kind::Overloaded => drop(placement),
                            // Includes INVALID_SPEC: the coordinator found the request valid,
                            // so a worker refusing it is failing (and is routed around).
                            _ => placement.complete(Outcome::Failure, elapsed),
                        }
                        failure_kind_name(f.kind)
                    }
                    None => {
                        placement.complete(Outcome::Failure, elapsed);
                        last_error = "worker sent an empty response".into();
                        "malformed_response"
                    }
                },
                Ok(Err(status)) if status.code() == tonic::Code::ResourceExhausted => {
                    // The worker's slot gate refused the call before reading it: busy, not sick.
                    drop(placement);
                    last_error = sanitize(status.message(), 512);
                    "overloaded"
                }
                Ok(Err(status)) => {
                    placement.complete(Outcome::Failure, elapsed);
                    last_error = sanitize(status.message(), 512);
                    warn!(worker = %sanitize(worker.as_str(), 128), error = %last_error, "worker unreachable");
                    "unreachable"
                }
                Err(CallEnd::Timeout) => {
                    placement.complete(Outcome::Failure, elapsed);
                    last_error = format!("no answer within {call_timeout:?}");
                    warn!(worker = %sanitize(worker.as_str(), 128), error = %last_error, "worker unreachable");
                    "timeout"
                }
                Err(CallEnd::Lost) => {
                    placement.complete(Outcome::Failure, elapsed);
                    last_error = "worker lost (missed heartbeats) while running the task".into();
                    warn!(worker = %sanitize(worker.as_str(), 128), error = %last_error, "worker unreachable");
                    "lost"
                }
            };
            self.slot_freed.notify_one();
            if failure_kind != "overloaded" {
                self.history
                    .failure(worker.as_str(), failure_kind, &last_error);
            }
            self.metrics
                .worker_failures
                .get_or_create(&vec![
                    ("worker", worker.to_string()),
                    ("kind", failure_kind.to_owned()),
                ])
                .inc();
            warn!(task_id = %task_id, worker = %sanitize(worker.as_str(), 128), attempt, kind = failure_kind, error = %last_error,
                  "task failed on worker, placing it again");
            placement_req.exclude.push(worker);
        }
        self.record_fallback("workers_failed");
        Ok(fallback("workers_failed", last_error))
    }
}
