//! # hybridgrid-discovery
//!
//! Finds workers for a coordinator, as backends of the [`hybridgrid_core::Discovery`] seam:
//! - [`StaticDiscovery`]: a configured list of `host:port`, each probed periodically (through an
//!   injected [`Prober`]) to learn its capabilities and to notice when it goes away;
//! - [`DiscoveryHub`]: merges several sources and workers that register themselves into one stream;
//! - [`ProbedDiscovery`]: confirms each worker another source points at (mDNS) by probing it, and
//!   reports it down when it stops answering;
//! - `MdnsAnnouncer` / `MdnsDiscovery` (feature `mdns`): `_hybridgrid._tcp.local.` with the
//!   capabilities in TXT records.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::StreamExt;
//! use hybridgrid_core::{BoxError, Capabilities, Discovery, DiscoverySource, WorkerEvent, WorkerId, WorkerInfo};
//! use hybridgrid_discovery::{StaticDiscovery, StaticOptions};
//! use std::{sync::Arc, time::Duration};
//!
//! // In a coordinator the prober asks the worker over gRPC; here it answers directly.
//! let prober = |addr: String| async move {
//!     Ok::<_, BoxError>(WorkerInfo {
//!         id: WorkerId::new(format!("worker@{addr}")),
//!         addr,
//!         capabilities: Capabilities::of_this_host(4),
//!         protocol_version: hybridgrid_core::PROTOCOL_VERSION,
//!         source: DiscoverySource::Registration, // replaced by Static
//!     })
//! };
//! let discovery = StaticDiscovery::new(vec!["10.0.0.7:50052".into()], Arc::new(prober))?
//!     .with_options(StaticOptions { interval: Duration::from_millis(100), ..Default::default() });
//! let mut events = discovery.watch();
//! match events.next().await {
//!     Some(WorkerEvent::Up(info)) => {
//!         assert_eq!(info.addr, "10.0.0.7:50052");
//!         assert_eq!(info.source, DiscoverySource::Static);
//!     }
//!     other => panic!("expected Up, got {other:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! ## Features
//! - `mdns`: `MdnsAnnouncer` and `MdnsDiscovery` (mdns-sd, which runs its own thread).

mod fanout;
mod hub;
#[cfg(feature = "mdns")]
mod mdns;
mod probed;
mod static_list;

pub use hub::DiscoveryHub;
#[cfg(feature = "mdns")]
pub use mdns::{
    Announcement, MDNS_PORT, MdnsAnnouncer, MdnsDiscovery, MdnsInterfaces, SERVICE_TYPE,
    check_mdns_port,
};
pub use probed::{HintProber, ProbedDiscovery, ProbedOptions};
pub use static_list::{Prober, StaticDiscovery, StaticOptions};

use hybridgrid_core::{BoxError, Retry};

/// Errors of discovery setup. (Once running, discovery reports workers coming and going; failed
/// probes are events, not errors.)
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A static worker address is malformed.
    #[error("invalid worker address {addr:?}: {reason}")]
    InvalidAddress {
        /// The entry as configured.
        addr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A TXT record entry cannot be encoded.
    #[error("mDNS TXT entry {key:?}: {reason}")]
    Txt {
        /// The TXT key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The mDNS daemon failed.
    #[error("mDNS: cannot {what}: {source}")]
    Mdns {
        /// The step that failed.
        what: &'static str,
        /// The mdns-sd error.
        #[source]
        source: BoxError,
    },
}

impl DiscoveryError {
    /// Configuration errors are permanent; a daemon failure may pass (network not up yet).
    pub fn retry(&self) -> Retry {
        match self {
            DiscoveryError::InvalidAddress { .. } | DiscoveryError::Txt { .. } => Retry::Never,
            DiscoveryError::Mdns { .. } => Retry::After(std::time::Duration::from_secs(5)),
        }
    }
}
