//! Conformance suite for [`Store`] backends.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use hybridgrid_core::Store;
//! # async fn demo(make_store: impl Fn() -> Arc<dyn Store>) {
//! // In crates/store/tests/sqlite.rs:
//! hybridgrid_testkit::store::run_store_suite(|| async { make_store() }).await;
//! # }
//! ```

use crate::check;
use futures::FutureExt;
use futures::future::BoxFuture;
use hybridgrid_core::ids::{RunId, WorkflowId};
use hybridgrid_core::store::{NewRun, Run, RunStatus, Step, Store, StoreError, Transition};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use RunStatus::{Cancelled, Failed, Pending, Running, Succeeded};

type Check = fn(Arc<dyn Store>) -> BoxFuture<'static, Result<(), String>>;

/// Runs every [`Store`] check, each on a fresh instance from `make`, and panics once listing all
/// failures. `make` must return an empty, isolated store each time (checks count what they find).
pub async fn run_store_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    let checks: [(&str, Check); 15] = [
        ("workflows_save_version_list", |s| workflows(s).boxed()),
        ("run_create_and_get", |s| create_and_get(s).boxed()),
        ("runs_newest_first_by_status_with_limit", |s| {
            listing(s).boxed()
        }),
        ("create_with_same_key_is_idempotent", |s| {
            idempotency(s).boxed()
        }),
        ("transitions_compare_and_set", |s| cas(s).boxed()),
        ("terminal_status_never_changes", |s| terminal(s).boxed()),
        ("steps_ensure_and_transition", |s| steps(s).boxed()),
        ("concurrent_transitions_one_winner", |s| race(s).boxed()),
        ("missing_records_are_not_found", |s| not_found(s).boxed()),
        ("json_documents_round_trip", |s| json_round_trip(s).boxed()),
        ("records_unique_by_name", |s| {
            crate::store_flow::records(s).boxed()
        }),
        (
            "step_claims_exclusive_stale_attempts_refused_outbox_in_order",
            |s| crate::store_flow::claims(s).boxed(),
        ),
        ("parked_steps_decisions_run_endings_deadlines", |s| {
            crate::store_flow::approvals_and_endings(s).boxed()
        }),
        ("step_batches_judged_one_by_one_and_claim_inline", |s| {
            crate::store_flow::batches(s).boxed()
        }),
        (
            "runs_launched_in_the_batch_once_per_key_and_claimed_inline",
            |s| crate::store_flow::launches(s).boxed(),
        ),
    ];
    let mut failed = Vec::new();
    for (name, run) in checks {
        check(&mut failed, name, run(make().await)).await;
    }
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

/// Fails the check with the message unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn new_run(workflow: Option<&WorkflowId>, input: Value, key: Option<&str>) -> NewRun {
    NewRun {
        workflow_id: workflow.cloned(),
        kind: "workflow".into(),
        input,
        idempotency_key: key.map(str::to_owned),
    }
}

/// Creates a run of no workflow.
async fn create(s: &Arc<dyn Store>, input: Value, key: Option<&str>) -> Result<Run, String> {
    op("create_run", s.create_run(new_run(None, input, key)).await)
}

/// Moves a run, expecting success.
async fn move_run(
    s: &Arc<dyn Store>,
    id: &RunId,
    from: &[RunStatus],
    to: RunStatus,
    set: Transition,
) -> Result<Run, String> {
    let what = format!("run {id} {from:?} -> {to}");
    op(&what, s.transition_run(id, from, to, set).await)
}

/// Moves a step, expecting success.
async fn move_step(
    s: &Arc<dyn Store>,
    run: &RunId,
    name: &str,
    from: &[RunStatus],
    to: RunStatus,
    set: Transition,
) -> Result<Step, String> {
    let what = format!("step {name} {from:?} -> {to}");
    op(&what, s.transition_step(run, name, from, to, set).await)
}

fn output(v: Value) -> Transition {
    Transition {
        output: Some(v),
        error: None,
    }
}

fn error(e: &str) -> Transition {
    Transition {
        output: None,
        error: Some(e.to_owned()),
    }
}

fn none() -> Transition {
    Transition::default()
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
            "{what_op}: expected Conflict {{ actual: {actual}, expected: {expected:?} }}, \
             got {other:?}"
        )),
    }
}

