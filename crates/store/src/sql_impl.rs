// The `Store` implementation shared by the SQL backends. Not a module of its own: `impl_sql_store!`
// includes it once per backend, inside a module where `StoreTy` is the backend's store type (with
// fields `pool` and `target`) and `Row` its row type. (rustfmt does not reach included files: run `rustfmt --edition 2024` on it.)

use super::BACKEND;
use crate::sql::*;
use hybridgrid_core::ids::{RunId, WorkflowId};
use hybridgrid_core::store::{
    NewRun, Run, RunStatus, Step, Store, StoreError, Transition, Workflow,
};
use hybridgrid_core::store_flow::{
    OutboxEvent, OutboxMessage, Record, RunFinish, RunStart, StepCompleted, StepCompletion,
    StepDecision,
};
use sqlx::Row as _;
use std::time::{Duration, SystemTime};

fn workflow_from_row(row: &Row) -> Result<Workflow, sqlx::Error> {
    Ok(Workflow {
        id: WorkflowId::new(row.try_get::<String, _>("id")?),
        name: row.try_get("name")?,
        definition: row.try_get("definition")?,
        version: row.try_get("version")?,
        updated_at: from_micros(row.try_get("updated_at_us")?),
    })
}

fn run_from_row(row: &Row) -> Result<Run, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    Ok(Run {
        status: parse_status("run", &id, &status).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        id: RunId::new(id),
        workflow_id: row
            .try_get::<Option<String>, _>("workflow_id")?
            .map(WorkflowId::new),
        kind: row.try_get("kind")?,
        input: if row.try_column("input").is_ok() {
            row.try_get("input")?
        } else {
            serde_json::Value::Null
        },
        output: row.try_get("output")?,
        error: row.try_get("error")?,
        created_at: from_micros(row.try_get("created_at_us")?),
        updated_at: from_micros(row.try_get("updated_at_us")?),
        deadline: row
            .try_get::<Option<i64>, _>("deadline_us")?
            .map(from_micros),
        waiting_approvals: count(row.try_get("waiting_approvals")?),
    })
}

fn step_from_row(row: &Row) -> Result<Step, sqlx::Error> {
    let run_id: String = row.try_get("run_id")?;
    let name: String = row.try_get("name")?;
    let status: String = row.try_get("status")?;
    let attempt: i64 = row.try_get("attempt")?;
    let key = format!("{run_id}/{name}");
    Ok(Step {
        status: parse_status("step", &key, &status)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        attempt: u32::try_from(attempt).map_err(|e| {
            sqlx::Error::Decode(Box::new(Anomaly {
                what: "step",
                id: key.clone(),
                detail: format!("attempt {attempt}: {e}"),
            }))
        })?,
        run_id: RunId::new(run_id),
        name,
        input: row.try_get("input")?,
        output: row.try_get("output")?,
        error: row.try_get("error")?,
        updated_at: from_micros(row.try_get("updated_at_us")?),
        phase: row.try_get("phase")?,
        detail: row.try_get("detail")?,
        approval: row.try_get("approval")?,
        lease_owner: row.try_get("lease_owner")?,
        waiting_on: count(row.try_get("waiting_on")?),
        not_before: row
            .try_get::<Option<i64>, _>("not_before_us")?
            .map(from_micros),
    })
}

/// A stored counter as `u32` (never negative by construction; clamped if it were).
fn count(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

impl StoreTy {
    fn err(
        &self,
        doing: String,
        missing: Option<(&'static str, &str)>,
        e: sqlx::Error,
    ) -> StoreError {
        map_query_err(BACKEND, &self.pool, &self.target, doing, missing, e)
    }

    /// Explains a refused run transition: `Ok(None)` if the run now is in an allowed status
    /// (the caller tries again), else the `NotFound` or `Conflict` error.
    async fn explain_run(
        &self,
        id: &RunId,
        from: &[RunStatus],
    ) -> Result<Option<StoreError>, StoreError> {
        let row = sqlx::query(RUN_STATUS)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(format!("reading status of run {id}"), None, e))?;
        let Some(row) = row else {
            return Ok(Some(StoreError::NotFound {
                what: "run",
                id: id.to_string(),
            }));
        };
        let status: String = row
            .try_get(0)
            .map_err(|e| self.err(format!("reading status of run {id}"), None, e))?;
        let actual = parse_status("run", id.as_str(), &status)
            .map_err(|e| backend_err(BACKEND, "decoding run status", e))?;
        if !actual.is_terminal() && from.contains(&actual) {
            return Ok(None);
        }
        Ok(Some(StoreError::Conflict {
            what: "run",
            id: id.to_string(),
            actual,
            expected: from.to_vec(),
        }))
    }

    async fn explain_step(
        &self,
        run: &RunId,
        name: &str,
        from: &[RunStatus],
    ) -> Result<Option<StoreError>, StoreError> {
        let key = format!("{run}/{name}");
        let row = sqlx::query(STEP_STATUS)
            .bind(run.as_str())
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(format!("reading status of step {key}"), None, e))?;
        let Some(row) = row else {
            return Ok(Some(StoreError::NotFound {
                what: "step",
                id: key,
            }));
        };
        let status: String = row
            .try_get(0)
            .map_err(|e| self.err(format!("reading status of step {key}"), None, e))?;
        let actual = parse_status("step", &key, &status)
            .map_err(|e| backend_err(BACKEND, "decoding step status", e))?;
        if !actual.is_terminal() && from.contains(&actual) {
            return Ok(None);
        }
        Ok(Some(StoreError::Conflict {
            what: "step",
            id: key,
            actual,
            expected: from.to_vec(),
        }))
    }

    async fn require_run(&self, id: &RunId) -> Result<(), StoreError> {
        let found = sqlx::query(RUN_STATUS)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(format!("looking up run {id}"), None, e))?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound {
                what: "run",
                id: id.to_string(),
            }),
        }
    }
}

