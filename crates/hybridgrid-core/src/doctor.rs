//! The verdicts every `doctor` command prints (`hgbuild doctor`, `hg-coord doctor`,
//! `hg-worker doctor`, `hg-agents doctor`): a [`Report`] of [`Check`]s, each saying what was found
//! and, when it is not ok, what to do.
//!
//! ```
//! use hybridgrid_core::doctor::{Report, Verdict, check};
//! let mut r = Report::default();
//! r.push(check("config", Verdict::Ok, "defaults"));
//! r.push(check("cache dir", Verdict::Warn, "nearly full: raise cache.max_size"));
//! assert!(r.ok());
//! assert_eq!(r.to_string().lines().next(), Some("[ ok ] config: defaults"));
//! ```

use std::fmt;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Fine.
    Ok,
    /// Works, but something needs attention.
    Warn,
    /// Broken: the system will not work as configured.
    Fail,
}

impl Verdict {
    /// ` ok `, `WARN` or `FAIL` (the doctor's column).
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => " ok ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One diagnosis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// How it came out.
    pub verdict: Verdict,
    /// What was found, and what to do when not ok.
    pub detail: String,
}

impl Check {
    /// Whether it did not fail (warnings pass).
    pub fn ok(&self) -> bool {
        self.verdict != Verdict::Fail
    }
}

/// A [`Check`].
pub fn check(name: impl Into<String>, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        verdict,
        detail: detail.into(),
    }
}

/// Every check of one doctor run, in order.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// Adds a check.
    pub fn push(&mut self, c: Check) {
        self.checks.push(c);
    }
    /// Adds checks.
    pub fn extend(&mut self, c: impl IntoIterator<Item = Check>) {
        self.checks.extend(c);
    }
    /// Whether no check failed (warnings pass).
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.verdict != Verdict::Fail)
    }
    /// The process exit code: 0 when [`Report::ok`], else 1.
    pub fn exit_code(&self) -> i32 {
        if self.ok() { 0 } else { 1 }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            writeln!(f, "[{}] {}: {}", c.verdict.label(), c.name, c.detail)?;
        }
        let count = |v: Verdict| self.checks.iter().filter(|c| c.verdict == v).count();
        let (failed, warned) = (count(Verdict::Fail), count(Verdict::Warn));
        if failed == 0 {
            writeln!(
                f,
                "all {} checks passed ({warned} warnings)",
                self.checks.len()
            )
        } else {
            writeln!(
                f,
                "{failed} of {} checks failed ({warned} warnings)",
                self.checks.len()
            )
        }
    }
}
