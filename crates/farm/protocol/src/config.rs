//! The compile farm's config: one YAML file shared by `hg-coord`, `hg-worker` and `hgbuild`, each
//! reading its section, with `HG_*` environment overrides (see [`hybridgrid_core::config`]).
//!
//! ```yaml
//! coordinator:
//!   grpc_addr: 0.0.0.0:9000
//!   http_addr: 0.0.0.0:8080
//!   static_workers: ["192.168.2.10:50052", "192.168.2.11:50052"]
//!   max_concurrent_tasks: 500
//! worker:
//!   coordinator: 127.0.0.1:9000
//!   max_concurrent_tasks: 4
//!   task_timeout: 5m
//! cache:
//!   enabled: true
//!   max_size_gb: 10
//!   shared: redis://127.0.0.1:6379   # optional shared tier
//! logging:
//!   level: info
//!   format: text
//! ```

use hybridgrid_core::config::{ConfigError, EnvSource, HumanDuration, load};
use hybridgrid_core::logging::{LOGGING_ENV_ALIASES, LoggingConfig};
use hybridgrid_core::spec::{ByteSize, CacheSpec, Secret, SecretUrl, SpecError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FarmConfig {
    /// `hg-coord`.
    pub coordinator: CoordinatorConfig,
    /// `hg-worker`.
    pub worker: WorkerConfig,
    /// `hgbuild`.
    pub client: ClientConfig,
    /// The compile cache.
    pub cache: CacheConfig,
    /// Sampled verification of remote results.
    pub verify: VerifyConfig,
    /// Logging, for every binary.
    pub logging: LoggingConfig,
}

impl FarmConfig {
    /// Loads defaults ← `file` ← environment, then validates.
    pub fn load(file: Option<&Path>, env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let cfg: FarmConfig = load(file, env, LOGGING_ENV_ALIASES)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        if self.worker.max_concurrent_tasks == 0 {
            return Err(bad(
                "worker.max_concurrent_tasks",
                "must be at least 1, got 0".into(),
            ));
        }
        if self.worker.task_timeout.is_zero() {
            return Err(bad(
                "worker.task_timeout",
                "must be greater than 0s, got 0s".into(),
            ));
        }
        if self.coordinator.max_concurrent_tasks == 0 {
            return Err(bad(
                "coordinator.max_concurrent_tasks",
                "must be at least 1, got 0".into(),
            ));
        }
        for (i, w) in self.coordinator.static_workers.iter().enumerate() {
            if let Err(e) = validate_host_port(w) {
                return Err(bad(&format!("coordinator.static_workers[{i}]"), e));
            }
        }
        for (key, value) in [
            ("coordinator.grpc_addr", &self.coordinator.grpc_addr),
            ("coordinator.http_addr", &self.coordinator.http_addr),
            ("worker.grpc_addr", &self.worker.grpc_addr),
            ("worker.http_addr", &self.worker.http_addr),
        ] {
            if value.parse::<std::net::SocketAddr>().is_err() {
                return Err(bad(
                    key,
                    format!("{value:?} is not an IP:port socket address"),
                ));
            }
        }
        for (key, v) in [
            ("verify.rate", self.verify.rate),
            ("verify.cache_rate", self.verify.cache_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(key, format!("must be between 0.0 and 1.0, got {v}")));
            }
        }
        if let Some(s) = &self.cache.shared_secret
            && s.expose().chars().count() < 16
        {
            return Err(bad(
                "cache.shared_secret",
                "must be at least 16 characters (a random string shared by the farm)".into(),
            ));
        }
        let sb = &self.worker.sandbox;
        if sb.memory.0 < (64 << 20) || sb.file_size.0 < (1 << 20) {
            return Err(bad(
                "worker.sandbox",
                format!(
                    "memory must be at least 64MiB and file_size at least 1MiB, got {} and {}",
                    sb.memory, sb.file_size
                ),
            ));
        }
        if !(self.cache.max_size_gb > 0.0 && self.cache.max_size_gb.is_finite()) {
            return Err(bad(
                "cache.max_size_gb",
                format!("must be a positive number, got {}", self.cache.max_size_gb),
            ));
        }
        Ok(())
    }
}

