//! The client's connection to the coordinator: TLS with the farm CA (and this client's
//! certificate, when it has one) or plain text on loopback, a token when configured, and the
//! protocol-version handshake, all within `client.connect_timeout`.

use hybridgrid_core::PROTOCOL_VERSION;
use hybridgrid_farm_protocol::config::FarmConfig;
use hybridgrid_transport::auth::Bearer;
use hybridgrid_transport::pb::{self, coordinator_client::CoordinatorClient};
use hybridgrid_transport::tls::{Dial, Expect, Role, TlsMaterial};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A coordinator client whose every call carries the configured token.
pub(crate) type Coordinator = CoordinatorClient<InterceptedService<Channel, Bearer>>;

/// The farm's slots as the coordinator's `Hello` counted them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Slots {
    /// Free now.
    pub(crate) free: u32,
    /// In all (free or running a task).
    pub(crate) total: u32,
    /// CPUs no task holds now; with `total_cpus` 0 (an older coordinator), not known.
    pub(crate) free_cpus: u32,
    /// CPUs in all.
    pub(crate) total_cpus: u32,
}

impl Slots {
    /// Whether a compile is predicted to finish sooner on an idle local core than on the farm:
    /// no slot is free at once, or every farm CPU already runs a task, so this one would share a
    /// CPU with another (a worker offers more slots than CPUs to hide transfers, not to compile
    /// faster).
    pub(crate) fn local_is_faster(&self) -> bool {
        self.free == 0 || (self.total_cpus > 0 && self.free_cpus == 0)
    }

    /// These counts less `n` free CPUs: those that other wrappers of the build have claimed for
    /// the texts they are making (`waiting.rs`), which the farm does not count yet.
    pub(crate) fn less_pending(self, n: u32) -> Slots {
        Slots {
            free_cpus: self.free_cpus.saturating_sub(n),
            ..self
        }
    }

    /// How many compiles beyond `local` cores a build runs at once: in all two per local core
    /// and farm CPU with a slot (one compiling, one ready to start) and [`LOOKAHEAD`] more; the
    /// farm's slots when its CPUs are not known (an older coordinator). Compiles ready beyond
    /// what runs wait on the client for a CPU or core to free up, not on a worker's queue, and
    /// the largest sources among them start first (`waiting.rs`): the build looks ahead, so a
    /// long compile late in its order starts early.
    pub(crate) fn jobs(&self, local: u32) -> u32 {
        if self.total_cpus == 0 {
            return self.total;
        }
        // A farm CPU without a slot runs nothing.
        self.total_cpus
            .min(self.total)
            .saturating_mul(2)
            .saturating_add(local)
            .saturating_add(LOOKAHEAD)
    }

    /// Whether these counts, taken before preprocessing, may have gone out of date meanwhile: the
    /// farm counts a task once it is placed, so up to `preprocessing` other wrappers of this build
    /// may since have taken the CPUs that were free.
    pub(crate) fn may_be_stale(&self, preprocessing: u32) -> bool {
        self.total_cpus > 0 && self.free_cpus <= preprocessing
    }
}

/// The compiles a build starts beyond two per core, to wait for one (see [`Slots::jobs`]): the
/// window in which a long compile that comes late in the build's order still starts early. On
/// Lua (32 files, one local core and one farm CPU) a window of 16 compiles puts `lvm.c`, the
/// longest, 15 files ahead of its place in the make order.
pub(crate) const LOOKAHEAD: u32 = 12;

