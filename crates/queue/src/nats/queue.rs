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
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use hybridgrid_core::{
    Claim, DeadLetter, Depths, Enqueued, LeaseToken, NewWork, Priority, Queue, QueueError, WorkId,
    WorkerId,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const DELAYED: &str = "delayed";
/// How long a `no_wait` pull request may go unanswered. nats-server 2.9 parks a `no_wait` request
/// that lost a race for the last message (from another process) until a message arrives; after
/// this the request is dropped, and the server skips it once its inbox has no subscriber. (An
/// `expires` would bound it on the server, but 2.9 then waits out `expires` on every empty lane.)
const FETCH_STUCK: Duration = Duration::from_millis(250);
/// Longest idempotency key accepted (it becomes a hex KV key, i.e. part of a subject).
const MAX_KEY_LEN: usize = 1024;

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
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    client: async_nats::Client,
    js: Context,
    work: Stream,
    dead: Stream,
    /// Indexed by [`Priority::index`].
    lanes: [PullConsumer; 3],
    delayed: PullConsumer,
    /// One pull request at a time per consumer from this client (index 3: `delayed`), so this
    /// process's claimers do not race each other for the same message.
    fetching: [tokio::sync::Mutex<()>; 4],
    keys: Stream,
    ack_wait: Duration,
    poll_interval: Duration,
    leases: parking_lot::Mutex<HashMap<LeaseToken, Arc<Lease>>>,
    wake: Arc<Notify>,
    last_promote: parking_lot::Mutex<Option<Instant>>,
    wake_task: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.wake_task.abort();
    }
}

/// Where a re-published item goes.
enum Target {
    Lane(Priority),
    Delayed(u64),
}

impl Target {
    fn token(&self) -> &'static str {
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
            .map_err(|e| backend(format!("connect to {url}"), e))?;
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
    fn subject(&self, target: &Target) -> String {
        match target {
            Target::Lane(p) => format!("{}.{p}", self.name),
            Target::Delayed(_) => format!("{}.{DELAYED}", self.name),
        }
    }

