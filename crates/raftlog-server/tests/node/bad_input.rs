//! Bad input gets a precise status with a stable reason of the proto's ErrorReason (not
//! retryable), and changes nothing.

use raftlog_proto::v1;
use raftlog_proto::v1::ErrorReason;
use raftlog_testkit::InProcessCluster;
use tonic::Code;

use crate::common::clients;
use crate::common::create_topic;
use crate::common::expect_status;
use crate::common::metadata;
use crate::common::produce_request;
use crate::common::record;

fn expect_refused<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    reason: ErrorReason,
) -> tonic::Status {
    let status = expect_status(result, code, reason);
    assert!(!reason.is_retryable(), "{status:?}");
    status
}

fn create(name: &str, partitions: u32, replicas: u32) -> v1::CreateTopicRequest {
    v1::CreateTopicRequest {
        name: name.into(),
        partitions,
        replicas,
        configs: Default::default(),
    }
}

fn fetch(offset: u64, max_wait_ms: u32) -> v1::FetchRequest {
    v1::FetchRequest {
        topic: "good".into(),
        partition: 0,
        offset,
        max_bytes: 0,
        max_wait_ms,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_precise_statuses_and_change_nothing() {
    let cluster = InProcessCluster::start_nodes(1).await;
    create_topic(&cluster, "good", 2, 1).await;
    let mut node = clients(&cluster, 1);
    node.produce
        .produce(produce_request("good", 0, &[b"one"]))
        .await
        .expect("produce");

    let status = expect_refused(
        node.admin.create_topic(create("bad/name", 1, 1)).await,
        Code::InvalidArgument,
        ErrorReason::InvalidTopicName,
    );
    assert!(status.message().contains('/'), "{status:?}");
    let status = expect_refused(
        node.admin.create_topic(create("toomany", 1, 3)).await,
        Code::InvalidArgument,
        ErrorReason::NotEnoughNodes,
    );
    assert!(status.message().contains("1 ..= 1"), "{status:?}");
    expect_refused(
        node.admin.create_topic(create("zero", 0, 1)).await,
        Code::InvalidArgument,
        ErrorReason::InvalidArgument,
    );
    expect_refused(
        node.admin.create_topic(create("good", 1, 1)).await,
        Code::AlreadyExists,
        ErrorReason::TopicExists,
    );
    expect_refused(
        node.admin
            .describe_topic(v1::DescribeTopicRequest {
                name: "missing".into(),
            })
            .await,
        Code::NotFound,
        ErrorReason::TopicNotFound,
    );
    expect_refused(
        node.produce
            .produce(produce_request("missing", 0, &[b"x"]))
            .await,
        Code::NotFound,
        ErrorReason::TopicNotFound,
    );
    let status = expect_refused(
        node.produce
            .produce(produce_request("good", 7, &[b"x"]))
            .await,
        Code::NotFound,
        ErrorReason::PartitionNotFound,
    );
    assert!(status.message().contains("0 ..= 1"), "{status:?}");
    expect_refused(
        node.produce.produce(produce_request("good", 0, &[])).await,
        Code::InvalidArgument,
        ErrorReason::InvalidArgument,
    );
    let mut too_large = produce_request("good", 0, &[b"ok"]);
    too_large.records.push(record(&vec![0u8; 2 * 1024 * 1024]));
    let status = expect_refused(
        node.produce.produce(too_large).await,
        Code::InvalidArgument,
        ErrorReason::RecordTooLarge,
    );
    assert!(status.message().contains("records[1]"), "{status:?}");
    let status = expect_refused(
        node.fetch.fetch(fetch(5, 0)).await,
        Code::OutOfRange,
        ErrorReason::OffsetOutOfRange,
    );
    assert_eq!(metadata(&status, "high_watermark").as_deref(), Some("1"));
    assert_eq!(metadata(&status, "log_start_offset").as_deref(), Some("0"));
    expect_refused(
        node.fetch.fetch(fetch(0, 999_999)).await,
        Code::InvalidArgument,
        ErrorReason::InvalidArgument,
    );
    expect_refused(
        node.fetch
            .fetch(v1::FetchRequest {
                topic: "missing".into(),
                ..fetch(0, 0)
            })
            .await,
        Code::NotFound,
        ErrorReason::TopicNotFound,
    );

    // Nothing changed: one topic, one record, the rejected batch left no trace.
    let topics = node
        .admin
        .list_topics(v1::ListTopicsRequest {})
        .await
        .expect("list")
        .into_inner()
        .topics;
    assert_eq!(
        topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["good"]
    );
    let fetched = node
        .fetch
        .fetch(fetch(0, 0))
        .await
        .expect("fetch")
        .into_inner();
    assert_eq!(fetched.high_watermark, 1);
    assert_eq!(fetched.records.len(), 1);
    assert_eq!(fetched.records[0].value.as_ref(), b"one");
}