async fn workflows(s: Arc<dyn Store>) -> Result<(), String> {
    let save = |name: &'static str, v: Value| {
        let s = s.clone();
        async move { op(&format!("save {name}"), s.save_workflow(name, v).await) }
    };
    let b1 = save("b-flow", json!({"v": 1})).await?;
    ensure!(b1.version == 1 && b1.name == "b-flow", "first save: {b1:?}");
    let a1 = save("a-flow", json!({"v": "a"})).await?;
    let b2 = save("b-flow", json!({"v": 2})).await?;
    ensure!(b2.version == 2, "second save: version {}", b2.version);
    ensure!(
        b2.id == b1.id,
        "second save changed the id: {} -> {}",
        b1.id,
        b2.id
    );
    ensure!(
        b2.definition == json!({"v": 2}),
        "second save: definition {}",
        b2.definition
    );
    let b3 = save("b-flow", json!({"v": 3})).await?;
    ensure!(b3.version == 3, "third save: version {}", b3.version);
    let got = op("workflow(b)", s.workflow(&b1.id).await)?;
    ensure!(
        got == b3,
        "workflow(id): expected the latest {b3:?}, got {got:?}"
    );
    let all = op("workflows()", s.workflows().await)?;
    let names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
    ensure!(
        names == ["a-flow", "b-flow"],
        "workflows(): expected [a-flow, b-flow], got {names:?}"
    );
    ensure!(
        all[0] == a1 && all[1] == b3,
        "workflows(): records differ from saved: {all:?}"
    );
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
    let new = new_run(Some(&wf.id), input.clone(), None);
    let run = op("create", s.create_run(new).await)?;
    ensure!(
        run.status == Pending,
        "new run: expected PENDING, got {}",
        run.status
    );
    ensure!(
        run.workflow_id.as_ref() == Some(&wf.id)
            && run.kind == "workflow"
            && run.input == input
            && run.output.is_none()
            && run.error.is_none(),
        "new run fields: {run:?}"
    );
    ensure!(
        run.updated_at >= run.created_at,
        "updated_at before created_at: {run:?}"
    );
    let got = op("run(id)", s.run(&run.id).await)?;
    ensure!(got == run, "run(id): expected {run:?}, got {got:?}");
    let activation = NewRun {
        workflow_id: None,
        kind: "activation".into(),
        input: json!(null),
        idempotency_key: None,
    };
    let solo = op("create activation", s.create_run(activation).await)?;
    ensure!(
        solo.workflow_id.is_none() && solo.kind == "activation" && solo.input.is_null(),
        "standalone run: {solo:?}"
    );
    ensure!(solo.id != run.id, "two runs got one id");
    Ok(())
}

async fn listing(s: Arc<dyn Store>) -> Result<(), String> {
    let mut created: Vec<Run> = Vec::new();
    for i in 0..6 {
        created.push(create(&s, json!({"i": i}), None).await?);
    }
    for i in [1, 3, 5] {
        move_run(&s, &created[i].id, &[Pending], Running, none()).await?;
    }
    let ids = |runs: &[Run]| runs.iter().map(|r| r.id.clone()).collect::<Vec<RunId>>();
    let want: Vec<RunId> = created.iter().rev().map(|r| r.id.clone()).collect();
    let all = op("runs(None, 100)", s.runs(None, 100).await)?;
    ensure!(
        ids(&all) == want,
        "runs(None): expected newest first {want:?}, got {:?}",
        ids(&all)
    );
    let top2 = op("runs(None, 2)", s.runs(None, 2).await)?;
    ensure!(
        ids(&top2) == want[..2],
        "runs(None, 2): expected {:?}, got {:?}",
        &want[..2],
        ids(&top2)
    );
    let running = op("runs(Running)", s.runs(Some(Running), 100).await)?;
    let want_running = [5, 3, 1].map(|i| created[i].id.clone());
    ensure!(
        ids(&running) == want_running,
        "runs(Running): expected {want_running:?}, got {:?}",
        ids(&running)
    );
    ensure!(
        running.iter().all(|r| r.status == Running),
        "runs(Running) mixed: {running:?}"
    );
    let pending1 = op("runs(Pending, 1)", s.runs(Some(Pending), 1).await)?;
    ensure!(
        ids(&pending1) == [created[4].id.clone()],
        "runs(Pending, 1): expected [{}], got {:?}",
        created[4].id,
        ids(&pending1)
    );
    let failed = op("runs(Failed)", s.runs(Some(Failed), 100).await)?;
    ensure!(
        failed.is_empty(),
        "runs(Failed): expected none, got {failed:?}"
    );
    let zero = op("runs(None, 0)", s.runs(None, 0).await)?;
    ensure!(
        zero.is_empty(),
        "runs(None, 0): expected none, got {}",
        zero.len()
    );
    Ok(())
}

