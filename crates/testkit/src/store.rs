//! Conformance suite for [`Store`] backends.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use hybridgrid_core::Store;
//! # async fn demo(make_store: impl Fn() -> Arc<dyn Store>) {
//! // In crates/store/tests/conformance.rs:
//! hybridgrid_testkit::store::run_store_suite(|| async { make_store() }).await;
//! # }
//! ```

use crate::check;
use hybridgrid_core::ids::{RunId, WorkflowId};
use hybridgrid_core::store::{NewRun, Run, RunStatus, Store, StoreError, Transition};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

/// Runs every [`Store`] check, each on a fresh instance from `make`, and panics once listing all
/// failures. `make` must return an empty, isolated store each time (checks count what they find).
pub async fn run_store_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    let mut failed = Vec::new();
    check(
        &mut failed,
        "workflows_save_version_list",
        workflows(make().await),
    )
    .await;
    check(
        &mut failed,
        "run_create_and_get",
        create_and_get(make().await),
    )
    .await;
    check(
        &mut failed,
        "runs_newest_first_by_status_with_limit",
        listing(make().await),
    )
    .await;
    check(
        &mut failed,
        "create_with_same_key_is_idempotent",
        idempotency(make().await),
    )
    .await;
    check(
        &mut failed,
        "transitions_compare_and_set",
        cas(make().await),
    )
    .await;
    check(
        &mut failed,
        "terminal_status_never_changes",
        terminal(make().await),
    )
    .await;
    check(
        &mut failed,
        "steps_ensure_and_transition",
        steps(make().await),
    )
    .await;
    check(
        &mut failed,
        "concurrent_transitions_one_winner",
        race(make().await),
    )
    .await;
    check(
        &mut failed,
        "missing_records_are_not_found",
        not_found(make().await),
    )
    .await;
    check(
        &mut failed,
        "json_documents_round_trip",
        json_round_trip(make().await),
    )
    .await;
    assert!(
        failed.is_empty(),
        "Store conformance failures:\n{}",
        failed.join("\n")
    );
}

/// Turns a store error into a check failure naming the operation.
fn op<T>(what: &str, r: Result<T, StoreError>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: unexpected error: {e}"))
}

/// Fails the check with `msg` unless `cond`.
fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg()) }
}

fn new_run(workflow: Option<&WorkflowId>, input: Value, key: Option<&str>) -> NewRun {
    NewRun {
        workflow_id: workflow.cloned(),
        kind: "workflow".into(),
        input,
        idempotency_key: key.map(str::to_owned),
    }
}

fn expect_not_found<T: std::fmt::Debug>(
    what_op: &str,
    r: Result<T, StoreError>,
    what: &str,
) -> Result<(), String> {
    match r {
        Err(StoreError::NotFound { what: w, .. }) if w == what => Ok(()),
        other => Err(format!(
            "{what_op}: expected NotFound {{ what: {what:?} }}, got {other:?}"
        )),
    }
}

fn expect_conflict<T: std::fmt::Debug>(
    what_op: &str,
    r: Result<T, StoreError>,
    actual: RunStatus,
    expected: &[RunStatus],
) -> Result<(), String> {
    match r {
        Err(StoreError::Conflict {
            actual: a,
            expected: e,
            ..
        }) if a == actual && e == expected => Ok(()),
        other => Err(format!(
            "{what_op}: expected Conflict {{ actual: {actual}, expected: {expected:?} }}, got {other:?}"
        )),
    }
}

async fn workflows(s: Arc<dyn Store>) -> Result<(), String> {
    let b1 = op("save b", s.save_workflow("b-flow", json!({"v": 1})).await)?;
    ensure(b1.version == 1 && b1.name == "b-flow", || {
        format!("first save: expected version 1 named b-flow, got {b1:?}")
    })?;
    let a1 = op("save a", s.save_workflow("a-flow", json!({"v": "a"})).await)?;
    let b2 = op(
        "save b again",
        s.save_workflow("b-flow", json!({"v": 2})).await,
    )?;
    ensure(b2.version == 2, || {
        format!("second save: expected version 2, got {}", b2.version)
    })?;
    ensure(b2.id == b1.id, || {
        format!("second save changed the id: {} -> {}", b1.id, b2.id)
    })?;
    ensure(b2.definition == json!({"v": 2}), || {
        format!("second save: definition {}", b2.definition)
    })?;
    let b3 = op(
        "save b a third time",
        s.save_workflow("b-flow", json!({"v": 3})).await,
    )?;
    ensure(b3.version == 3, || {
        format!("third save: version {}", b3.version)
    })?;
    let got = op("workflow(b)", s.workflow(&b1.id).await)?;
    ensure(got == b3, || {
        format!("workflow(id): expected the latest version {b3:?}, got {got:?}")
    })?;
    let all = op("workflows()", s.workflows().await)?;
    let names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
    ensure(names == ["a-flow", "b-flow"], || {
        format!("workflows(): expected [a-flow, b-flow] by name, got {names:?}")
    })?;
    ensure(all[0] == a1 && all[1] == b3, || {
        format!("workflows(): records differ from what was saved: {all:?}")
    })?;
    match s.save_workflow("", json!({})).await {
        Err(StoreError::Invalid(_)) => Ok(()),
        other => Err(format!(
            "save with empty name: expected Invalid, got {other:?}"
        )),
    }
}

