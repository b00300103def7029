//! [`ContainerGuard`]: the container is removed on every path, also when the future is dropped.

use bollard::Docker;
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use std::time::Duration;

/// How long one removal may take before it is given up (and logged).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Removal attempts before giving up.
const REMOVE_ATTEMPTS: u32 = 5;

/// Owns a container name; removes the container (force, with its anonymous volumes) when
/// [`ContainerGuard::remove`] is called, or in the background when dropped.
pub(crate) struct ContainerGuard {
    docker: Docker,
    name: String,
    armed: bool,
}

impl ContainerGuard {
    pub(crate) fn new(docker: Docker, name: String) -> Self {
        Self {
            docker,
            name,
            armed: true,
        }
    }

    /// Removes the container now (killing it if it still runs).
    pub(crate) async fn remove(mut self) {
        self.armed = false;
        remove_now(&self.docker, &self.name).await;
    }

    /// There is no container to remove (its creation failed).
    pub(crate) fn forget(mut self) {
        self.armed = false;
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let docker = self.docker.clone();
        let name = std::mem::take(&mut self.name);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                tracing::debug!(container = %name, "task dropped: removing its container in the background");
                runtime.spawn(async move { remove_now(&docker, &name).await });
            }
            Err(_) => tracing::warn!(
                container = %name,
                "no runtime to remove the container of a dropped task; reap_leftovers will"
            ),
        }
    }
}

/// Force-removes `name`; an already absent container is fine. A refusal (the engine may still be
/// starting it) is retried a few times, then logged.
pub(crate) async fn remove_now(docker: &Docker, name: &str) {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    for attempt in 1..=REMOVE_ATTEMPTS {
        let error = match tokio::time::timeout(
            REMOVE_TIMEOUT,
            docker.remove_container(name, Some(options.clone())),
        )
        .await
        {
            Ok(Ok(())) => {
                tracing::debug!(container = %name, "container removed");
                return;
            }
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            })) => return,
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {REMOVE_TIMEOUT:?}"),
        };
        if attempt == REMOVE_ATTEMPTS {
            tracing::warn!(container = %name, %error, "cannot remove container; reap_leftovers will");
            return;
        }
        tracing::debug!(container = %name, %error, attempt, "removing container, retrying");
        tokio::time::sleep(Duration::from_millis(250) * attempt).await;
    }
}