/// Checks a `host:port` string, returning a message naming what is wrong.
pub fn validate_host_port(s: &str) -> Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} is not host:port (missing port)"));
    };
    if host.is_empty() {
        return Err(format!("{s:?} is not host:port (missing host)"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{s:?} has an invalid port {port:?}")),
    }
}

/// `coordinator:` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorConfig {
    /// gRPC listen address (`HG_COORDINATOR_GRPC_ADDR`).
    pub grpc_addr: String,
    /// HTTP (dashboard, `/api/stats`, `/metrics`) listen address.
    pub http_addr: String,
    /// Workers to probe at these `host:port` gRPC addresses.
    pub static_workers: Vec<String>,
    /// Compile tasks admitted at once across the farm; further requests wait briefly, then fall back.
    pub max_concurrent_tasks: u32,
    /// How often workers heartbeat.
    pub heartbeat_interval: HumanDuration,
    /// A worker silent this long is marked down and its tasks placed again.
    pub heartbeat_timeout: HumanDuration,
    /// Workers tried for one task before the client is told to compile locally.
    pub max_attempts: u32,
    /// Circuit breaker per worker.
    pub breaker: BreakerSection,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            grpc_addr: "0.0.0.0:9000".into(),
            http_addr: "0.0.0.0:8080".into(),
            static_workers: Vec::new(),
            max_concurrent_tasks: 500,
            heartbeat_interval: HumanDuration::from_secs(2),
            heartbeat_timeout: HumanDuration::from_secs(6),
            max_attempts: 3,
            breaker: BreakerSection::default(),
        }
    }
}

/// `coordinator.breaker:` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSection {
    /// Rolling window over which the failure rate is measured.
    pub window: HumanDuration,
    /// Calls needed in the window before the rate can open the circuit.
    pub min_calls: u32,
    /// Failure rate (0.0–1.0) that opens the circuit.
    pub failure_rate_threshold: f64,
    /// Time open before one probe is let through (half-open).
    pub open_timeout: HumanDuration,
}

impl Default for BreakerSection {
    fn default() -> Self {
        Self {
            window: HumanDuration::from_secs(60),
            min_calls: 3,
            failure_rate_threshold: 0.5,
            open_timeout: HumanDuration::from_secs(30),
        }
    }
}

/// `worker:` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Stable worker id; defaults to `<hostname>-<grpc port>`.
    pub id: Option<String>,
    /// gRPC listen address.
    pub grpc_addr: String,
    /// HTTP (`/health`, `/metrics`) listen address.
    pub http_addr: String,
    /// Address the coordinator should dial; defaults to the listen address (or 127.0.0.1 when it listens on 0.0.0.0).
    pub advertise_addr: Option<String>,
    /// Coordinator to register with (`--coordinator`).
    pub coordinator: Option<String>,
    /// Tasks run at once.
    pub max_concurrent_tasks: u32,
    /// Deadline per task; on expiry the process group is killed ("deadline exceeded").
    pub task_timeout: HumanDuration,
    /// Where private per-task work dirs are made; defaults to the system temp dir.
    pub work_dir: Option<PathBuf>,
    /// Compilers to offer, by name or path; each is probed for its exact identity.
    pub compilers: Vec<String>,
    /// Serve even where no compiler sandbox can be set up (no Landlock, no namespaces): the
    /// compilers can then read every file the worker can, its config and environment included.
    /// Default false: such a worker refuses to start. `/health` says which applies.
    pub allow_unsandboxed: bool,
    /// Limits and readable directories of the compiler sandbox.
    pub sandbox: SandboxSection,
}

/// `worker.sandbox:` section: what a compiler process may use while it runs.
///
/// ```yaml
/// worker:
///   sandbox:
///     memory: 4GiB       # address space of each compiler process (RLIMIT_AS)
///     file_size: 512MiB  # largest file it may write (RLIMIT_FSIZE)
///     cpu: 5m            # CPU time (RLIMIT_CPU); default: worker.task_timeout
///     read_only: [/opt/cross]  # extra toolchain directories, besides the compilers' own
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSection {
    /// Address-space bound of each compiler process.
    pub memory: ByteSize,
    /// Largest file a compiler process may write (an object growing past it is killed).
    pub file_size: ByteSize,
    /// CPU time of one compiler process; `None` means `worker.task_timeout`.
    pub cpu: Option<HumanDuration>,
    /// Directories the compilers may read and execute beneath, in addition to those the worker
    /// derives from each compiler's location (its prefix's `bin`, `lib`, `libexec`) and the
    /// system library directories.
    pub read_only: Vec<PathBuf>,
}

impl Default for SandboxSection {
    fn default() -> Self {
        Self {
            memory: ByteSize(4 << 30),
            file_size: ByteSize(512 << 20),
            cpu: None,
            read_only: Vec::new(),
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            id: None,
            grpc_addr: "0.0.0.0:50052".into(),
            http_addr: "0.0.0.0:9090".into(),
            advertise_addr: None,
            coordinator: None,
            max_concurrent_tasks: 4,
            task_timeout: HumanDuration::from_secs(300),
            work_dir: None,
            compilers: vec![
                "cc".into(),
                "gcc".into(),
                "g++".into(),
                "c++".into(),
                "clang".into(),
                "clang++".into(),
            ],
            allow_unsandboxed: false,
            sandbox: SandboxSection::default(),
        }
    }
}

