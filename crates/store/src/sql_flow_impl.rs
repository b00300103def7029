// The durable-DAG half of the SQL `Store` (see `hybridgrid_core::store_flow`), included by
// `sql_impl.rs` in the same module: `StoreTy`, `Row`, `BACKEND` and the statements of `sql.rs` are
// in scope, plus `super::DIALECT` (the backend's `sql::Dialect`).

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

type Db = <Row as sqlx::Row>::Database;

/// A write transaction, holding the store's write gate (SQLite: see `SqliteStore`) until it
/// ends (committed, or rolled back when dropped).
struct Tx {
    tx: sqlx::Transaction<'static, Db>,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for Tx {
    type Target = <Db as sqlx::Database>::Connection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl StoreTy {
    async fn begin_write(&self, doing: &str) -> Result<Tx, StoreError> {
        // Writers queue here, in order, before they take a connection, instead of polling the
        // database's lock (SQLite's busy handler sleeps 1, 2, 5, 10 … ms between tries).
        let gate = match &self.write_gate {
            Some(g) => Some(g.clone().lock_owned().await),
            None => None,
        };
        let tx = self
            .pool
            .begin_with(super::DIALECT.begin_write)
            .await
            .map_err(|e| self.err(format!("{doing}: beginning a transaction"), None, e))?;
        Ok(Tx { tx, _gate: gate })
    }

    /// A transaction whose commit need not be flushed before it returns (see
    /// `Dialect::relaxed_commit`): only for the outbox relay's bookkeeping, never a transition.
    async fn begin_relaxed(&self, doing: &str) -> Result<Tx, StoreError> {
        let mut tx = self.begin_write(doing).await?;
        if let Some(set) = super::DIALECT.relaxed_commit {
            sqlx::query(set)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(format!("{doing}: {set}"), None, e))?;
        }
        Ok(tx)
    }

    async fn commit(&self, tx: Tx, doing: &str) -> Result<(), StoreError> {
        tx.tx
            .commit()
            .await
            .map_err(|e| self.err(format!("{doing}: committing"), None, e))
    }

    /// Writes `events` to the outbox in order, in as few statements as the parameter limits allow.
    async fn outbox_in(
        &self,
        tx: &mut Tx,
        events: &[&OutboxEvent],
        doing: &str,
    ) -> Result<(), StoreError> {
        for chunk in events.chunks(OUTBOX_ROWS_PER_INSERT) {
            let mut q = sqlx::QueryBuilder::<<Row as sqlx::Row>::Database>::new(
                "INSERT INTO outbox (subject, payload) ",
            );
            q.push_values(chunk, |mut b, ev| {
                b.push_bind(ev.subject.as_str())
                    .push_bind(ev.payload.as_slice());
            });
            q.build().execute(&mut **tx).await.map_err(|e| {
                self.err(format!("{doing}: writing {} events", chunk.len()), None, e)
            })?;
        }
        Ok(())
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
        if start.steps.iter().any(|s| s.name.trim().is_empty()) {
            return Err(StoreError::Invalid(format!(
                "step name is empty (run {})",
                start.run
            )));
        }
        for chunk in start.steps.chunks(STEP_ROWS_PER_INSERT) {
            let mut q = sqlx::QueryBuilder::<<Row as sqlx::Row>::Database>::new(
                "INSERT INTO steps (run_id, name, status, attempt, input, output, detail, \
                 waiting_on, updated_at_us) ",
            );
            q.push_values(chunk, |mut b, s| {
                b.push_bind(start.run.as_str())
                    .push_bind(s.name.as_str())
                    .push_bind(s.status.as_str())
                    .push_bind(0_i64)
                    .push_bind(&s.input)
                    .push_bind(s.output.as_ref())
                    .push_bind(s.detail.as_ref())
                    .push_bind(i64::from(s.waiting_on))
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await.map_err(|e| {
                self.err(format!("{doing}: creating {} steps", chunk.len()), None, e)
            })?;
        }
        self.outbox_in(&mut tx, &refs(&start.events), &doing)
            .await?;
        self.commit(tx, &doing).await?;
        tracing::debug!(backend = BACKEND, run = %run.id, steps = start.steps.len(), "run started");
        Ok(run)
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
        self.outbox_in(&mut tx, &refs(&d.events), &doing).await?;
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
        self.outbox_in(&mut tx, &refs(&f.events), &doing).await?;
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
        self.outbox_in(&mut tx, &refs(&events), "writing events")
            .await?;
        self.commit(tx, "writing events").await
    }

    async fn f_claim_outbox(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let now = now_micros();
        let doing = format!("claiming outbox entries for {owner}");
        let mut tx = self.begin_relaxed(&doing).await?;
        let rows = sqlx::query(super::DIALECT.claim_outbox)
            .bind(owner)
            .bind(now.saturating_add(micros_of(lease)))
            .bind(now)
            .bind(limit_of(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(doing.clone(), None, e))?;
        self.commit(tx, &doing).await?;
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
}

/// Outbox rows per `INSERT` (two parameters each, well under every backend's limit).
const OUTBOX_ROWS_PER_INSERT: usize = 256;
/// Step rows per `INSERT` when a run starts (nine parameters each).
const STEP_ROWS_PER_INSERT: usize = 200;

fn refs(events: &[OutboxEvent]) -> Vec<&OutboxEvent> {
    events.iter().collect()
}

/// A fresh record id (UUID v7 text, as every other id here).
fn uuid_like() -> String {
    hybridgrid_core::ids::RunId::random().to_string()
}
