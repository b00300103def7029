//! What the SQL backends share: the statements (one text for both dialects: SQLite accepts `$N`
//! parameters), value conversions, error mapping, and the [`Store`](hybridgrid_core::Store)
//! implementation itself, stamped out once per backend by `impl_sql_store!`.

use hybridgrid_core::store::{RunStatus, StoreError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Columns of a run, in the order every run query returns them.
macro_rules! run_cols {
    () => {
        "id, workflow_id, kind, status, input, output, error, created_at_us, updated_at_us, deadline_us, waiting_approvals"
    };
}
/// Columns of a step.
macro_rules! step_cols {
    () => {
        "run_id, name, status, attempt, input, output, error, updated_at_us, phase, detail, approval, lease_owner, waiting_on, not_before_us"
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

// --- durable DAG runs (see hybridgrid_core::store_flow) ------------------------------------

macro_rules! record_cols {
    () => {
        "kind, id, name, doc, version, created_at_us, updated_at_us"
    };
}

pub(crate) const CREATE_WORKFLOW: &str = "INSERT INTO workflows (id, name, definition, version, updated_at_us) \
     VALUES ($1, $2, $3, 1, $4) ON CONFLICT (name) DO NOTHING \
     RETURNING id, name, definition, version, updated_at_us";
pub(crate) const UPDATE_WORKFLOW: &str = "UPDATE workflows SET definition = $1, version = version + 1, \
     updated_at_us = $2 WHERE id = $3 RETURNING id, name, definition, version, updated_at_us";
pub(crate) const WORKFLOW_RUNS: &str = concat!(
    "SELECT ",
    run_cols!(),
    " FROM runs WHERE workflow_id = $1 ORDER BY seq DESC LIMIT $2"
);
pub(crate) const CREATE_RECORD: &str = concat!(
    "INSERT INTO records (kind, id, name, doc, version, created_at_us, updated_at_us) ",
    "VALUES ($1, $2, $3, $4, 1, $5, $5) ON CONFLICT (kind, name) DO NOTHING RETURNING ",
    record_cols!()
);
pub(crate) const GET_RECORD: &str = concat!(
    "SELECT ",
    record_cols!(),
    " FROM records WHERE kind = $1 AND id = $2"
);
pub(crate) const LIST_RECORDS: &str = concat!(
    "SELECT ",
    record_cols!(),
    " FROM records WHERE kind = $1 ORDER BY name"
);
pub(crate) const UPDATE_RECORD: &str = concat!(
    "UPDATE records SET name = $1, doc = $2, version = version + 1, updated_at_us = $3 ",
    "WHERE kind = $4 AND id = $5 RETURNING ",
    record_cols!()
);
pub(crate) const DELETE_RECORD: &str = "DELETE FROM records WHERE kind = $1 AND id = $2";

/// `$1` deadline, `$2` open steps, `$3` now, `$4` id.
pub(crate) const START_RUN: &str = concat!(
    "UPDATE runs SET status = 'RUNNING', deadline_us = $1, steps_open = $2, updated_at_us = $3 ",
    "WHERE id = $4 AND status = 'PENDING' RETURNING ",
    run_cols!()
);
/// `$1` status, `$2` output, `$3` error, `$4` detail, `$5` phase, `$6` approval, `$7` not before,
/// `$8` now, `$9` run, `$10` name, `$11` owner, `$12` attempt.
pub(crate) const COMPLETE_STEP: &str = concat!(
    "UPDATE steps SET status = $1, output = COALESCE($2, output), error = $3, ",
    "detail = COALESCE($4, detail), phase = COALESCE($5, phase), approval = COALESCE($6, approval), ",
    "not_before_us = $7, lease_owner = NULL, lease_until_us = NULL, updated_at_us = $8 ",
    "WHERE run_id = $9 AND name = $10 AND status = 'RUNNING' AND lease_owner = $11 AND attempt = $12 ",
    "RETURNING ",
    step_cols!()
);
pub(crate) const FAIL_RUN: &str = "UPDATE runs SET status = 'FAILED', error = $1, waiting_approvals = 0, \
     updated_at_us = $2 WHERE id = $3 AND status = 'RUNNING'";
/// `$1` reason, `$2` now, `$3` run.
pub(crate) const SKIP_PENDING: &str = "UPDATE steps SET status = 'CANCELLED', phase = 'SKIPPED', \
     error = COALESCE(error, $1), updated_at_us = $2 WHERE run_id = $3 AND status = 'PENDING'";
pub(crate) const SKIP_OPEN: &str = "UPDATE steps SET status = 'CANCELLED', phase = 'SKIPPED', \
     error = COALESCE(error, $1), lease_owner = NULL, lease_until_us = NULL, updated_at_us = $2 \
     WHERE run_id = $3 AND status IN ('PENDING', 'RUNNING')";
pub(crate) const PARK_RUN: &str = "UPDATE runs SET waiting_approvals = waiting_approvals + 1, \
     updated_at_us = $1 WHERE id = $2";
/// `$1` approval, `$2` now, `$3` run, `$4` name.
pub(crate) const DECIDE_STEP: &str = concat!(
    "UPDATE steps SET phase = 'DECIDED', approval = $1, updated_at_us = $2 ",
    "WHERE run_id = $3 AND name = $4 AND status = 'PENDING' AND phase = 'WAITING_APPROVAL' RETURNING ",
    step_cols!()
);
/// `$1` deadline extension (µs), `$2` now, `$3` run.
pub(crate) const UNPARK_RUN: &str = "UPDATE runs SET \
     waiting_approvals = CASE WHEN waiting_approvals > 0 THEN waiting_approvals - 1 ELSE 0 END, \
     deadline_us = deadline_us + $1, updated_at_us = $2 WHERE id = $3";
/// `$1` to, `$2` error, `$3` now, `$4` id, `$5..$9` allowed statuses.
pub(crate) const FINISH_RUN: &str = concat!(
    "UPDATE runs SET status = $1, error = $2, waiting_approvals = 0, updated_at_us = $3 ",
    "WHERE id = $4 AND status IN ($5, $6, $7, $8, $9) RETURNING ",
    run_cols!()
);
pub(crate) const OVERDUE_RUNS: &str = concat!(
    "SELECT ",
    run_cols!(),
    " FROM runs WHERE status = 'RUNNING' AND deadline_us < $1 AND waiting_approvals = 0 ",
    "ORDER BY deadline_us LIMIT $2"
);
pub(crate) const APPROVAL_STEPS: &str = concat!(
    "SELECT ",
    step_cols!(),
    " FROM steps WHERE approval IS NOT NULL ORDER BY updated_at_us DESC LIMIT $1"
);
pub(crate) const WAITING_APPROVAL_STEPS: &str = concat!(
    "SELECT ",
    step_cols!(),
    " FROM steps WHERE approval IS NOT NULL AND status = 'PENDING' AND phase = 'WAITING_APPROVAL' ",
    "ORDER BY updated_at_us DESC LIMIT $1"
);
pub(crate) const EXTEND_LEASES: &str =
    "UPDATE steps SET lease_until_us = $1 WHERE status = 'RUNNING' AND lease_owner = $2";
pub(crate) const RELEASE_LEASES: &str = "UPDATE steps SET status = 'PENDING', lease_owner = NULL, \
     lease_until_us = NULL, updated_at_us = $1 WHERE status = 'RUNNING' AND lease_owner = $2";

/// What differs between the SQL dialects, in one place: how a write transaction begins, how a
/// claim locks the rows it picks (PostgreSQL skips rows another transaction is claiming; SQLite has
/// one writer at a time, so a plain `UPDATE … WHERE rowid IN (SELECT … LIMIT)` is atomic), and how
/// a JSON array parameter is read as a list. Every statement below is built by [`dialect!`] from
/// the same text for both.
pub(crate) struct Dialect {
    /// Starts a write transaction (SQLite takes the write lock up front, so a transaction that
    /// reads first never fails with "database is locked" when it comes to write).
    pub(crate) begin_write: &'static str,
    /// `$1` owner, `$2` lease end, `$3` now, `$4` limit: ready `Pending` steps.
    pub(crate) claim_pending: &'static str,
    /// Same parameters: `Running` steps whose lease expired.
    pub(crate) claim_expired: &'static str,
    /// `$1` owner, `$2` claim end, `$3` now, `$4` limit.
    pub(crate) claim_outbox: &'static str,
    /// `$1` now, `$2` run, `$3` JSON array of step names: one parent fewer for each; returns the
    /// released steps' `name, waiting_on`.
    pub(crate) release_children: &'static str,
    /// `$1` JSON array of outbox sequence numbers.
    pub(crate) ack_outbox: &'static str,
    /// `$1` JSON array of completions (`run_id, name, status, output, error, detail, phase,
    /// approval, not_before_us, owner, attempt`), `$2` now: each ends its step if the step is
    /// still `Running` under that owner and attempt; returns the steps it ended.
    pub(crate) complete_steps: &'static str,
    /// `$1` JSON array of `{run_id, name, n}`, `$2` now: `n` parents fewer; returns
    /// `run_id, name, waiting_on` of the released steps.
    pub(crate) release_steps: &'static str,
    /// `$1` JSON array of `{id, n}`, `$2` now: `n` open steps fewer, and a `Running` run left
    /// with none open succeeds (in the same statement); returns the runs (without their input)
    /// and `steps_open`.
    pub(crate) close_runs: &'static str,
    /// `$1` JSON array of run ids: those runs without their input document.
    pub(crate) runs_by_id: &'static str,
    /// Run first in a transaction that need not wait for its commit to be flushed: the outbox
    /// relay's claims and acks (a claim lost in a crash lapses; an ack lost publishes the event
    /// again, which subscribers tolerate: delivery is at least once). `None`: the backend has
    /// no such setting (SQLite in WAL mode does not flush at commit anyway).
    pub(crate) relaxed_commit: Option<&'static str>,
}

/// `$1` owner, `$2` lease end, `$3` now.
macro_rules! claim_update {
    () => {
        "UPDATE steps SET status = 'RUNNING', attempt = attempt + 1, lease_owner = $1, \
         lease_until_us = $2, not_before_us = NULL, updated_at_us = $3 WHERE "
    };
}

/// In the batch statements `s.status || '' = …` keeps SQLite's planner from walking every row
/// of that status through the status index and re-reading the JSON array for each: it looks the
/// batch's steps up by primary key instead (PostgreSQL plans the join either way).
///
/// A [`Dialect`] from its differences: `begin`, the row key of a claim (`key` on the left of
/// `IN`, `pick` in the sub-select), the locking `lock` clause and a list read from a JSON array
/// parameter (`list1` for `$1`, `list3` for `$3`).
macro_rules! dialect {
    (begin: $begin:literal, key: $key:literal, pick: $pick:literal, lock: $lock:literal,
     list1: $list1:literal, list3: $list3:literal, seqs: $seqs:literal, s: $s:literal, u: $u:literal,
     completions: $completions:literal, releases: $releases:literal, closes: $closes:literal,
     relaxed: $relaxed:expr) => {
        Dialect {
            begin_write: $begin,
            relaxed_commit: $relaxed,
            claim_pending: concat!(
                claim_update!(), $key, " IN (SELECT ", $pick, " FROM steps WHERE status = 'PENDING' ",
                "AND waiting_on = 0 AND (phase IS NULL OR phase <> 'WAITING_APPROVAL') ",
                "AND (not_before_us IS NULL OR not_before_us <= $3) ORDER BY updated_at_us LIMIT $4",
                $lock, ") RETURNING ", step_cols!()
            ),
            claim_expired: concat!(
                claim_update!(), $key, " IN (SELECT ", $pick, " FROM steps WHERE status = 'RUNNING' ",
                "AND lease_until_us < $3 LIMIT $4", $lock, ") RETURNING ", step_cols!()
            ),
            claim_outbox: concat!(
                "UPDATE outbox SET claimed_by = $1, claim_until_us = $2 WHERE seq IN ",
                "(SELECT seq FROM outbox WHERE claim_until_us < $3 ORDER BY seq LIMIT $4", $lock,
                ") RETURNING seq, subject, payload"
            ),
            release_children: concat!(
                "UPDATE steps SET waiting_on = waiting_on - 1, updated_at_us = $1 WHERE run_id = $2 ",
                "AND name IN (", $list3, ") AND status = 'PENDING' AND waiting_on > 0 ",
                "RETURNING name, waiting_on"
            ),
            ack_outbox: concat!("DELETE FROM outbox WHERE seq IN (", $seqs, ")"),
            complete_steps: concat!(
                "UPDATE steps AS s SET status = c.status, output = COALESCE(c.output, s.output), ",
                "error = c.error, detail = COALESCE(c.detail, s.detail), ",
                "phase = COALESCE(c.phase, s.phase), approval = COALESCE(c.approval, s.approval), ",
                "not_before_us = c.not_before_us, lease_owner = NULL, lease_until_us = NULL, ",
                "updated_at_us = $2 FROM ", $completions, " WHERE s.run_id = c.run_id AND ",
                "s.name = c.name AND s.status || '' = 'RUNNING' AND s.lease_owner = c.owner AND ",
                "s.attempt = c.attempt RETURNING ",
                $s, "run_id, ", $s, "name, ", $s, "status, ", $s, "attempt, ", $s, "input, ",
                $s, "output, ", $s, "error, ", $s, "updated_at_us, ", $s, "phase, ", $s, "detail, ",
                $s, "approval, ", $s, "lease_owner, ", $s, "waiting_on, ", $s, "not_before_us"
            ),
            release_steps: concat!(
                "UPDATE steps AS s SET waiting_on = CASE WHEN s.waiting_on > c.n ",
                "THEN s.waiting_on - c.n ELSE 0 END, updated_at_us = $2 FROM ", $releases,
                " WHERE s.run_id = c.run_id AND s.name = c.name AND s.status || '' = 'PENDING' ",
                "AND s.waiting_on > 0 RETURNING ", $s, "run_id, ", $s, "name, ", $s, "waiting_on"
            ),
            close_runs: concat!(
                "UPDATE runs AS u SET steps_open = u.steps_open - c.n, status = CASE WHEN ",
                "u.status = 'RUNNING' AND u.steps_open - c.n <= 0 THEN 'SUCCEEDED' ELSE u.status END, ",
                "updated_at_us = $2 FROM ", $closes, " WHERE u.id = c.id RETURNING ",
                $u, "id, ", $u, "workflow_id, ", $u, "kind, ", $u, "status, ", $u, "output, ",
                $u, "error, ", $u, "created_at_us, ", $u, "updated_at_us, ", $u, "deadline_us, ",
                $u, "waiting_approvals, ", $u, "steps_open"
            ),
            runs_by_id: concat!(
                "SELECT id, workflow_id, kind, status, NULL AS input_absent, output, error, ",
                "created_at_us, updated_at_us, deadline_us, waiting_approvals FROM runs WHERE id IN (",
                $list1, ")"
            ),
        }
    };
}

/// SQLite.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: Dialect = dialect!(
    begin: "BEGIN IMMEDIATE", key: "rowid", pick: "rowid", lock: "",
    list1: "SELECT value FROM json_each($1)", list3: "SELECT value FROM json_each($3)",
    seqs: "SELECT value FROM json_each($1)", s: "", u: "",
    completions: "(SELECT value ->> 'run_id' AS run_id, value ->> 'name' AS name, \
        value ->> 'status' AS status, value -> 'output' AS output, value ->> 'error' AS error, \
        value -> 'detail' AS detail, value ->> 'phase' AS phase, value -> 'approval' AS approval, \
        value ->> 'not_before_us' AS not_before_us, value ->> 'owner' AS owner, \
        value ->> 'attempt' AS attempt FROM json_each($1)) AS c",
    releases: "(SELECT value ->> 'run_id' AS run_id, value ->> 'name' AS name, \
        value ->> 'n' AS n FROM json_each($1)) AS c",
    closes: "(SELECT value ->> 'id' AS id, value ->> 'n' AS n FROM json_each($1)) AS c",
    relaxed: None
);
/// PostgreSQL.
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: Dialect = dialect!(
    begin: "BEGIN", key: "(run_id, name)", pick: "run_id, name", lock: " FOR UPDATE SKIP LOCKED",
    list1: "SELECT jsonb_array_elements_text($1::jsonb)",
    list3: "SELECT jsonb_array_elements_text($3::jsonb)",
    seqs: "SELECT (jsonb_array_elements_text($1::jsonb))::bigint", s: "s.", u: "u.",
    completions: "jsonb_to_recordset($1::jsonb) AS c(run_id text, name text, status text, \
        output jsonb, error text, detail jsonb, phase text, approval jsonb, not_before_us bigint, \
        owner text, attempt bigint)",
    releases: "jsonb_to_recordset($1::jsonb) AS c(run_id text, name text, n bigint)",
    closes: "jsonb_to_recordset($1::jsonb) AS c(id text, n bigint)",
    relaxed: Some("SET LOCAL synchronous_commit TO OFF")
);

/// How often a refused compare-and-set is re-tried when the row moved into an allowed status
/// between the update and the look-up that explains the refusal.
pub(crate) const CAS_ATTEMPTS: usize = 3;

/// A state the store should never meet: a value it could not have written, or a row that keeps
/// changing under compare-and-set.
#[derive(Debug, thiserror::Error)]
#[error("unexpected state of {what} {id}: {detail}")]
pub(crate) struct Anomaly {
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
pub(crate) fn parse_status(what: &'static str, id: &str, s: &str) -> Result<RunStatus, Anomaly> {
    s.parse().map_err(|detail| Anomaly {
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
/// `target` names the database (URL without password, or file path).
pub(crate) fn map_query_err<DB: sqlx::Database>(
    backend: &'static str,
    pool: &sqlx::Pool<DB>,
    target: &str,
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
            tracing::warn!(backend, %target, max_connections = max, ?waited, %doing, "store connection pool exhausted");
            return StoreError::PoolExhausted { backend, waited };
        }
        return backend_err(
            backend,
            format!("{doing}: no connection to {target} could be opened within {waited:?}"),
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
    backend_err(backend, format!("{doing} on {target}"), err)
}

/// Implements [`hybridgrid_core::Store`] for `$store` (fields `pool: sqlx::Pool<_>`, `target: String`), whose
/// rows are `$row`, from `sql_impl.rs`. One body for both dialects keeps the backends identical.
macro_rules! impl_sql_store {
    ($store:ident, $row:ty) => {
        mod store_impl {
            use super::$store as StoreTy;
            type Row = $row;
            include!("sql_impl.rs");
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
