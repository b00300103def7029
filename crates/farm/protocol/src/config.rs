//! The compile farm's config: one YAML file shared by `hg-coord`, `hg-worker` and `hgbuild`, each
//! reading its section, with `HG_*` environment overrides (see [`hybridgrid_core::config`]).
//!
//! ```yaml
//! tls:                      # see docs/SECURITY.md; `hg-coord cert init|issue` makes these files
//!   ca: /etc/hybridgrid/ca.crt
//!   cert: /etc/hybridgrid/coordinator.crt
//!   key: /etc/hybridgrid/coordinator.key
//! coordinator:
//!   grpc_addr: 0.0.0.0:9000   # default: 0.0.0.0 with tls, 127.0.0.1 without
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
//! discovery:
//!   mdns: true              # default: workers announce themselves, the coordinator finds them
//! logging:
//!   level: info
//!   format: text
//! ```

use hybridgrid_core::config::{ConfigError, EnvSource, HumanDuration, load};
use hybridgrid_core::logging::{LOGGING_ENV_ALIASES, LoggingConfig};
use hybridgrid_core::spec::{ByteSize, CacheSpec, Secret, SecretUrl, SpecError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::cross::{DockerSection, ImageToolchain};

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
    /// TLS for every gRPC connection (each binary sets its own certificate and key).
    pub tls: TlsSection,
    /// How coordinator and workers find each other besides static addresses.
    pub discovery: DiscoverySection,
}

/// `discovery:` section, read by `hg-coord` and `hg-worker`.
///
/// ```yaml
/// discovery:
///   mdns: true   # default; HG_DISCOVERY_MDNS=false turns it off
/// ```
///
/// With `mdns` on, a worker announces `_hybridgrid._tcp.local.` and the coordinator browses for
/// it, each on the network of its gRPC listen address only: every non-loopback interface for
/// `0.0.0.0`, the one interface of a specific address, and nothing at all for a loopback address
/// (the plain-text default), where no other machine could reach it anyway. An announced worker
/// is used only after it answers the coordinator itself (over mutual TLS when TLS is on).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverySection {
    /// Announce (worker) and browse (coordinator) over mDNS (`HG_DISCOVERY_MDNS`).
    pub mdns: bool,
}

impl Default for DiscoverySection {
    fn default() -> Self {
        Self { mdns: true }
    }
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
            // An empty gRPC address means "the default for the TLS setting".
            if value.is_empty() && key.ends_with("grpc_addr") {
                continue;
            }
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
        let c = &self.coordinator;
        if !(1..=MAX_SLOTS_BOUND).contains(&c.max_worker_slots) {
            return Err(bad(
                "coordinator.max_worker_slots",
                format!(
                    "must be between 1 and {MAX_SLOTS_BOUND}, got {}",
                    c.max_worker_slots
                ),
            ));
        }
        if self.worker.max_concurrent_tasks > c.max_worker_slots.max(MAX_SLOTS_BOUND) {
            return Err(bad(
                "worker.max_concurrent_tasks",
                format!(
                    "must be at most {MAX_SLOTS_BOUND}, got {}",
                    self.worker.max_concurrent_tasks
                ),
            ));
        }
        for (key, v) in [
            ("coordinator.max_message_bytes", c.max_message_bytes),
            ("worker.max_message_bytes", self.worker.max_message_bytes),
        ] {
            if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BOUND).contains(&v) {
                return Err(bad(
                    key,
                    format!(
                        "must be between {MIN_MESSAGE_BYTES} and {MAX_MESSAGE_BOUND} bytes, got {v}"
                    ),
                ));
            }
        }
        for (key, v) in [
            (
                "coordinator.concurrency_per_connection",
                c.concurrency_per_connection,
            ),
            (
                "worker.concurrency_per_connection",
                self.worker.concurrency_per_connection,
            ),
        ] {
            if v == 0 {
                return Err(bad(key, "must be at least 1, got 0".into()));
            }
        }
        if c.task_timeout.is_zero() {
            return Err(bad(
                "coordinator.task_timeout",
                "must be greater than 0s, got 0s".into(),
            ));
        }
        if *c.prune_after < *c.heartbeat_timeout {
            return Err(bad(
                "coordinator.prune_after",
                format!(
                    "must be at least coordinator.heartbeat_timeout ({}), got {}",
                    c.heartbeat_timeout, c.prune_after
                ),
            ));
        }
        self.tls.validate().map_err(|(key, m)| bad(key, m))?;
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
        self.worker
            .docker
            .validate()
            .map_err(|(key, m)| bad(&key, m))?;
        if !(self.cache.max_size_gb > 0.0 && self.cache.max_size_gb.is_finite()) {
            return Err(bad(
                "cache.max_size_gb",
                format!("must be a positive number, got {}", self.cache.max_size_gb),
            ));
        }
        Ok(())
    }
}