async fn create_and_get(s: Arc<dyn Store>) -> Result<(), String> {
    let wf = op("save", s.save_workflow("flow", json!({"dag": []})).await)?;
    let input = json!({"branch": "main", "n": 3});
    let run = op(
        "create",
        s.create_run(new_run(Some(&wf.id), input.clone(), None))
            .await,
    )?;
    ensure(run.status == RunStatus::Pending, || {
        format!("new run: expected PENDING, got {}", run.status)
    })?;
    ensure(
        run.workflow_id.as_ref() == Some(&wf.id)
            && run.kind == "workflow"
            && run.input == input
            && run.output.is_none()
            && run.error.is_none(),
        || format!("new run fields: {run:?}"),
    )?;
    ensure(run.updated_at >= run.created_at, || {
        format!(
            "updated_at {:?} before created_at {:?}",
            run.updated_at, run.created_at
        )
    })?;
    let got = op("run(id)", s.run(&run.id).await)?;
    ensure(got == run, || {
        format!("run(id): expected {run:?}, got {got:?}")
    })?;
    let standalone = op(
        "create activation",
        s.create_run(NewRun {
            workflow_id: None,
            kind: "activation".into(),
            input: json!(null),
            idempotency_key: None,
        })
        .await,
    )?;
    ensure(
        standalone.workflow_id.is_none()
            && standalone.kind == "activation"
            && standalone.input.is_null(),
        || format!("standalone run: {standalone:?}"),
    )?;
    ensure(standalone.id != run.id, || "two runs got one id".into())
}

async fn listing(s: Arc<dyn Store>) -> Result<(), String> {
    let mut created: Vec<Run> = Vec::new();
    for i in 0..6 {
        created.push(op(
            "create",
            s.create_run(new_run(None, json!({"i": i}), None)).await,
        )?);
    }
    // Runs 1, 3 and 5 start.
    for i in [1, 3, 5] {
        op(
            "start",
            s.transition_run(
                &created[i].id,
                &[RunStatus::Pending],
                RunStatus::Running,
                Transition::default(),
            )
            .await,
        )?;
    }
    let ids = |runs: &[Run]| runs.iter().map(|r| r.id.clone()).collect::<Vec<RunId>>();
    let all = op("runs(None, 100)", s.runs(None, 100).await)?;
    let want: Vec<RunId> = created.iter().rev().map(|r| r.id.clone()).collect();
    ensure(ids(&all) == want, || {
        format!(
            "runs(None): expected newest first {want:?}, got {:?}",
            ids(&all)
        )
    })?;
    let top2 = op("runs(None, 2)", s.runs(None, 2).await)?;
    ensure(ids(&top2) == want[..2], || {
        format!(
            "runs(None, 2): expected {:?}, got {:?}",
            &want[..2],
            ids(&top2)
        )
    })?;
    let running = op("runs(Running)", s.runs(Some(RunStatus::Running), 100).await)?;
    let want_running = vec![
        created[5].id.clone(),
        created[3].id.clone(),
        created[1].id.clone(),
    ];
    ensure(ids(&running) == want_running, || {
        format!(
            "runs(Running): expected {want_running:?}, got {:?}",
            ids(&running)
        )
    })?;
    ensure(
        running.iter().all(|r| r.status == RunStatus::Running),
        || format!("runs(Running) returned other statuses: {running:?}"),
    )?;
    let pending1 = op(
        "runs(Pending, 1)",
        s.runs(Some(RunStatus::Pending), 1).await,
    )?;
    ensure(ids(&pending1) == [created[4].id.clone()], || {
        format!(
            "runs(Pending, 1): expected [{}], got {:?}",
            created[4].id,
            ids(&pending1)
        )
    })?;
    let none = op("runs(Failed)", s.runs(Some(RunStatus::Failed), 100).await)?;
    ensure(none.is_empty(), || {
        format!("runs(Failed): expected none, got {none:?}")
    })?;
    let zero = op("runs(None, 0)", s.runs(None, 0).await)?;
    ensure(zero.is_empty(), || {
        format!("runs(None, 0): expected none, got {} runs", zero.len())
    })
}

