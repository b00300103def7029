//! [`NatsQueue`]: the [`Queue`] seam on NATS JetStream.

use super::lease::{H_ATTEMPTS, H_PRIORITY, H_REASON, H_WORK_ID, Lease, LeaseState, Meta, now_ms};
use super::{backend, connect_client, deadline_after, valid_name};
use async_nats::HeaderMap;
use async_nats::jetstream::{
    self, AckKind, Context,
    consumer::{AckPolicy, PullConsumer, pull},
    context::PublishAckFuture,
    message::PublishMessage,
    publish::PublishAck,
    stream::{self, RetentionPolicy, Stream},
};
use bytes::Bytes;
use futures::StreamExt;
use hybridgrid_core::spec::redact;
use hybridgrid_core::{
    Claim, DEFAULT_DEAD_LETTER_LIMIT, LeaseToken, Priority, QueueError, WorkId, WorkerId,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub(super) const DELAYED: &str = "delayed";
/// How long a `no_wait` pull request may go unanswered. nats-server 2.9 parks a `no_wait` request
/// that lost a race for the last message (from another process) until a message arrives; after
/// this the request is dropped, and the server skips it once its inbox has no subscriber. (An
/// `expires` would bound it on the server, but 2.9 then waits out `expires` on every empty lane.)
const FETCH_STUCK: Duration = Duration::from_millis(250);
/// Longest idempotency key accepted (it becomes a hex KV key, i.e. part of a subject).
pub(super) const MAX_KEY_LEN: usize = 1024;

/// Settings of a [`NatsQueue`]. `Default` gives the values documented on each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsQueueConfig {
    /// The consumers' `ack_wait` (default 30 s): how long the server keeps an item leased to a claimer
    /// that has vanished (crashed, partitioned) after its last progress signal, and how long a
    /// claimer that cannot reach the server keeps believing its lease (then it is lost). Live
    /// claimers enforce each claim's own `lease` themselves. Applied when the consumers are
    /// created; an existing queue keeps the `ack_wait` it was created with.
    pub ack_wait: Duration,
    /// How long an idempotency key is remembered (default 24 h): a repeated key within this window
    /// returns [`Enqueued::Duplicate`], whatever state the first item is in.
    pub idempotency_window: Duration,
    /// The streams' `Nats-Msg-Id` de-duplication window (default 2 min), which makes re-publishing
    /// after a lost publish acknowledgement safe. Must be longer than `ack_wait`: a delayed item
    /// whose promotion was not acknowledged is promoted again after `ack_wait`, and must be
    /// recognised as the same publish.
    pub duplicate_window: Duration,
    /// Timeout of each JetStream request (default 5 s); a request that times out fails with a
    /// retryable [`QueueError::Backend`].
    pub request_timeout: Duration,
    /// Longest pause between two polls of an empty queue inside `claim` (default 100 ms). Enqueues
    /// through any `NatsQueue` wake waiting claimers at once; the poll catches redeliveries by the
    /// server and delays that come due.
    pub poll_interval: Duration,
    /// Most dead letters kept (default [`DEFAULT_DEAD_LETTER_LIMIT`]): the dead-letter stream's
    /// `max_msgs`, discarding the oldest. Applied when the stream is created.
    pub dead_letter_limit: usize,
}

impl Default for NatsQueueConfig {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            idempotency_window: Duration::from_secs(24 * 3600),
            duplicate_window: Duration::from_secs(120),
            request_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            dead_letter_limit: DEFAULT_DEAD_LETTER_LIMIT,
        }
    }
}

impl NatsQueueConfig {
    /// Refuses settings the queue cannot honour, naming the field.
    fn check(&self) -> Result<(), QueueError> {
        let bad = |what: String| Err(QueueError::Invalid(format!("NatsQueueConfig: {what}")));
        if self.ack_wait < Duration::from_millis(100) {
            return bad(format!("ack_wait {:?} is below 100 ms", self.ack_wait));
        }
        if self.duplicate_window <= self.ack_wait {
            return bad(format!(
                "duplicate_window {:?} must be longer than ack_wait {:?}",
                self.duplicate_window, self.ack_wait
            ));
        }
        if self.dead_letter_limit == 0 || i64::try_from(self.dead_letter_limit).is_err() {
            return bad(format!(
                "dead_letter_limit {} must be between 1 and {}",
                self.dead_letter_limit,
                i64::MAX
            ));
        }
        if self.request_timeout.is_zero() || self.idempotency_window.is_zero() {
            return bad("request_timeout and idempotency_window must be above zero".into());
        }
        if [
            self.ack_wait,
            self.duplicate_window,
            self.idempotency_window,
        ]
        .iter()
        .any(|d| *d > super::LONGEST)
        {
            return bad(
                "ack_wait, duplicate_window and idempotency_window must be at most 10 years".into(),
            );
        }
        Ok(())
    }
}

