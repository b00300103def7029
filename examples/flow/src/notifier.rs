//! The notifier: delivers a notification to the console or a webhook.
//!
//! Input: `{"channel": "console" | "webhook", "message": string, "url"?: string (webhook),
//! "findings"?: array, "severity"?: string}`. The console channel writes the message to stderr (stdout
//! is the agent's result); the webhook channel POSTs `{"message", "severity", "findings"}` as JSON to
//! an `http://` URL. Output: `{"delivered": true, "channel", "status"?, "count"}`.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn post(url: &str, body: &str) -> Result<u16, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!(
            "webhook url {url:?} must start with http:// (the example notifier speaks plain HTTP)"
        )
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

/// Delivers the notification described by `input`.
pub fn run(input: &Value) -> Result<Value, String> {
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
    if count == 0 && input.get("onlyIfFindings").and_then(Value::as_bool) == Some(true) {
        eprintln!("no findings: nothing to notify");
        return Ok(
            json!({"delivered": false, "channel": channel, "count": 0, "reason": "no findings"}),
        );
    }
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
            Ok(json!({"delivered": true, "channel": "console", "count": count, "text": message}))
        }
        "webhook" => {
            let Some(url) = input.get("url").and_then(Value::as_str) else {
                return Err("channel \"webhook\" needs \"url\" (http://host:port/path)".into());
            };
            let body =
                json!({"message": message, "severity": severity, "findings": findings}).to_string();
            let status = post(url, &body)?;
            eprintln!("posted {count} finding(s) to {url}: HTTP {status}");
            Ok(json!({"delivered": true, "channel": "webhook", "status": status, "count": count}))
        }
        other => Err(format!(
            "unknown channel {other:?}: use \"console\" or \"webhook\""
        )),
    }
}
