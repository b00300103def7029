// The durable-DAG half of the SQL `Store` (see `hybridgrid_core::store_flow`), included by
// `sql_impl.rs` in the same module: `StoreTy`, `Row`, `BACKEND` and the statements of `sql.rs` are
// in scope, plus `super::{BEGIN_WRITE, CLAIM_PENDING, CLAIM_EXPIRED, CLAIM_OUTBOX}` per dialect.

fn record_from_row(row: &Row) -> Result<Record, sqlx::Error> {
    Ok(Record {
        kind: row.try_get("kind")?,
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        doc: row.try_get("doc")?,
        version: row.try_get("version")?,
        created_at: from_micros(row.try_get("created_at_us")?),
        updated_at: from_micros(row.try_get("updated_at_us")?),
    })
}

fn micros_of(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| matches!(d.kind(), sqlx::error::ErrorKind::UniqueViolation))
}

type Tx = sqlx::Transaction<'static, <Row as sqlx::Row>::Database>;

impl StoreTy {
    async fn begin_write(&self, doing: &str) -> Result<Tx, StoreError> {
        self.pool
            .begin_with(super::BEGIN_WRITE)
            .await
            .map_err(|e| self.err(format!("{doing}: beginning a transaction"), None, e))
    }

    async fn commit(&self, tx: Tx, doing: &str) -> Result<(), StoreError> {
        tx.commit()
            .await
            .map_err(|e| self.err(format!("{doing}: committing"), None, e))
    }

    async fn outbox_in(
        &self,
        tx: &mut Tx,
        events: &[OutboxEvent],
        doing: &str,
    ) -> Result<(), StoreError> {
        for ev in events {
            sqlx::query(INSERT_OUTBOX)
                .bind(ev.subject.as_str())
                .bind(ev.payload.as_slice())
                .execute(&mut **tx)
                .await
                .map_err(|e| self.err(format!("{doing}: writing event {}", ev.subject), None, e))?;
        }
        Ok(())
    }

    async fn run_in(&self, tx: &mut Tx, id: &RunId) -> Result<Run, StoreError> {
        let row = sqlx::query(GET_RUN_TX)
            .bind(id.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| self.err(format!("reading run {id}"), None, e))?
            .ok_or_else(|| StoreError::NotFound {
                what: "run",
                id: id.to_string(),
            })?;
        run_from_row(&row).map_err(|e| self.err(format!("decoding run {id}"), None, e))
    }