/// At-least-once [`Queue`] on NATS JetStream: one work-queue stream per queue name, one durable pull
/// consumer per priority, client-enforced per-claim leases backed by the server's `ack_wait`.
///
/// Cloning is cheap and shares the connection and the held leases.
#[derive(Clone)]
pub struct NatsQueue {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) name: String,
    pub(super) client: async_nats::Client,
    pub(super) js: Context,
    pub(super) work: Stream,
    pub(super) dead: Stream,
    /// Indexed by [`Priority::index`].
    pub(super) lanes: [PullConsumer; 3],
    pub(super) delayed: PullConsumer,
    /// One pull request at a time per consumer from this client (index 3: `delayed`), so this
    /// process's claimers do not race each other for the same message.
    pub(super) fetching: [tokio::sync::Mutex<()>; 4],
    pub(super) keys: Stream,
    pub(super) ack_wait: Duration,
    /// Time allowed for an ack to reach the server: a lease whose server window ends sooner than
    /// this is treated as lost (a tenth of `ack_wait`, at most 1 s).
    pub(super) guard: Duration,
    pub(super) poll_interval: Duration,
    pub(super) leases: parking_lot::Mutex<HashMap<LeaseToken, Arc<Lease>>>,
    pub(super) wake: Arc<Notify>,
    pub(super) last_promote: parking_lot::Mutex<Option<Instant>>,
    pub(super) wake_task: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.wake_task.abort();
    }
}

/// Where a re-published item goes.
pub(super) enum Target {
    Lane(Priority),
    Delayed(u64),
}

impl Target {
    pub(super) fn token(&self) -> &'static str {
        match self {
            Target::Lane(p) => p.as_str(),
            Target::Delayed(_) => DELAYED,
        }
    }
}

impl NatsQueue {
    /// Connects to `url` and opens (creating if needed) the queue `name` with default settings.
    /// `name` must be non-empty ASCII letters, digits, `_` or `-`.
    pub async fn connect(url: &str, name: &str) -> Result<Self, QueueError> {
        Self::connect_with(url, name, NatsQueueConfig::default()).await
    }

