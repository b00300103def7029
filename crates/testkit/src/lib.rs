//! # hybridgrid-testkit
//!
//! Conformance suites, one per hybridgrid seam trait; every backend (in-tree or not) proves itself by calling one function.
