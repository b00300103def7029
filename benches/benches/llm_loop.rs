//! The agent loop's overhead per model call against the fake provider on loopback (HTTP, SSE
//! parsing, conversation building, tool dispatch), in both wire formats.
//! Run: cargo bench -p hybridgrid-benches --bench llm_loop

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use hybridgrid_executors::llm::{
    AgentRequest, ProviderConfig, ProviderKind, StopReason, ToolDef, ToolError, ToolOutput,
    ToolRouter, run_agent,
};
use hybridgrid_testkit::fake_llm::{FakeLlm, FakeReply};
use std::sync::Arc;

struct Echo;

#[async_trait]
impl ToolRouter for Echo {
    fn tools(&self) -> Vec<ToolDef> {
        vec![ToolDef {
            name: "echo".into(),
            description: "echo".into(),
            input_schema: serde_json::json!({"type": "object"}),
        }]
    }
    async fn call(&self, _: &str, args: serde_json::Value) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text(args.to_string()))
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let fake = rt.block_on(FakeLlm::start());
    // Every call asks for the same tool: the loop runs to max_iterations.
    fake.set_fallback(Some(FakeReply::tool_call(
        "echo",
        serde_json::json!({"n": 1}),
    )));
    let mut group = c.benchmark_group("llm_loop");
    for (kind, stream, base) in [
        (ProviderKind::Anthropic, true, fake.base_url()),
        (ProviderKind::Anthropic, false, fake.base_url()),
        (ProviderKind::OpenAi, true, fake.openai_base_url()),
        (ProviderKind::OpenAi, false, fake.openai_base_url()),
    ] {
        let mut p = ProviderConfig::new(kind, "fake-model", "k").with_base_url(base);
        p.stream = stream;
        let name = format!(
            "{kind}_{}_10_iterations",
            if stream { "sse" } else { "json" }
        );
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let mut req = AgentRequest::new(p.clone(), "system", "go", Arc::new(Echo));
                req.max_iterations = 10;
                req.repeat_limit = 0;
                async move {
                    let out = run_agent(req).await.expect("agent");
                    assert_eq!(out.stop, StopReason::MaxIterations);
                }
            })
        });
    }
    group.finish();
    // Memory of recorded requests grows; keep the fake alive to the end.
    drop(fake);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
