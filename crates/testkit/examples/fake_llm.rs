//! A fake LLM provider on loopback, answering every request with the same text (or, with
//! `--tool NAME --args JSON`, first with that tool call and then with the text).
//!
//! ```text
//! cargo run -p hybridgrid-testkit --features fake-llm --example fake_llm -- --addr 127.0.0.1:8089 --reply "Hello from the fake"
//! ANTHROPIC_BASE_URL=http://127.0.0.1:8089   OPENAI_BASE_URL=http://127.0.0.1:8089/v1
//! ```
//! `--log` prints every request body to stderr.

use hybridgrid_testkit::fake_llm::{FakeLlm, FakeReply};
use std::net::SocketAddr;

fn main() {
    let mut addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8089));
    let mut reply = "Hello from the fake LLM.".to_owned();
    let mut tool: Option<(String, serde_json::Value)> = None;
    let mut log = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| exit(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--addr" => {
                addr = value("--addr")
                    .parse()
                    .unwrap_or_else(|e| exit(&format!("--addr: {e}")))
            }
            "--reply" => reply = value("--reply"),
            "--tool" => {
                let name = value("--tool");
                tool = Some((name, serde_json::json!({})));
            }
            "--args" => {
                let v = value("--args");
                let parsed = serde_json::from_str(&v)
                    .unwrap_or_else(|e| exit(&format!("--args is not JSON: {e}")));
                match &mut tool {
                    Some((_, a)) => *a = parsed,
                    None => exit("--args needs --tool first"),
                }
            }
            "--log" => log = true,
            "-h" | "--help" => {
                println!(
                    "fake_llm [--addr IP:PORT] [--reply TEXT] [--tool NAME [--args JSON]] [--log]"
                );
                return;
            }
            other => exit(&format!("unknown argument {other}")),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| exit(&format!("runtime: {e}")));
    rt.block_on(async move {
        let fake = FakeLlm::start_on(addr)
            .await
            .unwrap_or_else(|e| exit(&format!("cannot bind {addr}: {e}")));
        if let Some((name, a)) = tool {
            fake.push(FakeReply::tool_call(name, a));
        }
        fake.set_fallback(Some(FakeReply::text(reply)));
        println!(
            "fake LLM on {} (Anthropic: {}, OpenAI: {})",
            fake.addr(),
            fake.base_url(),
            fake.openai_base_url()
        );
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            }
            if log {
                let reqs = fake.requests();
                for r in &reqs[seen..] {
                    eprintln!(
                        "{} {} stream={} {}",
                        r.path, r.body["model"], r.stream, r.body
                    );
                }
                seen = reqs.len();
            }
        }
    });
}

fn exit(msg: &str) -> ! {
    eprintln!("fake_llm: {msg}");
    std::process::exit(2)
}