async fn idempotency(s: Arc<dyn Store>) -> Result<(), String> {
    let first = op(
        "create k1",
        s.create_run(new_run(None, json!({"n": 1}), Some("k1")))
            .await,
    )?;
    // A repeat (even with another input) returns the run that exists, unchanged.
    let again = op(
        "create k1 again",
        s.create_run(new_run(None, json!({"n": 2}), Some("k1")))
            .await,
    )?;
    ensure(again == first, || {
        format!("repeated key: expected the existing run {first:?}, got {again:?}")
    })?;
    let other = op(
        "create k2",
        s.create_run(new_run(None, json!({"n": 3}), Some("k2")))
            .await,
    )?;
    ensure(other.id != first.id, || {
        "a different key returned the same run".into()
    })?;
    // Runs without a key are never merged.
    let a = op(
        "create unkeyed",
        s.create_run(new_run(None, json!({}), None)).await,
    )?;
    let b = op(
        "create unkeyed",
        s.create_run(new_run(None, json!({}), None)).await,
    )?;
    ensure(a.id != b.id, || "two runs without a key were merged".into())?;
    // Eight concurrent creates with one key make one run.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_run(new_run(None, json!({"racer": i}), Some("k3")))
                .await
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        let r = t.await.map_err(|e| format!("create task panicked: {e}"))?;
        ids.insert(op("concurrent create k3", r)?.id);
    }
    ensure(ids.len() == 1, || {
        format!(
            "8 concurrent creates with one key made {} runs: {ids:?}",
            ids.len()
        )
    })?;
    let all = op("runs", s.runs(None, 100).await)?;
    ensure(all.len() == 5, || {
        format!(
            "expected 5 runs (k1, k2, two unkeyed, k3), found {}",
            all.len()
        )
    })
}

async fn cas(s: Arc<dyn Store>) -> Result<(), String> {
    let run = op("create", s.create_run(new_run(None, json!({}), None)).await)?;
    let started = op(
        "Pending -> Running",
        s.transition_run(
            &run.id,
            &[RunStatus::Pending],
            RunStatus::Running,
            Transition::default(),
        )
        .await,
    )?;
    ensure(
        started.status == RunStatus::Running && started.id == run.id,
        || format!("after start: {started:?}"),
    )?;
    ensure(
        started.created_at == run.created_at && started.updated_at >= run.updated_at,
        || format!("start changed created_at or moved updated_at back: {run:?} -> {started:?}"),
    )?;
    let again = s
        .transition_run(
            &run.id,
            &[RunStatus::Pending],
            RunStatus::Running,
            Transition::default(),
        )
        .await;
    expect_conflict(
        "second Pending -> Running",
        again,
        RunStatus::Running,
        &[RunStatus::Pending],
    )?;
    // Several allowed statuses: one matching is enough.
    let done = op(
        "[Pending, Running] -> Succeeded",
        s.transition_run(
            &run.id,
            &[RunStatus::Pending, RunStatus::Running],
            RunStatus::Succeeded,
            Transition {
                output: Some(json!({"artifact": "a.tar", "bytes": 1024})),
                error: None,
            },
        )
        .await,
    )?;
    ensure(
        done.status == RunStatus::Succeeded
            && done.output == Some(json!({"artifact": "a.tar", "bytes": 1024}))
            && done.error.is_none(),
        || format!("after success: {done:?}"),
    )?;
    let read = op("run(id)", s.run(&run.id).await)?;
    ensure(read == done, || {
        format!("stored {read:?}, transition returned {done:?}")
    })?;
    // Failure stores its error text; an output set earlier is kept when none is given.
    let r2 = op("create", s.create_run(new_run(None, json!({}), None)).await)?;
    op(
        "Pending -> Running with output",
        s.transition_run(
            &r2.id,
            &[RunStatus::Pending],
            RunStatus::Running,
            Transition {
                output: Some(json!({"partial": true})),
                error: None,
            },
        )
        .await,
    )?;
    let failed = op(
        "Running -> Failed",
        s.transition_run(
            &r2.id,
            &[RunStatus::Running],
            RunStatus::Failed,
            Transition {
                output: None,
                error: Some("exit code 2: ld: symbol not found".into()),
            },
        )
        .await,
    )?;
    ensure(
        failed.status == RunStatus::Failed
            && failed.error.as_deref() == Some("exit code 2: ld: symbol not found")
            && failed.output == Some(json!({"partial": true})),
        || format!("after failure: {failed:?}"),
    )?;
    // A refused move changes nothing.
    let r3 = op("create", s.create_run(new_run(None, json!({}), None)).await)?;
    let refused = s
        .transition_run(
            &r3.id,
            &[RunStatus::Running],
            RunStatus::Succeeded,
            Transition {
                output: Some(json!("nope")),
                error: None,
            },
        )
        .await;
    expect_conflict(
        "Running -> Succeeded on a pending run",
        refused,
        RunStatus::Pending,
        &[RunStatus::Running],
    )?;
    let still = op("run(id)", s.run(&r3.id).await)?;
    ensure(still == r3, || {
        format!("a refused move changed the run: {r3:?} -> {still:?}")
    })
}

