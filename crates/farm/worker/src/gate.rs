//! The slot gate: an `Execute` call takes one of the worker's slots before its request body is
//! read and decoded, so a burst of large requests cannot make the worker buffer, decode and hash
//! more of them than it has slots. A call that finds no slot within the task timeout is refused
//! with `RESOURCE_EXHAUSTED` (the coordinator counts that as busy, not failing).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const EXECUTE_PATH: &str = "/hybridgrid.v1.Worker/Execute";

/// The slot taken for one call, handed to the handler through the request's extensions.
#[derive(Clone)]
pub(crate) struct SlotPermit(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl SlotPermit {
    /// Takes the permit out (once).
    pub(crate) fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.lock().ok().and_then(|mut p| p.take())
    }
}

/// What the gate needs from the worker: its slots, how long a call may wait for one, and
/// whether it is draining (then every `Execute` is refused as busy).
#[derive(Clone)]
pub(crate) struct GateParts {
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) wait: Duration,
    pub(crate) draining: Arc<AtomicBool>,
}

/// Wraps the worker's gRPC service with the gate.
#[derive(Clone)]
pub(crate) struct SlotGate<S> {
    inner: S,
    parts: GateParts,
}

impl<S> SlotGate<S> {
    pub(crate) fn new(inner: S, parts: GateParts) -> Self {
        Self { inner, parts }
    }
}

impl<S> tower_service::Service<http::Request<tonic::body::Body>> for SlotGate<S>
where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        // The clone is not ready-polled; keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if req.uri().path() != EXECUTE_PATH {
            return Box::pin(inner.call(req));
        }
        if self.parts.draining.load(Ordering::SeqCst) {
            return Box::pin(async {
                Ok(tonic::Status::resource_exhausted(
                    "the worker is draining and takes no new tasks",
                )
                .into_http())
            });
        }
        let (slots, wait) = (self.parts.slots.clone(), self.parts.wait);
        Box::pin(async move {
            match tokio::time::timeout(wait, slots.acquire_owned()).await {
                Ok(Ok(permit)) => {
                    req.extensions_mut()
                        .insert(SlotPermit(Arc::new(Mutex::new(Some(permit)))));
                    inner.call(req).await
                }
                _ => Ok(tonic::Status::resource_exhausted(format!(
                    "no free slot within {wait:?}; the worker is busy"
                ))
                .into_http()),
            }
        })
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for SlotGate<S> {
    const NAME: &'static str = S::NAME;
}
