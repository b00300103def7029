//! # hybridgrid-compiler
//!
//! C/C++ compiler invocation analysis: classify arguments, toolchain identity, preprocess and remote-compile commands.
