// Runs created and started in the engine's batch transaction (`Store::write_batch`), included by
// `sql_impl.rs` in the same module as `sql_flow_steps.rs` (same names in scope). Per batch: one
// multi-row insert of the new runs (already `Running`, a repeated idempotency key skipped), one
// look-up per skipped key, multi-row inserts of their steps; their events go into the batch's
// one outbox insert.

use hybridgrid_core::store_flow::{Launched, NewStep};

/// Run rows per `INSERT` (ten parameters each).
const RUN_ROWS_PER_INSERT: usize = 100;

impl StoreTy {
    /// The launches' runs and steps written in `tx`: one result per launch, and the events of
    /// the new ones (in launch order) for the batch's outbox insert. A launch refused on its own
    /// (empty kind or step name) fails its entry; the outer error is a backend failure of the
    /// transaction.
    async fn launch_in<'a>(
        &self,
        tx: &mut Tx,
        launches: &'a [RunLaunch],
        now: i64,
        doing: &str,
    ) -> Result<(Vec<Result<Launched, StoreError>>, Vec<&'a OutboxEvent>), StoreError> {
        let mut out: Vec<Option<Result<Launched, StoreError>>> =
            launches.iter().map(|_| None).collect();
        // The first launch of each idempotency key is inserted; later ones (and the first, if
        // the key is taken already) are answered with the run that holds the key.
        let mut keys = std::collections::HashSet::new();
        let mut insert = Vec::new();
        let mut by_key = Vec::new();
        for (i, l) in launches.iter().enumerate() {
            if l.new.kind.trim().is_empty() {
                out[i] = Some(Err(StoreError::Invalid(format!(
                    "run kind is empty (run {})",
                    l.id
                ))));
            } else if l.steps.iter().any(|s| s.name.trim().is_empty()) {
                out[i] = Some(Err(StoreError::Invalid(format!(
                    "step name is empty (run {})",
                    l.id
                ))));
            } else if l
                .new
                .idempotency_key
                .as_deref()
                .is_none_or(|k| keys.insert(k))
            {
                insert.push(i);
            } else {
                by_key.push(i);
            }
        }
        let mut inserted: std::collections::HashMap<String, Run> = Default::default();
        for chunk in insert.chunks(RUN_ROWS_PER_INSERT) {
            let mut q = sqlx::QueryBuilder::<<Row as sqlx::Row>::Database>::new(
                "INSERT INTO runs (id, workflow_id, kind, status, input, idempotency_key, \
                 created_at_us, updated_at_us, deadline_us, steps_open) ",
            );
            q.push_values(chunk, |mut b, &i| {
                let l = &launches[i];
                let open = l.steps.iter().filter(|s| !s.status.is_terminal()).count();
                b.push_bind(l.id.as_str())
                    .push_bind(l.new.workflow_id.as_ref().map(|w| w.as_str()))
                    .push_bind(l.new.kind.as_str())
                    .push_bind("RUNNING")
                    .push_bind(&l.new.input)
                    .push_bind(l.new.idempotency_key.as_deref())
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(to_micros(l.deadline))
                    .push_bind(i64::try_from(open).unwrap_or(i64::MAX));
            });
            q.push(
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, workflow_id, kind, \
                 status, NULL AS input_absent, output, error, created_at_us, updated_at_us, \
                 deadline_us, waiting_approvals",
            );
            // A single launch names its workflow in a foreign-key failure.
            let missing = match chunk {
                [i] => launches[*i]
                    .new
                    .workflow_id
                    .as_ref()
                    .map(|w| ("workflow", w.as_str())),
                _ => None,
            };
            let rows = q.build().fetch_all(&mut **tx).await.map_err(|e| {
                self.err(
                    format!("{doing}: creating {} runs", chunk.len()),
                    missing,
                    e,
                )
            })?;
            for r in &rows {
                let run = run_from_row(r)
                    .map_err(|e| self.err(format!("{doing}: decoding runs"), None, e))?;
                inserted.insert(run.id.to_string(), run);
            }
        }
        let mut events = Vec::new();
        let mut steps: Vec<(&str, &NewStep)> = Vec::new();
        for &i in &insert {
            let l = &launches[i];
            match inserted.remove(l.id.as_str()) {
                Some(run) => {
                    steps.extend(l.steps.iter().map(|s| (l.id.as_str(), s)));
                    events.extend(&l.events);
                    tracing::debug!(backend = BACKEND, run = %run.id, steps = l.steps.len(), "run launched");
                    out[i] = Some(Ok(Launched {
                        run,
                        duplicate: false,
                    }));
                }
                None => by_key.push(i),
            }
        }
        for &i in &by_key {
            let key = launches[i].new.idempotency_key.as_deref().unwrap_or("");
            let row = sqlx::query(RUN_BY_KEY)
                .bind(key)
                .fetch_optional(&mut **tx)
                .await
                .map_err(|e| {
                    self.err(
                        format!("{doing}: reading run with idempotency key {key:?}"),
                        None,
                        e,
                    )
                })?;
            out[i] = Some(match row {
                Some(r) => {
                    let mut run = run_from_row(&r)
                        .map_err(|e| self.err(format!("{doing}: decoding runs"), None, e))?;
                    run.input = serde_json::Value::Null;
                    Ok(Launched {
                        run,
                        duplicate: true,
                    })
                }
                None => Err(backend_err(
                    BACKEND,
                    "creating run",
                    Anomaly {
                        what: "run",
                        id: key.to_owned(),
                        detail: "insert conflicted but no run holds the key".into(),
                    },
                )),
            });
        }
        for chunk in steps.chunks(STEP_ROWS_PER_INSERT) {
            let mut q = sqlx::QueryBuilder::<<Row as sqlx::Row>::Database>::new(
                "INSERT INTO steps (run_id, name, status, attempt, input, output, detail, \
                 waiting_on, updated_at_us) ",
            );
            q.push_values(chunk, |mut b, (run, s)| {
                b.push_bind(*run)
                    .push_bind(s.name.as_str())
                    .push_bind(s.status.as_str())
                    .push_bind(0_i64)
                    .push_bind(&s.input)
                    .push_bind(s.output.as_ref())
                    .push_bind(s.detail.as_ref())
                    .push_bind(i64::from(s.waiting_on))
                    .push_bind(now);
            });
            q.build().execute(&mut **tx).await.map_err(|e| {
                self.err(format!("{doing}: creating {} steps", chunk.len()), None, e)
            })?;
        }
        let out = out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(StoreError::Invalid("launch not judged".into()))))
            .collect();
        Ok((out, events))
    }
}
