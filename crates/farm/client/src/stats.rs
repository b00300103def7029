//! The wrapper's counters: one line appended per compile to a log (atomic `O_APPEND` writes, so
//! parallel wrappers never interleave), aggregated by `hgbuild --stats` and by the build summary.

use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// How one compiler invocation was served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Served {
    /// A sampled remote result matched the local recompile (`verify.rate`).
    Verified {
        /// The worker whose object was checked.
        worker: String,
    },
    /// A sampled remote result did NOT match the local recompile; the local object was used.
    VerifyMismatch {
        /// The worker whose object was wrong.
        worker: String,
    },
    /// Compiled on a worker.
    Remote {
        /// The worker.
        worker: String,
    },
    /// Answered from the compile cache.
    CacheHit {
        /// `local` or `shared`.
        tier: String,
    },
    /// Compiled locally although distributable, because the farm could not take it.
    Fallback {
        /// Why (`no_workers`, `no_matching_toolchain`, `coordinator_unreachable`, ...).
        reason: String,
    },
    /// Compiled locally to reproduce the compiler's exact diagnostics (warnings or errors).
    LocalDiagnostics,
    /// Compiled locally by choice: the farm had no slot free at once and a local core was idle
    /// (the local cores are farm capacity). Not a fallback.
    LocalByChoice,
    /// Not a distributable compile at all (linking, `-E`, ...).
    LocalOnly {
        /// Why.
        reason: String,
    },
}

impl Served {
    fn line(&self) -> String {
        let (kind, arg) = match self {
            Served::Remote { worker } => ("remote", worker.as_str()),
            Served::Verified { worker } => ("verified", worker.as_str()),
            Served::VerifyMismatch { worker } => ("verify_mismatch", worker.as_str()),
            Served::CacheHit { tier } => ("cache_hit", tier.as_str()),
            Served::Fallback { reason } => ("fallback", reason.as_str()),
            Served::LocalDiagnostics => ("local_diagnostics", "-"),
            Served::LocalByChoice => ("local_by_choice", "-"),
            Served::LocalOnly { reason } => ("local_only", reason.as_str()),
        };
        let arg: String = arg
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        format!("{kind} {arg}")
    }
}

/// Appends one record to `log`. Failures to record go to the log file (never to the compile's
/// stderr), and are never fatal.
pub fn record(log: &Path, served: &Served) {
    append(log, format!("{}\n", served.line()));
}

/// Appends a compile-cache event: `cache_miss <reason>`, `cache_evictions <n>`, `cache_corrupt <n>`.
pub fn record_event(log: &Path, kind: &str, arg: &str) {
    append(log, format!("{kind} {arg}\n"));
}

fn append(log: &Path, line: String) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        f.write_all(line.as_bytes())
    };
    if let Err(e) = write() {
        crate::notice::append(
            crate::notice::log_file(),
            format!(
                "pid={} kind=stats cannot record stats in {}: {e}\n",
                std::process::id(),
                log.display()
            ),
        );
    }
}

/// Distinct farm messages the build summary prints; the rest are only in the log file.
const MAX_SUMMARY_NOTES: usize = 5;

/// Totals over a stats log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Sampled remote results that matched a local recompile, by worker.
    pub verified: BTreeMap<String, u64>,
    /// Sampled remote results that did not, by worker.
    pub verify_mismatches: BTreeMap<String, u64>,
    /// Compiles run on workers, by worker.
    pub remote: BTreeMap<String, u64>,
    /// Cache hits, by tier.
    pub cache_hits: BTreeMap<String, u64>,
    /// Local fallbacks, by reason.
    pub fallbacks: BTreeMap<String, u64>,
    /// Local reruns for exact diagnostics.
    pub local_diagnostics: u64,
    /// Compiles run on the local cores by choice (the farm had no slot free at once).
    pub local_by_choice: u64,
    /// Invocations that were never distributable, by reason.
    pub local_only: BTreeMap<String, u64>,
    /// Cacheable compiles not found in any cache tier.
    pub cache_misses: u64,
    /// Those misses by reason (`new_source_or_flags`, `headers_changed`, `time_dependent`,
    /// `entry_missing`; `unrecorded` for logs written before reasons were).
    pub cache_miss_reasons: BTreeMap<String, u64>,
    /// Entries evicted from the local cache to keep it under `cache.max_size_gb`.
    pub cache_evictions: u64,
    /// Damaged cache entries detected (and dropped) on read.
    pub cache_corrupt: u64,
    /// Shared-cache entries refused because their MAC did not verify (`cache.shared_secret`).
    pub cache_forged: u64,
    /// The farm's own messages (coordinator unreachable, cache trouble, ...), each distinct one
    /// with the number of times it was reported; printed once each by the build summary.
    #[serde(skip)]
    pub notes: BTreeMap<String, u64>,
}

