//! The [`Store`] seam: durable workflows, runs and their steps, with compare-and-set status moves.

use crate::error::{BoxError, Retry};
use crate::ids::{RunId, WorkflowId};
use crate::store_flow::{
    FlowBatch, FlowBatchDone, OutboxEvent, OutboxMessage, Record, RunFinish, RunStart,
    StepBatchDone, StepClaim, StepCompleted, StepCompletion, StepDecision,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

/// Status of a run or a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Created, not started.
    Pending,
    /// Started.
    Running,
    /// Finished well.
    Succeeded,
    /// Finished badly.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl RunStatus {
    /// True for `Succeeded`, `Failed` and `Cancelled`: such a status never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
    /// `PENDING`, `RUNNING`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "PENDING",
            RunStatus::Running => "RUNNING",
            RunStatus::Succeeded => "SUCCEEDED",
            RunStatus::Failed => "FAILED",
            RunStatus::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "PENDING" => RunStatus::Pending,
            "RUNNING" => RunStatus::Running,
            "SUCCEEDED" => RunStatus::Succeeded,
            "FAILED" => RunStatus::Failed,
            "CANCELLED" => RunStatus::Cancelled,
            other => return Err(format!("unknown run status {other:?}")),
        })
    }
}

/// A stored workflow definition (the orchestrator's DAG, as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    /// Id.
    pub id: WorkflowId,
    /// Unique name.
    pub name: String,
    /// The definition document.
    pub definition: serde_json::Value,
    /// Incremented each time the named workflow is saved again.
    pub version: i64,
    /// When this version was saved.
    pub updated_at: SystemTime,
}

/// A run to create.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    /// The workflow it runs, if any (agent activations have none).
    pub workflow_id: Option<WorkflowId>,
    /// What kind of run (`workflow`, `activation`).
    pub kind: String,
    /// Input document.
    pub input: serde_json::Value,
    /// A second create with the same key returns the existing run.
    pub idempotency_key: Option<String>,
}

/// A run and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Id.
    pub id: RunId,
    /// The workflow it runs.
    pub workflow_id: Option<WorkflowId>,
    /// Kind (`workflow`, `activation`).
    pub kind: String,
    /// Status.
    pub status: RunStatus,
    /// Input document.
    pub input: serde_json::Value,
    /// Output document once succeeded.
    pub output: Option<serde_json::Value>,
    /// Error text once failed.
    pub error: Option<String>,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last change.
    pub updated_at: SystemTime,
    /// When the reaper fails it, once started by [`Store::start_run`].
    pub deadline: Option<SystemTime>,
    /// Steps parked waiting for an approval.
    pub waiting_approvals: u32,
}

/// One step of a run (a DAG node, an agent iteration).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The run it belongs to.
    pub run_id: RunId,
    /// Step name, unique within the run.
    pub name: String,
    /// Status.
    pub status: RunStatus,
    /// Attempts made so far.
    pub attempt: u32,
    /// Input document.
    pub input: serde_json::Value,
    /// Output once succeeded.
    pub output: Option<serde_json::Value>,
    /// Error once failed.
    pub error: Option<String>,
    /// Last change.
    pub updated_at: SystemTime,
    /// A finer state within the status (`WAITING_APPROVAL`, `DECIDED`, `SKIPPED`), see
    /// [`crate::store_flow`].
    pub phase: Option<String>,
    /// Details of the last attempt (executor output).
    pub detail: Option<serde_json::Value>,
    /// The approval document, for steps that asked for one.
    pub approval: Option<serde_json::Value>,
    /// Who holds the claim while `Running`.
    pub lease_owner: Option<String>,
    /// Parents not done yet.
    pub waiting_on: u32,
    /// Earliest next claim (a retry's backoff).
    pub not_before: Option<SystemTime>,
}

/// What to set along with a status change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Output document to store.
    pub output: Option<serde_json::Value>,
    /// Error text to store.
    pub error: Option<String>,
}

