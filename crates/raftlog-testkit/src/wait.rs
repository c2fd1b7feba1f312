//! Waiting for a cluster to be ready, in the generated `raftlog.v1` clients' own words (no
//! raftlog-client, so that the server's tests depend on nothing above the server): until the
//! controller has a leader, until every partition of a topic has one among the running nodes,
//! until those leaders settle.
//!
//! Admin calls are answered by any node (a follower forwards to the controller), so each wait
//! asks the running nodes in turn.

use std::time::Duration;
use std::time::Instant;

use raftlog_proto::v1;
use raftlog_proto::v1::admin_client::AdminClient;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

/// How long a cluster may take to elect its controller.
pub const CONTROLLER_WAIT: Duration = Duration::from_secs(60);
/// How long a topic's partitions may take to have leaders, or to settle.
pub const LEADERS_WAIT: Duration = Duration::from_secs(30);
/// How long each wait's calls may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between a wait's polls.
const POLL_PERIOD: Duration = Duration::from_millis(100);

/// A lazily connecting channel to `address` (`ip:port`) with a per-call timeout of `timeout`.
pub fn channel(address: &str, timeout: Duration) -> Channel {
    Endpoint::from_shared(format!("http://{address}"))
        .unwrap_or_else(|error| panic!("address {address:?}: {error}"))
        .connect_timeout(CALL_TIMEOUT)
        .timeout(timeout)
        .connect_lazy()
}

/// The first of `addresses` that describes the cluster, and its answer.
pub async fn describe_cluster(addresses: &[String]) -> Option<v1::DescribeClusterResponse> {
    for address in addresses {
        let mut admin = AdminClient::new(channel(address, CALL_TIMEOUT));
        if let Ok(response) = admin.describe_cluster(v1::DescribeClusterRequest {}).await {
            return Some(response.into_inner());
        }
    }
    None
}

/// `topic` as the first of `addresses` that answers describes it.
pub async fn describe_topic(addresses: &[String], topic: &str) -> Option<v1::TopicDescription> {
    for address in addresses {
        let mut admin = AdminClient::new(channel(address, CALL_TIMEOUT));
        let request = v1::DescribeTopicRequest {
            name: topic.to_owned(),
        };
        if let Ok(response) = admin.describe_topic(request).await {
            if let Some(description) = response.into_inner().topic {
                return Some(description);
            }
        }
    }
    None
}

/// Waits until every one of `addresses` serves its client port and reports a controller
/// leader (a node listens there only once it can serve); panics after [`CONTROLLER_WAIT`], or
/// if a node answers with another cluster id than `cluster_id`.
pub async fn for_controller(addresses: &[String], cluster_id: &str) {
    let deadline = Instant::now() + CONTROLLER_WAIT;
    for address in addresses {
        loop {
            if let Some(status) = describe_cluster(std::slice::from_ref(address)).await {
                assert_eq!(
                    status.cluster_id, cluster_id,
                    "a node of another cluster answered on this cluster's address {address}"
                );
                if status.controller_leader_id.is_some() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{address} reports no controller leader within {CONTROLLER_WAIT:?}"
            );
            tokio::time::sleep(POLL_PERIOD).await;
        }
    }
}

/// Waits until every partition of `topic` has a leader among `running` (node ids), asking
/// `addresses`; panics after [`LEADERS_WAIT`].
pub async fn for_leaders(
    addresses: &[String],
    running: &[u64],
    topic: &str,
) -> v1::TopicDescription {
    let deadline = Instant::now() + LEADERS_WAIT;
    loop {
        if let Some(description) = describe_topic(addresses, topic).await {
            if !description.partitions.is_empty()
                && description
                    .partitions
                    .iter()
                    .all(|p| p.leader_id.is_some_and(|l| running.contains(&l)))
            {
                return description;
            }
        }
        assert!(
            Instant::now() < deadline,
            "partitions of {topic} have no leaders among {running:?} within {LEADERS_WAIT:?}"
        );
        tokio::time::sleep(POLL_PERIOD).await;
    }
}

/// Waits until every partition of `topic` has a leader and no leader or term changed for a
/// second. Each replica of a new partition starts on its node in turn, which a busy disk
/// spreads over seconds, and the preferred replica stands for election as soon as it starts:
/// leaders named before then may change.
pub async fn for_settled_leaders(
    addresses: &[String],
    running: &[u64],
    topic: &str,
) -> v1::TopicDescription {
    let leaders_and_terms = |description: &v1::TopicDescription| -> Vec<(Option<u64>, u64)> {
        description
            .partitions
            .iter()
            .map(|p| (p.leader_id, p.term))
            .collect()
    };
    let deadline = Instant::now() + LEADERS_WAIT;
    let mut last = for_leaders(addresses, running, topic).await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = for_leaders(addresses, running, topic).await;
        if leaders_and_terms(&now) == leaders_and_terms(&last) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the leaders of {topic} did not settle within {LEADERS_WAIT:?}"
        );
        last = now;
    }
}
