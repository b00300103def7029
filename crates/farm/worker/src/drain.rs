//! Draining and health: a draining worker takes no new task (its slot gate refuses `Execute` as
//! busy, so the coordinator places the task elsewhere without counting a failure), withdraws its
//! mDNS announcement, reports `NOT_SERVING` over `grpc.health.v1.Health`, and lets the tasks it
//! runs finish. `hg-worker` drains on SIGTERM or SIGINT (a second signal stops it at once).

use hybridgrid_discovery::MdnsAnnouncer;
use hybridgrid_transport::health::GrpcHealth;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The gRPC service name of the worker's compile service in health checks.
pub const WORKER_SERVICE: &str = "hybridgrid.v1.Worker";
/// The health-check name of the compiler sandbox: `NOT_SERVING` when compiles run unsandboxed
/// (`worker.allow_unsandboxed` on a host where no sandbox works).
pub const SANDBOX_SERVICE: &str = "hybridgrid.v1.Worker.sandbox";

/// Health of each service name, from the worker's state.
pub(crate) fn statuses(draining: bool, sandboxed: bool) -> [(&'static str, bool); 3] {
    [
        ("", !draining),
        (WORKER_SERVICE, !draining),
        (SANDBOX_SERVICE, sandboxed),
    ]
}

/// A worker's draining flag, health reporter and mDNS announcement.
#[derive(Default)]
pub(crate) struct Drain {
    /// Set once draining starts; read by the slot gate.
    pub(crate) draining: Arc<AtomicBool>,
    health: std::sync::OnceLock<(GrpcHealth, bool)>,
    announcer: Mutex<Option<MdnsAnnouncer>>,
}

impl Drain {
    /// Serves health through `health` (`sandboxed`: whether compiles are confined).
    pub(crate) async fn set_health(&self, health: GrpcHealth, sandboxed: bool) {
        let draining = self.draining.load(Ordering::SeqCst);
        for (service, serving) in statuses(draining, sandboxed) {
            health.set(service, serving).await;
        }
        let _ = self.health.set((health, sandboxed));
    }

    /// Keeps `announcer` until draining or stopping.
    pub(crate) fn set_announcer(&self, announcer: MdnsAnnouncer) {
        *self.announcer.lock() = Some(announcer);
    }

    /// Withdraws the mDNS announcement (sends the goodbye; blocks briefly, so off the runtime).
    pub(crate) async fn withdraw(&self) {
        let announcer = self.announcer.lock().take();
        if let Some(a) = announcer {
            let _ = tokio::task::spawn_blocking(move || drop(a)).await;
        }
    }

    /// Starts draining (once): refuse new tasks, report `NOT_SERVING`, withdraw the announcement.
    pub(crate) async fn begin(&self) -> bool {
        if self.draining.swap(true, Ordering::SeqCst) {
            return false;
        }
        if let Some((health, sandboxed)) = self.health.get() {
            for (service, serving) in statuses(true, *sandboxed) {
                health.set(service, serving).await;
            }
        }
        self.withdraw().await;
        true
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_or_no_sandbox_is_not_serving() {
        assert!(statuses(false, true).iter().all(|(_, s)| *s));
        assert!(
            statuses(true, true)
                .iter()
                .all(|(n, s)| *s == (*n == SANDBOX_SERVICE))
        );
        let unsandboxed = statuses(false, false);
        assert!(
            unsandboxed
                .iter()
                .all(|(n, s)| *s == (*n != SANDBOX_SERVICE))
        );
    }
}