async fn idempotency(s: Arc<dyn Store>) -> Result<(), String> {
    let first = create(&s, json!({"n": 1}), Some("k1")).await?;
    // A repeat (even with another input) returns the run that exists, unchanged.
    let again = create(&s, json!({"n": 2}), Some("k1")).await?;
    ensure!(
        again == first,
        "repeated key: expected {first:?}, got {again:?}"
    );
    let other = create(&s, json!({"n": 3}), Some("k2")).await?;
    ensure!(
        other.id != first.id,
        "a different key returned the same run"
    );
    // Runs without a key are never merged.
    let a = create(&s, json!({}), None).await?;
    let b = create(&s, json!({}), None).await?;
    ensure!(a.id != b.id, "two runs without a key were merged");
    // Eight concurrent creates with one key make one run.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            create(&s, json!({"racer": i}), Some("k3")).await
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        let run = t
            .await
            .map_err(|e| format!("create task panicked: {e}"))??;
        ids.insert(run.id);
    }
    ensure!(
        ids.len() == 1,
        "8 concurrent creates with one key made {} runs",
        ids.len()
    );
    let all = op("runs", s.runs(None, 100).await)?;
    ensure!(
        all.len() == 5,
        "expected 5 runs (k1, k2, 2 unkeyed, k3), found {}",
        all.len()
    );
    Ok(())
}

async fn cas(s: Arc<dyn Store>) -> Result<(), String> {
    let run = create(&s, json!({}), None).await?;
    let started = move_run(&s, &run.id, &[Pending], Running, none()).await?;
    ensure!(
        started.status == Running && started.id == run.id,
        "after start: {started:?}"
    );
    ensure!(
        started.created_at == run.created_at && started.updated_at >= run.updated_at,
        "start changed created_at or moved updated_at back: {run:?} -> {started:?}"
    );
    let again = s.transition_run(&run.id, &[Pending], Running, none()).await;
    expect_conflict("second Pending -> Running", again, Running, &[Pending])?;
    // Several allowed statuses: one matching is enough.
    let out = json!({"artifact": "a.tar", "bytes": 1024});
    let done = move_run(
        &s,
        &run.id,
        &[Pending, Running],
        Succeeded,
        output(out.clone()),
    )
    .await?;
    ensure!(
        done.status == Succeeded && done.output == Some(out) && done.error.is_none(),
        "after success: {done:?}"
    );
    let read = op("run(id)", s.run(&run.id).await)?;
    ensure!(
        read == done,
        "stored {read:?}, transition returned {done:?}"
    );
    // Failure stores its error text; an output set earlier is kept when none is given.
    let r2 = create(&s, json!({}), None).await?;
    move_run(
        &s,
        &r2.id,
        &[Pending],
        Running,
        output(json!({"partial": true})),
    )
    .await?;
    let why = "exit code 2: ld: symbol not found";
    let failed = move_run(&s, &r2.id, &[Running], Failed, error(why)).await?;
    ensure!(
        failed.status == Failed
            && failed.error.as_deref() == Some(why)
            && failed.output == Some(json!({"partial": true})),
        "after failure: {failed:?}"
    );
    // A refused move changes nothing.
    let r3 = create(&s, json!({}), None).await?;
    let refused = s
        .transition_run(&r3.id, &[Running], Succeeded, output(json!("no")))
        .await;
    expect_conflict(
        "Running -> Succeeded on a pending run",
        refused,
        Pending,
        &[Running],
    )?;
    let still = op("run(id)", s.run(&r3.id).await)?;
    ensure!(
        still == r3,
        "a refused move changed the run: {r3:?} -> {still:?}"
    );
    Ok(())
}

