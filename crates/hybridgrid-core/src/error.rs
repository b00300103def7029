//! The retry classification every seam error answers.

use std::time::Duration;

/// Boxed error used to carry a backend client's error as a `#[source]`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Whether an operation that failed is worth trying again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Try again right away (for example on another worker).
    Now,
    /// Try again after this delay (the backend is restarting, the target is overloaded).
    After(Duration),
    /// Permanent: the same request will fail the same way.
    Never,
}

impl Retry {
    /// True unless the failure is permanent.
    pub fn is_retryable(self) -> bool {
        !matches!(self, Retry::Never)
    }
}