    /// Like [`NatsQueue::connect`], with explicit settings.
    pub async fn connect_with(
        url: &str,
        name: &str,
        config: NatsQueueConfig,
    ) -> Result<Self, QueueError> {
        if !valid_name(name) {
            return Err(QueueError::Invalid(format!(
                "queue name {name:?}: use 1-200 ASCII letters, digits, '_' or '-'"
            )));
        }
        config.check()?;
        let client = connect_client(url, config.request_timeout)
            .await
            .map_err(|e| backend(format!("connect to {}", redact(url)), e))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        let subjects: Vec<String> = Priority::ALL
            .iter()
            .map(|p| format!("{name}.{p}"))
            .chain([format!("{name}.{DELAYED}")])
            .collect();
        let work = js
            .get_or_create_stream(stream::Config {
                name: name.to_owned(),
                subjects,
                retention: RetentionPolicy::WorkQueue,
                duplicate_window: config.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(|e| backend(format!("create stream {name}"), e))?;
        let dead_name = format!("{name}_dead");
        let dead = js
            .get_or_create_stream(stream::Config {
                name: dead_name.clone(),
                subjects: vec![format!("{name}.dead")],
                retention: RetentionPolicy::Limits,
                max_messages: i64::try_from(config.dead_letter_limit).unwrap_or(i64::MAX),
                discard: stream::DiscardPolicy::Old,
                duplicate_window: config.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(|e| backend(format!("create stream {dead_name}"), e))?;
        let consumer = |durable: &'static str| {
            let work = work.clone();
            let subject = format!("{name}.{durable}");
            let ack_wait = config.ack_wait;
            async move {
                work.get_or_create_consumer(
                    durable,
                    pull::Config {
                        durable_name: Some(durable.to_owned()),
                        filter_subject: subject,
                        ack_policy: AckPolicy::Explicit,
                        ack_wait,
                        // Attempts are counted by the queue (they survive re-publishing), and an item
                        // past its budget is dead-lettered by the claim path: the server must never
                        // stop delivering one on its own, or it would sit in the stream for ever.
                        max_deliver: -1,
                        max_ack_pending: -1,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| backend(format!("create consumer {name}/{durable}"), e))
            }
        };
        let mut high = consumer("high").await?;
        let normal = consumer("normal").await?;
        let low = consumer("low").await?;
        let delayed = consumer(DELAYED).await?;
        // An existing queue keeps the ack_wait it was created with; leases are kept against that.
        let ack_wait = high
            .info()
            .await
            .map(|i| i.config.ack_wait)
            .unwrap_or(config.ack_wait);
        if ack_wait >= config.duplicate_window {
            tracing::warn!(queue = name, ?ack_wait, duplicate_window = ?config.duplicate_window,
                "existing consumers' ack_wait is not shorter than the duplicate window: a delayed \
                 item whose promotion is not acknowledged may be duplicated");
        }
        // Idempotency keys: one subject per key, one message per subject, kept for the window.
        // (async-nats' key-value API cannot create a bucket on nats-server 2.9: its account-info
        // query does not parse there; this stream is what a bucket would be.)
        let keys_name = format!("{name}_keys");
        let keys = js
            .get_or_create_stream(stream::Config {
                name: keys_name.clone(),
                subjects: vec![format!("{name}.key.*")],
                retention: RetentionPolicy::Limits,
                max_messages_per_subject: 1,
                max_age: config.idempotency_window,
                duplicate_window: config.duplicate_window.min(config.idempotency_window),
                ..Default::default()
            })
            .await
            .map_err(|e| backend(format!("create stream {keys_name}"), e))?;
        let wake = Arc::new(Notify::new());
        let mut wake_sub = client
            .subscribe(format!("{name}.wake"))
            .await
            .map_err(|e| backend(format!("subscribe {name}.wake"), e))?;
        let wake_task = tokio::spawn({
            let wake = Arc::clone(&wake);
            async move {
                while wake_sub.next().await.is_some() {
                    wake.notify_waiters();
                }
            }
        });
        tracing::debug!(queue = name, ?ack_wait, "nats queue ready");
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                client,
                js,
                work,
                dead,
                lanes: [high, normal, low],
                delayed,
                fetching: Default::default(),
                keys,
                ack_wait,
                guard: (ack_wait / 10).min(Duration::from_secs(1)),
                poll_interval: config.poll_interval.max(Duration::from_millis(1)),
                leases: parking_lot::Mutex::new(HashMap::new()),
                wake,
                last_promote: parking_lot::Mutex::new(None),
                wake_task,
            }),
        })
    }

    /// The queue's name (also its stream's name and subject prefix).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The `ack_wait` the server applies to a claimer that vanishes (see [`NatsQueueConfig::ack_wait`]).
    pub fn ack_wait(&self) -> Duration {
        self.inner.ack_wait
    }

    /// Deletes the queue's three streams on the server (all items, dead letters and keys).
    /// Leases held by this client are forgotten.
    pub async fn destroy(&self) -> Result<(), QueueError> {
        let inner = &self.inner;
        inner.leases.lock().clear();
        let name = &inner.name;
        for stream in [name.clone(), format!("{name}_dead"), format!("{name}_keys")] {
            inner
                .js
                .delete_stream(&stream)
                .await
                .map_err(|e| backend(format!("delete stream {stream}"), e))?;
        }
        Ok(())
    }
}

impl Inner {
    pub(super) fn subject(&self, target: &Target) -> String {
        match target {
            Target::Lane(p) => format!("{}.{p}", self.name),
            Target::Delayed(_) => format!("{}.{DELAYED}", self.name),
        }
    }