async fn terminal(s: Arc<dyn Store>) -> Result<(), String> {
    for end in [Succeeded, Failed, Cancelled] {
        let run = create(&s, json!({}), None).await?;
        let ended = move_run(&s, &run.id, &[Pending], end, none()).await?;
        for to in [Pending, Running, Succeeded, Failed, Cancelled] {
            // Even a caller that names the terminal status as allowed cannot move it.
            let r = s
                .transition_run(&run.id, &[end], to, output(json!(1)))
                .await;
            expect_conflict(&format!("{end} -> {to}"), r, end, &[end])?;
            let wide = [Pending, Running, end];
            let r = s.transition_run(&run.id, &wide, to, none()).await;
            expect_conflict(&format!("{end} -> {to} (wide from)"), r, end, &wide)?;
        }
        let read = op("run(id)", s.run(&run.id).await)?;
        ensure!(read == ended, "terminal run changed: {ended:?} -> {read:?}");
        match s
            .transition_run(&run.id, &[Running], Succeeded, none())
            .await
        {
            Err(e) if !e.retry().is_retryable() => {}
            other => return Err(format!("a conflict must not be retryable, got {other:?}")),
        }
    }
    Ok(())
}

async fn steps(s: Arc<dyn Store>) -> Result<(), String> {
    let run = create(&s, json!({}), None).await?;
    let id = &run.id;
    let compile = op(
        "ensure",
        s.ensure_step(id, "compile", json!({"file": "a.c"})).await,
    )?;
    ensure!(
        compile.status == Pending
            && compile.attempt == 0
            && compile.run_id == *id
            && compile.name == "compile"
            && compile.input == json!({"file": "a.c"})
            && compile.output.is_none(),
        "new step: {compile:?}"
    );
    let again = op(
        "ensure again",
        s.ensure_step(id, "compile", json!({"file": "b.c"})).await,
    )?;
    ensure!(
        again == compile,
        "ensure again changed the step: {compile:?} -> {again:?}"
    );
    op(
        "ensure archive",
        s.ensure_step(id, "archive", json!(null)).await,
    )?;
    let first = move_step(&s, id, "compile", &[Pending], Running, none()).await?;
    ensure!(
        first.attempt == 1 && first.status == Running,
        "after start: {first:?}"
    );
    let dup = s
        .transition_step(id, "compile", &[Pending], Running, none())
        .await;
    expect_conflict("compile second start", dup, Running, &[Pending])?;
    // A retry goes back to Pending (no attempt counted) and starts again (attempt 2).
    let back = move_step(&s, id, "compile", &[Running], Pending, error("worker lost")).await?;
    ensure!(
        back.attempt == 1 && back.error.as_deref() == Some("worker lost"),
        "after requeue: {back:?}"
    );
    let second = move_step(&s, id, "compile", &[Pending], Running, none()).await?;
    ensure!(
        second.attempt == 2,
        "after restart: attempt {}",
        second.attempt
    );
    let obj = json!({"object": "a.o"});
    let done = move_step(
        &s,
        id,
        "compile",
        &[Running],
        Succeeded,
        output(obj.clone()),
    )
    .await?;
    ensure!(
        done.attempt == 2 && done.output == Some(obj),
        "after success: {done:?}"
    );
    let reopen = s
        .transition_step(id, "compile", &[Succeeded], Running, none())
        .await;
    expect_conflict(
        "compile Succeeded -> Running",
        reopen,
        Succeeded,
        &[Succeeded],
    )?;
    let list = op("steps", s.steps(id).await)?;
    let names: Vec<&str> = list.iter().map(|st| st.name.as_str()).collect();
    ensure!(
        names == ["archive", "compile"],
        "steps(): expected [archive, compile], got {names:?}"
    );
    ensure!(
        list[1] == done,
        "steps() compile: {:?} vs {done:?}",
        list[1]
    );
    // Steps belong to their run.
    let other = create(&s, json!({}), None).await?;
    let other_steps = op("steps of other run", s.steps(&other.id).await)?;
    ensure!(
        other_steps.is_empty(),
        "a new run has steps: {other_steps:?}"
    );
    let fresh = op(
        "ensure in other run",
        s.ensure_step(&other.id, "compile", json!(1)).await,
    )?;
    ensure!(
        fresh.attempt == 0 && fresh.status == Pending,
        "same name, other run: {fresh:?}"
    );
    Ok(())
}

