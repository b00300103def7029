//! Settings of the [`super::DockerExecutor`].

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Settings of a [`super::DockerExecutor`].
///
/// ```yaml
/// docker:
///   socket: unix:///var/run/docker.sock   # or a socket path, or tcp://127.0.0.1:2375
///   image: hg-toolchain:arm64             # for tasks that name none
///   work_root: /var/lib/hybridgrid/docker # host side of each task's bind-mounted work dir
///   container_root: /work                 # where it appears inside the container
///   owner: hg-worker-1                    # label value; reap_leftovers removes only these
///   defaults:
///     network: none                       # the default: loopback only
///     cpus: 1.5
///     memory_mb: 512
///     pids_limit: 256
///     user: "1000:1000"
///     read_only_rootfs: true
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// The engine's address: `unix:///path` (default `unix:///var/run/docker.sock`), a bare socket
    /// path, or `tcp://host:port` / `http://host:port`. The work directory is bind-mounted, so
    /// the engine must run on this host and see `work_root`.
    pub socket: String,
    /// Image for tasks whose spec names none (`TaskSpec::image` wins when set); `None` refuses
    /// such tasks. Never pulled: it must be in the engine.
    pub image: Option<String>,
    /// Host directory under which each task gets its own work directory (`hg-<task id>`), created
    /// on first use. Default: `$TMPDIR/hybridgrid-docker`.
    pub work_root: PathBuf,
    /// Absolute path inside the container under which the task's work directory is mounted
    /// (`<container_root>/hg-<task id>`). Default `/work`.
    pub container_root: String,
    /// `PATH` inside the container. Default: the usual
    /// `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`.
    pub path: String,
    /// Value of the `hybridgrid.owner` label put on every container this executor creates;
    /// [`super::DockerExecutor::reap_leftovers`] removes the containers carrying it. Give each
    /// worker its own. Default `hybridgrid`.
    pub owner: String,
    /// Isolation and limits of every container (see [`super::DockerExecutor::with_policy`] for a
    /// per-task override).
    pub defaults: ContainerPolicy,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            socket: "unix:///var/run/docker.sock".to_owned(),
            image: None,
            work_root: std::env::temp_dir().join("hybridgrid-docker"),
            container_root: "/work".to_owned(),
            path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            owner: "hybridgrid".to_owned(),
            defaults: ContainerPolicy::default(),
        }
    }
}

/// Isolation and resource limits of a container.
///
/// ```yaml
/// network: none      # or bridge, host, or the name of a user-defined network
/// cpus: 0.5          # fraction of CPUs (NanoCpus); none = unlimited
/// memory_mb: 256     # hard limit, swap included (OOM kill past it); none = unlimited
/// pids_limit: 128
/// user: "65534:65534"
/// read_only_rootfs: false
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerPolicy {
    /// Docker network mode. `none` (the default) leaves the container with only a loopback
    /// interface; anything else (`bridge`, `host`, a network name) grants a network.
    pub network: String,
    /// CPU limit in CPUs (`1.5` = one and a half cores); `None` is unlimited.
    pub cpus: Option<f64>,
    /// Memory limit in MiB, swap included; past it the kernel kills the task, reported as
    /// [`super::DockerError::OutOfMemory`]. `None` is unlimited.
    pub memory_mb: Option<u64>,
    /// Most processes the container may hold; `None` is the engine's default.
    pub pids_limit: Option<i64>,
    /// `user[:group]` to run as (names or ids); `None` is the image's user.
    pub user: Option<String>,
    /// Mount the image's root filesystem read-only (the work directory stays writable, and a
    /// small tmpfs is mounted on `/tmp`).
    pub read_only_rootfs: bool,
}

impl Default for ContainerPolicy {
    fn default() -> Self {
        Self {
            network: "none".to_owned(),
            cpus: None,
            memory_mb: None,
            pids_limit: None,
            user: None,
            read_only_rootfs: false,
        }
    }
}

impl ContainerPolicy {
    /// Checks the values an engine would refuse or misread.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.network.is_empty() {
            return Err("network is empty (use \"none\" for no network)".to_owned());
        }
        if let Some(cpus) = self.cpus
            && !(cpus.is_finite() && cpus > 0.0 && cpus <= 1024.0)
        {
            return Err(format!("cpus = {cpus} is not in (0, 1024]"));
        }
        if let Some(mb) = self.memory_mb
            && !(6..=(1 << 30)).contains(&mb)
        {
            return Err(format!(
                "memory_mb = {mb} is outside 6..=2^30 (Docker needs at least 6 MiB)"
            ));
        }
        if let Some(p) = self.pids_limit
            && p < 1
        {
            return Err(format!("pids_limit = {p} must be at least 1"));
        }
        Ok(())
    }

    /// The memory limit in bytes.
    pub(crate) fn memory_bytes(&self) -> Option<i64> {
        self.memory_mb
            .and_then(|mb| i64::try_from(mb).ok())
            .and_then(|mb| mb.checked_mul(1 << 20))
    }

    /// The CPU limit in billionths of a CPU.
    pub(crate) fn nano_cpus(&self) -> Option<i64> {
        // Checked to be in (0, 1024]: the product fits an i64.
        #[allow(clippy::cast_possible_truncation)]
        self.cpus.map(|c| (c * 1e9).round() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_isolated_and_yaml_round_trips() {
        let c = DockerConfig::default();
        assert_eq!(c.defaults.network, "none");
        assert!(c.defaults.check().is_ok());
        let parsed: DockerConfig = serde_json::from_value(serde_json::json!({
            "socket": "unix:///run/docker.sock",
            "defaults": {"cpus": 0.5, "memory_mb": 64, "network": "bridge"}
        }))
        .expect("parse");
        assert_eq!(parsed.defaults.nano_cpus(), Some(500_000_000));
        assert_eq!(parsed.defaults.memory_bytes(), Some(64 << 20));
        assert_eq!(parsed.container_root, "/work");
        let bad = serde_json::from_value::<DockerConfig>(serde_json::json!({"sockt": "x"}));
        assert!(bad.is_err(), "unknown fields are refused");
    }

    #[test]
    fn bad_limits_are_named() {
        for (policy, needle) in [
            (
                ContainerPolicy {
                    cpus: Some(0.0),
                    ..Default::default()
                },
                "cpus",
            ),
            (
                ContainerPolicy {
                    memory_mb: Some(1),
                    ..Default::default()
                },
                "memory_mb",
            ),
            (
                ContainerPolicy {
                    network: String::new(),
                    ..Default::default()
                },
                "network",
            ),
        ] {
            let err = policy.check().expect_err(needle);
            assert!(err.contains(needle), "{err}");
        }
    }
}