#[async_trait::async_trait]
impl Store for StoreTy {
    async fn save_workflow(
        &self,
        name: &str,
        definition: serde_json::Value,
    ) -> Result<Workflow, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("workflow name is empty".into()));
        }
        let row = sqlx::query(SAVE_WORKFLOW)
            .bind(WorkflowId::random().as_str())
            .bind(name)
            .bind(&definition)
            .bind(now_micros())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(format!("saving workflow {name:?}"), None, e))?;
        let wf = workflow_from_row(&row)
            .map_err(|e| self.err(format!("decoding workflow {name:?}"), None, e))?;
        tracing::debug!(backend = BACKEND, workflow = %wf.id, name, version = wf.version, "workflow saved");
        Ok(wf)
    }

    async fn workflow(&self, id: &WorkflowId) -> Result<Workflow, StoreError> {
        let row = sqlx::query(GET_WORKFLOW)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(format!("reading workflow {id}"), None, e))?
            .ok_or_else(|| StoreError::NotFound {
                what: "workflow",
                id: id.to_string(),
            })?;
        workflow_from_row(&row).map_err(|e| self.err(format!("decoding workflow {id}"), None, e))
    }

    async fn workflows(&self) -> Result<Vec<Workflow>, StoreError> {
        let rows = sqlx::query(LIST_WORKFLOWS)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("listing workflows".into(), None, e))?;
        rows.iter()
            .map(|r| {
                workflow_from_row(r).map_err(|e| self.err("decoding workflows".into(), None, e))
            })
            .collect()
    }

    async fn create_run(&self, run: NewRun) -> Result<Run, StoreError> {
        if run.kind.trim().is_empty() {
            return Err(StoreError::Invalid("run kind is empty".into()));
        }
        let wf = run
            .workflow_id
            .as_ref()
            .map(|w| w.as_str().to_owned())
            .unwrap_or_default();
        let missing = run.workflow_id.as_ref().map(|_| ("workflow", wf.as_str()));
        for _ in 0..CAS_ATTEMPTS {
            let id = RunId::random();
            let created = sqlx::query(CREATE_RUN)
                .bind(id.as_str())
                .bind(run.workflow_id.as_ref().map(|w| w.as_str()))
                .bind(run.kind.as_str())
                .bind(&run.input)
                .bind(run.idempotency_key.as_deref())
                .bind(now_micros())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.err(format!("creating {} run", run.kind), missing, e))?;
            if let Some(row) = created {
                let r = run_from_row(&row)
                    .map_err(|e| self.err(format!("decoding run {id}"), None, e))?;
                tracing::debug!(backend = BACKEND, run = %r.id, kind = %r.kind, "run created");
                return Ok(r);
            }
            // The idempotency key exists: return that run.
            let Some(key) = run.idempotency_key.as_deref() else {
                continue;
            };
            let existing = sqlx::query(RUN_BY_KEY)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| {
                    self.err(format!("reading run with idempotency key {key:?}"), None, e)
                })?;
            if let Some(row) = existing {
                let r = run_from_row(&row)
                    .map_err(|e| self.err(format!("decoding run with key {key:?}"), None, e))?;
                tracing::debug!(backend = BACKEND, run = %r.id, key, "run exists for idempotency key");
                return Ok(r);
            }
        }
        Err(backend_err(
            BACKEND,
            "creating run",
            Anomaly {
                what: "run",
                id: run.idempotency_key.unwrap_or_default(),
                detail: format!("insert conflicted {CAS_ATTEMPTS} times but no run holds the key"),
            },
        ))
    }

    async fn run(&self, id: &RunId) -> Result<Run, StoreError> {
        let row = sqlx::query(GET_RUN)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(format!("reading run {id}"), None, e))?
            .ok_or_else(|| StoreError::NotFound {
                what: "run",
                id: id.to_string(),
            })?;
        run_from_row(&row).map_err(|e| self.err(format!("decoding run {id}"), None, e))
    }

    async fn runs(&self, status: Option<RunStatus>, limit: usize) -> Result<Vec<Run>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let query = match status {
            Some(s) => sqlx::query(LIST_RUNS_BY_STATUS)
                .bind(s.as_str())
                .bind(limit),
            None => sqlx::query(LIST_RUNS).bind(limit),
        };
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(format!("listing runs (status {status:?})"), None, e))?;
        rows.iter()
            .map(|r| run_from_row(r).map_err(|e| self.err("decoding runs".into(), None, e)))
            .collect()
    }

    async fn transition_run(
        &self,
        id: &RunId,
        from: &[RunStatus],
        to: RunStatus,
        set: Transition,
    ) -> Result<Run, StoreError> {
        if from.is_empty() {
            return Err(StoreError::Invalid(format!(
                "transition of run {id} to {to}: no status to move from"
            )));
        }
        for _ in 0..CAS_ATTEMPTS {
            if let Some(allowed) = allowed_from(from) {
                let row = sqlx::query(TRANSITION_RUN)
                    .bind(to.as_str())
                    .bind(set.output.as_ref())
                    .bind(set.error.as_deref())
                    .bind(now_micros())
                    .bind(id.as_str())
                    .bind(allowed[0])
                    .bind(allowed[1])
                    .bind(allowed[2])
                    .bind(allowed[3])
                    .bind(allowed[4])
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.err(format!("moving run {id} to {to}"), None, e))?;
                if let Some(row) = row {
                    let r = run_from_row(&row)
                        .map_err(|e| self.err(format!("decoding run {id}"), None, e))?;
                    tracing::debug!(backend = BACKEND, run = %id, to = %to, "run transitioned");
                    return Ok(r);
                }
            }
            if let Some(refusal) = self.explain_run(id, from).await? {
                tracing::debug!(backend = BACKEND, run = %id, to = %to, error = %refusal, "run transition refused");
                return Err(refusal);
            }
        }
        Err(backend_err(
            BACKEND,
            format!("moving run {id} to {to}"),
            Anomaly {
                what: "run",
                id: id.to_string(),
                detail: format!(
                    "status kept changing under {CAS_ATTEMPTS} compare-and-set attempts"
                ),
            },
        ))
    }

    async fn ensure_step(
        &self,
        run: &RunId,
        name: &str,
        input: serde_json::Value,
    ) -> Result<Step, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid(format!(
                "step name is empty (run {run})"
            )));
        }
        sqlx::query(ENSURE_STEP)
            .bind(run.as_str())
            .bind(name)
            .bind(&input)
            .bind(now_micros())
            .execute(&self.pool)
            .await
            .map_err(|e| {
                self.err(
                    format!("creating step {run}/{name}"),
                    Some(("run", run.as_str())),
                    e,
                )
            })?;
        let row = sqlx::query(GET_STEP)
            .bind(run.as_str())
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(format!("reading step {run}/{name}"), None, e))?
            .ok_or_else(|| StoreError::NotFound {
                what: "step",
                id: format!("{run}/{name}"),
            })?;
        step_from_row(&row).map_err(|e| self.err(format!("decoding step {run}/{name}"), None, e))
    }

    async fn transition_step(
        &self,
        run: &RunId,
        name: &str,
        from: &[RunStatus],
        to: RunStatus,
        set: Transition,
    ) -> Result<Step, StoreError> {
        if from.is_empty() {
            return Err(StoreError::Invalid(format!(
                "transition of step {run}/{name} to {to}: no status to move from"
            )));
        }
        let attempt_inc: i64 = if to == RunStatus::Running { 1 } else { 0 };
        for _ in 0..CAS_ATTEMPTS {
            if let Some(allowed) = allowed_from(from) {
                let row = sqlx::query(TRANSITION_STEP)
                    .bind(to.as_str())
                    .bind(set.output.as_ref())
                    .bind(set.error.as_deref())
                    .bind(now_micros())
                    .bind(attempt_inc)
                    .bind(run.as_str())
                    .bind(name)
                    .bind(allowed[0])
                    .bind(allowed[1])
                    .bind(allowed[2])
                    .bind(allowed[3])
                    .bind(allowed[4])
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.err(format!("moving step {run}/{name} to {to}"), None, e))?;
                if let Some(row) = row {
                    let s = step_from_row(&row)
                        .map_err(|e| self.err(format!("decoding step {run}/{name}"), None, e))?;
                    tracing::debug!(backend = BACKEND, run = %run, step = name, to = %to, attempt = s.attempt, "step transitioned");
                    return Ok(s);
                }
            }
            if let Some(refusal) = self.explain_step(run, name, from).await? {
                return Err(refusal);
            }
        }
        Err(backend_err(
            BACKEND,
            format!("moving step {run}/{name} to {to}"),
            Anomaly {
                what: "step",
                id: format!("{run}/{name}"),
                detail: format!(
                    "status kept changing under {CAS_ATTEMPTS} compare-and-set attempts"
                ),
            },
        ))
    }

    async fn steps(&self, run: &RunId) -> Result<Vec<Step>, StoreError> {
        let rows = sqlx::query(LIST_STEPS)
            .bind(run.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(format!("listing steps of run {run}"), None, e))?;
        if rows.is_empty() {
            self.require_run(run).await?;
        }
        rows.iter()
            .map(|r| {
                step_from_row(r)
                    .map_err(|e| self.err(format!("decoding steps of run {run}"), None, e))
            })
            .collect()
    }

    async fn create_workflow(
        &self,
        name: &str,
        definition: serde_json::Value,
    ) -> Result<Workflow, StoreError> {
        self.f_create_workflow(name, definition).await
    }
    async fn update_workflow(
        &self,
        id: &WorkflowId,
        definition: serde_json::Value,
    ) -> Result<Workflow, StoreError> {
        self.f_update_workflow(id, definition).await
    }
    async fn workflow_runs(&self, id: &WorkflowId, limit: usize) -> Result<Vec<Run>, StoreError> {
        self.f_workflow_runs(id, limit).await
    }
    async fn create_record(
        &self,
        kind: &str,
        name: &str,
        doc: serde_json::Value,
    ) -> Result<Record, StoreError> {
        self.f_create_record(kind, name, doc).await
    }
    async fn record(&self, kind: &str, id: &str) -> Result<Record, StoreError> {
        self.f_record(kind, id).await
    }
    async fn records(&self, kind: &str) -> Result<Vec<Record>, StoreError> {
        self.f_records(kind).await
    }
    async fn update_record(
        &self,
        kind: &str,
        id: &str,
        name: &str,
        doc: serde_json::Value,
    ) -> Result<Record, StoreError> {
        self.f_update_record(kind, id, name, doc).await
    }
    async fn delete_record(&self, kind: &str, id: &str) -> Result<(), StoreError> {
        self.f_delete_record(kind, id).await
    }
    async fn start_run(&self, start: RunStart) -> Result<Run, StoreError> {
        self.f_start_run(start).await
    }
    async fn claim_steps(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Step>, StoreError> {
        self.f_claim_steps(owner, lease, limit).await
    }
    async fn extend_leases(&self, owner: &str, lease: Duration) -> Result<u64, StoreError> {
        self.f_extend_leases(owner, lease).await
    }
    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        self.f_release_leases(owner).await
    }
    async fn complete_step(&self, completion: StepCompletion) -> Result<StepCompleted, StoreError> {
        self.f_complete_step(completion).await
    }
    async fn complete_steps(
        &self,
        batch: Vec<StepCompletion>,
        claim: Option<hybridgrid_core::store_flow::StepClaim>,
    ) -> Result<hybridgrid_core::store_flow::StepBatchDone, StoreError> {
        self.f_complete_steps(batch, claim).await
    }
    async fn write_batch(
        &self,
        batch: hybridgrid_core::store_flow::FlowBatch,
    ) -> Result<hybridgrid_core::store_flow::FlowBatchDone, StoreError> {
        self.f_write_batch(batch).await
    }
    async fn decide_step(&self, decision: StepDecision) -> Result<Step, StoreError> {
        self.f_decide_step(decision).await
    }
    async fn finish_run(&self, finish: RunFinish) -> Result<Run, StoreError> {
        self.f_finish_run(finish).await
    }
    async fn overdue_runs(&self, now: SystemTime, limit: usize) -> Result<Vec<Run>, StoreError> {
        self.f_overdue_runs(now, limit).await
    }
    async fn approval_steps(
        &self,
        waiting_only: bool,
        limit: usize,
    ) -> Result<Vec<Step>, StoreError> {
        self.f_approval_steps(waiting_only, limit).await
    }
    async fn append_outbox(&self, events: Vec<OutboxEvent>) -> Result<(), StoreError> {
        self.f_append_outbox(events).await
    }
    async fn claim_outbox(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.f_claim_outbox(owner, lease, limit).await
    }
    async fn ack_outbox(&self, seqs: &[i64]) -> Result<(), StoreError> {
        self.f_ack_outbox(seqs).await
    }
}

include!("sql_flow_impl.rs");
include!("sql_flow_steps.rs");
include!("sql_flow_launch.rs");
