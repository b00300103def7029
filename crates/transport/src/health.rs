//! The standard gRPC Health Checking Protocol (`grpc.health.v1.Health`, from `tonic-health`) on
//! the same port as a daemon's own service: [`GrpcHealth::wrap`] dispatches by path, so no router
//! (and no axum) is needed, and TLS applies to both alike.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use hybridgrid_transport::health::GrpcHealth;
//! let health = GrpcHealth::new();
//! health.set("hybridgrid.v1.Worker", true).await;
//! assert_eq!(health.status("hybridgrid.v1.Worker"), Some(true));
//! assert_eq!(health.status("nothing.Else"), None);
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

/// Path prefix of every Health call.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// A daemon's health statuses, per service name (`""` is the daemon as a whole), served by the
/// [`WithHealth`] wrapper.
#[derive(Clone)]
pub struct GrpcHealth {
    reporter: HealthReporter,
    server: HealthServer<HealthService>,
    statuses: std::sync::Arc<parking_lot::Mutex<std::collections::BTreeMap<String, bool>>>,
}

impl std::fmt::Debug for GrpcHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcHealth")
            .field("statuses", &*self.statuses.lock())
            .finish()
    }
}

impl Default for GrpcHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcHealth {
    /// No service known yet (a check for one answers `NOT_FOUND`, the overall `""` `SERVING`).
    pub fn new() -> Self {
        let reporter = HealthReporter::new();
        let server = HealthServer::new(HealthService::from_health_reporter(reporter.clone()));
        Self {
            reporter,
            server,
            statuses: Default::default(),
        }
    }

    /// Sets `service`'s status: `SERVING` or `NOT_SERVING`. Watchers are told.
    pub async fn set(&self, service: &str, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.statuses.lock().insert(service.to_owned(), serving);
        self.reporter.set_service_status(service, status).await;
        tracing::debug!(service, serving, "gRPC health status set");
    }

    /// The status last set for `service`, if any.
    pub fn status(&self, service: &str) -> Option<bool> {
        self.statuses.lock().get(service).copied()
    }

    /// `svc` with the Health service answered beside it on the same listener.
    pub fn wrap<S>(&self, svc: S) -> WithHealth<S> {
        WithHealth {
            inner: svc,
            health: self.server.clone(),
        }
    }
}

/// A gRPC service plus `grpc.health.v1.Health`, dispatched by request path.
#[derive(Clone)]
pub struct WithHealth<S> {
    inner: S,
    health: HealthServer<HealthService>,
}

type Req = http::Request<tonic::body::Body>;
type Resp = http::Response<tonic::body::Body>;

impl<S> tower_service::Service<Req> for WithHealth<S>
where
    S: tower_service::Service<Req, Response = Resp, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The health server is always ready; readiness is the daemon's own service's.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if req.uri().path().starts_with(HEALTH_PREFIX) {
            let mut health = self.health.clone();
            return Box::pin(async move { health.call(req).await });
        }
        // The clone is not ready-polled; keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(req))
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for WithHealth<S> {
    const NAME: &'static str = S::NAME;
}
