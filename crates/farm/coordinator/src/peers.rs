//! Who may call what: workers prove their id with a certificate, clients with a certificate or a
//! token, and a client may report a mismatch only for a task the coordinator ran for it, at a
//! bounded rate.

use hybridgrid_core::WorkerId;
use hybridgrid_transport::auth::{AUTHORIZATION, TokenSet};
use hybridgrid_transport::tls::{PeerIdentity, Role, TlsMaterial, peer_identity};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Request, Status};

/// Remote tasks remembered for mismatch reports.
const RECENT_TASKS: usize = 4096;
/// How long a task can be reported after it completed.
const REPORT_WINDOW: Duration = Duration::from_secs(600);

/// The coordinator's authentication settings.
#[derive(Clone, Debug, Default)]
pub(crate) struct Security {
    /// TLS material (CA, coordinator certificate); `None`: plain text (loopback or insecure).
    pub(crate) tls: Option<Arc<TlsMaterial>>,
    /// Tokens clients may present.
    pub(crate) tokens: TokenSet,
    /// `tls.insecure`.
    pub(crate) insecure: bool,
}

/// Who made a client call, for rate limits and mismatch reports.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Caller(pub(crate) String);

impl Security {
    /// Whether callers must authenticate: TLS is on or tokens are configured.
    fn required(&self) -> bool {
        self.tls.is_some() || !self.tokens.is_empty()
    }

    /// Checks a client call (`Hello`, `Compile`, `Report`, `ReportMismatch`): a client
    /// certificate from the farm CA, or a configured token.
    pub(crate) fn authorize_client<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        if let Some(id) = peer_identity(req) {
            return match id.role {
                Role::Client | Role::Coordinator => Ok(Caller(id.to_string())),
                Role::Worker => Err(Status::permission_denied(format!(
                    "the certificate {id} is a worker's; client calls need a client certificate or token"
                ))),
            };
        }
        let header = req
            .metadata()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("<not text>"));
        if !self.required() {
            return Ok(Caller("anonymous".into()));
        }
        if self.tokens.is_empty() {
            return Err(Status::unauthenticated(
                "this coordinator requires a client certificate from the farm CA (tls.cert, tls.key); it accepts no tokens",
            ));
        }
        match self.tokens.check(header) {
            Ok(()) => {
                let h = blake3::hash(header.unwrap_or_default().as_bytes()).to_hex();
                Ok(Caller(format!("token:{}", &h[..12])))
            }
            Err(why) if header.is_none() => Err(Status::unauthenticated(format!(
                "missing token: {why}; set client.token (HG_CLIENT_TOKEN) or use a client certificate"
            ))),
            Err(why) => Err(Status::unauthenticated(format!("invalid token: {why}"))),
        }
    }

    /// Checks that a worker call (`Register`, `Heartbeat`) comes from the holder of a certificate
    /// for worker `id`. Without TLS (loopback or `tls.insecure`) there is no identity to check.
    pub(crate) fn authorize_worker<T>(&self, req: &Request<T>, id: &str) -> Result<(), Status> {
        if self.tls.is_none() {
            return Ok(());
        }
        match peer_identity(req) {
            Some(PeerIdentity {
                role: Role::Worker,
                name,
            }) if name == id => Ok(()),
            Some(other) => Err(Status::permission_denied(format!(
                "worker id {:?} does not match this connection's certificate ({other})",
                hybridgrid_transport::auth::sanitize(id, 128)
            ))),
            None => Err(Status::unauthenticated(
                "workers must present a certificate from the farm CA (tls.cert, tls.key) issued for their worker id",
            )),
        }
    }
}

struct Served {
    worker: WorkerId,
    caller: Caller,
    at: Instant,
}

/// Remote tasks recently completed (task id → worker and caller), and each caller's recent
/// reports, so that a client can open a worker's circuit only for a result that worker gave it,
/// and only a few times a minute.
pub(crate) struct MismatchGuard {
    per_minute: u32,
    inner: Mutex<GuardState>,
}

#[derive(Default)]
struct GuardState {
    tasks: HashMap<String, Served>,
    order: VecDeque<String>,
    reports: HashMap<Caller, VecDeque<Instant>>,
}

impl MismatchGuard {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            inner: Mutex::new(GuardState::default()),
        }
    }

    /// Remembers that `worker` completed `task_id` for `caller`.
    pub(crate) fn served(&self, task_id: &str, worker: &WorkerId, caller: &Caller) {
        let mut g = self.inner.lock();
        if g.order.len() >= RECENT_TASKS
            && let Some(old) = g.order.pop_front()
        {
            g.tasks.remove(&old);
        }
        g.order.push_back(task_id.to_owned());
        g.tasks.insert(
            task_id.to_owned(),
            Served {
                worker: worker.clone(),
                caller: caller.clone(),
                at: Instant::now(),
            },
        );
    }

    /// Accepts a report by `caller` that `worker` gave a wrong result for `task_id`, or says why not.
    pub(crate) fn accept(
        &self,
        caller: &Caller,
        worker: &WorkerId,
        task_id: &str,
    ) -> Result<(), Status> {
        let mut g = self.inner.lock();
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        let recent = g.reports.entry(caller.clone()).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > minute)
        {
            recent.pop_front();
        }
        if recent.len() >= self.per_minute as usize {
            return Err(Status::resource_exhausted(format!(
                "too many mismatch reports: at most {} per minute per client",
                self.per_minute
            )));
        }
        // Every attempt counts, refused ones too: probing for task ids is bounded as well.
        recent.push_back(now);
        let ok = g.tasks.get(task_id).is_some_and(|s| {
            &s.worker == worker && &s.caller == caller && now.duration_since(s.at) <= REPORT_WINDOW
        });
        if !ok {
            return Err(Status::permission_denied(format!(
                "no recent task {:?} ran on worker {:?} for this client; a mismatch can only be reported for one's own remote result",
                hybridgrid_transport::auth::sanitize(task_id, 64),
                hybridgrid_transport::auth::sanitize(worker.as_str(), 128)
            )));
        }
        // One report per task.
        g.tasks.remove(task_id);
        if g.reports.len() > RECENT_TASKS {
            g.reports
                .retain(|_, v| v.back().is_some_and(|t| now.duration_since(*t) <= minute));
        }
        Ok(())
    }
}
