//! The coordinator's gRPC service: authenticates each call, validates what the peer says, and
//! hands it to [`CoordinatorState`].

use crate::state::{CLIENT_CACHE_EVENTS, CLIENT_FALLBACK_REASONS, CoordinatorState};
use hybridgrid_core::{DiscoverySource, PROTOCOL_VERSION, WorkerId};
use hybridgrid_transport::auth::sanitize;
use hybridgrid_transport::check_version;
use hybridgrid_transport::pb::{self, coordinator_server};
use std::sync::Arc;
use tonic::{Request, Response, Status};
use tracing::warn;

/// Refuses a registering worker that speaks another protocol version, with the same log line as
/// a worker refused over mDNS (the worker itself gets the error too).
fn refuse_other_version(version: u32, worker_id: &str) -> Result<(), Status> {
    check_version(version, "worker").inspect_err(|_| {
        warn!(worker_id = %sanitize(worker_id, 128), source = %DiscoverySource::Registration,
            worker_protocol = version, our_protocol = PROTOCOL_VERSION,
            "worker refused: incompatible protocol version (it speaks {version}, this coordinator speaks {PROTOCOL_VERSION}); run the same hybridgrid release on both");
    })
}

/// The tonic service wrapper.
#[derive(Clone)]
pub struct CoordinatorService(pub Arc<CoordinatorState>);

#[tonic::async_trait]
impl coordinator_server::Coordinator for CoordinatorService {
    async fn hello(
        &self,
        req: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::HelloResponse>, Status> {
        self.0.security.authorize_client(&req)?;
        check_version(req.into_inner().protocol_version, "client")?;
        let c = self.0.capacity();
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(Response::new(pb::HelloResponse {
            protocol_version: PROTOCOL_VERSION,
            coordinator_id: self.0.id().to_owned(),
            free_slots: clamp(c.free_slots),
            total_slots: clamp(c.total_slots),
            free_cpus: clamp(c.free_cpus),
            total_cpus: clamp(c.total_cpus),
        }))
    }

    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let claimed = req
            .get_ref()
            .worker
            .as_ref()
            .map(|w| w.id.clone())
            .unwrap_or_default();
        self.0.security.authorize_worker(&req, &claimed)?;
        let req = req.into_inner();
        refuse_other_version(req.protocol_version, &claimed)?;
        let info = req
            .worker
            .ok_or_else(|| Status::invalid_argument("malformed message: missing field worker"))?
            .into_core(DiscoverySource::Registration)?;
        refuse_other_version(info.protocol_version, &claimed)?;
        self.0.register_worker(info)?;
        Ok(Response::new(pb::RegisterResponse {
            protocol_version: PROTOCOL_VERSION,
            coordinator_id: self.0.id().to_owned(),
            heartbeat_interval_ms: u64::try_from(self.0.config().heartbeat_interval.as_millis())
                .unwrap_or(u64::MAX),
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let claimed = req.get_ref().worker_id.clone();
        self.0.security.authorize_worker(&req, &claimed)?;
        let req = req.into_inner();
        check_version(req.protocol_version, "worker")?;
        let known = self.0.heartbeat(&WorkerId::new(req.worker_id));
        Ok(Response::new(pb::HeartbeatResponse { known }))
    }

    async fn compile(
        &self,
        req: Request<pb::CompileRequest>,
    ) -> Result<Response<pb::CompileResponse>, Status> {
        let caller = self.0.security.authorize_client(&req)?;
        self.0
            .compile(req.into_inner(), &caller)
            .await
            .map(Response::new)
    }

    async fn report_mismatch(
        &self,
        req: Request<pb::MismatchReport>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let caller = self.0.security.authorize_client(&req)?;
        let req = req.into_inner();
        check_version(req.protocol_version, "client")?;
        let id = WorkerId::new(req.worker_id);
        if !self.0.knows(&id) {
            return Err(Status::not_found(format!(
                "unknown worker {:?}",
                sanitize(id.as_str(), 128)
            )));
        }
        self.0.mismatches.accept(&caller, &id, &req.task_id)?;
        warn!(worker = %sanitize(id.as_str(), 128), task_id = %sanitize(&req.task_id, 64),
              detail = %sanitize(&req.detail, 256), client = %caller.0,
              "output mismatch: opening the worker's circuit");
        self.0.trip(&id, "output_mismatch");
        Ok(Response::new(pb::ReportResponse {}))
    }

    async fn report(
        &self,
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        self.0.security.authorize_client(&req)?;
        let req = req.into_inner();
        check_version(req.protocol_version, "client")?;
        // Only known labels: a client must not be able to grow the maps and metric families
        // without bound, and counts saturate instead of wrapping.
        if let Some(bad) = req
            .fallbacks
            .keys()
            .find(|r| !CLIENT_FALLBACK_REASONS.contains(&r.as_str()))
        {
            return Err(Status::invalid_argument(format!(
                "unknown fallback reason {:?} (expected one of {CLIENT_FALLBACK_REASONS:?})",
                sanitize(bad, 64)
            )));
        }
        if let Some(bad) = req
            .cache
            .keys()
            .find(|e| !CLIENT_CACHE_EVENTS.contains(&e.as_str()))
        {
            return Err(Status::invalid_argument(format!(
                "unknown cache event {:?} (expected one of {CLIENT_CACHE_EVENTS:?})",
                sanitize(bad, 64)
            )));
        }
        self.0
            .add_client_report(req.fallbacks, req.cache, req.local_by_choice);
        Ok(Response::new(pb::ReportResponse {}))
    }
}
