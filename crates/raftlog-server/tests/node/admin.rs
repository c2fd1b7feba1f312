//! `raftlog.v1.Admin`: topics are created, listed, described and deleted; a deleted topic's
//! name can be used again and starts empty; the cluster describes its nodes.

use std::time::Duration;
use std::time::Instant;

use raftlog_proto::v1;
use raftlog_proto::v1::ErrorReason;
use raftlog_testkit::InProcessCluster;
use tonic::Code;

use crate::common::clients;
use crate::common::create_topic;
use crate::common::expect_status;
use crate::common::produce_request;

fn describe(name: &str) -> v1::DescribeTopicRequest {
    v1::DescribeTopicRequest { name: name.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_described_and_deleted() {
    let cluster = InProcessCluster::start_nodes(3).await;
    let mut admin = clients(&cluster, 2).admin;
    let cluster_description = admin
        .describe_cluster(v1::DescribeClusterRequest {})
        .await
        .expect("describe cluster")
        .into_inner();
    assert_eq!(
        cluster_description.nodes.len(),
        3,
        "{cluster_description:?}"
    );
    assert!(cluster_description.controller_leader_id.is_some());
    assert_eq!(cluster_description.answered_by, 2);

    let created = admin
        .create_topic(v1::CreateTopicRequest {
            name: "orders".into(),
            partitions: 3,
            replicas: 2,
            configs: Default::default(),
        })
        .await
        .expect("create")
        .into_inner()
        .topic
        .expect("the created topic");
    assert_eq!(created.name, "orders");
    assert_eq!(created.partitions.len(), 3);
    let described = cluster.wait_for_leaders("orders").await;
    assert_eq!(described.replicas, 2);
    for (i, partition) in described.partitions.iter().enumerate() {
        assert_eq!(partition.partition, i as u32);
        assert_eq!(partition.replicas.len(), 2, "{partition:?}");
        assert!(partition
            .replicas
            .contains(&partition.leader_id.expect("leader")));
        assert_eq!(partition.high_watermark, 0);
    }
    // Every node describes it alike (metadata is the controller's).
    for id in [1, 3] {
        let seen = clients(&cluster, id)
            .admin
            .describe_topic(describe("orders"))
            .await
            .expect("describe")
            .into_inner()
            .topic
            .expect("topic");
        assert_eq!(seen.partitions.len(), 3);
    }
    let listed = admin
        .list_topics(v1::ListTopicsRequest {})
        .await
        .expect("list")
        .into_inner()
        .topics;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].name.as_str(),
            listed[0].partitions,
            listed[0].replicas
        ),
        ("orders", 3, 2)
    );

    admin
        .delete_topic(v1::DeleteTopicRequest {
            name: "orders".into(),
        })
        .await
        .expect("delete");
    // Every node learns of the deletion from the controller's log, a moment after it commits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = loop {
        match admin.describe_topic(describe("orders")).await {
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            result => break result,
        }
    };
    expect_status(gone, Code::NotFound, ErrorReason::TopicNotFound);
    expect_status(
        admin
            .delete_topic(v1::DeleteTopicRequest {
                name: "orders".into(),
            })
            .await,
        Code::NotFound,
        ErrorReason::TopicNotFound,
    );
    let listed = admin
        .list_topics(v1::ListTopicsRequest {})
        .await
        .expect("list");
    assert!(listed.get_ref().topics.is_empty(), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_s_name_can_be_used_again_and_starts_empty() {
    let cluster = InProcessCluster::start_nodes(1).await;
    let mut node = clients(&cluster, 1);
    create_topic(&cluster, "again", 1, 1).await;
    node.produce
        .produce(produce_request("again", 0, &[b"old"]))
        .await
        .expect("produce");
    node.admin
        .delete_topic(v1::DeleteTopicRequest {
            name: "again".into(),
        })
        .await
        .expect("delete");
    create_topic(&cluster, "again", 1, 1).await;
    let fetched = node
        .fetch
        .fetch(v1::FetchRequest {
            topic: "again".into(),
            partition: 0,
            offset: 0,
            max_bytes: 0,
            max_wait_ms: 0,
        })
        .await
        .expect("fetch")
        .into_inner();
    assert_eq!(fetched.high_watermark, 0);
    assert!(fetched.records.is_empty());
}
