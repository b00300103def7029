//! What the [`Store`](crate::Store) keeps for durable DAG runs: named records (the agent
//! registry), step claims with leases, completions accepted only from the attempt holding the
//! claim, approvals parked on steps, run deadlines, and an outbox of events written in the same
//! transaction as the transitions they report.

use crate::ids::RunId;
use crate::store::RunStatus;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// A small named JSON document of some kind (`agent`), unique by name within its kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Kind.
    pub kind: String,
    /// Id.
    pub id: String,
    /// Name, unique within the kind.
    pub name: String,
    /// The document.
    pub doc: serde_json::Value,
    /// 1 when created, plus one per update.
    pub version: i64,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last change.
    pub updated_at: SystemTime,
}

/// An event to publish, kept in the outbox until the relay has published it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// Subject.
    pub subject: String,
    /// Payload bytes (JSON for the orchestrator).
    pub payload: Vec<u8>,
}

/// An outbox entry handed to a relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Position in the outbox (increasing in write order).
    pub seq: i64,
    /// Subject.
    pub subject: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// A step to create when a run starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewStep {
    /// Name, unique within the run.
    pub name: String,
    /// Input document (the node's template, say).
    pub input: serde_json::Value,
    /// `Pending`, or `Succeeded` for a step carried over from an earlier run (with its `output`).
    pub status: RunStatus,
    /// Parents not done yet: the step is claimable once this reaches 0.
    pub waiting_on: u32,
    /// Output, for a carried-over step.
    pub output: Option<serde_json::Value>,
    /// Details (executor output), for a carried-over step.
    pub detail: Option<serde_json::Value>,
}

/// Starting a `Pending` run: it moves to `Running` with its deadline, its steps are created, and
/// `events` are written to the outbox, all at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunStart {
    /// The run.
    pub run: RunId,
    /// When the reaper fails it (time waiting for approvals is added back).
    pub deadline: SystemTime,
    /// Its steps.
    pub steps: Vec<NewStep>,
    /// Events to publish.
    pub events: Vec<OutboxEvent>,
}

/// How a claimed step ends its attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StepOutcome {
    /// Done for good (`Succeeded`, or `Failed` that does not fail the run): each step in
    /// `release` has one parent fewer to wait for; when no step of the run is left open, the run
    /// succeeds.
    Done {
        /// `Succeeded` or `Failed`.
        status: RunStatus,
        /// Output document.
        output: Option<serde_json::Value>,
        /// Error text.
        error: Option<String>,
        /// Children to release.
        release: Vec<String>,
    },
    /// The step fails and fails the run: the run moves to `Failed` with `run_error`, and every
    /// `Pending` step of it to `Cancelled` with phase `SKIPPED`.
    FailRun {
        /// The step's error.
        error: String,
        /// The run's error.
        run_error: String,
    },
    /// Back to `Pending`, claimable again from `not_before` (a retry after backoff).
    Retry {
        /// This attempt's error.
        error: String,
        /// Earliest next claim.
        not_before: SystemTime,
    },
    /// Back to `Pending` with phase `WAITING_APPROVAL`, not claimable until
    /// [`Store::decide_step`](crate::Store::decide_step); the run counts one more waiting approval.
    Park {
        /// The approval document.
        approval: serde_json::Value,
    },
}

/// The end of a claimed attempt, accepted only if the step is still `Running` under `owner` with
/// this `attempt` (else [`StoreError::Stale`](crate::StoreError::Stale)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepCompletion {
    /// Run.
    pub run: RunId,
    /// Step name.
    pub name: String,
    /// The claim's owner.
    pub owner: String,
    /// The claim's attempt.
    pub attempt: u32,
    /// What happened.
    pub outcome: StepOutcome,
    /// Details to keep on the step (executor output).
    pub detail: Option<serde_json::Value>,
    /// Events to publish.
    pub events: Vec<OutboxEvent>,
    /// Events written only if this completion ends the run (it succeeds, or `FailRun` fails it).
    pub on_run_done: Vec<OutboxEvent>,
}

/// What a completion changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepCompleted {
    /// The step after it.
    pub step: crate::store::Step,
    /// The run after it, without its `input` (`Null`: read it with `Store::run`).
    pub run: crate::store::Run,
    /// Released steps that now wait on nothing (claimable).
    pub ready: Vec<String>,
    /// Whether this completion ended the run (succeeded, or failed with `FailRun`).
    pub run_finished: bool,
}

