//! # hybridgrid-farm
//!
//! The compile farm assembled: coordinator, worker and client (hgbuild) logic, startable in process.
