//! Worker membership: registration (vetted), discovery events, heartbeats, marking down and
//! pruning workers gone for too long.

use super::{CoordinatorState, Known, Liveness};
use hybridgrid_transport::auth::sanitize;
use hybridgrid_transport::tls::{Dial, Expect, Role};

use hybridgrid_core::{DiscoverySource, WorkerEvent, WorkerId, WorkerInfo};
use hybridgrid_transport::execute_link::ExecuteLink;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Status;
use tracing::{info, warn};

/// Every `kind` label of `worker_failures`.
const FAILURE_KINDS: &[&str] = &[
    "unspecified",
    "deadline_exceeded",
    "cancelled",
    "spawn",
    "invalid_spec",
    "output_too_large",
    "work_dir",
    "backend",
    "toolchain_unavailable",
    "overloaded",
    "malformed_response",
    "unreachable",
    "timeout",
    "lost",
    "wrong_worker",
];

impl CoordinatorState {
    /// A worker's own registration: refused while another live worker holds the same id at
    /// another address, unless TLS bound the id to the caller's certificate (then the holder of
    /// the key is that worker, e.g. restarted elsewhere).
    pub fn register_worker(&self, info: WorkerInfo) -> Result<(), Status> {
        if self.security.tls.is_none() {
            let workers = self.workers.lock();
            if let Some(k) = workers.get(&info.id)
                && k.liveness == Liveness::Up
                && k.info.addr != info.addr
                && k.last_seen.elapsed() <= *self.config.heartbeat_timeout
            {
                return Err(Status::already_exists(format!(
                    "worker id {:?} is registered from {} and still heartbeating; a second worker cannot take it over",
                    sanitize(info.id.as_str(), 128),
                    sanitize(&k.info.addr, 64)
                )));
            }
        }
        self.worker_up(info)
    }

