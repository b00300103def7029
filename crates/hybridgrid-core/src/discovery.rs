//! The [`Discovery`] seam: a stream of workers coming and going.

use crate::ids::WorkerId;
use crate::worker::WorkerInfo;
use futures::stream::BoxStream;

/// A change in the set of known workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerEvent {
    /// A worker appeared, or its capabilities changed.
    Up(WorkerInfo),
    /// A worker went away.
    Down(WorkerId),
}

/// Finds workers (static list, mDNS, registrations).
pub trait Discovery: Send + Sync + 'static {
    /// Events from now on. Implementations first replay an `Up` for every worker already known.
    fn watch(&self) -> BoxStream<'static, WorkerEvent>;
}