    /// Publishes with a `Nats-Msg-Id` and waits for the stream's acknowledgement, which says
    /// whether the server dropped it as a repeat of an earlier publish with that id.
    pub(super) async fn publish(
        &self,
        subject: String,
        msg_id: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<PublishAck, QueueError> {
        let ack: PublishAckFuture = self
            .js
            .send_publish(
                subject.clone(),
                PublishMessage::build()
                    .payload(payload)
                    .headers(headers)
                    .message_id(msg_id),
            )
            .await
            .map_err(|e| backend(format!("publish {msg_id} to {subject}"), e))?;
        ack.await
            .map_err(|e| backend(format!("publish {msg_id} to {subject}"), e))
    }

    /// Tells waiting claimers (in every process) that something became claimable.
    pub(super) async fn poke(&self) {
        if let Err(e) = self
            .client
            .publish(format!("{}.wake", self.name), Bytes::new())
            .await
        {
            tracing::debug!(queue = %self.name, error = %e, "wake-up publish failed");
        }
    }

    /// Moves a delayed item that came due onto its lane: publishes it there, then removes it from
    /// `delayed`. The lane copy's `Nats-Msg-Id` is fixed by the item, so when the removal is lost
    /// (the server redelivers the delayed message after `ack_wait`) the second promotion is
    /// dropped by the server as a duplicate, within the duplicate window (longer than `ack_wait`).
    pub(super) async fn promote(
        &self,
        msg: &jetstream::Message,
        meta: &Meta,
    ) -> Result<(), QueueError> {
        let target = Target::Lane(meta.priority);
        let next = Meta {
            not_before_ms: None,
            ..meta.clone()
        };
        let msg_id = format!(
            "{}:{}:{}",
            meta.work_id,
            meta.prior_attempts,
            target.token()
        );
        self.publish(
            self.subject(&target),
            &msg_id,
            next.to_headers(),
            msg.message.payload.clone(),
        )
        .await?;
        if let Err(e) = msg.double_ack().await {
            tracing::warn!(queue = %self.name, work_id = %meta.work_id, error = %e,
                "promoted a delayed item but could not remove it from the delayed subject; \
                 its redelivery will be recognised as a duplicate");
        }
        self.poke().await;
        Ok(())
    }

    /// Sends a progress signal and waits for the server's reply. Returns when it was sent: the
    /// server's `ack_wait` restarted no earlier than that.
    pub(super) async fn progress(&self, msg: &jetstream::Message) -> Result<Instant, QueueError> {
        let sent_at = Instant::now();
        msg.double_ack_with(AckKind::Progress)
            .await
            .map_err(|e| backend(format!("progress signal to {}", self.name), e))?;
        Ok(sent_at)
    }

    /// Gives a held item back to the server (`Nak`, redelivered after `delay`). The same message
    /// comes back, so nothing is copied and its delivery count keeps counting the attempts. When
    /// the `Nak` is lost the server redelivers after `ack_wait` instead.
    pub(super) async fn give_back(
        &self,
        msg: &jetstream::Message,
        delay: Duration,
        work_id: &WorkId,
    ) {
        let kind = if delay.is_zero() {
            AckKind::Nak(None)
        } else {
            AckKind::Nak(Some(delay.min(super::LONGEST)))
        };
        match msg.double_ack_with(kind).await {
            Ok(()) => self.poke().await,
            Err(e) => tracing::warn!(queue = %self.name, work_id = %work_id, error = %e,
                "could not give the item back; the server redelivers it after ack_wait"),
        }
    }

    /// Moves an item to the dead-letter stream and removes it from the work stream. A lost removal
    /// is harmless: the redelivered message is past its budget and dead-lettered again, under the
    /// same `Nats-Msg-Id` (dropped as a duplicate within the window).
    pub(super) async fn dead_letter(
        &self,
        msg: &jetstream::Message,
        work_id: &WorkId,
        priority: Option<Priority>,
        attempts: u32,
        reason: &str,
    ) -> Result<(), QueueError> {
        let mut headers = HeaderMap::new();
        headers.insert(H_WORK_ID, work_id.as_str());
        headers.insert(H_ATTEMPTS, attempts.to_string());
        headers.insert(H_REASON, reason);
        if let Some(p) = priority {
            headers.insert(H_PRIORITY, p.as_str());
        }
        let msg_id = format!("{work_id}:dead:{attempts}");
        self.publish(
            format!("{}.dead", self.name),
            &msg_id,
            headers,
            msg.message.payload.clone(),
        )
        .await?;
        if let Err(e) = msg.double_ack().await {
            tracing::warn!(queue = %self.name, work_id = %work_id, error = %e,
                "dead-lettered, but could not remove the item from the work stream; \
                 its redelivery will be dead-lettered again as a duplicate");
        }
        tracing::warn!(queue = %self.name, work_id = %work_id, attempts, reason, "dead-lettered");
        Ok(())
    }

    pub(super) async fn fetch_one(
        &self,
        priority: Priority,
    ) -> Result<Option<jetstream::Message>, QueueError> {
        let what = priority.as_str();
        let _one_at_a_time = self.fetching[priority.index()].lock().await;
        let mut batch = self.lanes[priority.index()]
            .fetch()
            .max_messages(1)
            .messages()
            .await
            .map_err(|e| backend(format!("fetch from {}/{what}", self.name), e))?;
        let Ok(next) = tokio::time::timeout(FETCH_STUCK, batch.next()).await else {
            tracing::debug!(queue = %self.name, lane = what, "pull request parked by the server; dropped");
            return Ok(None);
        };
        match next {
            None => Ok(None),
            Some(Ok(msg)) => Ok(Some(msg)),
            Some(Err(e)) => Err(backend(format!("fetch from {}/{what}", self.name), e)),
        }
    }

    /// Moves delayed items that came due onto their lanes; re-arms the others with a server-side
    /// `Nak(delay)` so they come back when due. Throttled to once per poll interval.
    pub(super) async fn promote_due(&self) -> Result<(), QueueError> {
        {
            let mut last = self.last_promote.lock();
            if last.is_some_and(|t| t.elapsed() < self.poll_interval) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let _one_at_a_time = self.fetching[3].lock().await;
        let mut batch = self
            .delayed
            .fetch()
            .max_messages(64)
            .messages()
            .await
            .map_err(|e| backend(format!("fetch from {}/{DELAYED}", self.name), e))?;
        while let Ok(Some(msg)) = tokio::time::timeout(FETCH_STUCK, batch.next()).await {
            let msg = msg.map_err(|e| backend(format!("fetch from {}/{DELAYED}", self.name), e))?;
            let meta = match Meta::from_headers(msg.message.headers.as_ref()) {
                Ok(meta) => meta,
                Err(why) => {
                    let id = WorkId::new(format!("{}-delayed-{}", self.name, seq_of(&msg)));
                    self.dead_letter(&msg, &id, None, 0, &format!("malformed: {why}"))
                        .await?;
                    continue;
                }
            };
            let now = now_ms();
            match meta.not_before_ms {
                Some(due) if due > now => {
                    msg.ack_with(AckKind::Nak(Some(Duration::from_millis(due - now))))
                        .await
                        .map_err(|e| backend(format!("re-arm delayed {}", meta.work_id), e))?;
                }
                _ => self.promote(&msg, &meta).await?,
            }
        }
        Ok(())
    }

    /// Turns a fetched lane message into a claim, or dead-letters it when its budget is spent.
    pub(super) async fn take(
        self: &Arc<Self>,
        msg: jetstream::Message,
        worker: &WorkerId,
        lease: Duration,
        fetched_at: Instant,
    ) -> Result<Option<Claim>, QueueError> {
        let delivered = msg
            .info()
            .map(|i| u32::try_from(i.delivered).unwrap_or(1).max(1))
            .map_err(|e| backend(format!("ack subject of a message in {}", self.name), e))?;
        let meta = match Meta::from_headers(msg.message.headers.as_ref()) {
            Ok(meta) => meta,
            Err(why) => {
                let id = WorkId::new(format!("{}-{}", self.name, seq_of(&msg)));
                self.dead_letter(&msg, &id, None, delivered, &format!("malformed: {why}"))
                    .await?;
                return Ok(None);
            }
        };
        let attempt = meta.prior_attempts + delivered;
        if attempt > meta.max_attempts {
            // The previous holder's lease ran out on the server (the holder vanished).
            self.dead_letter(
                &msg,
                &meta.work_id,
                Some(meta.priority),
                attempt - 1,
                "lease expired",
            )
            .await?;
            return Ok(None);
        }
        let token = LeaseToken::random();
        let claim = Claim {
            id: meta.work_id.clone(),
            token: token.clone(),
            attempt,
            max_attempts: meta.max_attempts,
            priority: meta.priority,
            payload: msg.message.payload.clone(),
        };
        let held = Arc::new(Lease {
            token: token.clone(),
            msg,
            meta,
            attempt,
            worker: worker.clone(),
            state: tokio::sync::Mutex::new(LeaseState {
                deadline: deadline_after(Instant::now(), lease),
                server_deadline: deadline_after(fetched_at, self.ack_wait),
                done: false,
            }),
            changed: Notify::new(),
        });
        self.leases.lock().insert(token, Arc::clone(&held));
        tokio::spawn(super::ops::keep_lease(Arc::clone(self), held));
        Ok(Some(claim))
    }

    pub(super) fn held(&self, token: &LeaseToken) -> Result<Arc<Lease>, QueueError> {
        self.leases
            .lock()
            .get(token)
            .cloned()
            .ok_or_else(|| QueueError::LeaseLost {
                token: token.clone(),
            })
    }

    /// Marks a lease settled: its token is dead from now on.
    pub(super) fn settle(&self, lease: &Lease, state: &mut LeaseState) {
        state.done = true;
        self.leases.lock().remove(&lease.token);
        lease.changed.notify_one();
    }
}

fn seq_of(msg: &jetstream::Message) -> u64 {
    msg.info().map(|i| i.stream_sequence).unwrap_or(0)
}