async fn race(s: Arc<dyn Store>) -> Result<(), String> {
    let run = create(&s, json!({}), None).await?;
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
            let mine = output(json!({"winner": i}));
            let r = s.transition_run(&id, &[Pending], Running, mine).await;
            let st = s
                .transition_step(&id, "only", &[Pending], Running, none())
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
            Err(e) => expect_conflict("losing run move", Err::<(), _>(e), Running, &[Pending])?,
        }
        match st {
            Ok(_) => step_wins += 1,
            Err(e) => expect_conflict("losing step move", Err::<(), _>(e), Running, &[Pending])?,
        }
    }
    ensure!(
        run_wins.len() == 1,
        "16 racing run moves: {} won ({run_wins:?})",
        run_wins.len()
    );
    ensure!(step_wins == 1, "16 racing step moves: {step_wins} won");
    let read = op("run(id)", s.run(&run.id).await)?;
    ensure!(
        read.output == Some(json!({"winner": run_wins[0]})),
        "stored output {:?} is not the winner's ({})",
        read.output,
        run_wins[0]
    );
    let steps = op("steps", s.steps(&run.id).await)?;
    ensure!(
        steps.len() == 1 && steps[0].attempt == 1,
        "racing starts counted: {steps:?}"
    );
    Ok(())
}

async fn not_found(s: Arc<dyn Store>) -> Result<(), String> {
    let ghost = RunId::random();
    expect_not_found("run(unknown)", s.run(&ghost).await, "run")?;
    let r = s.transition_run(&ghost, &[Pending], Running, none()).await;
    expect_not_found("transition_run(unknown)", r, "run")?;
    let r = s.workflow(&WorkflowId::random()).await;
    expect_not_found("workflow(unknown)", r, "workflow")?;
    let r = s
        .create_run(new_run(Some(&WorkflowId::random()), json!({}), None))
        .await;
    expect_not_found("create_run(unknown workflow)", r, "workflow")?;
    let r = s.ensure_step(&ghost, "a", json!({})).await;
    expect_not_found("ensure_step(unknown run)", r, "run")?;
    expect_not_found("steps(unknown run)", s.steps(&ghost).await, "run")?;
    let run = create(&s, json!({}), None).await?;
    let r = s
        .transition_step(&run.id, "nope", &[Pending], Running, none())
        .await;
    expect_not_found("transition_step(unknown step)", r, "step")?;
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
        "numbers": {
            "int": 42, "neg": -7, "big": 9_007_199_254_740_993_i64, "max": i64::MAX,
            "float": 3.25, "tiny": 1.5e-10
        },
        "bools": [true, false],
        "ключ": "значение",
        "": "empty key",
    });
    let wf = op("save", s.save_workflow("ünïcödé-flow ✓", doc.clone()).await)?;
    let wf_read = op("workflow(id)", s.workflow(&wf.id).await)?;
    ensure!(
        wf_read.definition == doc && wf_read.name == "ünïcödé-flow ✓",
        "workflow changed: {wf_read:?}"
    );
    let new = new_run(Some(&wf.id), doc.clone(), Some("ключ-🔑"));
    let run = op("create", s.create_run(new).await)?;
    let why = "ошибка: 失败 💥\nline 2";
    let set = Transition {
        output: Some(doc.clone()),
        error: Some(why.into()),
    };
    let done = move_run(&s, &run.id, &[Pending], Failed, set).await?;
    let read = op("run(id)", s.run(&run.id).await)?;
    ensure!(
        read == done && read.input == doc && read.output.as_ref() == Some(&doc),
        "run documents changed: input {} output {:?}",
        read.input,
        read.output
    );
    ensure!(
        read.error.as_deref() == Some(why),
        "error text changed: {:?}",
        read.error
    );
    let again = create(&s, json!(0), Some("ключ-🔑")).await?;
    ensure!(
        again.id == run.id,
        "a unicode idempotency key did not match itself"
    );
    let scalars = [
        json!(null),
        json!("a string"),
        json!(12.5),
        json!([1, "two", [3]]),
    ];
    for (i, scalar) in scalars.into_iter().enumerate() {
        let name = format!("step-{i}-ß");
        let step = op(
            "ensure",
            s.ensure_step(&run.id, &name, scalar.clone()).await,
        )?;
        ensure!(
            step.input == scalar,
            "step input {scalar} came back as {}",
            step.input
        );
        let set = output(scalar.clone());
        let moved = move_step(&s, &run.id, &name, &[Pending], Succeeded, set).await?;
        ensure!(
            moved.output.as_ref() == Some(&scalar),
            "step output {scalar} came back as {:?}",
            moved.output
        );
    }
    let steps = op("steps", s.steps(&run.id).await)?;
    ensure!(steps.len() == 4, "expected 4 steps, got {}", steps.len());
    Ok(())
}
