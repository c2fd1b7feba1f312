//! In-process tests of the client against nodes the test kit starts with
//! `raftlog_server::run`: the producer's deliveries and idempotent retries, consumer groups,
//! and routing on NOT_LEADER. What needs processes (SIGKILL, SIGSTOP, consumer processes) is
//! tested in `crates/raftlog-cli/tests/cluster/clients.rs`.

// Tests may panic on broken expectations: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consumer;
mod group_fencing;
mod producer;
mod routing;

use std::sync::Arc;

use raftlog_client::Client;
use raftlog_testkit::InProcessCluster;

/// A client bootstrapped from every running node.
pub async fn client(cluster: &InProcessCluster) -> Arc<Client> {
    Arc::new(
        Client::connect(&cluster.running_addrs())
            .await
            .expect("connect"),
    )
}

/// Every value of `topic`/`partition` in offset order, as the partition's leader serves it.
pub async fn read_all(client: &Client, topic: &str, partition: u32) -> Vec<(u64, Vec<u8>)> {
    let mut records = Vec::new();
    loop {
        let response = client
            .fetch(topic, partition, records.len() as u64, 0, 0)
            .await
            .expect("fetch");
        for record in &response.records {
            assert_eq!(record.offset, records.len() as u64, "an offset was skipped");
            records.push((record.offset, record.value.to_vec()));
        }
        if records.len() as u64 >= response.high_watermark || response.records.is_empty() {
            return records;
        }
    }
}