async fn terminal(s: Arc<dyn Store>) -> Result<(), String> {
    use RunStatus::*;
    for end in [Succeeded, Failed, Cancelled] {
        let run = op("create", s.create_run(new_run(None, json!({}), None)).await)?;
        let ended = op(
            "Pending -> terminal",
            s.transition_run(&run.id, &[Pending], end, Transition::default())
                .await,
        )?;
        for to in [Pending, Running, Succeeded, Failed, Cancelled] {
            // Even a caller that names the terminal status as allowed cannot move it.
            let r = s
                .transition_run(
                    &run.id,
                    &[end],
                    to,
                    Transition {
                        output: Some(json!(1)),
                        error: None,
                    },
                )
                .await;
            expect_conflict(&format!("{end} -> {to}"), r, end, &[end])?;
            let r = s
                .transition_run(&run.id, &[Pending, Running, end], to, Transition::default())
                .await;
            expect_conflict(
                &format!("{end} -> {to} (wide from)"),
                r,
                end,
                &[Pending, Running, end],
            )?;
        }
        let read = op("run(id)", s.run(&run.id).await)?;
        ensure(read == ended, || {
            format!("terminal run changed: {ended:?} -> {read:?}")
        })?;
        match s
            .transition_run(&run.id, &[Running], Succeeded, Transition::default())
            .await
        {
            Err(e) if !e.retry().is_retryable() => {}
            other => return Err(format!("a conflict must not be retryable, got {other:?}")),
        }
    }
    Ok(())
}

