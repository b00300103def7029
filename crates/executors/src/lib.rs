//! # hybridgrid-executors
//!
//! Executors: native processes (deadline, process-group kill, output limits, private work dir); docker/dagger/llm behind features.
