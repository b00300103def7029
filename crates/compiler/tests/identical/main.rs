//! With the real `gcc`/`g++` and `clang`/`clang++` on this machine: a plain compile and
//! *preprocess locally, compile in another directory* give byte-identical objects and depfiles.
//! (clang comes from `scripts/ci-deps/farm-tools.sh`; a missing clang fails the clang tests.)
//!
//! `common`: the sources, the case runner and `both_ways`; `c`: gcc/g++ cases; `lua`: every Lua
//! source with gcc; `clang`: clang through `-frewrite-includes`.

#![allow(clippy::unwrap_used)]

mod c;
mod clang;
mod common;
mod lua;