    async fn f_create_workflow(
        &self,
        name: &str,
        definition: serde_json::Value,
    ) -> Result<Workflow, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("workflow name is empty".into()));
        }
        let row = sqlx::query(CREATE_WORKFLOW)
            .bind(WorkflowId::random().as_str())
            .bind(name)
            .bind(&definition)
            .bind(now_micros())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(format!("creating workflow {name:?}"), None, e))?
            .ok_or_else(|| StoreError::Duplicate {
                what: "workflow".into(),
                name: name.to_owned(),
            })?;
        workflow_from_row(&row)
            .map_err(|e| self.err(format!("decoding workflow {name:?}"), None, e))
    }

    async fn f_update_workflow(
        &self,
        id: &WorkflowId,
        definition: serde_json::Value,
    ) -> Result<Workflow, StoreError> {
        let row = sqlx::query(UPDATE_WORKFLOW)
            .bind(&definition)
            .bind(now_micros())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(format!("updating workflow {id}"), None, e))?
            .ok_or_else(|| StoreError::NotFound {
                what: "workflow",
                id: id.to_string(),
            })?;
        workflow_from_row(&row).map_err(|e| self.err(format!("decoding workflow {id}"), None, e))
    }

    async fn f_workflow_runs(&self, id: &WorkflowId, limit: usize) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(WORKFLOW_RUNS)
            .bind(id.as_str())
            .bind(limit_of(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(format!("listing runs of workflow {id}"), None, e))?;
        rows.iter()
            .map(|r| run_from_row(r).map_err(|e| self.err("decoding runs".into(), None, e)))
            .collect()
    }

    async fn f_create_record(
        &self,
        kind: &str,
        name: &str,
        doc: serde_json::Value,
    ) -> Result<Record, StoreError> {
        if kind.trim().is_empty() || name.trim().is_empty() {
            return Err(StoreError::Invalid(format!(
                "record kind {kind:?} and name {name:?} must not be empty"
            )));
        }
        let id = uuid_like();
        let row = sqlx::query(CREATE_RECORD)
            .bind(kind)
            .bind(id.as_str())
            .bind(name)
            .bind(&doc)
            .bind(now_micros())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(format!("creating {kind} {name:?}"), None, e))?
            .ok_or_else(|| StoreError::Duplicate {
                what: kind.to_owned(),
                name: name.to_owned(),
            })?;
        record_from_row(&row).map_err(|e| self.err(format!("decoding {kind} {name:?}"), None, e))
    }

    async fn f_record(&self, kind: &str, id: &str) -> Result<Record, StoreError> {
        let row = sqlx::query(GET_RECORD)
            .bind(kind)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(format!("reading {kind} {id}"), None, e))?
            .ok_or_else(|| StoreError::NotFound {
                what: "record",
                id: format!("{kind}/{id}"),
            })?;
        record_from_row(&row).map_err(|e| self.err(format!("decoding {kind} {id}"), None, e))
    }

    async fn f_records(&self, kind: &str) -> Result<Vec<Record>, StoreError> {
        let rows = sqlx::query(LIST_RECORDS)
            .bind(kind)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(format!("listing {kind} records"), None, e))?;
        rows.iter()
            .map(|r| {
                record_from_row(r)
                    .map_err(|e| self.err(format!("decoding {kind} records"), None, e))
            })
            .collect()
    }

    async fn f_update_record(
        &self,
        kind: &str,
        id: &str,
        name: &str,
        doc: serde_json::Value,
    ) -> Result<Record, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid(format!("{kind} name is empty")));
        }
        let row = sqlx::query(UPDATE_RECORD)
            .bind(name)
            .bind(&doc)
            .bind(now_micros())
            .bind(kind)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Duplicate {
                        what: kind.to_owned(),
                        name: name.to_owned(),
                    }
                } else {
                    self.err(format!("updating {kind} {id}"), None, e)
                }
            })?
            .ok_or_else(|| StoreError::NotFound {
                what: "record",
                id: format!("{kind}/{id}"),
            })?;
        record_from_row(&row).map_err(|e| self.err(format!("decoding {kind} {id}"), None, e))
    }

    async fn f_delete_record(&self, kind: &str, id: &str) -> Result<(), StoreError> {
        let done = sqlx::query(DELETE_RECORD)
            .bind(kind)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(format!("deleting {kind} {id}"), None, e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "record",
                id: format!("{kind}/{id}"),
            });
        }
        Ok(())
    }

    async fn f_start_run(&self, start: RunStart) -> Result<Run, StoreError> {
        let doing = format!("starting run {}", start.run);
        let open = start
            .steps
            .iter()
            .filter(|s| !s.status.is_terminal())
            .count();
        let now = now_micros();
        let mut tx = self.begin_write(&doing).await?;
        let row = sqlx::query(START_RUN)
            .bind(to_micros(start.deadline))
            .bind(i64::try_from(open).unwrap_or(i64::MAX))
            .bind(now)
            .bind(start.run.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(doing.clone(), None, e))?;
        let Some(row) = row else {
            drop(tx);
            return Err(self
                .explain_run(&start.run, &[RunStatus::Pending])
                .await?
                .unwrap_or_else(|| StoreError::Conflict {
                    what: "run",
                    id: start.run.to_string(),
                    actual: RunStatus::Pending,
                    expected: vec![RunStatus::Pending],
                }));
        };
        let run = run_from_row(&row).map_err(|e| self.err(doing.clone(), None, e))?;
        for s in &start.steps {
            if s.name.trim().is_empty() {
                return Err(StoreError::Invalid(format!(
                    "step name is empty (run {})",
                    start.run
                )));
            }
            sqlx::query(INSERT_STEP)
                .bind(start.run.as_str())
                .bind(s.name.as_str())
                .bind(s.status.as_str())
                .bind(&s.input)
                .bind(s.output.as_ref())
                .bind(s.detail.as_ref())
                .bind(i64::from(s.waiting_on))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(format!("{doing}: creating step {}", s.name), None, e))?;
        }
        self.outbox_in(&mut tx, &start.events, &doing).await?;
        self.commit(tx, &doing).await?;
        tracing::debug!(backend = BACKEND, run = %run.id, steps = start.steps.len(), "run started");
        Ok(run)
    }

    async fn f_claim_steps(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Step>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = now_micros();
        let until = now.saturating_add(micros_of(lease));
        let mut out = Vec::new();
        for (sql, what) in [
            (super::CLAIM_EXPIRED, "expired"),
            (super::CLAIM_PENDING, "ready"),
        ] {
            let left = limit - out.len();
            if left == 0 {
                break;
            }
            let rows = sqlx::query(sql)
                .bind(owner)
                .bind(until)
                .bind(now)
                .bind(limit_of(left))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(format!("claiming {what} steps for {owner}"), None, e))?;
            for r in &rows {
                out.push(
                    step_from_row(r)
                        .map_err(|e| self.err("decoding claimed steps".into(), None, e))?,
                );
            }
        }
        Ok(out)
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
        use hybridgrid_core::store_flow::{PHASE_WAITING_APPROVAL, StepOutcome};
        let key = format!("{}/{}", c.run, c.name);
        let doing = format!("completing step {key} (attempt {})", c.attempt);
        let now = now_micros();
        let (status, output, error, phase, approval, not_before) = match &c.outcome {
            StepOutcome::Done {
                status,
                output,
                error,
                ..
            } => (*status, output.clone(), error.clone(), None, None, None),
            StepOutcome::FailRun { error, .. } => (
                RunStatus::Failed,
                None,
                Some(error.clone()),
                None,
                None,
                None,
            ),
            StepOutcome::Retry { error, not_before } => (
                RunStatus::Pending,
                None,
                Some(error.clone()),
                None,
                None,
                Some(to_micros(*not_before)),
            ),
            StepOutcome::Park { approval } => (
                RunStatus::Pending,
                None,
                None,
                Some(PHASE_WAITING_APPROVAL),
                Some(approval.clone()),
                None,
            ),
        };
        let mut tx = self.begin_write(&doing).await?;
        let row = sqlx::query(COMPLETE_STEP)
            .bind(status.as_str())
            .bind(output.as_ref())
            .bind(error.as_deref())
            .bind(c.detail.as_ref())
            .bind(phase)
            .bind(approval.as_ref())
            .bind(not_before)
            .bind(now)
            .bind(c.run.as_str())
            .bind(c.name.as_str())
            .bind(c.owner.as_str())
            .bind(i64::from(c.attempt))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(doing.clone(), None, e))?;
        let Some(row) = row else {
            let found = sqlx::query(GET_STEP)
                .bind(c.run.as_str())
                .bind(c.name.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(doing.clone(), None, e))?;
            drop(tx);
            return Err(match found {
                None => StoreError::NotFound {
                    what: "step",
                    id: key,
                },
                Some(r) => {
                    let s = step_from_row(&r).map_err(|e| self.err(doing.clone(), None, e))?;
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
            });
        };
        let step = step_from_row(&row).map_err(|e| self.err(doing.clone(), None, e))?;
        let mut ready = Vec::new();
        let mut run_finished = false;
        match &c.outcome {
            StepOutcome::Done { release, .. } => {
                for child in release {
                    let left = sqlx::query(RELEASE_CHILD)
                        .bind(now)
                        .bind(c.run.as_str())
                        .bind(child.as_str())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| self.err(format!("{doing}: releasing {child}"), None, e))?;
                    if let Some(left) = left {
                        let n: i64 = left.try_get(0).map_err(|e| {
                            self.err(format!("{doing}: releasing {child}"), None, e)
                        })?;
                        if n == 0 {
                            ready.push(child.clone());
                        }
                    }
                }
                let open = sqlx::query(CLOSE_STEP)
                    .bind(now)
                    .bind(c.run.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.err(format!("{doing}: counting open steps"), None, e))?;
                let open: i64 = match open {
                    Some(r) => r
                        .try_get(0)
                        .map_err(|e| self.err(format!("{doing}: counting open steps"), None, e))?,
                    None => 1,
                };
                if open <= 0 {
                    let done = sqlx::query(SUCCEED_RUN)
                        .bind(now)
                        .bind(c.run.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.err(format!("{doing}: finishing the run"), None, e))?;
                    run_finished = done.rows_affected() > 0;
                }
            }
            StepOutcome::FailRun { run_error, .. } => {
                let done = sqlx::query(FAIL_RUN)
                    .bind(run_error.as_str())
                    .bind(now)
                    .bind(c.run.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(format!("{doing}: failing the run"), None, e))?;
                run_finished = done.rows_affected() > 0;
                sqlx::query(SKIP_PENDING)
                    .bind(format!("skipped: {run_error}"))
                    .bind(now)
                    .bind(c.run.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(format!("{doing}: skipping open steps"), None, e))?;
            }
            StepOutcome::Park { .. } => {
                sqlx::query(PARK_RUN)
                    .bind(now)
                    .bind(c.run.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(format!("{doing}: parking"), None, e))?;
            }
            StepOutcome::Retry { .. } => {}
        }
        self.outbox_in(&mut tx, &c.events, &doing).await?;
        if run_finished {
            self.outbox_in(&mut tx, &c.on_run_done, &doing).await?;
        }
        let run = self.run_in(&mut tx, &c.run).await?;
        self.commit(tx, &doing).await?;
        Ok(StepCompleted {
            step,
            run,
            ready,
            run_finished,
        })
    }

    async fn f_decide_step(&self, d: StepDecision) -> Result<Step, StoreError> {
        let key = format!("{}/{}", d.run, d.name);
        let doing = format!("deciding step {key}");
        let now = now_micros();
        let mut tx = self.begin_write(&doing).await?;
        let row = sqlx::query(DECIDE_STEP)
            .bind(&d.approval)
            .bind(now)
            .bind(d.run.as_str())
            .bind(d.name.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(doing.clone(), None, e))?;
        let Some(row) = row else {
            let found = sqlx::query(GET_STEP)
                .bind(d.run.as_str())
                .bind(d.name.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(doing.clone(), None, e))?;
            drop(tx);
            return Err(match found {
                None => StoreError::NotFound {
                    what: "step",
                    id: key,
                },
                Some(r) => {
                    let s = step_from_row(&r).map_err(|e| self.err(doing.clone(), None, e))?;
                    StoreError::Stale {
                        what: "step",
                        id: key,
                        detail: format!(
                            "not waiting for a decision: it is {} (phase {})",
                            s.status,
                            s.phase.as_deref().unwrap_or("none")
                        ),
                    }
                }
            });
        };
        let step = step_from_row(&row).map_err(|e| self.err(doing.clone(), None, e))?;
        sqlx::query(UNPARK_RUN)
            .bind(micros_of(d.extend_deadline))
            .bind(now)
            .bind(d.run.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(format!("{doing}: resuming the run"), None, e))?;
        self.outbox_in(&mut tx, &d.events, &doing).await?;
        self.commit(tx, &doing).await?;
        Ok(step)
    }

    async fn f_finish_run(&self, f: RunFinish) -> Result<Run, StoreError> {
        let doing = format!("ending run {} as {}", f.run, f.to);
        let Some(allowed) = allowed_from(&f.from) else {
            return Err(self.explain_run(&f.run, &f.from).await?.unwrap_or_else(|| {
                StoreError::Invalid(format!("{doing}: no status to move from"))
            }));
        };
        let now = now_micros();
        let mut tx = self.begin_write(&doing).await?;
        let row = sqlx::query(FINISH_RUN)
            .bind(f.to.as_str())
            .bind(f.error.as_str())
            .bind(now)
            .bind(f.run.as_str())
            .bind(allowed[0])
            .bind(allowed[1])
            .bind(allowed[2])
            .bind(allowed[3])
            .bind(allowed[4])
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(doing.clone(), None, e))?;
        let Some(row) = row else {
            drop(tx);
            return Err(self.explain_run(&f.run, &f.from).await?.unwrap_or_else(|| {
                StoreError::Conflict {
                    what: "run",
                    id: f.run.to_string(),
                    actual: f.to,
                    expected: f.from.clone(),
                }
            }));
        };
        let run = run_from_row(&row).map_err(|e| self.err(doing.clone(), None, e))?;
        sqlx::query(SKIP_OPEN)
            .bind(format!("skipped: {}", f.error))
            .bind(now)
            .bind(f.run.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(format!("{doing}: skipping open steps"), None, e))?;
        self.outbox_in(&mut tx, &f.events, &doing).await?;
        self.commit(tx, &doing).await?;
        Ok(run)
    }

    async fn f_overdue_runs(&self, now: SystemTime, limit: usize) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(OVERDUE_RUNS)
            .bind(to_micros(now))
            .bind(limit_of(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("listing overdue runs".into(), None, e))?;
        rows.iter()
            .map(|r| run_from_row(r).map_err(|e| self.err("decoding runs".into(), None, e)))
            .collect()
    }

    async fn f_approval_steps(
        &self,
        waiting_only: bool,
        limit: usize,
    ) -> Result<Vec<Step>, StoreError> {
        let sql = if waiting_only {
            WAITING_APPROVAL_STEPS
        } else {
            APPROVAL_STEPS
        };
        let rows = sqlx::query(sql)
            .bind(limit_of(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err("listing approvals".into(), None, e))?;
        rows.iter()
            .map(|r| step_from_row(r).map_err(|e| self.err("decoding approvals".into(), None, e)))
            .collect()
    }

    async fn f_append_outbox(&self, events: Vec<OutboxEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write("writing events").await?;
        self.outbox_in(&mut tx, &events, "writing events").await?;
        self.commit(tx, "writing events").await
    }

    async fn f_claim_outbox(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let now = now_micros();
        let rows = sqlx::query(super::CLAIM_OUTBOX)
            .bind(owner)
            .bind(now.saturating_add(micros_of(lease)))
            .bind(now)
            .bind(limit_of(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(format!("claiming outbox entries for {owner}"), None, e))?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(OutboxMessage {
                    seq: r.try_get("seq")?,
                    subject: r.try_get("subject")?,
                    payload: r.try_get("payload")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(|e| self.err("decoding outbox entries".into(), None, e))?;
        out.sort_by_key(|m| m.seq);
        Ok(out)
    }

    async fn f_ack_outbox(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write("removing published events").await?;
        for seq in seqs {
            sqlx::query(ACK_OUTBOX)
                .bind(*seq)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(format!("removing published event {seq}"), None, e))?;
        }
        self.commit(tx, "removing published events").await
    }
}

/// A fresh record id (UUID v7 text, as every other id here).
fn uuid_like() -> String {
    hybridgrid_core::ids::RunId::random().to_string()
}
