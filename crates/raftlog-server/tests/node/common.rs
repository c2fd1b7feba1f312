//! What the node tests share: a node's clients, topics made ready, produce requests, and a
//! status read as its ErrorInfo reason.

use std::time::Duration;
use std::time::Instant;

use raftlog_proto::v1;
use raftlog_proto::v1::admin_client::AdminClient;
use raftlog_proto::v1::fetch_client::FetchClient;
use raftlog_proto::v1::groups_client::GroupsClient;
use raftlog_proto::v1::produce_client::ProduceClient;
use raftlog_proto::v1::ErrorReason;
use raftlog_testkit::InProcessCluster;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// Per-call timeout of the tests' channels: above the clusters' 3 s request timeout, so the
/// server answers first.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The clients of one node.
pub struct Clients {
    pub admin: AdminClient<Channel>,
    pub produce: ProduceClient<Channel>,
    pub fetch: FetchClient<Channel>,
    pub groups: GroupsClient<Channel>,
}

/// Clients of node `id`.
pub fn clients(cluster: &InProcessCluster, id: u64) -> Clients {
    let channel = cluster.channel(id, CALL_TIMEOUT);
    Clients {
        admin: AdminClient::new(channel.clone()),
        produce: ProduceClient::new(channel.clone()),
        fetch: FetchClient::new(channel.clone()).max_decoding_message_size(64 * 1024 * 1024),
        groups: GroupsClient::new(channel),
    }
}

/// Creates `topic` through node 1 and waits until every partition has a leader.
pub async fn create_topic(
    cluster: &InProcessCluster,
    topic: &str,
    partitions: u32,
    replicas: u32,
) -> v1::TopicDescription {
    clients(cluster, 1)
        .admin
        .create_topic(v1::CreateTopicRequest {
            name: topic.into(),
            partitions,
            replicas,
            configs: Default::default(),
        })
        .await
        .expect("create topic");
    cluster.wait_for_leaders(topic).await
}

/// A record with `value` and no key.
pub fn record(value: &[u8]) -> v1::Record {
    v1::Record {
        key: None,
        value: value.to_vec().into(),
        headers: Vec::new(),
        timestamp_ms: 0,
    }
}

/// A plain produce of `values` to `topic`/`partition`, acks=ALL.
pub fn produce_request(topic: &str, partition: u32, values: &[&[u8]]) -> v1::ProduceRequest {
    v1::ProduceRequest {
        topic: topic.into(),
        partition,
        records: values.iter().map(|v| record(v)).collect(),
        acks: v1::Acks::All as i32,
        timeout_ms: 0,
        producer: None,
    }
}

/// The leader of `topic`/`partition` as the cluster describes it.
pub async fn leader_of(cluster: &InProcessCluster, topic: &str, partition: u32) -> u64 {
    cluster.wait_for_leaders(topic).await.partitions[partition as usize]
        .leader_id
        .expect("a leader")
}

/// Produces to the partition's leader, following NOT_LEADER and waiting out elections (as a
/// client would) until `within` has passed.
pub async fn produce_to_leader(
    cluster: &InProcessCluster,
    request: v1::ProduceRequest,
    within: Duration,
) -> v1::ProduceResponse {
    let deadline = Instant::now() + within;
    loop {
        let leader = leader_of(cluster, &request.topic, request.partition).await;
        match clients(cluster, leader)
            .produce
            .produce(request.clone())
            .await
        {
            Ok(response) => return response.into_inner(),
            Err(status)
                if Instant::now() < deadline
                    && reason(&status).is_some_and(ErrorReason::is_retryable) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("produce: {status:?}"),
        }
    }
}

/// The reason of `status`'s ErrorInfo, if it has one of the proto.
pub fn reason(status: &tonic::Status) -> Option<ErrorReason> {
    status
        .get_details_error_info()
        .and_then(|info| ErrorReason::from_str_name(&info.reason))
}

/// Asserts that `result` failed with `code` and an ErrorInfo whose reason is `expected` (as
/// sent, spelled out: clients in other languages match these strings); returns the status.
pub fn expect_status<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: tonic::Code,
    expected: ErrorReason,
) -> tonic::Status {
    let status = result.expect_err("the request was accepted");
    assert_eq!(status.code(), code, "{status:?}");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, expected.as_str_name(), "{status:?}");
    assert_eq!(
        ErrorReason::from_str_name(&info.reason),
        Some(expected),
        "{status:?}"
    );
    status
}

/// A metadata value of `status`'s ErrorInfo.
pub fn metadata(status: &tonic::Status, key: &str) -> Option<String> {
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get(key).cloned())
}

/// The segment files of node `id`'s replica of `group`, sorted (by base index: the names are
/// zero-padded).
pub fn segment_files(cluster: &InProcessCluster, id: u64, group: u64) -> Vec<std::path::PathBuf> {
    let dir = cluster
        .data_dir(id)
        .join("groups")
        .join(group.to_string())
        .join("log");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}
