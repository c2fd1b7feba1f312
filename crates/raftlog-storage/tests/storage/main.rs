//! Integration tests of the storage engine: openraft's own storage suite, recovery from torn and
//! corrupt files, lost replicas, SIGKILL crash loops, bad input and the page-cache budget. One
//! binary, one module per concern.

// Tests may panic on broken expectations: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod crash;
mod kit;
mod page_cache;
mod reads;
mod recovery;
mod replicas;
mod retention;
mod state;
mod suite;