/// Largest slot count a worker may announce (and `worker.max_concurrent_tasks`).
pub const MAX_SLOTS_BOUND: u32 = 1024;
/// Smallest allowed gRPC message bound.
pub const MIN_MESSAGE_BYTES: u64 = 1 << 20;
/// Largest allowed gRPC message bound.
pub const MAX_MESSAGE_BOUND: u64 = 1 << 30;
/// Default gRPC message bound (64 MiB: a large preprocessed C++ unit or object).
pub const DEFAULT_MESSAGE_BYTES: u64 = 64 << 20;

/// A secret (token): serialized as given, but never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for the code that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `tls:` section, read by every binary: the farm CA and this machine's certificate and key
/// (`hg-coord cert init` / `hg-coord cert issue` make them).
///
/// ```yaml
/// tls:
///   ca: /etc/hybridgrid/ca.crt
///   cert: /etc/hybridgrid/w1.crt
///   key: /etc/hybridgrid/w1.key
///   insecure: false   # true allows plain text off loopback (trusted networks only)
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// The farm CA certificate (PEM); setting it turns TLS on (`HG_TLS_CA`).
    pub ca: Option<PathBuf>,
    /// This machine's certificate (PEM), issued by the farm CA (`HG_TLS_CERT`).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM) (`HG_TLS_KEY`).
    pub key: Option<PathBuf>,
    /// Allow plain-text gRPC on or to non-loopback addresses (`HG_TLS_INSECURE`).
    pub insecure: bool,
}

impl TlsSection {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        self.ca.as_ref().is_some_and(|p| !p.as_os_str().is_empty())
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        let set = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| !p.as_os_str().is_empty());
        match (set(&self.cert), set(&self.key)) {
            (true, false) => {
                return Err(("tls.key", "tls.cert is set, so tls.key must be too".into()));
            }
            (false, true) => {
                return Err(("tls.cert", "tls.key is set, so tls.cert must be too".into()));
            }
            _ => {}
        }
        if set(&self.cert) && !self.enabled() {
            return Err((
                "tls.ca",
                "tls.cert is set, so tls.ca (the farm CA) must be too".into(),
            ));
        }
        Ok(())
    }
}

impl CoordinatorConfig {
    /// The gRPC listen address: `grpc_addr`, or when empty `0.0.0.0:9000` with TLS and
    /// `127.0.0.1:9000` without (plain text is served on loopback only).
    pub fn grpc_listen(&self, tls: &TlsSection) -> String {
        default_listen(&self.grpc_addr, tls, 9000)
    }
}

impl WorkerConfig {
    /// The gRPC listen address: `grpc_addr`, or when empty `0.0.0.0:50052` with TLS and
    /// `127.0.0.1:50052` without.
    pub fn grpc_listen(&self, tls: &TlsSection) -> String {
        default_listen(&self.grpc_addr, tls, 50052)
    }
}

