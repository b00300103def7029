//! The [`Queue`] operations of [`NatsQueue`] and the task that holds each lease.

use super::keys::keyed_id;
use super::lease::{H_ATTEMPTS, H_REASON, H_WORK_ID, Lease, LeaseState, Meta, now_ms};
use super::queue::{DELAYED, Inner, MAX_KEY_LEN, NatsQueue, Target};
use super::{backend, deadline_after, millis};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_trait::async_trait;
use hybridgrid_core::{
    Claim, DeadLetter, Depths, Enqueued, LeaseToken, NewWork, Priority, Queue, QueueError, WorkId,
    WorkerId,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Holds one lease: sends confirmed `+WPI` progress while the lease outlives the server's
/// `ack_wait`, gives the item back at the deadline (or dead-letters it when its attempts are used
/// up), and declares the lease lost when the server could not be told in time.
pub(super) async fn keep_lease(inner: Arc<Inner>, lease: Arc<Lease>) {
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
        if state.server_may_have_redelivered(now, inner.guard) {
            inner.settle(&lease, &mut state);
            tracing::warn!(
                queue = %inner.name, work_id = %lease.meta.work_id, worker = %lease.worker,
                attempt = lease.attempt,
                "lease lost: no progress signal reached the server within ack_wait"
            );
            return;
        }
        if now >= state.deadline {
            inner.settle(&lease, &mut state);
            drop(state);
            if lease.attempt >= lease.meta.max_attempts {
                let dead = inner
                    .dead_letter(
                        &lease.msg,
                        &lease.meta.work_id,
                        Some(lease.meta.priority),
                        lease.attempt,
                        "lease expired",
                    )
                    .await;
                if let Err(e) = dead {
                    // The server redelivers it after ack_wait; the claim path dead-letters it then.
                    tracing::warn!(queue = %inner.name, work_id = %lease.meta.work_id, error = %e,
                        "lease expired on the last attempt; dead-lettering failed");
                }
            } else {
                inner
                    .give_back(&lease.msg, Duration::ZERO, &lease.meta.work_id)
                    .await;
            }
            tracing::info!(
                queue = %inner.name, work_id = %lease.meta.work_id, worker = %lease.worker,
                attempt = lease.attempt, "lease expired"
            );
            return;
        }
        if state.needs_progress_before_deadline(margin)
            && now
                .checked_add(margin)
                .is_none_or(|t| t >= state.server_deadline)
        {
            // Not under the lock: ack/nack/extend need not wait for this round trip.
            drop(state);
            match inner.progress(&lease.msg).await {
                Ok(sent_at) => {
                    let mut state = lease.state.lock().await;
                    state.server_deadline = state
                        .server_deadline
                        .max(deadline_after(sent_at, inner.ack_wait));
                }
                Err(e) => {
                    tracing::warn!(
                        queue = %inner.name, work_id = %lease.meta.work_id, error = %e,
                        "lease progress signal failed; retrying"
                    );
                    // Not a hot loop while the connection is down.
                    tokio::time::sleep(margin.min(Duration::from_millis(250))).await;
                }
            }
        }
    }
}

/// `Ok` if the lease is still ours; `LeaseLost` when it was settled, or when the server may have
/// handed the item to someone else (then it is settled here).
fn check_live(
    inner: &Inner,
    lease: &Lease,
    state: &mut LeaseState,
    token: &LeaseToken,
) -> Result<(), QueueError> {
    let lost = || QueueError::LeaseLost {
        token: token.clone(),
    };
    if state.done {
        return Err(lost());
    }
    if state.server_may_have_redelivered(Instant::now(), inner.guard) {
        inner.settle(lease, state);
        tracing::warn!(queue = %inner.name, work_id = %lease.meta.work_id,
            "lease lost: no progress signal reached the server within ack_wait");
        return Err(lost());
    }
    Ok(())
}

#[async_trait]
impl Queue for NatsQueue {
    async fn enqueue(&self, work: NewWork) -> Result<Enqueued, QueueError> {
        let inner = &self.inner;
        if work.max_attempts == 0 {
            return Err(QueueError::Invalid(
                "max_attempts must be at least 1".into(),
            ));
        }
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
            Some(k) => Some(k.as_str()),
            None => None,
        };
        let target = if work.delay.is_zero() {
            Target::Lane(work.priority)
        } else {
            Target::Delayed(now_ms().saturating_add(millis(work.delay)))
        };
        let (id, msg_id) = match key {
            Some(key) => {
                if let Some(existing) = inner.lookup_key(key).await? {
                    return Ok(Enqueued::Duplicate(existing));
                }
                let id = keyed_id(&inner.name, key);
                let msg_id = format!("{id}:enqueue");
                (id, msg_id)
            }
            None => {
                let id = WorkId::random();
                let msg_id = format!("{id}:0:{}", target.token());
                (id, msg_id)
            }
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
        let ack = inner
            .publish(
                inner.subject(&target),
                &msg_id,
                meta.to_headers(),
                work.payload,
            )
            .await?;
        if let Some(key) = key {
            // Only now, with the item stored: a key never points at an item that does not exist.
            inner.record_key(key, &id).await?;
        }
        if ack.duplicate {
            // An earlier enqueue of this key (racing, or retried after its acknowledgement was
            // lost) stored the item.
            return Ok(Enqueued::Duplicate(id));
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
        let deadline = deadline_after(Instant::now(), wait);
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
            let nap = deadline
                .saturating_duration_since(now)
                .min(inner.poll_interval);
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
        check_live(inner, &lease, &mut state, token)?;
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
        check_live(inner, &lease, &mut state, token)?;
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
            // The same message comes back after `retry_after`: no copy that could outlive a lost
            // ack, and the server's delivery count keeps counting attempts.
            inner
                .give_back(&lease.msg, retry_after, &meta.work_id)
                .await;
        }
        inner.settle(&lease, &mut state);
        Ok(())
    }

    async fn extend(&self, token: &LeaseToken, by: Duration) -> Result<(), QueueError> {
        let inner = &self.inner;
        let lease = inner.held(token)?;
        let mut state = lease.state.lock().await;
        check_live(inner, &lease, &mut state, token)?;
        // Tell the server first: a lease is only extended if the server keeps the delivery ours.
        let sent_at = inner.progress(&lease.msg).await?;
        state.server_deadline = state
            .server_deadline
            .max(deadline_after(sent_at, inner.ack_wait));
        state.deadline = deadline_after(Instant::now(), by);
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
                        attempts: header(H_ATTEMPTS).and_then(|a| a.parse().ok()).unwrap_or(0),
                        reason: header(H_REASON).unwrap_or_default(),
                    });
                }
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
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
