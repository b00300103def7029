//! The example agents as real processes, under the agent I/O contract.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

fn run(bin: &str, input: &Value, via_env: bool) -> (i32, Value, String) {
    let mut c = Command::new(bin);
    if via_env {
        c.env("AGENT_INPUT", input.to_string());
    } else {
        c.arg(input.to_string());
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("stdout not one JSON doc ({e}): {stdout}"))
    };
    (
        out.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn scanner_finds_secrets_and_redacts_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("src/config.py"),
        "x = 1\nAWS_KEY = 'AKIAIOSFODNN7EXAMPLE'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("id_rsa"),
        "-----BEGIN RSA PRIVATE KEY-----\nabc\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("clean.txt"), "nothing here\n").unwrap();
    let (code, out, _) = run(
        env!("CARGO_BIN_EXE_flow-secret-scanner"),
        &json!({"path": dir.path()}),
        false,
    );
    assert_eq!(code, 0);
    assert_eq!(out["count"], 2, "{out}");
    assert_eq!(out["filesScanned"], 3);
    let f = out["findings"].as_array().unwrap();
    assert!(f.iter().any(|x| x["file"] == "src/config.py"
        && x["line"] == 2
        && x["rule"] == "aws-access-key-id"));
    assert!(
        !out.to_string().contains("AKIAIOSFODNN7EXAMPLE"),
        "secret leaked: {out}"
    );
    let (code, out, _) = run(
        env!("CARGO_BIN_EXE_flow-secret-scanner"),
        &json!({"path": dir.path(), "exclude": ["src", "id_rsa"]}),
        true,
    );
    assert_eq!(code, 0);
    assert_eq!(out["count"], 0);
}

#[test]
fn scanner_bad_input_exits_1_with_a_reason() {
    let (code, out, err) = run(
        env!("CARGO_BIN_EXE_flow-secret-scanner"),
        &json!({"path": "/nonexistent/dir"}),
        false,
    );
    assert_eq!(code, 1);
    assert_eq!(out, Value::Null, "nothing on stdout on failure");
    assert!(err.contains("/nonexistent/dir"), "{err}");
    let (code, _, err) = run(env!("CARGO_BIN_EXE_flow-secret-scanner"), &json!({}), false);
    assert_eq!(code, 1);
    assert!(err.contains("path"), "{err}");
}

#[test]
fn notifier_console_and_webhook() {
    let (code, out, err) = run(
        env!("CARGO_BIN_EXE_flow-notifier"),
        &json!({"channel": "console", "message": "2 secrets", "findings": [{"file": "a"}]}),
        false,
    );
    assert_eq!(code, 0);
    assert_eq!(out["delivered"], true);
    assert!(err.contains("2 secrets"), "{err}");

    let (code, out, _) = run(
        env!("CARGO_BIN_EXE_flow-notifier"),
        &json!({"findings": [], "onlyIfFindings": true}),
        false,
    );
    assert_eq!(code, 0);
    assert_eq!(out["delivered"], false);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= len {
                    s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                        .unwrap();
                    return (head.to_owned(), body.to_owned());
                }
            }
            if n == 0 {
                panic!("connection closed early");
            }
        }
    });
    let (code, out, _) = run(
        env!("CARGO_BIN_EXE_flow-notifier"),
        &json!({"channel": "webhook", "url": format!("http://{addr}/hook"), "message": "found", "findings": [{"file": "x"}]}),
        true,
    );
    let (head, body) = server.join().unwrap();
    assert_eq!(code, 0);
    assert_eq!(out["status"], 204);
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    let posted: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(posted["findings"][0]["file"], "x");

    let (code, _, err) = run(
        env!("CARGO_BIN_EXE_flow-notifier"),
        &json!({"channel": "webhook", "url": "https://x"}),
        false,
    );
    assert_eq!(code, 1);
    assert!(err.contains("http://"), "{err}");
}
