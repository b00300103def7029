//! Cross-compiling: the platform names users give (`linux-arm64`, `linux-armv7`, as dockcross
//! names its images) and the GNU target triples compilers report (`-dumpmachine`), and the
//! `worker.docker:` section that lets a worker offer compilers living inside Docker images.

use hybridgrid_core::spec::ByteSize;
use serde::{Deserialize, Serialize};

/// Platform name ↔ GNU target triple (the prefix of Debian's cross compilers,
/// `aarch64-linux-gnu-gcc`, and what `-dumpmachine` prints).
pub const PLATFORMS: &[(&str, &str)] = &[
    ("linux-x64", "x86_64-linux-gnu"),
    ("linux-x86", "i686-linux-gnu"),
    ("linux-arm64", "aarch64-linux-gnu"),
    ("linux-armv7", "arm-linux-gnueabihf"),
    ("linux-armv6", "arm-linux-gnueabi"),
    ("linux-riscv64", "riscv64-linux-gnu"),
    ("linux-ppc64le", "powerpc64le-linux-gnu"),
    ("linux-s390x", "s390x-linux-gnu"),
];

/// The GNU triple of a platform name (`linux-arm64` → `aarch64-linux-gnu`); a triple is returned
/// as itself.
///
/// ```
/// use hybridgrid_farm_protocol::cross::{platform_of, triple_of};
/// assert_eq!(triple_of("linux-arm64"), Some("aarch64-linux-gnu"));
/// assert_eq!(triple_of("arm-linux-gnueabihf"), Some("arm-linux-gnueabihf"));
/// assert_eq!(triple_of("windows-arm64"), None);
/// assert_eq!(platform_of("aarch64-linux-gnu"), Some("linux-arm64"));
/// ```
pub fn triple_of(name: &str) -> Option<&'static str> {
    PLATFORMS
        .iter()
        .find(|(p, t)| *p == name || *t == name)
        .map(|(_, t)| *t)
}

/// The platform name of a target triple, if it is one of [`PLATFORMS`].
pub fn platform_of(triple: &str) -> Option<&'static str> {
    PLATFORMS
        .iter()
        .find(|(_, t)| *t == triple)
        .map(|(p, _)| *p)
}

/// `worker.docker:`: compilers this worker runs inside Docker images, each container being the
/// sandbox of its compile (network `none`, only the task's work directory mounted, read-only
/// root filesystem, unprivileged user, limits). Images are never pulled: build them on the
/// worker host (see docs/COMPILE_FARM.md, "Cross-compiling").
///
/// ```yaml
/// worker:
///   id: arm-builder-1            # also names this worker's containers (label hybridgrid.owner)
///   docker:
///     socket: unix:///var/run/docker.sock
///     toolchains:
///       - image: hg-cross-arm64:12
///         compiler: /usr/bin/aarch64-linux-gnu-gcc
///       - image: hg-cross-armv7:12
///         compiler: /usr/bin/arm-linux-gnueabihf-gcc
///     memory: 2GiB               # per container, swap included
///     cpus: 2
///     pids_limit: 512
///     user: "65534:65534"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerSection {
    /// The engine: `unix:///path` (default `unix:///var/run/docker.sock`), a socket path, or
    /// `tcp://host:port`. It must run on this host (work directories are bind-mounted).
    pub socket: String,
    /// Compilers inside images; empty (the default) means the engine is never contacted.
    pub toolchains: Vec<ImageToolchain>,
    /// Memory limit of each compile container (swap included).
    pub memory: ByteSize,
    /// CPU limit of each compile container, in CPUs; `None` is unlimited.
    pub cpus: Option<f64>,
    /// Most processes in one compile container.
    pub pids_limit: i64,
    /// `uid:gid` the compiler runs as inside the container.
    pub user: String,
}

impl Default for DockerSection {
    fn default() -> Self {
        Self {
            socket: "unix:///var/run/docker.sock".into(),
            toolchains: Vec::new(),
            memory: ByteSize(2 << 30),
            cpus: None,
            pids_limit: 512,
            user: "65534:65534".into(),
        }
    }
}

/// One compiler inside one image.
///
/// ```yaml
/// image: hg-cross-arm64:12
/// compiler: /usr/bin/aarch64-linux-gnu-gcc
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageToolchain {
    /// Image reference, present in the engine (`docker images`).
    pub image: String,
    /// Absolute path of the compiler driver inside the image.
    pub compiler: String,
}

impl DockerSection {
    /// The first unusable value, as (key, message).
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        for (i, t) in self.toolchains.iter().enumerate() {
            if t.image.is_empty() || t.image.contains(char::is_whitespace) {
                return Err((
                    format!("worker.docker.toolchains[{i}].image"),
                    format!("{:?} is not an image reference", t.image),
                ));
            }
            if !t.compiler.starts_with('/') || t.compiler.contains("/../") {
                return Err((
                    format!("worker.docker.toolchains[{i}].compiler"),
                    format!(
                        "{:?} must be the absolute path of the compiler inside the image",
                        t.compiler
                    ),
                ));
            }
            if hybridgrid_compiler::CompilerKind::detect(t.compiler.as_ref()).is_err() {
                return Err((
                    format!("worker.docker.toolchains[{i}].compiler"),
                    format!(
                        "{:?} is not a gcc/g++ driver name (e.g. /usr/bin/aarch64-linux-gnu-gcc)",
                        t.compiler
                    ),
                ));
            }
        }
        if self.memory.0 < 64 << 20 {
            return Err((
                "worker.docker.memory".into(),
                format!("{} is below 64MiB", self.memory),
            ));
        }
        if let Some(c) = self.cpus
            && !(c.is_finite() && c > 0.0 && c <= 1024.0)
        {
            return Err((
                "worker.docker.cpus".into(),
                format!("{c} is not in (0, 1024]"),
            ));
        }
        if self.pids_limit < 1 {
            return Err((
                "worker.docker.pids_limit".into(),
                format!("must be at least 1, got {}", self.pids_limit),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_and_triples_map_both_ways() {
        for (p, t) in PLATFORMS {
            assert_eq!(triple_of(p), Some(*t));
            assert_eq!(platform_of(t), Some(*p));
        }
        assert_eq!(triple_of("linux-armv7"), Some("arm-linux-gnueabihf"));
    }

    #[test]
    fn bad_image_toolchains_are_named() {
        let with = |image: &str, compiler: &str| DockerSection {
            toolchains: vec![ImageToolchain {
                image: image.into(),
                compiler: compiler.into(),
            }],
            ..Default::default()
        };
        assert!(
            with("hg-cross:1", "/usr/bin/aarch64-linux-gnu-gcc")
                .validate()
                .is_ok()
        );
        let (key, _) = with("", "/usr/bin/gcc")
            .validate()
            .expect_err("empty image");
        assert_eq!(key, "worker.docker.toolchains[0].image");
        let (key, msg) = with("i", "gcc").validate().expect_err("relative");
        assert_eq!(key, "worker.docker.toolchains[0].compiler");
        assert!(msg.contains("absolute"), "{msg}");
        assert!(with("i", "/usr/bin/ld").validate().is_err());
    }
}
