//! Conformance checks of the durable-DAG half of [`Store`] (see `hybridgrid_core::store_flow`),
//! run by `run_store_suite`.

use hybridgrid_core::ids::RunId;
use hybridgrid_core::store::{NewRun, RunStatus, Store, StoreError};
use hybridgrid_core::store_flow::{
    FlowBatch, NewStep, OutboxEvent, RunFinish, RunLaunch, RunStart, StepClaim, StepCompletion,
    StepDecision, StepOutcome,
};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn op<T>(what: &str, r: Result<T, StoreError>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn ev(subject: &str) -> OutboxEvent {
    OutboxEvent {
        subject: subject.to_owned(),
        payload: subject.as_bytes().to_vec(),
    }
}

fn step(name: &str, waiting_on: u32) -> NewStep {
    NewStep {
        name: name.to_owned(),
        input: json!({"n": name}),
        status: RunStatus::Pending,
        waiting_on,
        output: None,
        detail: None,
    }
}

/// A started run with steps `a` (ready) and `b` (waiting on `a`).
async fn started(s: &Arc<dyn Store>, deadline: SystemTime) -> Result<RunId, String> {
    let run = op(
        "create_run",
        s.create_run(NewRun {
            workflow_id: None,
            kind: "workflow".into(),
            input: json!({}),
            idempotency_key: None,
        })
        .await,
    )?;
    op(
        "start_run",
        s.start_run(RunStart {
            run: run.id.clone(),
            deadline,
            steps: vec![step("a", 0), step("b", 1)],
            events: vec![ev("t.run.started")],
        })
        .await,
    )?;
    Ok(run.id)
}

fn done(release: &[&str]) -> StepOutcome {
    StepOutcome::Done {
        status: RunStatus::Succeeded,
        output: Some(json!({"ok": true})),
        error: None,
        release: release.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn completion(
    run: &RunId,
    name: &str,
    owner: &str,
    attempt: u32,
    outcome: StepOutcome,
) -> StepCompletion {
    StepCompletion {
        run: run.clone(),
        name: name.to_owned(),
        owner: owner.to_owned(),
        attempt,
        outcome,
        detail: None,
        events: vec![ev("t.node")],
        on_run_done: vec![ev("t.run.done")],
    }
}

pub(crate) async fn records(s: Arc<dyn Store>) -> Result<(), String> {
    let a = op(
        "create_record",
        s.create_record("agent", "scan", json!({"v": 1})).await,
    )?;
    let b = op(
        "create_record",
        s.create_record("agent", "notify", json!({})).await,
    )?;
    match s.create_record("agent", "scan", json!({})).await {
        Err(StoreError::Duplicate { name, .. }) if name == "scan" => {}
        other => {
            return Err(format!(
                "duplicate record name: expected Duplicate, got {other:?}"
            ));
        }
    }
    op(
        "same name, other kind",
        s.create_record("tool", "scan", json!({})).await,
    )?;
    let up = op(
        "update_record",
        s.update_record("agent", &a.id, "scan", json!({"v": 2}))
            .await,
    )?;
    if up.version != 2 || up.doc != json!({"v": 2}) {
        return Err(format!(
            "update: expected version 2 with the new doc, got {up:?}"
        ));
    }
    if !matches!(
        s.update_record("agent", &b.id, "scan", json!({})).await,
        Err(StoreError::Duplicate { .. })
    ) {
        return Err("renaming onto a used name must be Duplicate".into());
    }
    let names: Vec<String> = op("records", s.records("agent").await)?
        .into_iter()
        .map(|r| r.name)
        .collect();
    if names != ["notify", "scan"] {
        return Err(format!("records by name: got {names:?}"));
    }
    op("delete_record", s.delete_record("agent", &a.id).await)?;
    if !matches!(
        s.record("agent", &a.id).await,
        Err(StoreError::NotFound { .. })
    ) {
        return Err("a deleted record must be NotFound".into());
    }
    op("create_workflow", s.create_workflow("wf", json!({})).await)?;
    if !matches!(
        s.create_workflow("wf", json!({})).await,
        Err(StoreError::Duplicate { .. })
    ) {
        return Err("create_workflow with a used name must be Duplicate".into());
    }
    Ok(())
}

pub(crate) async fn claims(s: Arc<dyn Store>) -> Result<(), String> {
    let run = started(&s, SystemTime::now() + Duration::from_secs(3600)).await?;
    let lease = Duration::from_millis(150);
    let (x, y) = tokio::join!(
        s.claim_steps("one", lease, 10),
        s.claim_steps("two", lease, 10)
    );
    let (x, y) = (op("claim", x)?, op("claim", y)?);
    if x.len() + y.len() != 1 {
        return Err(format!(
            "only `a` is ready: claimed {} + {}",
            x.len(),
            y.len()
        ));
    }
    let (first_owner, first) = if x.is_empty() {
        ("two", &y[0])
    } else {
        ("one", &x[0])
    };
    if first.name != "a" || first.attempt != 1 || first.status != RunStatus::Running {
        return Err(format!("claimed step: {first:?}"));
    }
    // The lease lapses: another owner takes the step, and the first attempt goes stale.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let again = op(
        "reclaim",
        s.claim_steps("three", Duration::from_secs(30), 10).await,
    )?;
    if again.len() != 1 || again[0].attempt != 2 {
        return Err(format!(
            "an expired lease must be claimable again: {again:?}"
        ));
    }
    match s
        .complete_step(completion(&run, "a", first_owner, 1, done(&["b"])))
        .await
    {
        Err(StoreError::Stale { .. }) => {}
        other => return Err(format!("a stale attempt completed the step: {other:?}")),
    }
    let c = op(
        "complete",
        s.complete_step(completion(&run, "a", "three", 2, done(&["b"])))
            .await,
    )?;
    if c.ready != ["b"] || c.run_finished {
        return Err(format!("completing a releases b: {c:?}"));
    }
    let b = op(
        "claim b",
        s.claim_steps("three", Duration::from_secs(30), 10).await,
    )?;
    if b.len() != 1 || b[0].name != "b" {
        return Err(format!("b is ready: {b:?}"));
    }
    let c = op(
        "complete b",
        s.complete_step(completion(&run, "b", "three", 1, done(&[])))
            .await,
    )?;
    if !c.run_finished || c.run.status != RunStatus::Succeeded {
        return Err(format!("the last step finishes the run: {c:?}"));
    }
    let out = op(
        "claim_outbox",
        s.claim_outbox("relay", Duration::from_secs(30), 100).await,
    )?;
    let subjects: Vec<&str> = out.iter().map(|m| m.subject.as_str()).collect();
    if subjects != ["t.run.started", "t.node", "t.node", "t.run.done"] {
        return Err(format!(
            "outbox in write order, none lost or duplicated: {subjects:?}"
        ));
    }
    if !op(
        "claim_outbox again",
        s.claim_outbox("other", Duration::from_secs(30), 100).await,
    )?
    .is_empty()
    {
        return Err(
            "claimed outbox entries must not be handed out twice within their lease".into(),
        );
    }
    let seqs: Vec<i64> = out.iter().map(|m| m.seq).collect();
    op("ack_outbox", s.ack_outbox(&seqs).await)?;
    Ok(())
}

pub(crate) async fn approvals_and_endings(s: Arc<dyn Store>) -> Result<(), String> {
    let run = started(&s, SystemTime::now() + Duration::from_secs(3600)).await?;
    let a = op(
        "claim",
        s.claim_steps("e", Duration::from_secs(30), 10).await,
    )?;
    let park = StepOutcome::Park {
        approval: json!({"status": "WAITING"}),
    };
    op(
        "park",
        s.complete_step(completion(&run, "a", "e", a[0].attempt, park))
            .await,
    )?;
    if !op(
        "claim parked",
        s.claim_steps("e", Duration::from_secs(30), 10).await,
    )?
    .is_empty()
    {
        return Err("a parked step must not be claimable".into());
    }
    if op("run", s.run(&run).await)?.waiting_approvals != 1 {
        return Err("the run counts its waiting approval".into());
    }
    if op("approval_steps", s.approval_steps(true, 10).await)?.len() != 1 {
        return Err("the parked step is listed as waiting".into());
    }
    let decision = StepDecision {
        run: run.clone(),
        name: "a".into(),
        approval: json!({"status": "APPROVED"}),
        extend_deadline: Duration::from_secs(1),
        events: vec![],
    };
    op("decide", s.decide_step(decision.clone()).await)?;
    if !matches!(s.decide_step(decision).await, Err(StoreError::Stale { .. })) {
        return Err("a second decision must be Stale".into());
    }
    let again = op(
        "claim decided",
        s.claim_steps("e", Duration::from_secs(30), 10).await,
    )?;
    if again.len() != 1 || again[0].phase.as_deref() != Some("DECIDED") {
        return Err(format!(
            "a decided step is claimable with phase DECIDED: {again:?}"
        ));
    }
    let ended = op(
        "finish_run",
        s.finish_run(RunFinish {
            run: run.clone(),
            from: vec![RunStatus::Running],
            to: RunStatus::Cancelled,
            error: "cancelled".into(),
            events: vec![],
        })
        .await,
    )?;
    if ended.status != RunStatus::Cancelled {
        return Err(format!("finish_run: {ended:?}"));
    }
    let steps = op("steps", s.steps(&run).await)?;
    if steps.iter().any(|st| st.status != RunStatus::Cancelled) {
        return Err(format!(
            "every open step is skipped, running ones too: {steps:?}"
        ));
    }
    if !matches!(
        s.complete_step(completion(&run, "a", "e", again[0].attempt, done(&["b"])))
            .await,
        Err(StoreError::Stale { .. })
    ) {
        return Err("an attempt of a cancelled run must be Stale".into());
    }
    // Overdue runs.
    let late = started(&s, SystemTime::now() - Duration::from_secs(1)).await?;
    let overdue = op("overdue_runs", s.overdue_runs(SystemTime::now(), 10).await)?;
    if overdue.iter().map(|r| &r.id).collect::<Vec<_>>() != [&late] {
        return Err(format!(
            "overdue runs: expected only {late}, got {overdue:?}"
        ));
    }
    Ok(())
}

/// A batch of completions in one transaction: each judged on its own (a stale one refused, the
/// others written), children released, runs finished, and ready steps claimed inline.
pub(crate) async fn batches(s: Arc<dyn Store>) -> Result<(), String> {
    let far = SystemTime::now() + Duration::from_secs(3600);
    let (r1, r2) = (started(&s, far).await?, started(&s, far).await?);
    let lease = Duration::from_secs(30);
    let claimed = op("claim", s.claim_steps("e", lease, 10).await)?;
    if claimed.len() != 2 || claimed.iter().any(|c| c.name != "a") {
        return Err(format!("both runs' `a` are ready: {claimed:?}"));
    }
    let claim = StepClaim {
        owner: "e".into(),
        lease,
        limit: 10,
    };
    let batch = vec![
        completion(&r1, "a", "e", 1, done(&["b"])),
        completion(&r2, "a", "someone-else", 1, done(&["b"])),
        completion(&r2, "a", "e", 1, done(&["b"])),
    ];
    let out = op(
        "complete_steps",
        s.complete_steps(batch, Some(claim.clone())).await,
    )?;
    match out.completed.as_slice() {
        [Ok(one), Err(StoreError::Stale { .. }), Ok(two)]
            if one.ready == ["b"] && two.ready == ["b"] && !one.run_finished => {}
        other => return Err(format!("batch results: {other:?}")),
    }
    let mut got: Vec<(String, String)> = out
        .claimed
        .iter()
        .map(|c| (c.run_id.to_string(), c.name.clone()))
        .collect();
    got.sort();
    let mut want = vec![
        (r1.to_string(), "b".to_owned()),
        (r2.to_string(), "b".to_owned()),
    ];
    want.sort();
    if got != want || out.claimed.iter().any(|c| c.attempt != 1) {
        return Err(format!(
            "the released `b`s are claimed in the batch: {:?}",
            out.claimed
        ));
    }
    let last = vec![
        completion(&r1, "b", "e", 1, done(&[])),
        completion(&r2, "b", "e", 1, done(&[])),
    ];
    let out = op("complete_steps", s.complete_steps(last, Some(claim)).await)?;
    for c in &out.completed {
        match c {
            Ok(c) if c.run_finished && c.run.status == RunStatus::Succeeded => {}
            other => return Err(format!("each last step finishes its run: {other:?}")),
        }
    }
    if !out.claimed.is_empty() {
        return Err(format!("nothing is left to claim: {:?}", out.claimed));
    }
    let subjects: Vec<String> = op(
        "claim_outbox",
        s.claim_outbox("relay", Duration::from_secs(30), 100).await,
    )?
    .into_iter()
    .map(|m| m.subject)
    .collect();
    let dones = subjects.iter().filter(|s| *s == "t.run.done").count();
    let nodes = subjects.iter().filter(|s| *s == "t.node").count();
    if dones != 2 || nodes != 4 || subjects.last().map(String::as_str) != Some("t.run.done") {
        return Err(format!(
            "events of accepted completions only, run endings after their steps: {subjects:?}"
        ));
    }
    Ok(())
}

fn launch(key: Option<&str>, steps: Vec<NewStep>) -> RunLaunch {
    RunLaunch {
        id: RunId::random(),
        new: NewRun {
            workflow_id: None,
            kind: "workflow".into(),
            input: json!({"pinned": true}),
            idempotency_key: key.map(str::to_owned),
        },
        deadline: SystemTime::now() + Duration::from_secs(3600),
        steps,
        events: vec![ev("t.run.started")],
    }
}

/// Runs created and started in the engine's batch transaction: each `Running` with its steps
/// and events; a repeated idempotency key (in the batch or stored) writes nothing and answers
/// with the run holding it; a launch refused on its own fails only its entry; the new runs'
/// ready steps are claimed in the same transaction, next to a completion of an older run.
pub(crate) async fn launches(s: Arc<dyn Store>) -> Result<(), String> {
    let far = SystemTime::now() + Duration::from_secs(3600);
    let old = started(&s, far).await?;
    let lease = Duration::from_secs(30);
    let first = op("claim", s.claim_steps("e", lease, 10).await)?;
    if first.len() != 1 {
        return Err(format!("the older run's `a` is ready: {first:?}"));
    }
    let stored_key = op(
        "write_batch",
        s.write_batch(FlowBatch {
            launches: vec![launch(Some("k-stored"), vec![step("a", 0)])],
            ..FlowBatch::default()
        })
        .await,
    )?;
    let stored = match stored_key.launched.as_slice() {
        [Ok(l)] if !l.duplicate && l.run.status == RunStatus::Running => l.run.id.clone(),
        other => return Err(format!("a launch alone: {other:?}")),
    };
    // The claim takes the stored run's `a` too: leave room for it.
    let fresh = launch(Some("k-new"), vec![step("a", 0), step("b", 1)]);
    let fresh_id = fresh.id.clone();
    let mut bad = launch(None, vec![step("a", 0)]);
    bad.steps[0].name = " ".into();
    let batch = FlowBatch {
        launches: vec![
            fresh,
            launch(Some("k-new"), vec![step("a", 0)]),
            launch(Some("k-stored"), vec![step("a", 0)]),
            bad,
        ],
        completions: vec![completion(&old, "a", "e", 1, done(&["b"]))],
        claim: Some(StepClaim {
            owner: "e".into(),
            lease,
            limit: 10,
        }),
    };
    let out = op("write_batch", s.write_batch(batch).await)?;
    match out.launched.as_slice() {
        [Ok(a), Ok(b), Ok(c), Err(StoreError::Invalid(_))]
            if !a.duplicate
                && a.run.id == fresh_id
                && a.run.status == RunStatus::Running
                && a.run.deadline.is_some()
                && b.duplicate
                && b.run.id == fresh_id
                && c.duplicate
                && c.run.id == stored => {}
        other => return Err(format!("launch results: {other:?}")),
    }
    match out.completed.as_slice() {
        [Ok(c)] if c.ready == ["b"] => {}
        other => return Err(format!("the completion next to the launches: {other:?}")),
    }
    let mut got: Vec<(String, String)> = out
        .claimed
        .iter()
        .map(|c| (c.run_id.to_string(), c.name.clone()))
        .collect();
    got.sort();
    let mut want = vec![
        (old.to_string(), "b".to_owned()),
        (stored.to_string(), "a".to_owned()),
        (fresh_id.to_string(), "a".to_owned()),
    ];
    want.sort();
    if got != want {
        return Err(format!(
            "the new runs' ready steps and the released child are claimed inline: {got:?}"
        ));
    }
    let run = op("run", s.run(&fresh_id).await)?;
    if run.input != json!({"pinned": true}) || run.status != RunStatus::Running {
        return Err(format!("the launched run keeps its input: {run:?}"));
    }
    let steps = op("steps", s.steps(&fresh_id).await)?;
    if steps.len() != 2 || steps[1].waiting_on != 1 {
        return Err(format!("the launched run's steps: {steps:?}"));
    }
    let by_key = op(
        "create_run",
        s.create_run(NewRun {
            workflow_id: None,
            kind: "workflow".into(),
            input: json!({}),
            idempotency_key: Some("k-new".into()),
        })
        .await,
    )?;
    if by_key.id != fresh_id {
        return Err(format!(
            "create_run finds the launched run by key: {by_key:?}"
        ));
    }
    // Finishing the launched run through completions, as any other.
    let a = out
        .claimed
        .iter()
        .find(|c| c.run_id == fresh_id)
        .ok_or("claimed `a` of the new run")?;
    let claim = StepClaim {
        owner: "e".into(),
        lease,
        limit: 10,
    };
    let out = op(
        "write_batch",
        s.write_batch(FlowBatch {
            completions: vec![completion(&fresh_id, "a", "e", a.attempt, done(&["b"]))],
            claim: Some(claim.clone()),
            ..FlowBatch::default()
        })
        .await,
    )?;
    let b = match out.claimed.as_slice() {
        [b] if b.name == "b" && b.run_id == fresh_id => b.clone(),
        other => return Err(format!("`b` claimed once `a` is done: {other:?}")),
    };
    let out = op(
        "write_batch",
        s.write_batch(FlowBatch {
            completions: vec![completion(&fresh_id, "b", "e", b.attempt, done(&[]))],
            claim: Some(claim),
            ..FlowBatch::default()
        })
        .await,
    )?;
    match out.completed.as_slice() {
        [Ok(c)] if c.run_finished && c.run.status == RunStatus::Succeeded => {}
        other => return Err(format!("the launched run succeeds: {other:?}")),
    }
    // Events: two launches wrote `run.started` (the duplicates and the refused one nothing).
    let subjects: Vec<String> = op(
        "claim_outbox",
        s.claim_outbox("relay", Duration::from_secs(30), 100).await,
    )?
    .into_iter()
    .map(|m| m.subject)
    .collect();
    let starts = subjects.iter().filter(|s| *s == "t.run.started").count();
    if starts != 3 {
        return Err(format!(
            "run.started of the older run and the two new ones only: {subjects:?}"
        ));
    }
    Ok(())
}
