//! `hg-flow demo` (filled in below).
