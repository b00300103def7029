//! A failed activation is counted towards the agent's backoff BEFORE its item is acked, so a
//! runner that dies between the two leaves the item to come back after its lease: it is retried
//! by another runner, not lost. Real Redis; the "death" is a state backend that never returns
//! after recording the failure.
#![allow(clippy::unwrap_used)]

mod support;

use async_trait::async_trait;
use hybridgrid_agents_defs::Definitions;
use hybridgrid_agents_protocol::{
    ActivationInfo, AgentState, Backends, BackoffEntry, Queues, StateError,
};
use hybridgrid_agents_runner::{RunnerConfig, StandardExecutor, start};
use hybridgrid_testkit::fake_llm::FakeReply;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

const T: Duration = Duration::from_secs(60);

/// Delegates to the real state; after recording a failure it notes how many items were in
/// flight and then hangs, like a runner killed right after that write.
struct DiesAfterRecordingFailure {
    inner: Arc<dyn AgentState>,
    queues: Queues,
    in_flight_at_record: Mutex<Option<u64>>,
}

#[async_trait]
impl AgentState for DiesAfterRecordingFailure {
    async fn record_failure(&self, agent: &str) -> Result<BackoffEntry, StateError> {
        self.inner.record_failure(agent).await?;
        let d = self.queues.inbox.depths().await.unwrap();
        *self.in_flight_at_record.lock().unwrap() = Some(d.in_flight);
        std::future::pending().await
    }
    async fn record_success(&self, agent: &str) -> Result<(), StateError> {
        self.inner.record_success(agent).await
    }
    async fn backoff(&self, agent: &str) -> Result<Option<BackoffEntry>, StateError> {
        self.inner.backoff(agent).await
    }
    async fn backoffs(&self) -> Result<Vec<(String, BackoffEntry)>, StateError> {
        self.inner.backoffs().await
    }
    async fn clear_backoff(&self, agent: &str) -> Result<bool, StateError> {
        self.inner.clear_backoff(agent).await
    }
    async fn activation_started(
        &self,
        info: &ActivationInfo,
        ttl: Duration,
    ) -> Result<(), StateError> {
        self.inner.activation_started(info, ttl).await
    }
    async fn activation_heartbeat(&self, id: &str, ttl: Duration) -> Result<bool, StateError> {
        self.inner.activation_heartbeat(id, ttl).await
    }
    async fn activation_finished(&self, id: &str) -> Result<(), StateError> {
        self.inner.activation_finished(id).await
    }
    async fn activations(&self) -> Result<Vec<ActivationInfo>, StateError> {
        self.inner.activations().await
    }
    async fn request_cancel(&self, id: &str) -> Result<bool, StateError> {
        self.inner.request_cancel(id).await
    }
    async fn daily_count(&self, agent: &str, kind: &str) -> Result<u64, StateError> {
        self.inner.daily_count(agent, kind).await
    }
    async fn daily_incr(&self, agent: &str, kind: &str) -> Result<u64, StateError> {
        self.inner.daily_incr(agent, kind).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_is_recorded_before_the_ack_so_a_death_between_retries_the_item() {
    let env = Env::new("fail_order").await;
    env.agent(
        "fragile",
        "name: fragile\ntype: native\nbrain: {provider: anthropic, model: fake-model}\ncapabilities:\n  grants: [hub:read, hub:write]\n",
    );
    env.llm.push(FakeReply::error(400, "first attempt fails"));
    env.llm.push(FakeReply::text("second time lucky"));
    let spy = Arc::new(DiesAfterRecordingFailure {
        inner: env.backends.state.clone(),
        queues: env.backends.queues.clone(),
        in_flight_at_record: Mutex::new(None),
    });
    let dying = Backends {
        state: spy.clone(),
        ..env.backends.clone()
    };
    let (_, post) = env.mention("fragile", "@fragile try").await;
    let first = start(
        RunnerConfig::for_tests("dies"),
        dying,
        env.client.clone(),
        Definitions::local(env.defs_dir.path()),
        Arc::new(StandardExecutor::new(env.exec_env())),
    )
    .await
    .unwrap();
    wait_until("the failure to be recorded", T, || {
        spy.in_flight_at_record.lock().unwrap().is_some()
    })
    .await;
    assert_eq!(
        *spy.in_flight_at_record.lock().unwrap(),
        Some(1),
        "the item was still leased (not acked) when the failure was recorded"
    );
    let b = env
        .backends
        .state
        .backoff("fragile")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.failures, 1);
    // The first runner is "dead" (never acks). Its item returns after the lease.
    let second = env.runner(RunnerConfig::for_tests("lives")).await;
    wait_until("the retry's reply", T, || {
        env.hub.replies_to(&post).len() == 1
    })
    .await;
    assert_eq!(env.hub.replies_to(&post)[0].content, "second time lucky");
    wait_until("success clears the failure", T, || {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(env.backends.state.backoff("fragile"))
        })
        .unwrap()
        .is_none()
    })
    .await;
    assert_eq!(env.llm.requests().len(), 2);
    second.shutdown().await;
    // `first` is stuck inside the state call, as a dead process would be; it is dropped with the
    // test's runtime.
    drop(first);
}
