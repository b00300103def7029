//! placeholder
#![allow(dead_code)]
pub mod alerts;
pub mod auth;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod ratelimit;
