//! `hg-flow doctor` (filled in below).
