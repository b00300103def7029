//! # hybridgrid-transport
//!
//! gRPC protocol (tonic), TLS, and the shared admin HTTP surface (/health, /metrics, /api, dashboard).