/// Errors of a [`Store`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such record.
    #[error("{what} {id} not found")]
    NotFound {
        /// `run`, `workflow`, `step`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A compare-and-set status move found another status.
    #[error("{what} {id} is {actual}, expected one of {expected:?}")]
    Conflict {
        /// `run` or `step`.
        what: &'static str,
        /// Its id.
        id: String,
        /// What it is.
        actual: RunStatus,
        /// What the caller expected.
        expected: Vec<RunStatus>,
    },
    /// A record with this name already exists.
    #[error("{what} {name:?} already exists")]
    Duplicate {
        /// `workflow`, or a record kind.
        what: String,
        /// The name.
        name: String,
    },
    /// An attempt's claim is no longer held (its lease expired and another attempt took the step,
    /// or the run ended), or a parked step was already decided: the change was refused.
    #[error("{what} {id} is stale: {detail}")]
    Stale {
        /// `step`.
        what: &'static str,
        /// `run/step`.
        id: String,
        /// What was found instead.
        detail: String,
    },
    /// The request is malformed.
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Every pooled connection stayed busy past the acquire timeout.
    #[error("{backend} connection pool exhausted: no connection free within {waited:?}")]
    PoolExhausted {
        /// Backend name.
        backend: &'static str,
        /// The acquire timeout.
        waited: Duration,
    },
    /// The backend failed.
    #[error("{backend} store backend failed: {source}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// Whether the operation is worth repeating.
    pub fn retry(&self) -> Retry {
        match self {
            StoreError::NotFound { .. }
            | StoreError::Conflict { .. }
            | StoreError::Duplicate { .. }
            | StoreError::Stale { .. }
            | StoreError::Invalid(_) => Retry::Never,
            StoreError::PoolExhausted { .. } | StoreError::Backend { .. } => {
                Retry::After(Duration::from_millis(250))
            }
        }
    }
}

