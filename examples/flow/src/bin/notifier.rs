//! `flow-notifier '{"channel": "console", "message": "..."}'`: delivers a notification.
//!
//! Input: `{"channel": "console" | "webhook", "message": string, "url"?: string (webhook),
//! "findings"?: array, "severity"?: string}`. The console channel writes the message to stderr (stdout
//! is the agent's result); the webhook channel POSTs `{"message", "severity", "findings"}` as JSON to
//! an `http://` URL. Output: `{"delivered": true, "channel", "status"?, "count"}`.

use hybridgrid_flow_examples::{emit, fail, input_or_exit};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn post(url: &str, body: &str) -> Result<u16, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("webhook url {url:?} must start with http:// (the example notifier speaks plain HTTP)")
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut s = TcpStream::connect(&addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: hybridgrid-flow-notifier\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut resp = Vec::new();
    let _ = s.take(64 * 1024).read_to_end(&mut resp);
    let head = String::from_utf8_lossy(&resp);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("no HTTP status line in the answer from {addr}"))?;
    if !(200..300).contains(&status) {
        return Err(format!("webhook {url} answered HTTP {status}"));
    }
    Ok(status)
}

fn main() {
    let input = input_or_exit();
    let channel = input
        .get("channel")
        .and_then(Value::as_str)
        .unwrap_or("console");
    let findings = input.get("findings").cloned().unwrap_or(json!([]));
    let count = findings.as_array().map(Vec::len).unwrap_or(0);
    let severity = input
        .get("severity")
        .and_then(Value::as_str)
        .unwrap_or("info");
    let message = match input.get("message").and_then(Value::as_str) {
        Some(m) => m.to_owned(),
        None => format!("{count} finding(s)"),
    };
    match channel {
        "console" => {
            eprintln!("[{severity}] {message}");
            if let Some(list) = findings.as_array() {
                for f in list {
                    eprintln!("  - {f}");
                }
            }
            emit(&json!({"delivered": true, "channel": "console", "count": count, "text": message}));
        }
        "webhook" => {
            let Some(url) = input.get("url").and_then(Value::as_str) else {
                fail("channel \"webhook\" needs \"url\" (http://host:port/path)");
            };
            let body =
                json!({"message": message, "severity": severity, "findings": findings}).to_string();
            match post(url, &body) {
                Ok(status) => {
                    eprintln!("posted {count} finding(s) to {url}: HTTP {status}");
                    emit(&json!({"delivered": true, "channel": "webhook", "status": status, "count": count}));
                }
                Err(e) => fail(&e),
            }
        }
        other => fail(&format!(
            "unknown channel {other:?}: use \"console\" or \"webhook\""
        )),
    }
}