/// `client:` section (`hgbuild`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Coordinator gRPC address (`HG_CLIENT_COORDINATOR`).
    pub coordinator: String,
    /// Give up connecting after this long and compile locally.
    pub connect_timeout: HumanDuration,
    /// Give up on one remote compile after this long and compile locally.
    pub compile_timeout: HumanDuration,
    /// Local work (preprocessing, local compiles) run at once across all of a build's wrapper
    /// processes; 0 means the number of local CPUs.
    pub local_jobs: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            coordinator: "127.0.0.1:9000".into(),
            connect_timeout: HumanDuration::from_secs(2),
            compile_timeout: HumanDuration::from_secs(330),
            local_jobs: 0,
        }
    }
}

/// `cache:` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Whether compile results are cached.
    pub enabled: bool,
    /// Cache directory; defaults to `~/.hybridgrid/cache`.
    pub dir: Option<PathBuf>,
    /// Size bound, in GB (10^9 bytes).
    pub max_size_gb: f64,
    /// Shared tier, e.g. `redis://cache-host:6379` (`HG_CACHE_SHARED`): workers write every clean
    /// compile there and clients read it on a local miss, so a file compiled once is a hit anywhere.
    pub shared: Option<String>,
    /// Key prefix in the shared tier (entries live at `{prefix}cache:{hex}`), so several farms or
    /// test runs can share one server.
    pub shared_prefix: String,
    /// The farm's shared-cache secret (`HG_CACHE_SHARED_SECRET`, at least 16 characters): every
    /// shared entry carries a BLAKE3 keyed MAC made with it, and an entry whose MAC does not
    /// verify is never served (a miss, counted and logged). Workers, CI writers and clients that
    /// read must all have it; without it anyone who can write the server can serve any object.
    pub shared_secret: Option<Secret>,
    /// This client only reads the shared tier (its Redis user is a read-only ACL user, see
    /// docs/SECURITY.md): it never writes or replaces shared entries.
    pub shared_read_only: bool,
}

impl CacheConfig {
    /// The shared tier as a backend spec (`cache.shared`, `cache.shared_prefix`), if one is
    /// configured: what clients and workers open with `hybridgrid_cache::open_cache`.
    pub fn shared_spec(&self) -> Result<Option<CacheSpec>, SpecError> {
        let Some(url) = self.shared.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let url = SecretUrl::new(url).map_err(|e| SpecError::invalid("cache.shared", e))?;
        Ok(Some(CacheSpec::Redis {
            url,
            prefix: self.shared_prefix.clone(),
            ttl: None,
            response_timeout: Some(HumanDuration::from_secs(2)),
            max_entry_size: None,
            secret: self.shared_secret.clone(),
            read_only: self.shared_read_only,
        }))
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            max_size_gb: 10.0,
            shared: None,
            shared_prefix: "hg:".into(),
            shared_secret: None,
            shared_read_only: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_follow_the_guide() {
        let c = FarmConfig::load(None, &env(&[])).unwrap();
        assert_eq!(c.worker.max_concurrent_tasks, 4);
        assert_eq!(c.worker.task_timeout.as_secs(), 300);
        assert_eq!(c.coordinator.max_concurrent_tasks, 500);
        assert_eq!(c.coordinator.breaker.open_timeout.as_secs(), 30);
        assert_eq!(c.coordinator.grpc_addr, "0.0.0.0:9000");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = FarmConfig::load(None, &env(&[("HG_WORKER_TASK_TIMEOUT", "-5m")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("worker.task_timeout") && e.contains("negative"),
            "{e}"
        );
        let e = FarmConfig::load(None, &env(&[("HG_LOG_LEVEL", "loud")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("logging.level") && e.contains("loud"), "{e}");
        let e = FarmConfig::load(None, &env(&[("HG_COORDINATOR_STATIC_WORKERS", "10.0.0.1")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("static_workers[0]") && e.contains("10.0.0.1"),
            "{e}"
        );
        let e = FarmConfig::load(None, &env(&[("HG_WORKER_MAX_CONCURRENT_TASKS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("worker.max_concurrent_tasks"), "{e}");
    }

    #[test]
    fn every_example_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../docs/config");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("docs/config exists") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                FarmConfig::load(Some(&path), &env(&[]))
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n > 0, "no example configs in {}", dir.display());
    }
}

/// `verify:` section: how often a remote result is checked against a local recompile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Fraction (0.0–1.0) of remote compiles that the client also compiles locally and compares byte
    /// for byte; a mismatch uses the local object and opens the worker's circuit (`output_mismatch`).
    pub rate: f64,
    /// The same for hits from the shared cache tier: a wrong shared entry is replaced with the
    /// local result, for every client after this one.
    pub cache_rate: f64,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            rate: 0.01,
            cache_rate: 0.01,
        }
    }
}
