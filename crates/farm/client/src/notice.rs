//! The farm's own messages (coordinator unreachable, fallbacks, cache trouble): never written into
//! a compile's stderr, which must stay exactly the compiler's. Each message goes
//!
//! - to the log file (`$HG_LOG_FILE`, else `hgbuild.log` next to the stats log), one timestamped
//!   line per occurrence, and to `tracing` for embedders with a subscriber;
//! - to the stats log as a `note` record, so `hgbuild make` prints each distinct message once in
//!   its summary, with how many compiles it concerned.

use crate::paths::stats_log;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable naming the wrapper's log file.
pub const LOG_FILE_ENV: &str = "HG_LOG_FILE";
/// Longest message kept in a note (bytes of UTF-8, cut at a character boundary).
const MAX_NOTE: usize = 240;

/// Where the farm's messages are logged: `$HG_LOG_FILE`, else `hgbuild.log` in the stats log's
/// directory (`~/.hybridgrid/hgbuild.log` by default).
pub fn log_file() -> PathBuf {
    if let Some(p) = std::env::var_os(LOG_FILE_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let stats = stats_log();
    stats
        .parent()
        .map_or_else(|| PathBuf::from("hgbuild.log"), |d| d.join("hgbuild.log"))
}

/// One line of text: control characters (newlines included) become spaces, bounded in length.
fn one_line(message: &str) -> String {
    let mut s: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.len() > MAX_NOTE {
        let mut end = MAX_NOTE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Reports a message of the farm itself (`kind` is a short label such as `coordinator`); see the
/// module documentation for where it goes. Never fails and never prints to stdout or stderr.
pub fn notice(kind: &str, message: &str) {
    let message = one_line(message);
    tracing::warn!(kind, message = %message, "hgbuild notice");
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    append(
        log_file(),
        format!(
            "{secs:.3} pid={} kind={kind} {message}\n",
            std::process::id()
        ),
    );
    crate::stats::record_event(&stats_log(), "note", &message);
}

/// Appends `line` to `path` (one `O_APPEND` write); a log that cannot be written is ignored:
/// nothing may reach the compile's stderr.
pub(crate) fn append(path: PathBuf, line: String) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?
            .write_all(line.as_bytes())
    };
    let _ = write();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_strips_newlines_and_bounds_length() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
        let long = "é".repeat(400);
        let s = one_line(&long);
        assert!(s.len() <= MAX_NOTE + '…'.len_utf8());
        assert!(s.ends_with('…'));
    }
}