    /// Publishes with a `Nats-Msg-Id` and waits for the stream's acknowledgement.
    async fn publish(
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
    async fn poke(&self) {
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
    async fn requeue(
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
    async fn dead_letter(
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

    async fn fetch_one(&self, priority: Priority) -> Result<Option<jetstream::Message>, QueueError> {
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
    async fn promote_due(&self) -> Result<(), QueueError> {
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
    async fn take(
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
        tokio::spawn(keep_lease(Arc::clone(self), held));
        Ok(Some(claim))
    }

    fn key_subject(&self, key: &str) -> String {
        format!("{}.key.{}", self.name, kv_key(key))
    }

    /// Records `key -> id` unless the key is already known within the window; then returns the id
    /// recorded first. The server's expected-last-subject-sequence check makes this atomic.
    async fn claim_key(&self, key: &str, id: &WorkId) -> Result<Option<WorkId>, QueueError> {
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

    async fn release_key(&self, key: &str) -> Result<(), QueueError> {
        self.keys
            .purge()
            .filter(self.key_subject(key))
            .await
            .map_err(|e| backend(format!("release idempotency key {key:?}"), e))?;
        Ok(())
    }

    fn held(&self, token: &LeaseToken) -> Result<Arc<Lease>, QueueError> {
        self.leases
            .lock()
            .get(token)
            .cloned()
            .ok_or_else(|| QueueError::LeaseLost {
                token: token.clone(),
            })
    }

    /// Marks a lease settled: its token is dead from now on.
    fn settle(&self, lease: &Lease, state: &mut LeaseState) {
        state.done = true;
        self.leases.lock().remove(&lease.token);
        lease.changed.notify_one();
    }
}

fn seq_of(msg: &jetstream::Message) -> u64 {
    msg.info().map(|i| i.stream_sequence).unwrap_or(0)
}

/// Holds one lease: sends `+WPI` progress while the lease outlives the server's `ack_wait`, and at
/// the deadline re-queues the item (or dead-letters it when its attempts are used up).
async fn keep_lease(inner: Arc<Inner>, lease: Arc<Lease>) {
    let margin = inner.ack_wait / 3;
    loop {
        let wake_at = {
            let state = lease.state.lock().await;
            if state.done {
                return;
            }
            state.next_wake(margin)
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake_at.into()) => {}
            _ = lease.changed.notified() => {}
        }
        let mut state = lease.state.lock().await;
        if state.done {
            return;
        }
        let now = Instant::now();
        if now >= state.deadline {
            inner.settle(&lease, &mut state);
            let result = if lease.attempt >= lease.meta.max_attempts {
                inner
                    .dead_letter(
                        &lease.msg,
                        &lease.meta.work_id,
                        Some(lease.meta.priority),
                        lease.attempt,
                        "lease expired",
                    )
                    .await
            } else {
                let target = Target::Lane(lease.meta.priority);
                inner
                    .requeue(&lease.msg, &lease.meta, lease.attempt, target)
                    .await
            };
            match result {
                Ok(()) => tracing::info!(
                    queue = %inner.name, work_id = %lease.meta.work_id, worker = %lease.worker,
                    attempt = lease.attempt, "lease expired"
                ),
                // The server redelivers it after ack_wait anyway.
                Err(e) => tracing::warn!(
                    queue = %inner.name, work_id = %lease.meta.work_id, error = %e,
                    "lease expired; re-queue failed, the server will redeliver after ack_wait"
                ),
            }
            return;
        }
        if state.needs_progress_before_deadline(margin) && now + margin >= state.server_deadline {
            match lease.msg.ack_with(AckKind::Progress).await {
                Ok(()) => state.server_deadline = now + inner.ack_wait,
                Err(e) => tracing::warn!(
                    queue = %inner.name, work_id = %lease.meta.work_id, error = %e,
                    "lease progress signal failed"
                ),
            }
        }
    }
}

#[async_trait]
impl Queue for NatsQueue {
    async fn enqueue(&self, work: NewWork) -> Result<Enqueued, QueueError> {
        let inner = &self.inner;
        if work.max_attempts == 0 {
            return Err(QueueError::Invalid("max_attempts must be at least 1".into()));
        }
        let id = WorkId::random();
        let key = match &work.idempotency_key {
            Some(k) if k.len() > MAX_KEY_LEN => {
                return Err(QueueError::Invalid(format!(
                    "idempotency key of {} bytes (at most {MAX_KEY_LEN})",
                    k.len()
                )));
            }
            Some(k) if k.is_empty() => {
                return Err(QueueError::Invalid("empty idempotency key".into()));
            }
            Some(k) => Some(k),
            None => None,
        };
        if let Some(key) = key {
            if let Some(existing) = inner.claim_key(key, &id).await? {
                return Ok(Enqueued::Duplicate(existing));
            }
        }
        let target = if work.delay.is_zero() {
            Target::Lane(work.priority)
        } else {
            Target::Delayed(now_ms() + work.delay.as_millis() as u64)
        };
        let meta = Meta {
            work_id: id.clone(),
            max_attempts: work.max_attempts,
            prior_attempts: 0,
            priority: work.priority,
            not_before_ms: match target {
                Target::Delayed(ms) => Some(ms),
                Target::Lane(_) => None,
            },
        };
        let msg_id = format!("{id}:0:{}", target.token());
        if let Err(e) = inner
            .publish(inner.subject(&target), &msg_id, meta.to_headers(), work.payload)
            .await
        {
            if let Some(key) = key {
                // Free the key so a retry is not answered with the id of an item that may not exist.
                if let Err(del) = inner.release_key(key).await {
                    tracing::warn!(queue = %inner.name, key = %key, error = %del,
                        "could not release idempotency key after a failed enqueue");
                }
            }
            return Err(e);
        }
        inner.poke().await;
        Ok(Enqueued::Created(id))
    }

    async fn claim(
        &self,
        worker: &WorkerId,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<Claim>, QueueError> {
        let inner = &self.inner;
        let deadline = Instant::now() + wait;
        loop {
            // Register for wake-ups before polling, so an enqueue in between is not missed.
            let notified = inner.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            inner.promote_due().await?;
            for priority in Priority::ALL {
                loop {
                    let fetched_at = Instant::now();
                    let Some(msg) = inner.fetch_one(priority).await? else {
                        break;
                    };
                    if let Some(claim) = inner.take(msg, worker, lease, fetched_at).await? {
                        tracing::debug!(queue = %inner.name, work_id = %claim.id, worker = %worker,
                            attempt = claim.attempt, "claimed");
                        return Ok(Some(claim));
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let nap = (deadline - now).min(inner.poll_interval);
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn ack(&self, token: &LeaseToken) -> Result<(), QueueError> {
        let inner = &self.inner;
        let lease = inner.held(token)?;
        let mut state = lease.state.lock().await;
        if state.done {
            return Err(QueueError::LeaseLost {
                token: token.clone(),
            });
        }
        lease
            .msg
            .double_ack()
            .await
            .map_err(|e| backend(format!("ack of {} (lease {token})", lease.meta.work_id), e))?;
        inner.settle(&lease, &mut state);
        Ok(())
    }

    async fn nack(&self, token: &LeaseToken, retry_after: Duration) -> Result<(), QueueError> {
        let inner = &self.inner;
        let lease = inner.held(token)?;
        let mut state = lease.state.lock().await;
        if state.done {
            return Err(QueueError::LeaseLost {
                token: token.clone(),
            });
        }
        let meta = &lease.meta;
        if lease.attempt >= meta.max_attempts {
            inner
                .dead_letter(
                    &lease.msg,
                    &meta.work_id,
                    Some(meta.priority),
                    lease.attempt,
                    "nacked",
                )
                .await?;
        } else {
            let target = if retry_after.is_zero() {
                Target::Lane(meta.priority)
            } else {
                Target::Delayed(now_ms() + retry_after.as_millis() as u64)
            };
            inner
                .requeue(&lease.msg, meta, lease.attempt, target)
                .await?;
        }
        inner.settle(&lease, &mut state);
        Ok(())
    }

    async fn extend(&self, token: &LeaseToken, by: Duration) -> Result<(), QueueError> {
        let lease = self.inner.held(token)?;
        let mut state = lease.state.lock().await;
        if state.done {
            return Err(QueueError::LeaseLost {
                token: token.clone(),
            });
        }
        state.deadline = Instant::now() + by;
        lease.changed.notify_one();
        Ok(())
    }

    async fn depths(&self) -> Result<Depths, QueueError> {
        let inner = &self.inner;
        let mut depths = Depths::default();
        for priority in Priority::ALL {
            let info = inner
                .work
                .consumer_info(priority.as_str())
                .await
                .map_err(|e| backend(format!("consumer info {}/{priority}", inner.name), e))?;
            depths.ready[priority.index()] = info.num_pending;
            depths.in_flight += info.num_ack_pending as u64;
        }
        let info = inner
            .work
            .consumer_info(DELAYED)
            .await
            .map_err(|e| backend(format!("consumer info {}/{DELAYED}", inner.name), e))?;
        depths.delayed = info.num_pending + info.num_ack_pending as u64;
        let dead = inner
            .dead
            .get_info()
            .await
            .map_err(|e| backend(format!("stream info {}_dead", inner.name), e))?;
        depths.dead = dead.state.messages;
        Ok(depths)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let inner = &self.inner;
        let info = inner
            .dead
            .get_info()
            .await
            .map_err(|e| backend(format!("stream info {}_dead", inner.name), e))?;
        let mut out = Vec::new();
        if info.state.messages == 0 {
            return Ok(out);
        }
        let mut seq = info.state.first_sequence;
        while out.len() < limit && seq <= info.state.last_sequence {
            match inner.dead.get_raw_message(seq).await {
                Ok(m) => {
                    let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_owned());
                    out.push(DeadLetter {
                        id: WorkId::new(header(H_WORK_ID).unwrap_or_else(|| format!("seq-{seq}"))),
                        payload: m.payload,
                        attempts: header(H_ATTEMPTS)
                            .and_then(|a| a.parse().ok())
                            .unwrap_or(0),
                        reason: header(H_REASON).unwrap_or_default(),
                    });
                }
                Err(e)
                    if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
                Err(e) => {
                    return Err(backend(
                        format!("read dead letter {seq} of {}_dead", inner.name),
                        e,
                    ));
                }
            }
            seq += 1;
        }
        Ok(out)
    }
}
