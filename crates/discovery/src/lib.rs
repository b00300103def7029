//! # hybridgrid-discovery
//!
//! Worker discovery: static lists (default) and mDNS.