/// Durable state for the orchestrator and the agent runners.
///
/// Status moves are compare-and-set, so two replicas cannot both start or finish the same run, and a
/// terminal status never changes. Every backend passes `hybridgrid_testkit::store::run_store_suite`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Saves a workflow under its name; saving an existing name bumps its version.
    async fn save_workflow(
        &self,
        name: &str,
        definition: serde_json::Value,
    ) -> Result<Workflow, StoreError>;
    /// A workflow by id.
    async fn workflow(&self, id: &WorkflowId) -> Result<Workflow, StoreError>;
    /// All workflows, by name.
    async fn workflows(&self) -> Result<Vec<Workflow>, StoreError>;
    /// Creates a run in `Pending`; a repeated idempotency key returns the existing run.
    async fn create_run(&self, run: NewRun) -> Result<Run, StoreError>;
    /// A run by id.
    async fn run(&self, id: &RunId) -> Result<Run, StoreError>;
    /// Runs with the given status (all when `None`), newest first, at most `limit`.
    async fn runs(&self, status: Option<RunStatus>, limit: usize) -> Result<Vec<Run>, StoreError>;
    /// Moves a run to `to` if its status is one of `from`; otherwise [`StoreError::Conflict`].
    async fn transition_run(
        &self,
        id: &RunId,
        from: &[RunStatus],
        to: RunStatus,
        set: Transition,
    ) -> Result<Run, StoreError>;
    /// Creates a step in `Pending` (attempt 0), or returns it unchanged if it exists.
    async fn ensure_step(
        &self,
        run: &RunId,
        name: &str,
        input: serde_json::Value,
    ) -> Result<Step, StoreError>;
    /// Moves a step to `to` if its status is one of `from`; moving to `Running` counts an attempt.
    async fn transition_step(
        &self,
        run: &RunId,
        name: &str,
        from: &[RunStatus],
        to: RunStatus,
        set: Transition,
    ) -> Result<Step, StoreError>;
    /// The steps of a run, by name.
    async fn steps(&self, run: &RunId) -> Result<Vec<Step>, StoreError>;

    // --- workflows and records -------------------------------------------------------------

    /// Creates a workflow at version 1; a name in use is [`StoreError::Duplicate`].
    async fn create_workflow(
        &self,
        name: &str,
        definition: serde_json::Value,
    ) -> Result<Workflow, StoreError>;
    /// Replaces a workflow's definition, adding one to its version.
    async fn update_workflow(
        &self,
        id: &WorkflowId,
        definition: serde_json::Value,
    ) -> Result<Workflow, StoreError>;
    /// Runs of one workflow, newest first, at most `limit`.
    async fn workflow_runs(&self, id: &WorkflowId, limit: usize) -> Result<Vec<Run>, StoreError>;
    /// Creates a record; a name in use within `kind` is [`StoreError::Duplicate`].
    async fn create_record(
        &self,
        kind: &str,
        name: &str,
        doc: serde_json::Value,
    ) -> Result<Record, StoreError>;
    /// A record by kind and id.
    async fn record(&self, kind: &str, id: &str) -> Result<Record, StoreError>;
    /// All records of a kind, by name.
    async fn records(&self, kind: &str) -> Result<Vec<Record>, StoreError>;
    /// Replaces a record's name and document, adding one to its version.
    async fn update_record(
        &self,
        kind: &str,
        id: &str,
        name: &str,
        doc: serde_json::Value,
    ) -> Result<Record, StoreError>;
    /// Deletes a record.
    async fn delete_record(&self, kind: &str, id: &str) -> Result<(), StoreError>;

    // --- durable DAG runs --------------------------------------------------------------------

    /// Starts a `Pending` run: `Running` with its deadline, its steps created, events written, in
    /// one transaction. Not `Pending`: [`StoreError::Conflict`].
    async fn start_run(&self, start: RunStart) -> Result<Run, StoreError>;
    /// Claims up to `limit` steps for `owner` for `lease`: `Pending` ones waiting on nothing,
    /// not parked, past their `not_before`, and `Running` ones whose lease expired. Each moves to
    /// `Running` with its attempt counted; no two callers get the same step.
    async fn claim_steps(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Step>, StoreError>;
    /// Extends every lease `owner` holds to `lease` from now; returns how many.
    async fn extend_leases(&self, owner: &str, lease: Duration) -> Result<u64, StoreError>;
    /// Gives back every step `owner` holds (to `Pending`, claimable at once); returns how many.
    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError>;
    /// Ends a claimed attempt (see [`StepCompletion`]) in one transaction.
    async fn complete_step(&self, completion: StepCompletion) -> Result<StepCompleted, StoreError>;
    /// Ends several claimed attempts in one transaction (one commit, so one flush, for all),
    /// then claims up to `claim.limit` ready steps in it. Each completion is judged as
    /// [`Store::complete_step`] judges it, in order; a refused one fails only its own entry. A
    /// backend error leaves nothing of the batch written.
    async fn complete_steps(
        &self,
        batch: Vec<StepCompletion>,
        claim: Option<StepClaim>,
    ) -> Result<StepBatchDone, StoreError>;
    /// The engine's write path in one transaction (one commit, so one flush, for all): creates
    /// and starts the batch's [`RunLaunch`](crate::store_flow::RunLaunch)es (a repeated
    /// idempotency key writes nothing and returns the existing run as a duplicate), ends its
    /// completions as [`Store::complete_steps`] does, then claims up to `claim.limit` ready steps
    /// (the new runs' first steps among them). A refused completion or a refused launch fails
    /// only its own entry; a backend error leaves nothing of the batch written.
    async fn write_batch(&self, batch: FlowBatch) -> Result<FlowBatchDone, StoreError>;
    /// Decides a parked step (see [`StepDecision`]); not parked: [`StoreError::Stale`].
    async fn decide_step(&self, decision: StepDecision) -> Result<Step, StoreError>;
    /// Ends a run from outside (see [`RunFinish`]) in one transaction.
    async fn finish_run(&self, finish: RunFinish) -> Result<Run, StoreError>;
    /// `Running` runs past their deadline with no approval waiting, oldest deadline first.
    async fn overdue_runs(&self, now: SystemTime, limit: usize) -> Result<Vec<Run>, StoreError>;
    /// Steps that asked for an approval (only those still parked when `waiting_only`), newest
    /// first.
    async fn approval_steps(
        &self,
        waiting_only: bool,
        limit: usize,
    ) -> Result<Vec<Step>, StoreError>;
    /// Writes events to the outbox on their own.
    async fn append_outbox(&self, events: Vec<OutboxEvent>) -> Result<(), StoreError>;
    /// Claims up to `limit` outbox entries, oldest first, for `owner` for `lease` (entries whose
    /// claim expired are handed out again).
    async fn claim_outbox(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    /// Removes published outbox entries.
    async fn ack_outbox(&self, seqs: &[i64]) -> Result<(), StoreError>;
}
