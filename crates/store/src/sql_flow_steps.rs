// Step claims, leases and completions of the SQL `Store`, included by `sql_impl.rs` in the same
// module as `sql_flow_impl.rs` (same names in scope). A batch of completions is one transaction:
// per completion one compare-and-set update and one release of its children; per run one count
// of open steps; one multi-row insert of the batch's events; then, in the same transaction, the
// claim of ready steps. So a commit (and its flush) serves a whole batch.

use hybridgrid_core::store_flow::{
    FlowBatch, FlowBatchDone, RunLaunch, StepBatchDone, StepClaim, StepOutcome,
};
use std::collections::BTreeMap;

/// A completion as one element of the JSON array the dialect's `complete_steps` reads (absent
/// keys are SQL `NULL`).
fn completion_doc(c: &StepCompletion) -> serde_json::Value {
    use hybridgrid_core::store_flow::PHASE_WAITING_APPROVAL;
    let mut d = serde_json::json!({
        "run_id": c.run.as_str(),
        "name": c.name,
        "owner": c.owner,
        "attempt": c.attempt,
    });
    let (status, output, error, phase, approval, not_before) = match &c.outcome {
        StepOutcome::Done {
            status,
            output,
            error,
            ..
        } => (*status, output.as_ref(), error.as_deref(), None, None, None),
        StepOutcome::FailRun { error, .. } => (
            RunStatus::Failed,
            None,
            Some(error.as_str()),
            None,
            None,
            None,
        ),
        StepOutcome::Retry { error, not_before } => (
            RunStatus::Pending,
            None,
            Some(error.as_str()),
            None,
            None,
            Some(to_micros(*not_before)),
        ),
        StepOutcome::Park { approval } => (
            RunStatus::Pending,
            None,
            None,
            Some(PHASE_WAITING_APPROVAL),
            Some(approval),
            None,
        ),
    };
    d["status"] = status.as_str().into();
    if let Some(o) = output.filter(|o| !o.is_null()) {
        d["output"] = o.clone();
    }
    if let Some(e) = error {
        d["error"] = e.into();
    }
    if let Some(v) = c.detail.as_ref().filter(|v| !v.is_null()) {
        d["detail"] = v.clone();
    }
    if let Some(p) = phase {
        d["phase"] = p.into();
    }
    if let Some(a) = approval.filter(|a| !a.is_null()) {
        d["approval"] = a.clone();
    }
    if let Some(t) = not_before {
        d["not_before_us"] = t.into();
    }
    d
}

/// What one completion's own statements decided, before the per-run part of the batch.
struct Judged {
    step: Step,
    ready: Vec<String>,
    /// `FailRun` moved the run to `Failed`.
    failed_run: bool,
}

impl StoreTy {
    async fn f_claim_steps(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Step>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (sql, what) in [
            (super::DIALECT.claim_expired, "expired"),
            (super::DIALECT.claim_pending, "ready"),
        ] {
            let left = limit - out.len();
            if left == 0 {
                break;
            }
            let claim = StepClaim {
                owner: owner.to_owned(),
                lease,
                limit: left,
            };
            out.extend(self.claim_in(&self.pool, sql, what, &claim).await?);
        }
        Ok(out)
    }

