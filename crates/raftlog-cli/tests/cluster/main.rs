//! Integration tests with real `raftlog` processes on 127.0.0.1 ports the kit picks itself.

// Tests may panic on broken expectations: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench;
mod cli;
mod clients;
mod cut_tail;
mod durability;
mod gray_failures;
mod jepsen;
mod kit;
mod many_partitions;
mod power_loss;
mod reading;
mod reflection;
