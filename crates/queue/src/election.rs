//! Leader election for any backend: [`MemoryLeaderElection`] (in-process, the embedded default) and
//! [`Elector`], the background driver that keeps a lease and says whether this process leads.

use async_trait::async_trait;
use hybridgrid_core::clock::{Clock, SystemClock};
use hybridgrid_core::{CancellationToken, ElectionError, FencingToken, LeaderElection, Leadership};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

struct Held {
    holder: String,
    token: FencingToken,
    expires: Instant,
}

#[derive(Default)]
struct MemoryState {
    held: Option<Held>,
    /// The newest token issued.
    counter: u64,
}

/// An in-process [`LeaderElection`]: one lease, real expiry measured on a [`Clock`].
///
/// For the embedded mode (several components in one process) and for tests with a
/// [`hybridgrid_core::clock::ManualClock`].
pub struct MemoryLeaderElection {
    clock: Arc<dyn Clock>,
    state: Mutex<MemoryState>,
}

impl std::fmt::Debug for MemoryLeaderElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("MemoryLeaderElection")
            .field("holder", &s.held.as_ref().map(|h| (&h.holder, h.token)))
            .field("counter", &s.counter)
            .finish()
    }
}

impl Default for MemoryLeaderElection {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLeaderElection {
    /// An election on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An election whose leases expire on `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new(MemoryState::default()),
        }
    }

    /// Runs `f` while holding the election's lock, only if `token` is the newest issued; else
    /// returns the newest. No new token can be issued while `f` runs, so a check and a write in
    /// `f` are atomic with respect to leadership changes (`MemoryQueue::enqueue_fenced`).
    pub(crate) fn while_current<R>(
        &self,
        token: FencingToken,
        f: impl FnOnce() -> R,
    ) -> Result<R, FencingToken> {
        let s = self.state.lock();
        let current = FencingToken(s.counter);
        if token == current {
            Ok(f())
        } else {
            Err(current)
        }
    }

    fn live(state: &mut MemoryState, now: Instant) -> Option<&mut Held> {
        if state.held.as_ref().is_some_and(|h| h.expires <= now) {
            state.held = None;
        }
        state.held.as_mut()
    }
}

#[async_trait]
impl LeaderElection for MemoryLeaderElection {
    async fn try_acquire(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Leadership>, ElectionError> {
        let now = self.clock.now();
        let mut s = self.state.lock();
        if Self::live(&mut s, now).is_some() {
            return Ok(None);
        }
        s.counter += 1;
        let token = FencingToken(s.counter);
        s.held = Some(Held {
            holder: holder.to_owned(),
            token,
            expires: now + ttl,
        });
        Ok(Some(Leadership {
            holder: holder.to_owned(),
            token,
            ttl,
        }))
    }

    async fn renew(&self, lease: &Leadership) -> Result<bool, ElectionError> {
        let now = self.clock.now();
        let mut s = self.state.lock();
        match Self::live(&mut s, now) {
            Some(h) if h.token == lease.token && h.holder == lease.holder => {
                h.expires = now + lease.ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, lease: &Leadership) -> Result<(), ElectionError> {
        let mut s = self.state.lock();
        if s.held
            .as_ref()
            .is_some_and(|h| h.token == lease.token && h.holder == lease.holder)
        {
            s.held = None;
        }
        Ok(())
    }

    async fn check_fence(&self, token: FencingToken) -> Result<(), ElectionError> {
        let current = FencingToken(self.state.lock().counter);
        if token == current {
            Ok(())
        } else {
            Err(ElectionError::Fenced {
                presented: token,
                current,
            })
        }
    }
}

/// The lease as the [`Elector`] last confirmed it.
#[derive(Clone, Copy)]
struct Belief {
    token: FencingToken,
    /// After this instant the lease may have expired on the backend: stop acting as leader.
    valid_until: Instant,
}

/// Keeps a leadership lease for one candidate in the background.
///
/// A task tries to acquire the lease, and once held renews it every `ttl / 3`. Leadership counts
/// as held only until `ttl * 9/10` after the start of the last successful acquire or renew
/// request: the backend's expiry runs from the moment it served that request, which is later, so
/// this process stops believing it leads before anyone else can be granted the lease.
/// Callers still pass [`Elector::leadership`]'s token to [`LeaderElection::check_fence`] (or to the
/// store) with every leader-only write.
///
/// Logs `became_leader` (info, with `holder` and `token`) and `lost_leadership` (warn). Dropping
/// the elector stops the task, which releases a held lease; [`Elector::shutdown`] waits for that.
pub struct Elector {
    holder: String,
    belief: Arc<Mutex<Option<Belief>>>,
    rx: watch::Receiver<Option<Leadership>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("holder", &self.holder)
            .field("leader", &self.is_leader())
            .finish()
    }
}

impl Elector {
    /// Starts campaigning for `holder` (unique per process, e.g. host name + pid) with leases of
    /// `ttl`. Must be called inside a Tokio runtime.
    pub fn start(
        election: Arc<dyn LeaderElection>,
        holder: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        let holder = holder.into();
        let (tx, rx) = watch::channel(None);
        let belief = Arc::new(Mutex::new(None));
        let stop = CancellationToken::new();
        let campaign = Campaign {
            election,
            holder: holder.clone(),
            ttl,
            belief: belief.clone(),
            tx,
        };
        let task = tokio::spawn(campaign.run(stop.clone()));
        Self {
            holder,
            belief,
            rx,
            stop,
            task: Some(task),
        }
    }

    /// This candidate's name.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether this process holds a lease that cannot have expired yet.
    pub fn is_leader(&self) -> bool {
        self.leadership().is_some()
    }

    /// The held lease, if it cannot have expired yet.
    pub fn leadership(&self) -> Option<Leadership> {
        let belief = (*self.belief.lock())?;
        if Instant::now() >= belief.valid_until {
            return None;
        }
        let current = self.rx.borrow().clone()?;
        (current.token == belief.token).then_some(current)
    }

    /// Changes of leadership: `Some` when this process became leader, `None` when it lost or gave
    /// up the lease. Between changes the lease may still lapse: check [`Elector::is_leader`] or the
    /// fencing token before acting.
    pub fn watch(&self) -> watch::Receiver<Option<Leadership>> {
        self.rx.clone()
    }

    /// Stops campaigning and releases a held lease.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            warn!(holder = %self.holder, error = %e, "elector_task_failed");
        }
    }
}