impl Totals {
    /// Reads `log` from byte `from` on. A missing log is empty.
    pub fn read(log: &Path, from: u64) -> std::io::Result<Self> {
        let bytes = match std::fs::read(log) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
        let mut t = Totals::default();
        for line in String::from_utf8_lossy(&bytes[start..]).lines() {
            let (kind, arg) = line.split_once(' ').unwrap_or((line, ""));
            let bump = |m: &mut BTreeMap<String, u64>| *m.entry(arg.to_owned()).or_default() += 1;
            match kind {
                "remote" => bump(&mut t.remote),
                "verified" => bump(&mut t.verified),
                "verify_mismatch" => bump(&mut t.verify_mismatches),
                "cache_hit" => bump(&mut t.cache_hits),
                "fallback" => bump(&mut t.fallbacks),
                "local_diagnostics" => t.local_diagnostics += 1,
                "local_by_choice" => t.local_by_choice += 1,
                "local_only" => bump(&mut t.local_only),
                "cache_miss" => {
                    t.cache_misses += 1;
                    let reason = if arg.is_empty() || arg == "-" {
                        "unrecorded"
                    } else {
                        arg
                    };
                    *t.cache_miss_reasons.entry(reason.to_owned()).or_default() += 1;
                }
                "cache_evictions" => {
                    t.cache_evictions = t
                        .cache_evictions
                        .saturating_add(arg.parse::<u64>().unwrap_or(0))
                }
                "cache_corrupt" => {
                    t.cache_corrupt = t
                        .cache_corrupt
                        .saturating_add(arg.parse::<u64>().unwrap_or(0))
                }
                "cache_forged" => {
                    t.cache_forged = t
                        .cache_forged
                        .saturating_add(arg.parse::<u64>().unwrap_or(0))
                }
                "note" => bump(&mut t.notes),
                _ => {}
            }
        }
        Ok(t)
    }

    /// Compiles served remotely.
    pub fn remote_total(&self) -> u64 {
        self.remote.values().sum()
    }
    /// Local fallbacks.
    pub fn fallback_total(&self) -> u64 {
        self.fallbacks.values().sum()
    }
    /// Cache hits.
    pub fn cache_hit_total(&self) -> u64 {
        self.cache_hits.values().sum()
    }

    /// Cache hits over cacheable compiles (hits + misses), 0 when there were none.
    pub fn cache_hit_rate(&self) -> f64 {
        let hits = self.cache_hit_total();
        let all = hits + self.cache_misses;
        if all == 0 {
            0.0
        } else {
            hits as f64 / all as f64
        }
    }

    /// The one-paragraph summary printed after a build.
    pub fn summary(&self) -> String {
        let fmt = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = format!(
            "hgbuild: {} compiled remotely on {} worker(s), {} on local cores by choice, {} cache hits, {} local fallbacks",
            self.remote_total(),
            self.remote.len(),
            self.local_by_choice,
            self.cache_hit_total(),
            self.fallback_total()
        );
        if !self.fallbacks.is_empty() {
            s.push_str(&format!(" ({})", fmt(&self.fallbacks)));
        }
        s.push_str(&format!(
            ", {} local for exact diagnostics",
            self.local_diagnostics
        ));
        let verified: u64 = self.verified.values().sum();
        let mismatches: u64 = self.verify_mismatches.values().sum();
        if verified + mismatches > 0 {
            s.push_str(&format!(
                ", {} verified locally ({mismatches} mismatches",
                verified + mismatches
            ));
            if mismatches > 0 {
                s.push_str(&format!(": {}", fmt(&self.verify_mismatches)));
            }
            s.push(')');
        }
        if self.cache_forged > 0 {
            s.push_str(&format!(
                ", {} forged shared cache entries refused",
                self.cache_forged
            ));
        }
        let local_only: u64 = self.local_only.values().sum();
        if local_only > 0 {
            s.push_str(&format!(
                ", {local_only} not distributable ({})",
                fmt(&self.local_only)
            ));
        }
        // Each distinct message of the farm once, most frequent first.
        let mut notes: Vec<(&String, &u64)> = self.notes.iter().collect();
        notes.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        for (msg, n) in notes.iter().take(MAX_SUMMARY_NOTES) {
            let times = if **n == 1 {
                String::new()
            } else {
                format!(" ({n} times)")
            };
            s.push_str(&format!("\nhgbuild: note: {msg}{times}"));
        }
        if notes.len() > MAX_SUMMARY_NOTES {
            s.push_str(&format!(
                "\nhgbuild: note: {} more messages in {}",
                notes.len() - MAX_SUMMARY_NOTES,
                crate::notice::log_file().display()
            ));
        }
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_aggregate() {
        let dir = std::env::temp_dir().join(format!("hg-stats-{}", uuid::Uuid::new_v4()));
        let log = dir.join("s.log");
        record(
            &log,
            &Served::Remote {
                worker: "w1".into(),
            },
        );
        record(
            &log,
            &Served::Remote {
                worker: "w2".into(),
            },
        );
        let mid = std::fs::metadata(&log).unwrap().len();
        record(
            &log,
            &Served::Fallback {
                reason: "no_workers".into(),
            },
        );
        record(
            &log,
            &Served::LocalOnly {
                reason: "not compile only".into(),
            },
        );
        let all = Totals::read(&log, 0).unwrap();
        assert_eq!(all.remote_total(), 2);
        assert_eq!(all.remote.len(), 2);
        assert_eq!(all.fallbacks.get("no_workers"), Some(&1));
        assert_eq!(all.local_only.get("not_compile_only"), Some(&1));
        let tail = Totals::read(&log, mid).unwrap();
        assert_eq!(tail.remote_total(), 0);
        assert_eq!(tail.fallback_total(), 1);
        assert!(all.summary().contains("2 compiled remotely on 2 worker(s)"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
