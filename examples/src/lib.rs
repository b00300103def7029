//! Small programs embedding the hybridgrid SDK, in `examples/examples/`. Each runs with one
//! command and needs no server:
//!
//! - `cargo run -p hybridgrid-examples --example queue` — a producer and two consumers on
//!   `MemoryQueue`: priorities, a retry after a `nack`, a dead letter.
//! - `cargo run -p hybridgrid-examples --example store` — workflows and runs in a SQLite file
//!   opened from a YAML `StoreSpec`, with compare-and-set status moves.
//! - `cargo run -p hybridgrid-examples --example breaker` — a `KeyedBreaker` around a flaky call.
//!
//! CI runs all three (`scripts/test`).