async fn steps(s: Arc<dyn Store>) -> Result<(), String> {
    use RunStatus::*;
    let run = op("create", s.create_run(new_run(None, json!({}), None)).await)?;
    let compile = op(
        "ensure compile",
        s.ensure_step(&run.id, "compile", json!({"file": "a.c"}))
            .await,
    )?;
    ensure(
        compile.status == Pending
            && compile.attempt == 0
            && compile.run_id == run.id
            && compile.name == "compile"
            && compile.input == json!({"file": "a.c"})
            && compile.output.is_none(),
        || format!("new step: {compile:?}"),
    )?;
    let again = op(
        "ensure compile again",
        s.ensure_step(&run.id, "compile", json!({"file": "b.c"}))
            .await,
    )?;
    ensure(again == compile, || {
        format!("ensure again changed the step: {compile:?} -> {again:?}")
    })?;
    op(
        "ensure archive",
        s.ensure_step(&run.id, "archive", json!(null)).await,
    )?;
    let first = op(
        "compile Pending -> Running",
        s.transition_step(
            &run.id,
            "compile",
            &[Pending],
            Running,
            Transition::default(),
        )
        .await,
    )?;
    ensure(first.attempt == 1 && first.status == Running, || {
        format!("after start: {first:?}")
    })?;
    let dup = s
        .transition_step(
            &run.id,
            "compile",
            &[Pending],
            Running,
            Transition::default(),
        )
        .await;
    expect_conflict("compile second start", dup, Running, &[Pending])?;
    // A retry goes back to Pending (no attempt counted) and starts again (attempt 2).
    let back = op(
        "compile Running -> Pending",
        s.transition_step(
            &run.id,
            "compile",
            &[Running],
            Pending,
            Transition {
                output: None,
                error: Some("worker lost".into()),
            },
        )
        .await,
    )?;
    ensure(
        back.attempt == 1 && back.error.as_deref() == Some("worker lost"),
        || format!("after requeue: {back:?}"),
    )?;
    let second = op(
        "compile restart",
        s.transition_step(
            &run.id,
            "compile",
            &[Pending],
            Running,
            Transition::default(),
        )
        .await,
    )?;
    ensure(second.attempt == 2, || {
        format!("after restart: attempt {}", second.attempt)
    })?;
    let done = op(
        "compile Running -> Succeeded",
        s.transition_step(
            &run.id,
            "compile",
            &[Running],
            Succeeded,
            Transition {
                output: Some(json!({"object": "a.o"})),
                error: None,
            },
        )
        .await,
    )?;
    ensure(
        done.attempt == 2 && done.output == Some(json!({"object": "a.o"})),
        || format!("after success: {done:?}"),
    )?;
    let reopen = s
        .transition_step(
            &run.id,
            "compile",
            &[Succeeded],
            Running,
            Transition::default(),
        )
        .await;
    expect_conflict(
        "compile Succeeded -> Running",
        reopen,
        Succeeded,
        &[Succeeded],
    )?;
    let list = op("steps", s.steps(&run.id).await)?;
    let names: Vec<&str> = list.iter().map(|st| st.name.as_str()).collect();
    ensure(names == ["archive", "compile"], || {
        format!("steps(): expected [archive, compile], got {names:?}")
    })?;
    ensure(list[1] == done, || {
        format!("steps() compile: {:?} vs {done:?}", list[1])
    })?;
    // Steps belong to their run.
    let other = op("create", s.create_run(new_run(None, json!({}), None)).await)?;
    let other_steps = op("steps of other run", s.steps(&other.id).await)?;
    ensure(other_steps.is_empty(), || {
        format!("a new run has steps: {other_steps:?}")
    })?;
    let fresh = op(
        "ensure compile in other run",
        s.ensure_step(&other.id, "compile", json!(1)).await,
    )?;
    ensure(fresh.attempt == 0 && fresh.status == Pending, || {
        format!("same name in another run: {fresh:?}")
    })
}

async fn race(s: Arc<dyn Store>) -> Result<(), String> {
    let run = op("create", s.create_run(new_run(None, json!({}), None)).await)?;
    op(
        "ensure step",
        s.ensure_step(&run.id, "only", json!({})).await,
    )?;
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (s, start, id) = (s.clone(), start.clone(), run.id.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let r = s
                .transition_run(
                    &id,
                    &[RunStatus::Pending],
                    RunStatus::Running,
                    Transition {
                        output: Some(json!({"winner": i})),
                        error: None,
                    },
                )
                .await;
            let st = s
                .transition_step(
                    &id,
                    "only",
                    &[RunStatus::Pending],
                    RunStatus::Running,
                    Transition::default(),
                )
                .await;
            (i, r, st)
        }));
    }
    let (mut run_wins, mut step_wins) = (Vec::new(), 0);
    for t in tasks {
        let (i, r, st) = t
            .await
            .map_err(|e| format!("transition task panicked: {e}"))?;
        match r {
            Ok(_) => run_wins.push(i),
            Err(e) => expect_conflict(
                "losing run transition",
                Err::<(), _>(e),
                RunStatus::Running,
                &[RunStatus::Pending],
            )?,
        }
        match st {
            Ok(_) => step_wins += 1,
            Err(e) => expect_conflict(
                "losing step transition",
                Err::<(), _>(e),
                RunStatus::Running,
                &[RunStatus::Pending],
            )?,
        }
    }
    ensure(run_wins.len() == 1, || {
        format!(
            "16 racing run transitions: {} won ({run_wins:?})",
            run_wins.len()
        )
    })?;
    ensure(step_wins == 1, || {
        format!("16 racing step transitions: {step_wins} won")
    })?;
    let read = op("run(id)", s.run(&run.id).await)?;
    ensure(read.output == Some(json!({"winner": run_wins[0]})), || {
        format!(
            "stored output {:?} is not the winner's ({})",
            read.output, run_wins[0]
        )
    })?;
    let steps = op("steps", s.steps(&run.id).await)?;
    ensure(steps.len() == 1 && steps[0].attempt == 1, || {
        format!("racing starts counted attempts: {steps:?}")
    })
}