/// Ending a run from outside its steps (cancel, deadline): the run moves from one of `from` to
/// `to` with `error`, every step not terminal (running ones too, whose attempts then go stale)
/// to `Cancelled` with phase `SKIPPED`, and `events` are written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunFinish {
    /// The run.
    pub run: RunId,
    /// Allowed current statuses.
    pub from: Vec<RunStatus>,
    /// `Failed` or `Cancelled`.
    pub to: RunStatus,
    /// Why.
    pub error: String,
    /// Events to publish.
    pub events: Vec<OutboxEvent>,
}

/// A decision on a parked step: it becomes claimable again (phase `DECIDED`) with `approval`
/// stored, the run's waiting count drops and its deadline moves by `extend_deadline`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepDecision {
    /// Run.
    pub run: RunId,
    /// Step name.
    pub name: String,
    /// The decided approval document.
    pub approval: serde_json::Value,
    /// Time spent waiting, added to the run's deadline.
    pub extend_deadline: Duration,
    /// Events to publish.
    pub events: Vec<OutboxEvent>,
}

/// Phase of a step waiting for a decision.
pub const PHASE_WAITING_APPROVAL: &str = "WAITING_APPROVAL";
/// Phase of a step whose approval was decided.
pub const PHASE_DECIDED: &str = "DECIDED";
/// Phase of a step cancelled because the run ended before it ran.
pub const PHASE_SKIPPED: &str = "SKIPPED";

/// Steps to claim in the same transaction as a batch of completions (see
/// [`Store::complete_steps`](crate::Store::complete_steps)): `Pending` ones waiting on nothing,
/// the children the batch just made ready among them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepClaim {
    /// The claims' owner.
    pub owner: String,
    /// Their lease.
    pub lease: Duration,
    /// Most steps to claim.
    pub limit: usize,
}

/// What a batch of completions changed.
#[derive(Debug)]
pub struct StepBatchDone {
    /// One result per completion, in the batch's order: a stale or missing step fails its own
    /// entry ([`StoreError::Stale`](crate::StoreError::Stale) or `NotFound`) and nothing else.
    pub completed: Vec<Result<StepCompleted, crate::StoreError>>,
    /// Steps claimed in the same transaction, already `Running` under the claim's owner.
    pub claimed: Vec<crate::store::Step>,
}

/// A run created and started at once (see [`Store::write_batch`](crate::Store::write_batch)):
/// it is written `Running` with its deadline, its steps and its events, under the id the caller
/// chose. If a run with the same idempotency key exists, nothing is written and that run is
/// returned as a duplicate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunLaunch {
    /// The new run's id (a fresh [`RunId::random`], so events can name it before it exists).
    pub id: RunId,
    /// What [`Store::create_run`](crate::Store::create_run) would create.
    pub new: crate::store::NewRun,
    /// When the reaper fails it (time waiting for approvals is added back).
    pub deadline: SystemTime,
    /// Its steps.
    pub steps: Vec<NewStep>,
    /// Events to publish (only if the run is new).
    pub events: Vec<OutboxEvent>,
}

/// What a [`RunLaunch`] did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Launched {
    /// The run, without its `input` (`Null`: read it with `Store::run`).
    pub run: crate::store::Run,
    /// The idempotency key named an existing run, which is `run`: nothing was written.
    pub duplicate: bool,
}

/// One transaction of the engine's write path (see
/// [`Store::write_batch`](crate::Store::write_batch)): new runs, ended attempts, and a claim of
/// ready steps (the new runs' first steps among them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowBatch {
    /// Runs to create and start.
    pub launches: Vec<RunLaunch>,
    /// Attempts to end, judged as [`Store::complete_steps`](crate::Store::complete_steps) does.
    pub completions: Vec<StepCompletion>,
    /// Ready steps to claim after both.
    pub claim: Option<StepClaim>,
}

/// What a [`FlowBatch`] changed.
#[derive(Debug, Default)]
pub struct FlowBatchDone {
    /// One result per launch, in the batch's order.
    pub launched: Vec<Result<Launched, crate::StoreError>>,
    /// One result per completion, in the batch's order.
    pub completed: Vec<Result<StepCompleted, crate::StoreError>>,
    /// Steps claimed in the same transaction, already `Running` under the claim's owner.
    pub claimed: Vec<crate::store::Step>,
}
