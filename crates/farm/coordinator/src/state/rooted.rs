//! Rooted compile requests (clang DWARF 5, `hybridgrid_farm_protocol::RootedManifest`): valid
//! when the command is distributable as a rooted compile, placed only on workers that advertise
//! [`ROOTED_EXECUTOR`]; a worker's refusal because its system headers differ
//! ([`ROOTED_HEADER_MISMATCH`]) is the request's property, not the worker's failure.

use super::{CoordinatorState, Liveness};
use hybridgrid_core::WorkerId;
use hybridgrid_farm_protocol::{
    ROOTED_EXECUTOR, ROOTED_HEADER_MISMATCH, ROOTED_MANIFEST, parse_rooted_command,
};
use hybridgrid_transport::pb;

/// Whether `spec` is a rooted compile request.
pub(super) fn is_rooted(spec: &pb::TaskSpec) -> bool {
    spec.inputs.iter().any(|f| f.path == ROOTED_MANIFEST)
}

/// Whether a rooted request's command is one a rooted worker runs exactly.
pub(super) fn distributable(spec: &pb::TaskSpec) -> bool {
    matches!(
        parse_rooted_command(&spec.command),
        hybridgrid_compiler::Invocation::Distributable(ref job) if job.is_clang()
    )
}

/// Whether a worker's failure message says it refused a rooted request for its system headers.
pub(super) fn header_mismatch(kind: pb::task_failure::Kind, message: &str) -> bool {
    kind == pb::task_failure::Kind::ToolchainUnavailable
        && message.starts_with(ROOTED_HEADER_MISMATCH)
}

impl CoordinatorState {
    /// The known workers that run no rooted compiles (to exclude from a rooted request's
    /// placement), and whether any live worker does.
    pub(super) fn without_rooted(&self) -> (Vec<WorkerId>, bool) {
        let workers = self.workers.lock();
        let mut without = Vec::new();
        let mut any = false;
        for (id, k) in workers.iter() {
            if k.info
                .capabilities
                .executors
                .iter()
                .any(|e| e == ROOTED_EXECUTOR)
            {
                any |= k.liveness == Liveness::Up;
            } else {
                without.push(id.clone());
            }
        }
        (without, any)
    }
}
