//! The secret scanner: reports secrets committed under `path`.
//!
//! Input: `{"path": string, "maxFileBytes"?: integer, "exclude"?: [string]}`.
//! Output: `{"path", "filesScanned", "count", "findings": [{"file", "line", "rule", "preview"}]}`;
//! `preview` shows the line with the secret redacted, never the secret.

use regex::Regex;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

struct Rule {
    name: &'static str,
    re: Regex,
}

fn rules() -> Vec<Rule> {
    let table: [(&str, &str); 6] = [
        ("aws-access-key-id", r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
        (
            "private-key",
            r"-----BEGIN ((RSA|EC|DSA|OPENSSH|PGP) )?PRIVATE KEY( BLOCK)?-----",
        ),
        ("github-token", r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
        ("slack-token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),
        (
            "generic-secret",
            r#"(?i)\b(api[_-]?key|secret|passw(or)?d|token)\b\s*[:=]\s*["'][^"'\s]{8,}["']"#,
        ),
        ("stripe-key", r"\b(sk|rk)_live_[A-Za-z0-9]{20,}\b"),
    ];
    table
        .into_iter()
        .filter_map(|(name, pat)| Regex::new(pat).ok().map(|re| Rule { name, re }))
        .collect()
}

fn walk(root: &Path, exclude: &[String], out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ".git" || exclude.contains(&name) {
                continue;
            }
            let ty = entry.file_type()?;
            if ty.is_dir() {
                stack.push(entry.path());
            } else if ty.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(())
}

fn redact(line: &str, start: usize, end: usize) -> String {
    let keep = 4.min(end.saturating_sub(start));
    let mut s = String::with_capacity(line.len());
    s.push_str(&line[..start]);
    s.push_str(&line[start..start + keep]);
    s.push_str("****");
    s.push_str(&line[end..]);
    s.chars().take(200).collect()
}

/// Scans `input.path`; the error names the bad input or unreadable directory.
pub fn run(input: &Value) -> Result<Value, String> {
    let Some(path) = input.get("path").and_then(|p| p.as_str()) else {
        return Err(
            "input needs \"path\": the directory to scan, e.g. {\"path\": \"/workspace\"}".into(),
        );
    };
    let max_bytes = input
        .get("maxFileBytes")
        .and_then(|v| v.as_u64())
        .unwrap_or(1 << 20);
    let exclude: Vec<String> = input
        .get("exclude")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let root = Path::new(path);
    if !root.is_dir() {
        return Err(format!("path {path:?} is not a directory (is it mounted?)"));
    }
    let mut files = Vec::new();
    if let Err(e) = walk(root, &exclude, &mut files) {
        return Err(format!("reading {path}: {e}"));
    }
    let rules = rules();
    let mut findings = Vec::new();
    let mut scanned = 0u64;
    for file in &files {
        let Ok(meta) = file.metadata() else { continue };
        if meta.len() > max_bytes {
            eprintln!(
                "skipping {} ({} bytes > maxFileBytes)",
                file.display(),
                meta.len()
            );
            continue;
        }
        let Ok(bytes) = std::fs::read(file) else {
            eprintln!("cannot read {}", file.display());
            continue;
        };
        if bytes.contains(&0) {
            continue; // binary
        }
        scanned += 1;
        let text = String::from_utf8_lossy(&bytes);
        let rel = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            for rule in &rules {
                if let Some(m) = rule.re.find(line) {
                    findings.push(json!({
                        "file": rel,
                        "line": n + 1,
                        "rule": rule.name,
                        "preview": redact(line, m.start(), m.end()),
                    }));
                }
            }
        }
    }
    eprintln!(
        "scanned {scanned} files under {path}: {} findings",
        findings.len()
    );
    Ok(json!({
        "path": path,
        "filesScanned": scanned,
        "count": findings.len(),
        "findings": findings,
    }))
}
