//! # hybridgrid-cache
//!
//! Content-addressed blob caches: local disk with LRU bound, shared tiers, and the compile-cache key.
