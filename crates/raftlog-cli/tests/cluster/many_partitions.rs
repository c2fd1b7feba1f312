//! Many partitions per node. Idle groups are kept alive by the node's light heartbeats, which
//! bypass the groups' Raft cores: while their leaders live, nothing stands for election and a
//! write to any of them is admitted at once. When a node dies, every partition it led fails
//! over to the survivors.

use std::collections::HashMap;
use std::time::Duration;

use raftlog_client::record;
use raftlog_client::v1;
use raftlog_client::ClientOptions;

const PARTITIONS: u32 = 60;

fn one_record(partition: u32, value: &str) -> v1::ProduceRequest {
    v1::ProduceRequest {
        topic: "many".into(),
        partition,
        records: vec![record(None, value.as_bytes().to_vec())],
        acks: v1::Acks::All as i32,
        timeout_ms: 0,
        producer: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_partitions_keep_their_leaders_and_fail_over_together() {
    let mut cluster = crate::kit::start(3).await;
    let client = crate::kit::client(&cluster).await;
    client
        .create_topic("many", PARTITIONS, 3)
        .await
        .expect("create topic");
    let before = cluster.wait_for_settled_leaders("many").await;

    // Idle for several election timeouts (500–1000 ms in the kit's config): only heartbeats
    // keep the followers from standing for election, which would change the term.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = client.describe_topic("many").await.expect("describe");
    for (was, is) in before.partitions.iter().zip(&after.partitions) {
        assert_eq!(
            (is.leader_id, is.term),
            (was.leader_id, was.term),
            "partition {} changed leader or term while idle",
            was.partition
        );
    }

    // No retries: an idle leader must know it still has a quorum (from the light heartbeats'
    // acknowledgements) and take the write at the first attempt, not refuse it as NO_QUORUM.
    let no_retries = crate::kit::client_with(
        &cluster,
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            retry_deadline: Duration::from_millis(1),
        },
    )
    .await;
    no_retries.describe_topic("many").await.expect("describe");
    for partition in 0..PARTITIONS {
        no_retries
            .send_produce(one_record(partition, "after idle"))
            .await
            .unwrap_or_else(|e| panic!("partition {partition} refused a write after idling: {e}"));
    }

    // Kill the node that leads the most partitions; all of them fail over.
    let mut led: HashMap<u64, usize> = HashMap::new();
    for partition in &after.partitions {
        *led.entry(partition.leader_id.expect("leader")).or_default() += 1;
    }
    let (victim, count) = led
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .expect("some leader");
    eprintln!("killing node {victim}, leader of {count} partitions");
    cluster.kill(victim);
    let failed_over = cluster.wait_for_leaders("many").await;
    assert!(failed_over
        .partitions
        .iter()
        .all(|p| p.leader_id != Some(victim)));
    for partition in 0..PARTITIONS {
        let ack = client
            .send_produce(one_record(partition, "after failover"))
            .await
            .unwrap_or_else(|e| panic!("partition {partition} after the failover: {e}"));
        assert_eq!(
            ack.base_offset, 1,
            "partition {partition} lost its first record"
        );
    }
}
