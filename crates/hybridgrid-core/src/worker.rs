//! Who can run work: a worker's identity, address and capabilities.

use crate::ids::WorkerId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A toolchain a worker offers, identified exactly (issue: never a wrong object).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Toolchain {
    /// Family as the client names it: `gcc`, `g++`, `clang`, `clang++`, `cc`, `c++`.
    pub name: String,
    /// Version string as the compiler reports it (`-dumpfullversion`, or the first line of `--version`).
    pub version: String,
    /// Target triple (`-dumpmachine`).
    pub target: String,
    /// Hex BLAKE3 of the resolved compiler binary, or empty when unknown.
    #[serde(default)]
    pub binary_hash: String,
}

impl Toolchain {
    /// True when `other` produces the same output: same name, version, target and binary
    /// (an empty hash on either side is compared by the other fields only).
    pub fn matches(&self, other: &Toolchain) -> bool {
        self.name == other.name
            && self.version == other.version
            && self.target == other.target
            && (self.binary_hash.is_empty()
                || other.binary_hash.is_empty()
                || self.binary_hash == other.binary_hash)
    }
}

/// How a worker became known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoverySource {
    /// From `coordinator.static_workers`.
    Static,
    /// Announced over mDNS.
    Mdns,
    /// The worker registered itself with the coordinator.
    Registration,
}

impl fmt::Display for DiscoverySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiscoverySource::Static => "static",
            DiscoverySource::Mdns => "mdns",
            DiscoverySource::Registration => "registration",
        })
    }
}

/// What a worker can do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// CPU architecture in Rust's naming (`x86_64`, `aarch64`).
    pub arch: String,
    /// Operating system (`linux`, `macos`).
    pub os: String,
    /// Logical CPUs.
    pub cpus: u32,
    /// Tasks it runs at once (`worker.max_concurrent_tasks`).
    pub slots: u32,
    /// Toolchains it offers.
    pub toolchains: Vec<Toolchain>,
    /// Executor kinds it offers (`native`, `docker`, ...).
    pub executors: Vec<String>,
}

impl Capabilities {
    /// Capabilities of this machine with the given slot count and no toolchains.
    pub fn of_this_host(slots: u32) -> Self {
        Self {
            arch: std::env::consts::ARCH.to_owned(),
            os: std::env::consts::OS.to_owned(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            slots,
            toolchains: Vec::new(),
            executors: vec!["native".to_owned()],
        }
    }
}

/// A worker as discovery reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Stable id.
    pub id: WorkerId,
    /// `host:port` of its gRPC endpoint.
    pub addr: String,
    /// What it can do.
    pub capabilities: Capabilities,
    /// Its protocol version.
    pub protocol_version: u32,
    /// How it became known.
    pub source: DiscoverySource,
}
