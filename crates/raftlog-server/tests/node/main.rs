//! In-process tests of a node's behaviour: nodes started with `raftlog_server::run` by the
//! test kit, spoken to over real gRPC with the generated `raftlog.v1` clients (no
//! raftlog-client: the server's tests depend on nothing above it). One module per API, and
//! one for shutdown. What needs processes (SIGKILL, SIGSTOP, the binary) is tested in
//! `crates/raftlog-cli/tests/cluster/`.

// Tests may panic on broken expectations: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod bad_input;
mod common;
mod consumer_groups;
mod controller_snapshots;
mod damaged_replicas;
mod disk_full;
mod elections;
mod fetch;
mod produce;
mod producer_ids;
mod retention;
mod shutdown;
mod timestamps;
mod topic_configs;