/// Why the coordinator could not be used; `reason` is the fallback reason counted.
#[derive(Debug)]
pub(crate) struct ConnectFailure {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

fn fail(reason: &'static str, message: String) -> ConnectFailure {
    ConnectFailure { reason, message }
}

/// Connects to the coordinator and exchanges protocol versions (`Hello`), within
/// `client.connect_timeout` in all: a coordinator that accepts but never answers cannot hang a build.
/// Returns the client and the farm's slots at that moment.
pub(crate) async fn connect(cfg: &FarmConfig) -> Result<(Coordinator, Slots), ConnectFailure> {
    let addr = &cfg.client.coordinator;
    let limit = *cfg.client.connect_timeout;
    let max = usize::try_from(cfg.coordinator.max_message_bytes).unwrap_or(usize::MAX);
    let attempt = async {
        let t = &cfg.tls;
        let material =
            TlsMaterial::load_optional(t.ca.as_deref(), t.cert.as_deref(), t.key.as_deref())
                .map_err(|e| fail("client_error", format!("{e}")))?;
        let how = Dial {
            tls: material,
            insecure: t.insecure,
            expect: Some(Expect {
                role: Role::Coordinator,
                name: None,
            }),
            connect_timeout: limit,
            timeout: Some(*cfg.client.compile_timeout),
            keep_alive: None,
        };
        let bearer = Bearer::new(cfg.client.token.as_ref().map(|t| t.expose()))
            .map_err(|e| fail("client_error", format!("client.token: {e}")))?;
        let ch = hybridgrid_transport::tls::dial(addr, &how)
            .await
            .map_err(|e| {
                fail(
                    "coordinator_unreachable",
                    format!("coordinator {addr} unreachable: {e}"),
                )
            })?;
        let mut client = CoordinatorClient::with_interceptor(ch, bearer)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let slots = hello(&mut client, addr).await?;
        Ok((client, slots))
    };
    within(cfg, attempt).await
}

/// `attempt` within `client.connect_timeout`: a coordinator that accepts but never answers is
/// unreachable.
async fn within<T>(
    cfg: &FarmConfig,
    attempt: impl Future<Output = Result<T, ConnectFailure>>,
) -> Result<T, ConnectFailure> {
    let limit = *cfg.client.connect_timeout;
    match tokio::time::timeout(limit, attempt).await {
        Ok(r) => r,
        Err(_) => Err(fail(
            "coordinator_unreachable",
            format!(
                "coordinator {} did not answer within {limit:?}",
                cfg.client.coordinator
            ),
        )),
    }
}

/// `Hello` on an open connection: the protocol-version check, and the farm's slots now.
async fn hello(client: &mut Coordinator, addr: &str) -> Result<Slots, ConnectFailure> {
    let hello = client
        .hello(pb::InfoRequest {
            protocol_version: PROTOCOL_VERSION,
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::FailedPrecondition => fail(
                "protocol_mismatch",
                format!("coordinator {addr} refused this client: {}", s.message()),
            ),
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => fail(
                "auth_refused",
                format!("coordinator {addr} refused this client: {}", s.message()),
            ),
            _ => fail(
                "coordinator_unreachable",
                format!("coordinator {addr} unreachable: {}", s.message()),
            ),
        })?
        .into_inner();
    let theirs = hello.protocol_version;
    if theirs != PROTOCOL_VERSION {
        return Err(fail(
            "protocol_mismatch",
            format!(
                "protocol version mismatch: coordinator {addr} speaks version {theirs}, this hgbuild speaks version {PROTOCOL_VERSION}"
            ),
        ));
    }
    Ok(Slots {
        free: hello.free_slots,
        total: hello.total_slots,
        free_cpus: hello.free_cpus,
        total_cpus: hello.total_cpus,
    })
}

/// The farm's slots again on an open connection, within `client.connect_timeout`.
pub(crate) async fn refresh(
    cfg: &FarmConfig,
    client: &mut Coordinator,
) -> Result<Slots, ConnectFailure> {
    within(cfg, hello(client, &cfg.client.coordinator)).await
}

#[cfg(test)]
mod tests {
    use super::Slots;

    fn slots(free: u32, total: u32, free_cpus: u32, total_cpus: u32) -> Slots {
        Slots {
            free,
            total,
            free_cpus,
            total_cpus,
        }
    }

    #[test]
    fn jobs_are_two_per_core_and_cpu_and_the_lookahead() {
        // One local core, one farm CPU with 4 slots: 1 + 3 + the lookahead = 2 x (1 + 1) + 12.
        assert_eq!(slots(4, 4, 1, 1).jobs(1), 3 + super::LOOKAHEAD);
        assert_eq!(slots(8, 8, 8, 8).jobs(2), 18 + super::LOOKAHEAD);
        assert_eq!(slots(64, 64, 16, 16).jobs(8), 40 + super::LOOKAHEAD);
        // One slot on a worker of 2 CPUs: one CPU's worth.
        assert_eq!(slots(1, 1, 2, 2).jobs(2), 4 + super::LOOKAHEAD);
        // An older coordinator does not send CPUs: its slots.
        assert_eq!(slots(4, 4, 0, 0).jobs(1), 4);
    }

    #[test]
    fn counts_may_be_stale_when_preprocessors_could_take_the_free_cpus() {
        assert!(slots(4, 4, 1, 1).may_be_stale(1));
        assert!(slots(4, 4, 0, 1).may_be_stale(1));
        assert!(!slots(4, 4, 2, 2).may_be_stale(1));
        assert!(
            !slots(4, 4, 0, 0).may_be_stale(1),
            "CPUs unknown: nothing to refresh"
        );
    }

    #[test]
    fn texts_being_preprocessed_take_free_cpus() {
        assert!(slots(4, 4, 1, 1).less_pending(1).local_is_faster());
        assert!(!slots(4, 4, 2, 2).less_pending(1).local_is_faster());
        assert!(
            !slots(4, 4, 0, 0).less_pending(1).local_is_faster(),
            "CPUs unknown"
        );
    }

    #[test]
    fn local_is_faster_when_no_slot_or_no_cpu_is_free() {
        assert!(slots(0, 4, 1, 1).local_is_faster());
        assert!(slots(3, 4, 0, 1).local_is_faster());
        assert!(!slots(3, 4, 1, 2).local_is_faster());
        assert!(
            !slots(3, 4, 0, 0).local_is_faster(),
            "an older coordinator: slots only"
        );
    }
}
