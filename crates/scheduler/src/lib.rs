//! # hybridgrid-scheduler
//!
//! Worker registry, placement, per-worker circuit breakers and retries.
