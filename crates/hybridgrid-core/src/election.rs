//! The [`LeaderElection`] seam: one holder of a named lease at a time, with fencing tokens.

use crate::error::{BoxError, Retry};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A monotonic number handed to each new leader. Writes that must come from the leader carry it,
/// and [`LeaderElection::check_fence`] refuses any token older than the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A held leadership lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// Who holds it.
    pub holder: String,
    /// Its fencing token.
    pub token: FencingToken,
    /// How long it lasts from the last acquire or renew.
    pub ttl: Duration,
}

/// Errors of a [`LeaderElection`].
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The token is older than the current leader's: the caller was deposed.
    #[error("fencing token {presented} is stale (current leader holds {current})")]
    Fenced {
        /// The token presented.
        presented: FencingToken,
        /// The current token.
        current: FencingToken,
    },
    /// The backend failed.
    #[error("{backend} leader election backend failed: {source}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
}

impl ElectionError {
    /// Whether the operation is worth repeating.
    pub fn retry(&self) -> Retry {
        match self {
            ElectionError::Fenced { .. } => Retry::Never,
            ElectionError::Backend { .. } => Retry::After(Duration::from_millis(250)),
        }
    }
}

/// A lease for one named role ("coordinator"), held by at most one candidate at a time.
#[async_trait]
pub trait LeaderElection: Send + Sync + 'static {
    /// Takes the lease for `holder` for `ttl` if it is free or expired; `None` if someone else holds it.
    async fn try_acquire(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Leadership>, ElectionError>;
    /// Extends a held lease by its ttl; `false` if it was lost (expired and taken, or released).
    async fn renew(&self, lease: &Leadership) -> Result<bool, ElectionError>;
    /// Gives the lease up, if still held.
    async fn release(&self, lease: &Leadership) -> Result<(), ElectionError>;
    /// Accepts `token` only if it is the newest issued.
    async fn check_fence(&self, token: FencingToken) -> Result<(), ElectionError>;
}