    /// Checks what a worker announces: an id and address of sane size, slots within
    /// `coordinator.max_worker_slots`; toolchains without a binary hash are dropped (they would
    /// match nothing exactly).
    fn vet(&self, mut info: WorkerInfo) -> Result<WorkerInfo, Status> {
        let id = info.id.as_str();
        if id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Status::invalid_argument(format!(
                "worker id {:?} must be at most 128 characters without spaces or control characters",
                sanitize(id, 128)
            )));
        }
        if info.addr.len() > 256 {
            return Err(Status::invalid_argument(
                "worker address longer than 256 bytes",
            ));
        }
        hybridgrid_farm_protocol::config::validate_host_port(&info.addr).map_err(|e| {
            Status::invalid_argument(format!("worker address: {}", sanitize(&e, 300)))
        })?;
        let max = self.config.max_worker_slots;
        if info.capabilities.slots > max {
            return Err(Status::invalid_argument(format!(
                "worker {} announces {} slots; this coordinator accepts at most {max} (coordinator.max_worker_slots)",
                sanitize(id, 128),
                info.capabilities.slots
            )));
        }
        let before = info.capabilities.toolchains.len();
        info.capabilities.toolchains.retain(|t| {
            !t.binary_hash.is_empty()
                && t.binary_hash.len() <= 128
                && t.name.len() <= 256
                && t.version.len() <= 256
                && t.target.len() <= 256
        });
        if info.capabilities.toolchains.len() != before {
            warn!(worker = %sanitize(id, 128), dropped = before - info.capabilities.toolchains.len(),
                  "toolchains without a binary hash (or with oversized fields) ignored");
        }
        if info.capabilities.toolchains.len() > 64 {
            return Err(Status::invalid_argument(
                "a worker may announce at most 64 toolchains",
            ));
        }
        for s in [&mut info.capabilities.arch, &mut info.capabilities.os] {
            *s = sanitize(s, 32);
        }
        Ok(info)
    }

    /// Adds or refreshes a worker (from its registration or from discovery), after [`Self::vet`].
    pub fn worker_up(&self, info: WorkerInfo) -> Result<(), Status> {
        let info = self.vet(info)?;
        let how = Dial {
            tls: self.security.tls.clone(),
            insecure: self.security.insecure,
            expect: Some(Expect {
                role: Role::Worker,
                name: Some(info.id.to_string()),
            }),
            connect_timeout: Duration::from_secs(2),
            timeout: None,
            keep_alive: Some(Duration::from_secs(5)),
        };
        let channel = hybridgrid_transport::tls::dial_lazy(&info.addr, &how).map_err(|e| {
            Status::invalid_argument(format!("worker {}: {}", sanitize(info.id.as_str(), 128), e))
        })?;
        let mut workers = self.workers.lock();
        let fresh = match workers.get(&info.id) {
            Some(k) => k.liveness == Liveness::Down || k.info != info,
            None => true,
        };
        if fresh {
            info!(worker_id = %sanitize(info.id.as_str(), 128), arch = %info.capabilities.arch, slots = info.capabilities.slots,
                  addr = %sanitize(&info.addr, 64), source = %info.source, "worker registered");
        }
        let keep_lease = workers
            .get(&info.id)
            .filter(|k| k.liveness == Liveness::Up)
            .map(|k| k.lease.clone());
        let keep_link = workers
            .get(&info.id)
            .filter(|k| k.info.addr == info.addr)
            .map(|k| k.link.clone());
        let link = keep_link
            .unwrap_or_else(|| Arc::new(ExecuteLink::new(channel, self.max_message_bytes())));
        workers.insert(
            info.id.clone(),
            Known {
                link,
                info: info.clone(),
                last_seen: Instant::now(),
                liveness: Liveness::Up,
                lease: keep_lease.unwrap_or_default(),
                history: None,
                down_since: None,
            },
        );
        drop(workers);
        self.registry.upsert_worker(info);
        self.slot_freed.notify_waiters();
        Ok(())
    }

    /// Marks a worker down: no new tasks go to it; its in-flight calls fail and are placed again.
    pub fn worker_down(&self, id: &WorkerId, why: &str) {
        let last = self.registry.snapshot().into_iter().find(|w| &w.id == id);
        let mut workers = self.workers.lock();
        if let Some(k) = workers.get_mut(id)
            && k.liveness == Liveness::Up
        {
            k.liveness = Liveness::Down;
            k.lease.cancel();
            k.history = last;
            k.down_since = Some(Instant::now());
            warn!(worker = %sanitize(id.as_str(), 128), reason = why, "worker down");
            self.history.event(id.as_str(), "down", why);
        }
        drop(workers);
        self.registry.remove_worker(id);
    }

    /// Marks down every registered worker silent for longer than the heartbeat timeout.
    pub fn expire_silent_workers(&self) {
        let timeout = *self.config.heartbeat_timeout;
        let silent: Vec<WorkerId> = self
            .workers
            .lock()
            .values()
            .filter(|k| {
                k.liveness == Liveness::Up
                    && k.info.source == DiscoverySource::Registration
                    && k.last_seen.elapsed() > timeout
            })
            .map(|k| k.info.id.clone())
            .collect();
        for id in silent {
            self.worker_down(&id, "heartbeat timeout");
        }
        self.prune_down_workers();
    }

    /// Forgets workers down for longer than `coordinator.prune_after`, with their metric series
    /// and circuits, so ids that come and go cannot grow the coordinator's state without bound.
    pub fn prune_down_workers(&self) {
        let after = *self.config.prune_after;
        let gone: Vec<WorkerId> = {
            let mut workers = self.workers.lock();
            let gone: Vec<WorkerId> = workers
                .values()
                .filter(|k| k.down_since.is_some_and(|t| t.elapsed() >= after))
                .map(|k| k.info.id.clone())
                .collect();
            for id in &gone {
                workers.remove(id);
            }
            gone
        };
        for id in gone {
            let label = id.to_string();
            self.metrics
                .circuit_state
                .remove(&vec![("worker", label.clone())]);
            for kind in FAILURE_KINDS {
                self.metrics.worker_failures.remove(&vec![
                    ("worker", label.clone()),
                    ("kind", (*kind).to_owned()),
                ]);
            }
            self.metrics.verify_mismatches.remove(&label);
            self.breaker.forget(&label);
            info!(worker = %sanitize(&label, 128), "worker pruned after being down for coordinator.prune_after");
        }
    }

    /// Applies a discovery event.
    pub fn apply(&self, event: WorkerEvent) {
        match event {
            WorkerEvent::Up(info) => {
                if let Err(e) = self.worker_up(info) {
                    warn!(error = %sanitize(e.message(), 300), "discovered worker refused");
                }
            }
            WorkerEvent::Down(id) => self.worker_down(&id, "discovery reported it gone"),
        }
    }
}
