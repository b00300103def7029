//! [`DockerError`]: what went wrong with the engine, carried as the source of
//! [`ExecError::Backend`] with `backend: "docker"`.

use hybridgrid_core::{BoxError, ExecError};

/// Why the Docker engine could not run a task. Reaches callers as the `source` of
/// [`ExecError::Backend`] (downcast it to tell the cases apart).
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine cannot be reached.
    #[error(
        "Docker not available: cannot talk to the engine at {socket} ({reason}). Start it \
         (`sudo systemctl start docker`) and let this user use the socket \
         (`sudo usermod -aG docker $USER`, then log in again), or set `docker.socket`"
    )]
    Unavailable {
        /// The configured engine address.
        socket: String,
        /// The client's error.
        reason: String,
    },
    /// The engine's socket exists, but this process may not connect to it (`EACCES`): the user
    /// is not in the group that owns the socket.
    #[error(
        "Docker not available: permission denied on the engine's socket {socket} (this process \
         runs as uid {uid}). Let this user use the socket: `sudo usermod -aG docker $USER`, then \
         log out and back in (or `newgrp docker`); or set `docker.socket` to an engine it may use"
    )]
    PermissionDenied {
        /// The configured engine address.
        socket: String,
        /// The effective user id of this process.
        uid: u32,
    },
    /// The image is not in the engine. Nothing is ever pulled.
    #[error(
        "image {image:?} is not present in the Docker engine: images are never pulled, build or \
         load it locally first (`docker build -t {image} .`, `docker load -i image.tar`, or \
         `docker import rootfs.tar {image}`)"
    )]
    ImageMissing {
        /// The image the task named.
        image: String,
    },
    /// The kernel killed the task for exceeding its memory limit.
    #[error(
        "the container of image {image:?} ran out of memory (limit {limit_mb} MiB) and was killed"
    )]
    OutOfMemory {
        /// The task's image.
        image: String,
        /// The limit that was exceeded.
        limit_mb: u64,
    },
    /// A setting of [`super::DockerConfig`] or [`super::ContainerPolicy`] is unusable.
    #[error("bad docker executor settings: {reason}")]
    InvalidConfig {
        /// What is wrong, naming the field.
        reason: String,
    },
    /// Any other engine failure.
    #[error("{operation}: {source}")]
    Engine {
        /// What was being done (`create container`, `attach`, ...).
        operation: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
}

impl From<DockerError> for ExecError {
    fn from(e: DockerError) -> Self {
        ExecError::Backend {
            backend: "docker",
            source: Box::new(e),
        }
    }
}

/// Sorts a bollard error: a transport failure means the engine is unreachable.
pub(crate) fn engine(
    socket: &str,
    operation: &'static str,
    e: bollard::errors::Error,
) -> ExecError {
    use bollard::errors::Error as B;
    match e {
        B::DockerResponseServerError { .. }
        | B::JsonDataError { .. }
        | B::DockerStreamError { .. }
        | B::DockerContainerWaitError { .. } => DockerError::Engine {
            operation,
            source: Box::new(e),
        },
        other if permission_denied(&other) => DockerError::PermissionDenied {
            socket: socket.to_owned(),
            uid: effective_uid(),
        },
        other => DockerError::Unavailable {
            socket: socket.to_owned(),
            reason: other.to_string(),
        },
    }
    .into()
}

/// Whether `e` (or an error it wraps) is an `EACCES` from the operating system: the socket is
/// there but this user may not open it.
pub(crate) fn permission_denied(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
        {
            return true;
        }
        cur = err.source();
    }
    // Some client errors carry the OS error only as text.
    e.to_string().contains("os error 13")
}

/// This process's effective user id (the owner of `/proc/self`); `u32::MAX` when unknown.
fn effective_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eacces_anywhere_in_the_chain_is_permission_denied() {
        #[derive(Debug, thiserror::Error)]
        #[error("connect failed")]
        struct Wrapper(#[source] std::io::Error);
        let denied = Wrapper(std::io::Error::from_raw_os_error(13));
        assert!(permission_denied(&denied));
        let refused = Wrapper(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!permission_denied(&refused));
        let msg = DockerError::PermissionDenied {
            socket: "unix:///var/run/docker.sock".into(),
            uid: 65534,
        }
        .to_string();
        assert!(
            msg.starts_with("Docker not available")
                && msg.contains("/var/run/docker.sock")
                && msg.contains("usermod -aG docker"),
            "{msg}"
        );
    }
}