async fn not_found(s: Arc<dyn Store>) -> Result<(), String> {
    let ghost = RunId::random();
    expect_not_found("run(unknown)", s.run(&ghost).await, "run")?;
    expect_not_found(
        "transition_run(unknown)",
        s.transition_run(
            &ghost,
            &[RunStatus::Pending],
            RunStatus::Running,
            Transition::default(),
        )
        .await,
        "run",
    )?;
    expect_not_found(
        "workflow(unknown)",
        s.workflow(&WorkflowId::random()).await,
        "workflow",
    )?;
    expect_not_found(
        "create_run(unknown workflow)",
        s.create_run(new_run(Some(&WorkflowId::random()), json!({}), None))
            .await,
        "workflow",
    )?;
    expect_not_found(
        "ensure_step(unknown run)",
        s.ensure_step(&ghost, "a", json!({})).await,
        "run",
    )?;
    expect_not_found("steps(unknown run)", s.steps(&ghost).await, "run")?;
    let run = op("create", s.create_run(new_run(None, json!({}), None)).await)?;
    expect_not_found(
        "transition_step(unknown step)",
        s.transition_step(
            &run.id,
            "nope",
            &[RunStatus::Pending],
            RunStatus::Running,
            Transition::default(),
        )
        .await,
        "step",
    )?;
    match s.run(&ghost).await {
        Err(e) if !e.retry().is_retryable() => Ok(()),
        other => Err(format!("NotFound must not be retryable, got {other:?}")),
    }
}

async fn json_round_trip(s: Arc<dyn Store>) -> Result<(), String> {
    let doc = json!({
        "nested": {"a": {"b": {"c": [1, 2, {"d": null}]}}, "empty_obj": {}, "empty_arr": []},
        "unicode": "héllo wörld — 日本語 — עברית — 🦀🚀 — e\u{301}",
        "escapes": "quote \" backslash \\ newline \n tab \t slash /",
        "numbers": {"int": 42, "neg": -7, "big": 9_007_199_254_740_993_i64, "max": i64::MAX, "float": 3.25, "tiny": 1.5e-10},
        "bools": [true, false],
        "ключ": "значение",
        "": "empty key",
    });
    let wf = op("save", s.save_workflow("ünïcödé-flow ✓", doc.clone()).await)?;
    let wf_read = op("workflow(id)", s.workflow(&wf.id).await)?;
    ensure(
        wf_read.definition == doc && wf_read.name == "ünïcödé-flow ✓",
        || format!("workflow definition changed: {}", wf_read.definition),
    )?;
    let run = op(
        "create",
        s.create_run(new_run(Some(&wf.id), doc.clone(), Some("ключ-🔑")))
            .await,
    )?;
    let done = op(
        "finish",
        s.transition_run(
            &run.id,
            &[RunStatus::Pending],
            RunStatus::Failed,
            Transition {
                output: Some(doc.clone()),
                error: Some("ошибка: 失败 💥\nline 2".into()),
            },
        )
        .await,
    )?;
    let read = op("run(id)", s.run(&run.id).await)?;
    ensure(
        read == done && read.input == doc && read.output.as_ref() == Some(&doc),
        || {
            format!(
                "run documents changed: input {} output {:?}",
                read.input, read.output
            )
        },
    )?;
    ensure(
        read.error.as_deref() == Some("ошибка: 失败 💥\nline 2"),
        || format!("error text changed: {:?}", read.error),
    )?;
    let again = op(
        "create with unicode key",
        s.create_run(new_run(None, json!(0), Some("ключ-🔑"))).await,
    )?;
    ensure(again.id == run.id, || {
        "unicode idempotency key did not match itself".into()
    })?;
    for (i, scalar) in [
        json!(null),
        json!("just a string"),
        json!(12.5),
        json!([1, "two", [3]]),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("step-{i}-ß");
        let step = op(
            "ensure",
            s.ensure_step(&run.id, &name, scalar.clone()).await,
        )?;
        ensure(step.input == scalar, || {
            format!("step input {scalar} came back as {}", step.input)
        })?;
        let moved = op(
            "step output",
            s.transition_step(
                &run.id,
                &name,
                &[RunStatus::Pending],
                RunStatus::Succeeded,
                Transition {
                    output: Some(scalar.clone()),
                    error: None,
                },
            )
            .await,
        )?;
        ensure(moved.output.as_ref() == Some(&scalar), || {
            format!("step output {scalar} came back as {:?}", moved.output)
        })?;
    }
    let steps = op("steps", s.steps(&run.id).await)?;
    ensure(steps.len() == 4, || {
        format!("expected 4 steps, got {}", steps.len())
    })
}