    /// One claim statement (`sql` is a dialect's `claim_pending` or `claim_expired`).
    async fn claim_in<'e, E>(
        &self,
        on: E,
        sql: &'static str,
        what: &str,
        claim: &StepClaim,
    ) -> Result<Vec<Step>, StoreError>
    where
        E: sqlx::Executor<'e, Database = <Row as sqlx::Row>::Database>,
    {
        let now = now_micros();
        let rows = sqlx::query(sql)
            .bind(claim.owner.as_str())
            .bind(now.saturating_add(micros_of(claim.lease)))
            .bind(now)
            .bind(limit_of(claim.limit))
            .fetch_all(on)
            .await
            .map_err(|e| {
                self.err(
                    format!("claiming {what} steps for {}", claim.owner),
                    None,
                    e,
                )
            })?;
        rows.iter()
            .map(|r| {
                step_from_row(r).map_err(|e| self.err("decoding claimed steps".into(), None, e))
            })
            .collect()
    }

    async fn f_extend_leases(&self, owner: &str, lease: Duration) -> Result<u64, StoreError> {
        let until = now_micros().saturating_add(micros_of(lease));
        let done = sqlx::query(EXTEND_LEASES)
            .bind(until)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(format!("extending leases of {owner}"), None, e))?;
        Ok(done.rows_affected())
    }

    async fn f_release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(RELEASE_LEASES)
            .bind(now_micros())
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(format!("releasing leases of {owner}"), None, e))?;
        Ok(done.rows_affected())
    }

    async fn f_complete_step(&self, c: StepCompletion) -> Result<StepCompleted, StoreError> {
        let done = self.f_complete_steps(vec![c], None).await?;
        done.completed.into_iter().next().unwrap_or_else(|| {
            Err(backend_err(
                BACKEND,
                "completing a step",
                Anomaly {
                    what: "batch",
                    id: "1".into(),
                    detail: "no result for the completion".into(),
                },
            ))
        })
    }

    async fn f_complete_steps(
        &self,
        batch: Vec<StepCompletion>,
        claim: Option<StepClaim>,
    ) -> Result<StepBatchDone, StoreError> {
        let done = self
            .f_write_batch(FlowBatch {
                launches: Vec::new(),
                completions: batch,
                claim,
            })
            .await?;
        Ok(StepBatchDone {
            completed: done.completed,
            claimed: done.claimed,
        })
    }

    async fn f_write_batch(&self, batch: FlowBatch) -> Result<FlowBatchDone, StoreError> {
        let FlowBatch {
            launches,
            completions,
            claim,
        } = batch;
        if launches.is_empty() && completions.is_empty() && claim.is_none() {
            return Ok(FlowBatchDone::default());
        }
        match self.batch_tx(&launches, &completions, claim.as_ref()).await {
            Ok(done) => Ok(done),
            Err(e) if launches.len() + completions.len() > 1 => {
                // A backend error (PostgreSQL aborting one of two crossing batches, say, or one
                // launch naming a workflow that is gone) left nothing written: judge each entry
                // alone so one cannot hold up the others.
                tracing::debug!(backend = BACKEND, error = %e, runs = launches.len(), steps = completions.len(), "batch refused; writing its entries one by one");
                let mut done = FlowBatchDone::default();
                for l in &launches {
                    match self.batch_tx(std::slice::from_ref(l), &[], None).await {
                        Ok(one) => done.launched.extend(one.launched),
                        Err(e) => done.launched.push(Err(e)),
                    }
                }
                for c in &completions {
                    match self.batch_tx(&[], std::slice::from_ref(c), None).await {
                        Ok(one) => done.completed.extend(one.completed),
                        Err(e) => done.completed.push(Err(e)),
                    }
                }
                Ok(done)
            }
            Err(e) => Err(e),
        }
    }

    async fn batch_tx(
        &self,
        launches: &[RunLaunch],
        batch: &[StepCompletion],
        claim: Option<&StepClaim>,
    ) -> Result<FlowBatchDone, StoreError> {
        let doing = match (launches, batch) {
            ([], [c]) => format!(
                "completing step {}/{} (attempt {})",
                c.run, c.name, c.attempt
            ),
            ([l], []) => format!("starting run {}", l.id),
            ([], _) => format!("completing {} steps", batch.len()),
            _ => format!(
                "starting {} runs and completing {} steps",
                launches.len(),
                batch.len()
            ),
        };
        let now = now_micros();
        let mut tx = self.begin_write(&doing).await?;
        let (launched, mut events) = self.launch_in(&mut tx, launches, now, &doing).await?;
        // The first completion of each step goes into one statement for the batch; a second
        // one of the same step (a stale attempt next to the current one) is judged after it.
        let mut seen = std::collections::HashSet::new();
        let (bulk, again): (Vec<usize>, Vec<usize>) = (0..batch.len())
            .partition(|&i| seen.insert((batch[i].run.as_str(), batch[i].name.as_str())));
        let mut judged: Vec<Option<Result<Judged, StoreError>>> =
            (0..batch.len()).map(|_| None).collect();
        if !bulk.is_empty() {
            let rows: Vec<serde_json::Value> =
                bulk.iter().map(|&i| completion_doc(&batch[i])).collect();
            let ended = sqlx::query(super::DIALECT.complete_steps)
                .bind(serde_json::Value::Array(rows))
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.err(doing.clone(), None, e))?;
            let mut ended: std::collections::HashMap<(String, String), Step> = ended
                .iter()
                .map(|r| step_from_row(r).map(|s| ((s.run_id.to_string(), s.name.clone()), s)))
                .collect::<Result<_, _>>()
                .map_err(|e| self.err(doing.clone(), None, e))?;
            for &i in &bulk {
                let c = &batch[i];
                judged[i] = Some(match ended.remove(&(c.run.to_string(), c.name.clone())) {
                    Some(step) => Ok(Judged {
                        step,
                        ready: Vec::new(),
                        failed_run: false,
                    }),
                    None => {
                        let key = format!("{}/{}", c.run, c.name);
                        Err(self.explain_refusal(&mut tx, c, key, &doing).await?)
                    }
                });
            }
            // Children of the accepted `Done`s: one parent fewer per completion naming them.
            let mut releases: BTreeMap<(&str, &str), (i64, usize)> = BTreeMap::new();
            for &i in &bulk {
                if let (Some(Ok(_)), StepOutcome::Done { release, .. }) =
                    (&judged[i], &batch[i].outcome)
                {
                    for child in release {
                        let slot = releases
                            .entry((batch[i].run.as_str(), child.as_str()))
                            .or_insert((0, i));
                        *slot = (slot.0 + 1, i);
                    }
                }
            }
            if !releases.is_empty() {
                let docs: Vec<serde_json::Value> = releases
                    .iter()
                    .map(|((run, name), (n, _))| serde_json::json!({"run_id": run, "name": name, "n": n}))
                    .collect();
                let rows = sqlx::query(super::DIALECT.release_steps)
                    .bind(serde_json::Value::Array(docs))
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.err(format!("{doing}: releasing children"), None, e))?;
                for r in &rows {
                    let (run, name, left): (String, String, i64) = (
                        r.try_get(0).map_err(|e| {
                            self.err(format!("{doing}: releasing children"), None, e)
                        })?,
                        r.try_get(1).map_err(|e| {
                            self.err(format!("{doing}: releasing children"), None, e)
                        })?,
                        r.try_get(2).map_err(|e| {
                            self.err(format!("{doing}: releasing children"), None, e)
                        })?,
                    );
                    if left == 0
                        && let Some((_, last)) = releases.get(&(run.as_str(), name.as_str()))
                        && let Some(Some(Ok(j))) = judged.get_mut(*last)
                    {
                        j.ready.push(name);
                    }
                }
                for &i in &bulk {
                    if let (Some(Ok(j)), StepOutcome::Done { release, .. }) =
                        (&mut judged[i], &batch[i].outcome)
                    {
                        // The order the run's definition gave, whatever order the rows came in.
                        j.ready.sort_by_key(|n| release.iter().position(|r| r == n));
                    }
                }
            }
            // What failing and parking outcomes do to their runs.
            for &i in &bulk {
                if let Some(Ok(j)) = &mut judged[i] {
                    j.failed_run = self.outcome_in(&mut tx, &batch[i], now, &doing).await?;
                }
            }
        }
        for &i in &again {
            judged[i] = Some(self.judge_in(&mut tx, &batch[i], now).await?);
        }
        let judged: Vec<Result<Judged, StoreError>> = judged
            .into_iter()
            .map(|j| j.unwrap_or_else(|| Err(StoreError::Invalid("completion not judged".into()))))
            .collect();
        // Per run: steps closed in this batch and the last completion that closed one.
        let mut closed: BTreeMap<&str, (i64, usize)> = BTreeMap::new();
        let mut finished = vec![false; batch.len()];
        for (i, (c, j)) in batch.iter().zip(&judged).enumerate() {
            let Ok(j) = j else { continue };
            events.extend(&c.events);
            if matches!(c.outcome, StepOutcome::Done { .. }) {
                let slot = closed.entry(c.run.as_str()).or_insert((0, i));
                *slot = (slot.0 + 1, i);
            }
            if j.failed_run {
                finished[i] = true;
                events.extend(&c.on_run_done);
            }
        }
        // The runs the batch's completions belong to, as the transaction leaves them: those with
        // closed steps from the statement that closes them (and succeeds the ones left with none
        // open), the others read.
        let mut runs: BTreeMap<String, Run> = BTreeMap::new();
        if !closed.is_empty() {
            let docs: Vec<serde_json::Value> = closed
                .iter()
                .map(|(id, (n, _))| serde_json::json!({"id": id, "n": n}))
                .collect();
            let rows = sqlx::query(super::DIALECT.close_runs)
                .bind(serde_json::Value::Array(docs))
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.err(format!("{doing}: counting open steps"), None, e))?;
            for r in &rows {
                let run = run_from_row(r)
                    .map_err(|e| self.err(format!("{doing}: counting open steps"), None, e))?;
                let open: i64 = r
                    .try_get("steps_open")
                    .map_err(|e| self.err(format!("{doing}: counting open steps"), None, e))?;
                // Succeeded here: none open now, some open before this batch's `n`.
                if let Some((n, last)) = closed.get(run.id.as_str())
                    && run.status == RunStatus::Succeeded
                    && open <= 0
                    && open + n > 0
                {
                    finished[*last] = true;
                    events.extend(&batch[*last].on_run_done);
                }
                runs.insert(run.id.to_string(), run);
            }
        }
        self.outbox_in(&mut tx, &events, &doing).await?;
        let ids: std::collections::BTreeSet<&str> = batch
            .iter()
            .zip(&judged)
            .filter(|(c, j)| j.is_ok() && !runs.contains_key(c.run.as_str()))
            .map(|(c, _)| c.run.as_str())
            .collect();
        if !ids.is_empty() {
            let rows = sqlx::query(super::DIALECT.runs_by_id)
                .bind(serde_json::Value::from(ids.into_iter().collect::<Vec<_>>()))
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.err(format!("{doing}: reading runs"), None, e))?;
            for r in &rows {
                let run = run_from_row(r)
                    .map_err(|e| self.err(format!("{doing}: reading runs"), None, e))?;
                runs.insert(run.id.to_string(), run);
            }
        }
        let claimed = match claim {
            Some(claim) if claim.limit > 0 => {
                self.claim_in(&mut *tx, super::DIALECT.claim_pending, "ready", claim)
                    .await?
            }
            _ => Vec::new(),
        };
        self.commit(tx, &doing).await?;
        let completed = batch
            .iter()
            .zip(judged)
            .zip(finished)
            .map(|((c, j), run_finished)| {
                let j = j?;
                let run =
                    runs.get(c.run.as_str())
                        .cloned()
                        .ok_or_else(|| StoreError::NotFound {
                            what: "run",
                            id: c.run.to_string(),
                        })?;
                Ok(StepCompleted {
                    step: j.step,
                    run,
                    ready: j.ready,
                    run_finished,
                })
            })
            .collect();
        Ok(FlowBatchDone {
            launched,
            completed,
            claimed,
        })
    }

    /// What an accepted `FailRun` or `Park` does to its run; whether it failed the run.
    async fn outcome_in(
        &self,
        tx: &mut Tx,
        c: &StepCompletion,
        now: i64,
        doing: &str,
    ) -> Result<bool, StoreError> {
        match &c.outcome {
            StepOutcome::FailRun { run_error, .. } => {
                let done = sqlx::query(FAIL_RUN)
                    .bind(run_error.as_str())
                    .bind(now)
                    .bind(c.run.as_str())
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| self.err(format!("{doing}: failing run {}", c.run), None, e))?;
                sqlx::query(SKIP_PENDING)
                    .bind(format!("skipped: {run_error}"))
                    .bind(now)
                    .bind(c.run.as_str())
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| {
                        self.err(
                            format!("{doing}: skipping open steps of {}", c.run),
                            None,
                            e,
                        )
                    })?;
                Ok(done.rows_affected() > 0)
            }
            StepOutcome::Park { .. } => {
                sqlx::query(PARK_RUN)
                    .bind(now)
                    .bind(c.run.as_str())
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| {
                        self.err(format!("{doing}: parking a step of {}", c.run), None, e)
                    })?;
                Ok(false)
            }
            StepOutcome::Done { .. } | StepOutcome::Retry { .. } => Ok(false),
        }
    }

    /// One completion's own statements: the compare-and-set on the step (a refusal is the inner
    /// error, explained), then what its outcome does to its children or its run. The outer error
    /// is a backend failure of the whole transaction.
    async fn judge_in(
        &self,
        tx: &mut Tx,
        c: &StepCompletion,
        now: i64,
    ) -> Result<Result<Judged, StoreError>, StoreError> {
        use hybridgrid_core::store_flow::PHASE_WAITING_APPROVAL;
        let key = format!("{}/{}", c.run, c.name);
        let doing = format!("completing step {key} (attempt {})", c.attempt);
        let (status, output, error, phase, approval, not_before) = match &c.outcome {
            StepOutcome::Done {
                status,
                output,
                error,
                ..
            } => (*status, output.as_ref(), error.as_deref(), None, None, None),
            StepOutcome::FailRun { error, .. } => (
                RunStatus::Failed,
                None,
                Some(error.as_str()),
                None,
                None,
                None,
            ),
            StepOutcome::Retry { error, not_before } => (
                RunStatus::Pending,
                None,
                Some(error.as_str()),
                None,
                None,
                Some(to_micros(*not_before)),
            ),
            StepOutcome::Park { approval } => (
                RunStatus::Pending,
                None,
                None,
                Some(PHASE_WAITING_APPROVAL),
                Some(approval),
                None,
            ),
        };
        let row = sqlx::query(COMPLETE_STEP)
            .bind(status.as_str())
            .bind(output)
            .bind(error)
            .bind(c.detail.as_ref())
            .bind(phase)
            .bind(approval)
            .bind(not_before)
            .bind(now)
            .bind(c.run.as_str())
            .bind(c.name.as_str())
            .bind(c.owner.as_str())
            .bind(i64::from(c.attempt))
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| self.err(doing.clone(), None, e))?;
        let Some(row) = row else {
            return self.explain_refusal(tx, c, key, &doing).await.map(Err);
        };
        let step = step_from_row(&row).map_err(|e| self.err(doing.clone(), None, e))?;
        let mut ready = Vec::new();
        let mut failed_run = false;
        match &c.outcome {
            StepOutcome::Done { release, .. } if !release.is_empty() => {
                let names = serde_json::Value::from(release.clone());
                let rows = sqlx::query(super::DIALECT.release_children)
                    .bind(now)
                    .bind(c.run.as_str())
                    .bind(&names)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(|e| self.err(format!("{doing}: releasing its children"), None, e))?;
                for r in &rows {
                    let left: i64 = r.try_get("waiting_on").map_err(|e| {
                        self.err(format!("{doing}: releasing its children"), None, e)
                    })?;
                    if left == 0 {
                        ready.push(r.try_get("name").map_err(|e| {
                            self.err(format!("{doing}: releasing its children"), None, e)
                        })?);
                    }
                }
                // The order the run's definition gave, whatever order the rows came back in.
                ready.sort_by_key(|n: &String| release.iter().position(|r| r == n));
            }
            StepOutcome::Done { .. } | StepOutcome::Retry { .. } => {}
            StepOutcome::FailRun { .. } | StepOutcome::Park { .. } => {
                failed_run = self.outcome_in(tx, c, now, &doing).await?;
            }
        }
        Ok(Ok(Judged {
            step,
            ready,
            failed_run,
        }))
    }

    /// Why a completion's compare-and-set matched no row: the step is missing, or another
    /// attempt (or nobody) holds it.
    async fn explain_refusal(
        &self,
        tx: &mut Tx,
        c: &StepCompletion,
        key: String,
        doing: &str,
    ) -> Result<StoreError, StoreError> {
        let found = sqlx::query(GET_STEP)
            .bind(c.run.as_str())
            .bind(c.name.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| self.err(doing.to_owned(), None, e))?;
        Ok(match found {
            None => StoreError::NotFound {
                what: "step",
                id: key,
            },
            Some(r) => {
                let s = step_from_row(&r).map_err(|e| self.err(doing.to_owned(), None, e))?;
                StoreError::Stale {
                    what: "step",
                    id: key,
                    detail: format!(
                        "attempt {} by {} cannot complete it: it is {} at attempt {} held by {}",
                        c.attempt,
                        c.owner,
                        s.status,
                        s.attempt,
                        s.lease_owner.as_deref().unwrap_or("nobody")
                    ),
                }
            }
        })
    }

    async fn f_ack_outbox(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let doing = format!("removing {} published events", seqs.len());
        let mut tx = self.begin_relaxed(&doing).await?;
        sqlx::query(super::DIALECT.ack_outbox)
            .bind(serde_json::Value::from(seqs.to_vec()))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(doing.clone(), None, e))?;
        self.commit(tx, &doing).await
    }
}
