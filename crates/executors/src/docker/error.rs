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
        other => DockerError::Unavailable {
            socket: socket.to_owned(),
            reason: other.to_string(),
        },
    }
    .into()
}
