//! `raftlog.v1.Groups`: a member joins and gets every partition, commits positions, and the
//! committed offsets are fetched back (by a new member too, after the first left).

use raftlog_proto::v1;
use raftlog_proto::v1::ErrorReason;
use raftlog_testkit::InProcessCluster;
use tonic::Code;

use crate::common::clients;
use crate::common::create_topic;
use crate::common::expect_status;

fn join(member_id: &str) -> v1::JoinGroupRequest {
    v1::JoinGroupRequest {
        group: "billing".into(),
        member_id: member_id.into(),
        topics: vec!["orders".into()],
        strategy: v1::AssignmentStrategy::Range as i32,
        session_timeout_ms: 10_000,
        client_id: "node-tests".into(),
        owned: Vec::new(),
    }
}

fn partitions() -> Vec<v1::TopicPartition> {
    (0..2)
        .map(|partition| v1::TopicPartition {
            topic: "orders".into(),
            partition,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joins_commits_and_its_offsets_are_fetched_back() {
    let cluster = InProcessCluster::start_nodes(3).await;
    create_topic(&cluster, "orders", 2, 3).await;
    // The coordinator is the controller's leader; the others answer NOT_LEADER naming it.
    let coordinator = raftlog_testkit::wait::describe_cluster(&cluster.addrs())
        .await
        .and_then(|c| c.controller_leader_id)
        .expect("a controller leader");
    let other = (1..=3).find(|id| *id != coordinator).expect("another node");
    expect_status(
        clients(&cluster, other).groups.join_group(join("")).await,
        Code::Unavailable,
        ErrorReason::NotLeader,
    );
    let mut groups = clients(&cluster, coordinator).groups;

    let joined = groups
        .join_group(join(""))
        .await
        .expect("join")
        .into_inner();
    assert!(!joined.member_id.is_empty());
    let mut assigned: Vec<u32> = joined.assignment.iter().map(|tp| tp.partition).collect();
    assigned.sort_unstable();
    assert_eq!(assigned, vec![0, 1], "{joined:?}");

    let commit = |generation: u64, member_id: String| v1::CommitOffsetsRequest {
        group: "billing".into(),
        member_id,
        generation,
        offsets: vec![
            v1::PartitionOffset {
                topic: "orders".into(),
                partition: 0,
                offset: 7,
            },
            v1::PartitionOffset {
                topic: "orders".into(),
                partition: 1,
                offset: 3,
            },
        ],
    };
    // A stale generation is refused and commits nothing.
    expect_status(
        groups
            .commit_offsets(commit(joined.generation + 1, joined.member_id.clone()))
            .await,
        Code::FailedPrecondition,
        ErrorReason::IllegalGeneration,
    );
    groups
        .commit_offsets(commit(joined.generation, joined.member_id.clone()))
        .await
        .expect("commit");

    let fetched = groups
        .fetch_offsets(v1::FetchOffsetsRequest {
            group: "billing".into(),
            partitions: partitions(),
        })
        .await
        .expect("fetch offsets")
        .into_inner();
    let mut offsets: Vec<(u32, u64)> = fetched
        .offsets
        .iter()
        .map(|o| (o.partition, o.offset))
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, vec![(0, 7), (1, 3)]);

    groups
        .leave_group(v1::LeaveGroupRequest {
            group: "billing".into(),
            member_id: joined.member_id.clone(),
        })
        .await
        .expect("leave");
    // A member that rejoins later resumes from the committed positions.
    let again = groups
        .join_group(join(""))
        .await
        .expect("join again")
        .into_inner();
    assert_eq!(again.assignment.len(), 2);
    assert!(again.generation > joined.generation);
    let fetched = groups
        .fetch_offsets(v1::FetchOffsetsRequest {
            group: "billing".into(),
            partitions: partitions(),
        })
        .await
        .expect("fetch offsets")
        .into_inner();
    let mut offsets: Vec<(u32, u64)> = fetched
        .offsets
        .iter()
        .map(|o| (o.partition, o.offset))
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, vec![(0, 7), (1, 3)]);
}

/// The coordinator (controller leader) once it answers, and a groups client of it.
async fn coordinator(cluster: &InProcessCluster) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(id) = raftlog_testkit::wait::describe_cluster(&cluster.addrs())
            .await
            .and_then(|c| c.controller_leader_id)
        {
            let probe = clients(cluster, id)
                .groups
                .list_groups(v1::ListGroupsRequest {})
                .await;
            if probe.is_ok() {
                return id;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no coordinator");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn fetched_offsets(
    cluster: &InProcessCluster,
    wanted: &[(&str, u32)],
) -> Vec<(String, u32, u64)> {
    let id = coordinator(cluster).await;
    let fetched = clients(cluster, id)
        .groups
        .fetch_offsets(v1::FetchOffsetsRequest {
            group: "billing".into(),
            partitions: wanted
                .iter()
                .map(|(topic, partition)| v1::TopicPartition {
                    topic: (*topic).into(),
                    partition: *partition,
                })
                .collect(),
        })
        .await
        .expect("fetch offsets")
        .into_inner();
    let mut offsets: Vec<(String, u32, u64)> = fetched
        .offsets
        .into_iter()
        .map(|o| (o.topic, o.partition, o.offset))
        .collect();
    offsets.sort();
    offsets
}

/// Committed offsets (each a key of its own in the controller's store) survive a restart of
/// every node, and go with their topic when it is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_restarts_and_go_with_their_topic() {
    let mut cluster = InProcessCluster::start_nodes(3).await;
    create_topic(&cluster, "orders", 2, 3).await;
    create_topic(&cluster, "refunds", 1, 3).await;
    let id = coordinator(&cluster).await;
    let mut groups = clients(&cluster, id).groups;
    let mut request = join("");
    request.topics = vec!["orders".into(), "refunds".into()];
    let joined = groups.join_group(request).await.expect("join").into_inner();
    let offset = |topic: &str, partition: u32, offset: u64| v1::PartitionOffset {
        topic: topic.into(),
        partition,
        offset,
    };
    groups
        .commit_offsets(v1::CommitOffsetsRequest {
            group: "billing".into(),
            member_id: joined.member_id.clone(),
            generation: joined.generation,
            offsets: vec![
                offset("orders", 0, 7),
                offset("orders", 1, 3),
                offset("refunds", 0, 5),
            ],
        })
        .await
        .expect("commit");
    let all = [("orders", 0), ("orders", 1), ("refunds", 0)];
    let committed = vec![
        ("orders".to_owned(), 0, 7),
        ("orders".to_owned(), 1, 3),
        ("refunds".to_owned(), 0, 5),
    ];
    assert_eq!(fetched_offsets(&cluster, &all).await, committed);

    for id in 1..=3 {
        cluster.stop(id).await;
    }
    for id in 1..=3 {
        cluster.start(id);
    }
    assert_eq!(fetched_offsets(&cluster, &all).await, committed);

    let id = coordinator(&cluster).await;
    clients(&cluster, id)
        .admin
        .delete_topic(v1::DeleteTopicRequest {
            name: "orders".into(),
        })
        .await
        .expect("delete");
    let remaining = fetched_offsets(&cluster, &all).await;
    assert!(
        remaining.iter().all(|(topic, _, _)| topic == "refunds")
            && remaining.contains(&("refunds".to_owned(), 0, 5)),
        "{remaining:?}"
    );
    for id in 1..=3 {
        cluster.stop(id).await;
    }
    for id in 1..=3 {
        cluster.start(id);
    }
    assert_eq!(fetched_offsets(&cluster, &all).await, remaining);
}
