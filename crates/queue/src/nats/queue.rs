//! [`NatsQueue`]: the [`Queue`] seam on NATS JetStream.

use super::lease::{
    H_ATTEMPTS, H_PRIORITY, H_REASON, H_WORK_ID, Lease, LeaseState, Meta, kv_key, now_ms,
};
use super::{backend, connect_client, valid_name};
use async_nats::HeaderMap;
use async_nats::jetstream::{
    self, AckKind, Context,
    consumer::{AckPolicy, PullConsumer, pull},
    context::{PublishAckFuture, PublishErrorKind},
    message::PublishMessage,
    stream::{self, LastRawMessageErrorKind, RetentionPolicy, Stream},
};
use bytes::Bytes;
use futures::StreamExt;
use hybridgrid_core::spec::redact;
use hybridgrid_core::{Claim, LeaseToken, Priority, QueueError, WorkId, WorkerId};
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
    /// that has vanished (crashed, partitioned) after its last progress signal. Live claimers enforce
    /// each claim's own `lease` themselves. Applied when the consumers are created; an existing
    /// queue keeps the `ack_wait` it was created with.
    pub ack_wait: Duration,
    /// How long an idempotency key is remembered (default 24 h): a repeated key within this window
    /// returns [`Enqueued::Duplicate`], whatever state the first item is in.
    pub idempotency_window: Duration,
    /// The streams' `Nats-Msg-Id` de-duplication window (default 2 min), which makes re-publishing
    /// after a lost publish acknowledgement safe.
    pub duplicate_window: Duration,
    /// Timeout of each JetStream request (default 5 s); a request that times out fails with a
    /// retryable [`QueueError::Backend`].
    pub request_timeout: Duration,
    /// Longest pause between two polls of an empty queue inside `claim` (default 100 ms). Enqueues
    /// through any `NatsQueue` wake waiting claimers at once; the poll catches redeliveries by the
    /// server and delays that come due.
    pub poll_interval: Duration,
}

impl Default for NatsQueueConfig {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            idempotency_window: Duration::from_secs(24 * 3600),
            duplicate_window: Duration::from_secs(120),
            request_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
        }
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

    /// Publishes with a `Nats-Msg-Id` and waits for the stream's acknowledgement.
    pub(super) async fn publish(
        &self,
        subject: String,
        msg_id: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<(), QueueError> {
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
            .map_err(|e| backend(format!("publish {msg_id} to {subject}"), e))?;
        Ok(())
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

    /// Re-publishes an item (after a nack, an expiry or a delay) and removes the old message.
    /// Publishing first means a failure in between duplicates the item rather than losing it.
    pub(super) async fn requeue(
        &self,
        msg: &jetstream::Message,
        meta: &Meta,
        attempts_so_far: u32,
        target: Target,
    ) -> Result<(), QueueError> {
        let next = Meta {
            prior_attempts: attempts_so_far,
            not_before_ms: match target {
                Target::Delayed(ms) => Some(ms),
                Target::Lane(_) => None,
            },
            ..meta.clone()
        };
        // Unique per (item, attempts, destination): a promotion from `delayed` to a lane must not
        // be taken for a duplicate of the publish that put it on `delayed`.
        let msg_id = format!("{}:{}:{}", meta.work_id, attempts_so_far, target.token());
        self.publish(
            self.subject(&target),
            &msg_id,
            next.to_headers(),
            msg.message.payload.clone(),
        )
        .await?;
        msg.double_ack()
            .await
            .map_err(|e| backend(format!("ack of re-published {}", meta.work_id), e))?;
        self.poke().await;
        Ok(())
    }

    /// Moves an item to the dead-letter stream and removes it from the work stream.
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
        msg.double_ack()
            .await
            .map_err(|e| backend(format!("ack of dead-lettered {work_id}"), e))?;
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
                _ => {
                    let target = Target::Lane(meta.priority);
                    self.requeue(&msg, &meta, meta.prior_attempts, target)
                        .await?;
                }
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
                deadline: Instant::now() + lease,
                server_deadline: fetched_at + self.ack_wait,
                done: false,
            }),
            changed: Notify::new(),
        });
        self.leases.lock().insert(token, Arc::clone(&held));
        tokio::spawn(super::ops::keep_lease(Arc::clone(self), held));
        Ok(Some(claim))
    }

    pub(super) fn key_subject(&self, key: &str) -> String {
        format!("{}.key.{}", self.name, kv_key(key))
    }

    /// Records `key -> id` unless the key is already known within the window; then returns the id
    /// recorded first. The server's expected-last-subject-sequence check makes this atomic.
    pub(super) async fn claim_key(
        &self,
        key: &str,
        id: &WorkId,
    ) -> Result<Option<WorkId>, QueueError> {
        let subject = self.key_subject(key);
        loop {
            let published = match self
                .js
                .send_publish(
                    subject.clone(),
                    PublishMessage::build()
                        .payload(Bytes::from(id.to_string()))
                        .expected_last_subject_sequence(0),
                )
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match published {
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    match self.keys.get_last_raw_message_by_subject(&subject).await {
                        Ok(m) => {
                            let existing = String::from_utf8_lossy(&m.payload).into_owned();
                            return Ok(Some(WorkId::new(existing)));
                        }
                        // Expired between the two calls: try to take the key again.
                        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => continue,
                        Err(e) => {
                            return Err(backend(format!("read idempotency key {key:?}"), e));
                        }
                    }
                }
                Err(e) => return Err(backend(format!("record idempotency key {key:?}"), e)),
            }
        }
    }

    pub(super) async fn release_key(&self, key: &str) -> Result<(), QueueError> {
        self.keys
            .purge()
            .filter(self.key_subject(key))
            .await
            .map_err(|e| backend(format!("release idempotency key {key:?}"), e))?;
        Ok(())
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