fn default_listen(addr: &str, tls: &TlsSection, port: u16) -> String {
    match (addr.is_empty(), tls.enabled()) {
        (false, _) => addr.to_owned(),
        (true, true) => format!("0.0.0.0:{port}"),
        (true, false) => format!("127.0.0.1:{port}"),
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
    /// gRPC listen address (`HG_COORDINATOR_GRPC_ADDR`); empty: `0.0.0.0:9000` with TLS,
    /// `127.0.0.1:9000` without.
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
    /// Tokens clients (`hgbuild`) may present instead of a client certificate
    /// (`HG_COORDINATOR_CLIENT_TOKENS`, comma-separated). With neither tokens nor TLS, the
    /// coordinator serves loopback clients without authentication.
    pub client_tokens: Vec<Token>,
    /// Token for the HTTP API: required by `/api/stats` when set, and by every request that is
    /// not a GET (nothing may change state over HTTP without it).
    pub api_token: Option<Token>,
    /// Most slots a worker may announce; a registration above it is refused.
    pub max_worker_slots: u32,
    /// Longest one compile may run on a worker, whatever the client asks; the coordinator's
    /// call to the worker gives up a grace period (a tenth of it, 0.5-10 s) after it.
    pub task_timeout: HumanDuration,
    /// A worker down this long is forgotten, with its metric series.
    pub prune_after: HumanDuration,
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_bytes: u64,
    /// Requests served at once on one client connection.
    pub concurrency_per_connection: usize,
    /// Mismatch reports accepted per client identity per minute (more are refused).
    pub mismatch_reports_per_minute: u32,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            grpc_addr: String::new(),
            http_addr: "0.0.0.0:8080".into(),
            static_workers: Vec::new(),
            max_concurrent_tasks: 500,
            heartbeat_interval: HumanDuration::from_secs(2),
            heartbeat_timeout: HumanDuration::from_secs(6),
            max_attempts: 3,
            breaker: BreakerSection::default(),
            client_tokens: Vec::new(),
            api_token: None,
            max_worker_slots: 256,
            task_timeout: HumanDuration::from_secs(300),
            prune_after: HumanDuration::from_secs(600),
            max_message_bytes: DEFAULT_MESSAGE_BYTES,
            concurrency_per_connection: 64,
            mismatch_reports_per_minute: 6,
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
    /// gRPC listen address; empty: `0.0.0.0:50052` with TLS, `127.0.0.1:50052` without.
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
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_bytes: u64,
    /// Requests served at once on one connection.
    pub concurrency_per_connection: usize,
    /// Serve even where no compiler sandbox can be set up (no Landlock, no namespaces): the
    /// compilers can then read every file the worker can, its config and environment included.
    /// Default false: such a worker refuses to start. `/health` says which applies.
    pub allow_unsandboxed: bool,
    /// Limits and readable directories of the compiler sandbox.
    pub sandbox: SandboxSection,
    /// Compilers inside Docker images (cross toolchains), each compile in its own container.
    pub docker: DockerSection,
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
            grpc_addr: String::new(),
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
            max_message_bytes: DEFAULT_MESSAGE_BYTES,
            concurrency_per_connection: 64,
            allow_unsandboxed: false,
            sandbox: SandboxSection::default(),
            docker: DockerSection::default(),
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
    /// Token sent to the coordinator (`HG_CLIENT_TOKEN`), when it requires one and this client
    /// has no certificate.
    pub token: Option<Token>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            coordinator: "127.0.0.1:9000".into(),
            connect_timeout: HumanDuration::from_secs(2),
            compile_timeout: HumanDuration::from_secs(330),
            local_jobs: 0,
            token: None,
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
        assert_eq!(c.coordinator.grpc_listen(&c.tls), "127.0.0.1:9000");
        let tls = TlsSection {
            ca: Some("/ca.crt".into()),
            ..Default::default()
        };
        assert_eq!(c.coordinator.grpc_listen(&tls), "0.0.0.0:9000");
        assert_eq!(c.worker.grpc_listen(&c.tls), "127.0.0.1:50052");
        assert!(c.discovery.mdns);
        let c = FarmConfig::load(None, &env(&[("HG_DISCOVERY_MDNS", "false")])).unwrap();
        assert!(!c.discovery.mdns);
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
    fn peer_bounds_and_tls_are_checked() {
        let e = FarmConfig::load(None, &env(&[("HG_COORDINATOR_MAX_WORKER_SLOTS", "100000")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("coordinator.max_worker_slots"), "{e}");
        let e = FarmConfig::load(None, &env(&[("HG_TLS_CERT", "/x.crt")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.key"), "{e}");
        let e = FarmConfig::load(None, &env(&[("HG_COORDINATOR_MAX_MESSAGE_BYTES", "10")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("coordinator.max_message_bytes"), "{e}");
        let c = FarmConfig::load(None, &env(&[("HG_CLIENT_TOKEN", "s3cret")])).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.client.token.as_ref().map(Token::expose), Some("s3cret"));
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
