//! What the wrapper decided for one invocation.

use crate::stats::Served;

/// What the wrapper decided for one invocation; the caller records the [`Served`] either way.
pub enum Step {
    /// Finished: exit with this code (the object and diagnostics are written).
    Exit(i32, Served),
    /// Run the original command locally, unchanged (then exit with its code).
    RunLocal(Served),
}
