//! What the SQL backends share: the statements (one text for both dialects: SQLite accepts `$N`
//! parameters), value conversions, error mapping, and the [`Store`](hybridgrid_core::Store)
//! implementation itself, stamped out once per backend by `impl_sql_store!`.

use hybridgrid_core::store::{RunStatus, StoreError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Columns of a run, in the order every run query returns them.
macro_rules! run_cols {
    () => {
        "id, workflow_id, kind, status, input, output, error, created_at_us, updated_at_us"
    };
}
/// Columns of a step.
macro_rules! step_cols {
    () => {
        "run_id, name, status, attempt, input, output, error, updated_at_us"
    };
}

pub(crate) const SAVE_WORKFLOW: &str = "INSERT INTO workflows (id, name, definition, version, updated_at_us) \
     VALUES ($1, $2, $3, 1, $4) \
     ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, \
         version = workflows.version + 1, updated_at_us = excluded.updated_at_us \
     RETURNING id, name, definition, version, updated_at_us";
pub(crate) const GET_WORKFLOW: &str =
    "SELECT id, name, definition, version, updated_at_us FROM workflows WHERE id = $1";
pub(crate) const LIST_WORKFLOWS: &str =
    "SELECT id, name, definition, version, updated_at_us FROM workflows ORDER BY name";

pub(crate) const CREATE_RUN: &str = concat!(
    "INSERT INTO runs (id, workflow_id, kind, status, input, idempotency_key, created_at_us, updated_at_us) ",
    "VALUES ($1, $2, $3, 'PENDING', $4, $5, $6, $6) ",
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING ",
    run_cols!()
);
pub(crate) const RUN_BY_KEY: &str = concat!(
    "SELECT ",
    run_cols!(),
    " FROM runs WHERE idempotency_key = $1"
);
pub(crate) const GET_RUN: &str = concat!("SELECT ", run_cols!(), " FROM runs WHERE id = $1");
pub(crate) const RUN_STATUS: &str = "SELECT status FROM runs WHERE id = $1";
pub(crate) const LIST_RUNS: &str = concat!(
    "SELECT ",
    run_cols!(),
    " FROM runs ORDER BY seq DESC LIMIT $1"
);
pub(crate) const LIST_RUNS_BY_STATUS: &str = concat!(
    "SELECT ",
    run_cols!(),
    " FROM runs WHERE status = $1 ORDER BY seq DESC LIMIT $2"
);
/// `$1` new status, `$2` output, `$3` error, `$4` now, `$5` id, `$6..$10` allowed statuses.
pub(crate) const TRANSITION_RUN: &str = concat!(
    "UPDATE runs SET status = $1, output = COALESCE($2, output), error = COALESCE($3, error), ",
    "updated_at_us = $4 WHERE id = $5 AND status IN ($6, $7, $8, $9, $10) RETURNING ",
    run_cols!()
);

pub(crate) const ENSURE_STEP: &str = "INSERT INTO steps (run_id, name, status, attempt, input, updated_at_us) \
     VALUES ($1, $2, 'PENDING', 0, $3, $4) ON CONFLICT (run_id, name) DO NOTHING";
pub(crate) const GET_STEP: &str = concat!(
    "SELECT ",
    step_cols!(),
    " FROM steps WHERE run_id = $1 AND name = $2"
);
pub(crate) const STEP_STATUS: &str = "SELECT status FROM steps WHERE run_id = $1 AND name = $2";
pub(crate) const LIST_STEPS: &str = concat!(
    "SELECT ",
    step_cols!(),
    " FROM steps WHERE run_id = $1 ORDER BY name"
);
/// `$1` new status, `$2` output, `$3` error, `$4` now, `$5` attempt increment, `$6` run id,
/// `$7` name, `$8..$12` allowed statuses.
pub(crate) const TRANSITION_STEP: &str = concat!(
    "UPDATE steps SET status = $1, output = COALESCE($2, output), error = COALESCE($3, error), ",
    "updated_at_us = $4, attempt = attempt + $5 ",
    "WHERE run_id = $6 AND name = $7 AND status IN ($8, $9, $10, $11, $12) RETURNING ",
    step_cols!()
);

/// How often a refused compare-and-set is re-tried when the row moved into an allowed status
/// between the update and the look-up that explains the refusal.
pub(crate) const CAS_ATTEMPTS: usize = 3;

/// A value read back from the database that the store could not have written.
#[derive(Debug, thiserror::Error)]
#[error("corrupt {what} row {id}: {detail}")]
pub(crate) struct Corrupt {
    pub(crate) what: &'static str,
    pub(crate) id: String,
    pub(crate) detail: String,
}

/// A client error with what the store was doing (and on what) when it happened.
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {source}")]
pub(crate) struct Context {
    pub(crate) doing: String,
    #[source]
    pub(crate) source: Box<dyn std::error::Error + Send + Sync>,
}

/// Wraps `source` as a [`StoreError::Backend`] that says what was being done.
pub(crate) fn backend_err(
    backend: &'static str,
    doing: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::Backend {
        backend,
        source: Box::new(Context {
            doing: doing.into(),
            source: Box::new(source),
        }),
    }
}

/// Microseconds since the Unix epoch (both schemas store times this way).
pub(crate) fn to_micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// The inverse of [`to_micros`].
pub(crate) fn from_micros(us: i64) -> SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

/// "Now", at the precision the database keeps.
pub(crate) fn now_micros() -> i64 {
    to_micros(SystemTime::now())
}

/// Parses a stored status.
pub(crate) fn parse_status(what: &'static str, id: &str, s: &str) -> Result<RunStatus, Corrupt> {
    s.parse().map_err(|detail| Corrupt {
        what,
        id: id.to_owned(),
        detail,
    })
}

/// The statuses a compare-and-set may move from: the caller's, minus the terminal ones (a terminal
/// status never changes), padded to the five slots of the `IN (...)` list by repeating the first.
/// `None` when nothing is left to move from.
pub(crate) fn allowed_from(from: &[RunStatus]) -> Option<[&'static str; 5]> {
    let mut live = from.iter().copied().filter(|s| !s.is_terminal());
    let first = live.next()?;
    let mut slots = [first.as_str(); 5];
    for (slot, status) in slots.iter_mut().skip(1).zip(live) {
        *slot = status.as_str();
    }
    Some(slots)
}

/// Maps a client error from a query. `what`/`id` name the record a foreign-key failure points at.
pub(crate) fn map_query_err<DB: sqlx::Database>(
    backend: &'static str,
    pool: &sqlx::Pool<DB>,
    doing: String,
    missing: Option<(&'static str, &str)>,
    err: sqlx::Error,
) -> StoreError {
    if let sqlx::Error::PoolTimedOut = err {
        let opts = pool.options();
        let max = opts.get_max_connections();
        let waited = opts.get_acquire_timeout();
        // A full pool with nothing idle is exhaustion; otherwise the pool could not open a
        // connection in time (the server is down or restarting).
        if pool.size() >= max && pool.num_idle() == 0 {
            tracing::warn!(backend, max_connections = max, ?waited, %doing, "store connection pool exhausted");
            return StoreError::PoolExhausted { backend, waited };
        }
        return backend_err(
            backend,
            format!("{doing}: no connection could be opened within {waited:?}"),
            err,
        );
    }
    if let Some(db) = err.as_database_error() {
        if let (sqlx::error::ErrorKind::ForeignKeyViolation, Some((what, id))) =
            (db.kind(), missing)
        {
            return StoreError::NotFound {
                what,
                id: id.to_owned(),
            };
        }
        // PostgreSQL: 22P05 untranslatable_character (a NUL in a JSONB string), 54000 too large.
        if matches!(db.code().as_deref(), Some("22P05") | Some("54000")) {
            return StoreError::Invalid(format!("{doing}: {}", db.message()));
        }
    }
    backend_err(backend, doing, err)
}

/// Implements [`hybridgrid_core::Store`] for `$store` (a struct with `pool: sqlx::Pool<_>`), whose
/// rows are `$row`. One body for both dialects keeps the two backends' behaviour identical.
macro_rules! impl_sql_store {
    ($store:ident, $row:ty) => {
        mod store_impl {
        use super::{$store, BACKEND};
        use $crate::sql::*;
        use hybridgrid_core::ids::{RunId, WorkflowId};
        use hybridgrid_core::store::{NewRun, Run, RunStatus, Step, Store, StoreError, Transition, Workflow};
        use sqlx::Row as _;

        fn workflow_from_row(row: &$row) -> Result<Workflow, sqlx::Error> {
            Ok(Workflow {
                id: WorkflowId::new(row.try_get::<String, _>("id")?),
                name: row.try_get("name")?,
                definition: row.try_get("definition")?,
                version: row.try_get("version")?,
                updated_at: from_micros(row.try_get("updated_at_us")?),
            })
        }

        fn run_from_row(row: &$row) -> Result<Run, sqlx::Error> {
            let id: String = row.try_get("id")?;
            let status: String = row.try_get("status")?;
            Ok(Run {
                status: parse_status("run", &id, &status).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                id: RunId::new(id),
                workflow_id: row.try_get::<Option<String>, _>("workflow_id")?.map(WorkflowId::new),
                kind: row.try_get("kind")?,
                input: row.try_get("input")?,
                output: row.try_get("output")?,
                error: row.try_get("error")?,
                created_at: from_micros(row.try_get("created_at_us")?),
                updated_at: from_micros(row.try_get("updated_at_us")?),
            })
        }

        fn step_from_row(row: &$row) -> Result<Step, sqlx::Error> {
            let run_id: String = row.try_get("run_id")?;
            let name: String = row.try_get("name")?;
            let status: String = row.try_get("status")?;
            let attempt: i64 = row.try_get("attempt")?;
            let key = format!("{run_id}/{name}");
            Ok(Step {
                status: parse_status("step", &key, &status).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                attempt: u32::try_from(attempt).map_err(|e| sqlx::Error::Decode(Box::new(Corrupt {
                    what: "step",
                    id: key.clone(),
                    detail: format!("attempt {attempt}: {e}"),
                })))?,
                run_id: RunId::new(run_id),
                name,
                input: row.try_get("input")?,
                output: row.try_get("output")?,
                error: row.try_get("error")?,
                updated_at: from_micros(row.try_get("updated_at_us")?),
            })
        }

        impl $store {
            fn err(&self, doing: String, missing: Option<(&'static str, &str)>, e: sqlx::Error) -> StoreError {
                map_query_err(BACKEND, &self.pool, doing, missing, e)
            }

            /// Explains a refused run transition: `Ok(None)` if the run now is in an allowed status
            /// (the caller tries again), else the `NotFound` or `Conflict` error.
            async fn explain_run(&self, id: &RunId, from: &[RunStatus]) -> Result<Option<StoreError>, StoreError> {
                let row = sqlx::query(RUN_STATUS)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.err(format!("reading status of run {id}"), None, e))?;
                let Some(row) = row else {
                    return Ok(Some(StoreError::NotFound { what: "run", id: id.to_string() }));
                };
                let status: String = row.try_get(0).map_err(|e| self.err(format!("reading status of run {id}"), None, e))?;
                let actual = parse_status("run", id.as_str(), &status).map_err(|e| backend_err(BACKEND, "decoding run status", e))?;
                if !actual.is_terminal() && from.contains(&actual) {
                    return Ok(None);
                }
                Ok(Some(StoreError::Conflict { what: "run", id: id.to_string(), actual, expected: from.to_vec() }))
            }

            async fn explain_step(&self, run: &RunId, name: &str, from: &[RunStatus]) -> Result<Option<StoreError>, StoreError> {
                let key = format!("{run}/{name}");
                let row = sqlx::query(STEP_STATUS)
                    .bind(run.as_str())
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.err(format!("reading status of step {key}"), None, e))?;
                let Some(row) = row else {
                    return Ok(Some(StoreError::NotFound { what: "step", id: key }));
                };
                let status: String = row.try_get(0).map_err(|e| self.err(format!("reading status of step {key}"), None, e))?;
                let actual = parse_status("step", &key, &status).map_err(|e| backend_err(BACKEND, "decoding step status", e))?;
                if !actual.is_terminal() && from.contains(&actual) {
                    return Ok(None);
                }
                Ok(Some(StoreError::Conflict { what: "step", id: key, actual, expected: from.to_vec() }))
            }

            async fn require_run(&self, id: &RunId) -> Result<(), StoreError> {
                let found = sqlx::query(RUN_STATUS)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.err(format!("looking up run {id}"), None, e))?;
                match found {
                    Some(_) => Ok(()),
                    None => Err(StoreError::NotFound { what: "run", id: id.to_string() }),
                }
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            async fn save_workflow(&self, name: &str, definition: serde_json::Value) -> Result<Workflow, StoreError> {
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
                let wf = workflow_from_row(&row).map_err(|e| self.err(format!("decoding workflow {name:?}"), None, e))?;
                tracing::debug!(backend = BACKEND, workflow = %wf.id, name, version = wf.version, "workflow saved");
                Ok(wf)
            }

            async fn workflow(&self, id: &WorkflowId) -> Result<Workflow, StoreError> {
                let row = sqlx::query(GET_WORKFLOW)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.err(format!("reading workflow {id}"), None, e))?
                    .ok_or_else(|| StoreError::NotFound { what: "workflow", id: id.to_string() })?;
                workflow_from_row(&row).map_err(|e| self.err(format!("decoding workflow {id}"), None, e))
            }

            async fn workflows(&self) -> Result<Vec<Workflow>, StoreError> {
                let rows = sqlx::query(LIST_WORKFLOWS)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| self.err("listing workflows".into(), None, e))?;
                rows.iter()
                    .map(|r| workflow_from_row(r).map_err(|e| self.err("decoding workflows".into(), None, e)))
                    .collect()
            }

            async fn create_run(&self, run: NewRun) -> Result<Run, StoreError> {
                if run.kind.trim().is_empty() {
                    return Err(StoreError::Invalid("run kind is empty".into()));
                }
                let wf = run.workflow_id.as_ref().map(|w| w.as_str().to_owned()).unwrap_or_default();
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
                        let r = run_from_row(&row).map_err(|e| self.err(format!("decoding run {id}"), None, e))?;
                        tracing::debug!(backend = BACKEND, run = %r.id, kind = %r.kind, "run created");
                        return Ok(r);
                    }
                    // The idempotency key exists: return that run.
                    let Some(key) = run.idempotency_key.as_deref() else { continue };
                    let existing = sqlx::query(RUN_BY_KEY)
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| self.err(format!("reading run with idempotency key {key:?}"), None, e))?;
                    if let Some(row) = existing {
                        let r = run_from_row(&row).map_err(|e| self.err(format!("decoding run with key {key:?}"), None, e))?;
                        tracing::debug!(backend = BACKEND, run = %r.id, key, "run exists for idempotency key");
                        return Ok(r);
                    }
                }
                Err(backend_err(BACKEND, "creating run", Corrupt {
                    what: "run",
                    id: run.idempotency_key.unwrap_or_default(),
                    detail: format!("insert conflicted {CAS_ATTEMPTS} times but no run holds the key"),
                }))
            }

            async fn run(&self, id: &RunId) -> Result<Run, StoreError> {
                let row = sqlx::query(GET_RUN)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.err(format!("reading run {id}"), None, e))?
                    .ok_or_else(|| StoreError::NotFound { what: "run", id: id.to_string() })?;
                run_from_row(&row).map_err(|e| self.err(format!("decoding run {id}"), None, e))
            }

            async fn runs(&self, status: Option<RunStatus>, limit: usize) -> Result<Vec<Run>, StoreError> {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let query = match status {
                    Some(s) => sqlx::query(LIST_RUNS_BY_STATUS).bind(s.as_str()).bind(limit),
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

            async fn transition_run(&self, id: &RunId, from: &[RunStatus], to: RunStatus, set: Transition) -> Result<Run, StoreError> {
                if from.is_empty() {
                    return Err(StoreError::Invalid(format!("transition of run {id} to {to}: no status to move from")));
                }
                for _ in 0..CAS_ATTEMPTS {
                    if let Some(allowed) = allowed_from(from) {
                        let row = sqlx::query(TRANSITION_RUN)
                            .bind(to.as_str())
                            .bind(set.output.as_ref())
                            .bind(set.error.as_deref())
                            .bind(now_micros())
                            .bind(id.as_str())
                            .bind(allowed[0]).bind(allowed[1]).bind(allowed[2]).bind(allowed[3]).bind(allowed[4])
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(|e| self.err(format!("moving run {id} to {to}"), None, e))?;
                        if let Some(row) = row {
                            let r = run_from_row(&row).map_err(|e| self.err(format!("decoding run {id}"), None, e))?;
                            tracing::debug!(backend = BACKEND, run = %id, to = %to, "run transitioned");
                            return Ok(r);
                        }
                    }
                    if let Some(refusal) = self.explain_run(id, from).await? {
                        tracing::debug!(backend = BACKEND, run = %id, to = %to, error = %refusal, "run transition refused");
                        return Err(refusal);
                    }
                }
                Err(backend_err(BACKEND, format!("moving run {id} to {to}"), Corrupt {
                    what: "run",
                    id: id.to_string(),
                    detail: format!("status kept changing under {CAS_ATTEMPTS} compare-and-set attempts"),
                }))
            }

            async fn ensure_step(&self, run: &RunId, name: &str, input: serde_json::Value) -> Result<Step, StoreError> {
                if name.trim().is_empty() {
                    return Err(StoreError::Invalid(format!("step name is empty (run {run})")));
                }
                sqlx::query(ENSURE_STEP)
                    .bind(run.as_str())
                    .bind(name)
                    .bind(&input)
                    .bind(now_micros())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.err(format!("creating step {run}/{name}"), Some(("run", run.as_str())), e))?;
                let row = sqlx::query(GET_STEP)
                    .bind(run.as_str())
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.err(format!("reading step {run}/{name}"), None, e))?
                    .ok_or_else(|| StoreError::NotFound { what: "step", id: format!("{run}/{name}") })?;
                step_from_row(&row).map_err(|e| self.err(format!("decoding step {run}/{name}"), None, e))
            }

            async fn transition_step(&self, run: &RunId, name: &str, from: &[RunStatus], to: RunStatus, set: Transition) -> Result<Step, StoreError> {
                if from.is_empty() {
                    return Err(StoreError::Invalid(format!("transition of step {run}/{name} to {to}: no status to move from")));
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
                            .bind(allowed[0]).bind(allowed[1]).bind(allowed[2]).bind(allowed[3]).bind(allowed[4])
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(|e| self.err(format!("moving step {run}/{name} to {to}"), None, e))?;
                        if let Some(row) = row {
                            let s = step_from_row(&row).map_err(|e| self.err(format!("decoding step {run}/{name}"), None, e))?;
                            tracing::debug!(backend = BACKEND, run = %run, step = name, to = %to, attempt = s.attempt, "step transitioned");
                            return Ok(s);
                        }
                    }
                    if let Some(refusal) = self.explain_step(run, name, from).await? {
                        return Err(refusal);
                    }
                }
                Err(backend_err(BACKEND, format!("moving step {run}/{name} to {to}"), Corrupt {
                    what: "step",
                    id: format!("{run}/{name}"),
                    detail: format!("status kept changing under {CAS_ATTEMPTS} compare-and-set attempts"),
                }))
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
                    .map(|r| step_from_row(r).map_err(|e| self.err(format!("decoding steps of run {run}"), None, e)))
                    .collect()
            }
        }
        }
    };
}
pub(crate) use impl_sql_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip_both_sides_of_the_epoch() {
        for us in [0_i64, 1, 1_763_850_000_123_456, -1, -86_400_000_000] {
            assert_eq!(to_micros(from_micros(us)), us);
        }
    }

    #[test]
    fn allowed_from_drops_terminal_and_pads() {
        use RunStatus::*;
        assert_eq!(allowed_from(&[Succeeded, Failed, Cancelled]), None);
        assert_eq!(allowed_from(&[]), None);
        assert_eq!(allowed_from(&[Succeeded, Running]), Some(["RUNNING"; 5]));
        assert_eq!(
            allowed_from(&[Pending, Failed, Running]),
            Some(["PENDING", "RUNNING", "PENDING", "PENDING", "PENDING"])
        );
    }
}