impl Drop for Elector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Campaign {
    election: Arc<dyn LeaderElection>,
    holder: String,
    ttl: Duration,
    belief: Arc<Mutex<Option<Belief>>>,
    tx: watch::Sender<Option<Leadership>>,
}

impl Campaign {
    fn valid_for(&self) -> Duration {
        self.ttl * 9 / 10
    }

    async fn run(self, stop: CancellationToken) {
        let period = (self.ttl / 3).max(Duration::from_millis(1));
        let mut held: Option<Leadership> = None;
        loop {
            let started = Instant::now();
            let step = async {
                match &held {
                    None => self
                        .election
                        .try_acquire(&self.holder, self.ttl)
                        .await
                        .map(|l| l.map(Ok)),
                    Some(l) => self
                        .election
                        .renew(l)
                        .await
                        .map(|ok| Some(if ok { Ok(l.clone()) } else { Err(()) })),
                }
            };
            let outcome = tokio::select! {
                _ = stop.cancelled() => break,
                r = step => r,
            };
            match outcome {
                Ok(Some(Ok(lease))) => {
                    *self.belief.lock() = Some(Belief {
                        token: lease.token,
                        valid_until: started + self.valid_for(),
                    });
                    if held.is_none() {
                        info!(holder = %self.holder, token = lease.token.0, "became_leader");
                        self.tx.send_replace(Some(lease.clone()));
                        held = Some(lease);
                    }
                }
                Ok(Some(Err(()))) => self.lose(&mut held, "renew refused"),
                Ok(None) => {}
                Err(e) => {
                    debug!(holder = %self.holder, error = %e, "election_call_failed");
                    let lapsed = self
                        .belief
                        .lock()
                        .is_some_and(|b| Instant::now() >= b.valid_until);
                    if held.is_some() && lapsed {
                        self.lose(&mut held, "lease lapsed while the backend failed");
                    }
                }
            }
            let next = match *self.belief.lock() {
                // Re-check before the lease lapses even if the period is long.
                Some(b) if held.is_some() => (started + period).min(b.valid_until),
                _ => started + period,
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
        if let Some(lease) = held.take() {
            *self.belief.lock() = None;
            if let Err(e) = self.election.release(&lease).await {
                warn!(holder = %self.holder, token = lease.token.0, error = %e, "release_failed");
            }
            self.tx.send_replace(None);
            info!(holder = %self.holder, token = lease.token.0, "released_leadership");
        }
    }

    fn lose(&self, held: &mut Option<Leadership>, why: &'static str) {
        *self.belief.lock() = None;
        if let Some(lease) = held.take() {
            warn!(holder = %self.holder, token = lease.token.0, reason = why, "lost_leadership");
            self.tx.send_replace(None);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hybridgrid_core::clock::ManualClock;

    #[tokio::test]
    async fn memory_lease_expires_on_the_clock() {
        let clock = ManualClock::new();
        let e = MemoryLeaderElection::with_clock(Arc::new(clock.clone()));
        let ttl = Duration::from_secs(10);
        let a = e.try_acquire("a", ttl).await.unwrap().unwrap();
        assert!(e.try_acquire("b", ttl).await.unwrap().is_none());
        clock.advance(Duration::from_secs(9));
        assert!(e.renew(&a).await.unwrap());
        clock.advance(Duration::from_secs(9));
        assert!(
            e.try_acquire("b", ttl).await.unwrap().is_none(),
            "renewed lease still held"
        );
        clock.advance(Duration::from_secs(2));
        let b = e.try_acquire("b", ttl).await.unwrap().unwrap();
        assert!(b.token > a.token);
        assert!(!e.renew(&a).await.unwrap());
        match e.check_fence(a.token).await {
            Err(ElectionError::Fenced { presented, current }) => {
                assert_eq!((presented, current), (a.token, b.token));
            }
            other => panic!("expected Fenced, got {other:?}"),
        }
        e.release(&a).await.unwrap();
        assert!(
            e.try_acquire("c", ttl).await.unwrap().is_none(),
            "stale release freed the lease"
        );
    }
}
