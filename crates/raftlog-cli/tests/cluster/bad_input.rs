//! Bad input gets a precise status with a stable reason, and changes nothing.

use raftlog_client::record;
use raftlog_client::ClientError;
use tonic::Code;

use crate::kit::TestCluster;

fn expect_error<T: std::fmt::Debug>(
    result: Result<T, ClientError>,
    code: Code,
    reason: &str,
) -> ClientError {
    let error = result.expect_err("bad input was accepted");
    assert_eq!(error.code(), Some(code), "{error}");
    // The reason as it travels, spelled out: clients in other languages match these strings.
    assert_eq!(error.reason_name(), Some(reason), "{error}");
    let known = error.reason().expect("a reason of the proto");
    assert_eq!(known.as_str_name(), reason);
    assert!(!known.is_retryable(), "{error}");
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_precise_statuses_and_change_nothing() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    client
        .create_topic("good", 2, 1)
        .await
        .expect("create topic");
    cluster.wait_for_leaders(&client, "good").await;
    client
        .produce("good", 0, vec![record(None, b"one".to_vec())])
        .await
        .expect("produce");

    let error = expect_error(
        client.create_topic("bad/name", 1, 1).await,
        Code::InvalidArgument,
        "INVALID_TOPIC_NAME",
    );
    assert!(error.to_string().contains('/'), "{error}");
    let error = expect_error(
        client.create_topic("toomany", 1, 3).await,
        Code::InvalidArgument,
        "NOT_ENOUGH_NODES",
    );
    assert!(error.to_string().contains("1 ..= 1"), "{error}");
    expect_error(
        client.create_topic("zero", 0, 1).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    expect_error(
        client.create_topic("good", 1, 1).await,
        Code::AlreadyExists,
        "TOPIC_EXISTS",
    );
    expect_error(
        client.describe_topic("missing").await,
        Code::NotFound,
        "TOPIC_NOT_FOUND",
    );
    expect_error(
        client
            .produce("missing", 0, vec![record(None, b"x".to_vec())])
            .await,
        Code::NotFound,
        "TOPIC_NOT_FOUND",
    );
    let error = expect_error(
        client
            .produce("good", 7, vec![record(None, b"x".to_vec())])
            .await,
        Code::NotFound,
        "PARTITION_NOT_FOUND",
    );
    assert!(error.to_string().contains("0 ..= 1"), "{error}");
    expect_error(
        client.produce("good", 0, Vec::new()).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let huge = record(None, vec![0u8; 2 * 1024 * 1024]);
    let error = expect_error(
        client
            .produce("good", 0, vec![record(None, b"ok".to_vec()), huge])
            .await,
        Code::InvalidArgument,
        "RECORD_TOO_LARGE",
    );
    assert!(error.to_string().contains("records[1]"), "{error}");
    let error = expect_error(
        client.fetch("good", 0, 5, 0, 0).await,
        Code::OutOfRange,
        "OFFSET_OUT_OF_RANGE",
    );
    assert_eq!(error.metadata("high_watermark"), Some("1"), "{error}");
    assert_eq!(error.metadata("log_start_offset"), Some("0"), "{error}");
    expect_error(
        client.fetch("good", 0, 0, 0, 999_999).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );

    // Nothing changed: one topic, one record, the rejected batch left no trace.
    let topics = client.list_topics().await.expect("list");
    assert_eq!(
        topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["good"]
    );
    let fetched = client.fetch("good", 0, 0, 0, 0).await.expect("fetch");
    assert_eq!(fetched.high_watermark, 1);
    assert_eq!(fetched.records.len(), 1);
    assert_eq!(fetched.records[0].value.as_ref(), b"one");
}
