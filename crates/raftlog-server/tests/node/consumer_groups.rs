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
