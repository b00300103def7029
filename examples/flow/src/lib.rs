//! # hybridgrid-flow-examples
//!
//! Two example agents for the workflow orchestrator, each a small program that follows the agent
//! I/O contract: its input JSON arrives in `AGENT_INPUT` and as the first argument, it prints
//! exactly one JSON document on stdout, logs on stderr, and exits 0 on success.
//!
//! - `flow-secret-scanner`: scans a mounted directory for committed secrets (AWS keys, private
//!   keys, tokens, `password = "..."`) and reports each finding with its file and line (the secret
//!   itself is redacted).
//! - `flow-notifier`: sends a message to the console (stderr) or POSTs it as JSON to a webhook.
//!
//! Their schemas are in `examples/flow/agents/*.json`, and `examples/flow/workflows/` holds the
//! scan → notify workflow that `hg-flow demo` runs.
//!
//! ```
//! let input = hybridgrid_flow_examples::read_input(Some(r#"{"path": "/tmp"}"#.into()), None).unwrap();
//! assert_eq!(input["path"], "/tmp");
//! ```

use serde_json::Value;

pub mod notifier;
pub mod scanner;

/// Runs an agent body under the I/O contract: reads the input, prints the one JSON result on
/// stdout and exits 0, or logs the error on stderr and exits 1.
pub fn main_with(body: fn(&Value) -> Result<Value, String>) -> ! {
    let input = input_or_exit();
    match body(&input) {
        Ok(out) => {
            emit(&out);
            std::process::exit(0)
        }
        Err(e) => fail(&e),
    }
}

/// The agent's input: the first argument if given, else `AGENT_INPUT`. The error says which is
/// missing or malformed.
pub fn read_input(arg: Option<String>, env: Option<String>) -> Result<Value, String> {
    let (raw, from) = match (arg, env) {
        (Some(a), _) if !a.trim().is_empty() => (a, "the first argument"),
        (_, Some(e)) if !e.trim().is_empty() => (e, "AGENT_INPUT"),
        _ => {
            return Err(
                "no input provided: pass the input JSON as the first argument or in AGENT_INPUT"
                    .into(),
            );
        }
    };
    serde_json::from_str(&raw).map_err(|e| format!("input in {from} is not valid JSON: {e}"))
}

/// Reads the input from the process, or prints the error as the agent's failure and exits 1.
pub fn input_or_exit() -> Value {
    match read_input(std::env::args().nth(1), std::env::var("AGENT_INPUT").ok()) {
        Ok(v) => v,
        Err(e) => fail(&e),
    }
}

/// Logs `message` on stderr and exits 1.
pub fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

/// Prints `v` as the one JSON document on stdout.
pub fn emit(v: &Value) {
    println!("{v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_wins_and_errors_name_the_source() {
        let v = read_input(Some("{\"a\":1}".into()), Some("{\"a\":2}".into())).unwrap();
        assert_eq!(v["a"], 1);
        let v = read_input(None, Some("{\"a\":2}".into())).unwrap();
        assert_eq!(v["a"], 2);
        assert!(read_input(None, None).unwrap_err().contains("no input"));
        assert!(
            read_input(None, Some("{".into()))
                .unwrap_err()
                .contains("AGENT_INPUT")
        );
    }
}
