//! Record timestamps against the leader's clock: a produce with a record too far ahead of it
//! (or before the Unix epoch) is refused whole with INVALID_TIMESTAMP, naming the leader's time
//! and the bound, and the partition's idempotent producers carry on as before (their time is
//! the leader's, which no client timestamp moves).

use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;

use raftlog_proto::v1;
use raftlog_proto::v1::ErrorReason;
use raftlog_testkit::InProcessCluster;
use tonic::Code;

use crate::common::clients;
use crate::common::create_topic;
use crate::common::expect_status;
use crate::common::leader_of;
use crate::common::metadata;
use crate::common::produce_request;
use crate::common::produce_to_leader;
use crate::common::reason;

const TOPIC: &str = "stamps";

/// A new producer id, from whichever node leads the controller.
async fn init_producer(cluster: &InProcessCluster) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for id in cluster.running_ids() {
            match clients(cluster, id)
                .produce
                .init_producer(v1::InitProducerRequest {})
                .await
            {
                Ok(response) => return response.into_inner().producer_id,
                Err(status) if reason(&status).is_some_and(ErrorReason::is_retryable) => {}
                Err(status) => panic!("init producer at node {id}: {status:?}"),
            }
        }
        assert!(Instant::now() < deadline, "no node issued a producer id");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An idempotent produce of records with these timestamps (0: the leader assigns it).
fn idempotent(producer_id: u64, base_sequence: u64, timestamps_ms: &[i64]) -> v1::ProduceRequest {
    let values: Vec<Vec<u8>> = (0..timestamps_ms.len())
        .map(|i| format!("{producer_id}-{}", base_sequence + i as u64).into_bytes())
        .collect();
    let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let mut request = produce_request(TOPIC, 0, &values);
    for (record, timestamp_ms) in request.records.iter_mut().zip(timestamps_ms) {
        record.timestamp_ms = *timestamp_ms;
    }
    request.producer = Some(v1::ProducerSequence {
        producer_id,
        base_sequence,
    });
    request
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_far_from_the_leaders_clock_is_refused_and_idempotent_producers_carry_on() {
    let cluster = InProcessCluster::start_nodes(3).await;
    create_topic(&cluster, TOPIC, 1, 3).await;
    let within = Duration::from_secs(10);
    let steady = init_producer(&cluster).await;
    let skewed = init_producer(&cluster).await;

    let first = produce_to_leader(&cluster, idempotent(steady, 0, &[0, now_ms()]), within).await;
    assert_eq!((first.base_offset, first.duplicate), (0, false));

    // Far ahead (from another idempotent producer, whose batch ran expiry before), and before
    // the epoch (with a sane record first: the whole request is refused).
    let leader = leader_of(&cluster, TOPIC, 0).await;
    let mut produce = clients(&cluster, leader).produce;
    let before_ms = now_ms();
    for (request, field, max_skew_ms) in [
        (
            idempotent(skewed, 0, &[i64::MAX]),
            "records[0].timestamp_ms",
            Some(3_600_000),
        ),
        (
            idempotent(skewed, 0, &[0, before_ms + 2 * 3_600_000]),
            "records[1].timestamp_ms",
            Some(3_600_000),
        ),
        (
            idempotent(skewed, 0, &[before_ms, -1]),
            "records[1].timestamp_ms",
            None,
        ),
    ] {
        let status = expect_status(
            produce.produce(request).await,
            Code::InvalidArgument,
            ErrorReason::InvalidTimestamp,
        );
        assert!(status.message().contains(field), "{status:?}");
        let leader_time_ms: i64 = metadata(&status, "leader_time_ms")
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("no leader_time_ms in {status:?}"));
        assert!(
            (before_ms - 1_000..=now_ms() + 1_000).contains(&leader_time_ms),
            "{status:?}"
        );
        let skew: u64 = metadata(&status, "max_skew_ms")
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("no max_skew_ms in {status:?}"));
        if let Some(expected) = max_skew_ms {
            assert_eq!(skew, expected, "{status:?}");
        }
        assert_eq!(metadata(&status, "retryable").as_deref(), Some("false"));
    }

    // The steady producer is still known: its next batch follows at the next offset (nothing
    // of the refused requests was written), and a retry of its first batch gets the original
    // offsets back instead of being written again.
    let next = produce_to_leader(&cluster, idempotent(steady, 2, &[0]), within).await;
    assert_eq!((next.base_offset, next.duplicate), (2, false));
    let retry = produce_to_leader(&cluster, idempotent(steady, 0, &[0, now_ms()]), within).await;
    assert_eq!(
        (retry.base_offset, retry.record_count, retry.duplicate),
        (0, 2, true)
    );
    // And the skewed producer, with a sane clock, starts at sequence 0 after all.
    let fixed = produce_to_leader(&cluster, idempotent(skewed, 0, &[0]), within).await;
    assert_eq!((fixed.base_offset, fixed.duplicate), (3, false));
}
