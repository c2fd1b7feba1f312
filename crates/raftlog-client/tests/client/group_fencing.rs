//! Consumer-group fencing: a partition is owned by at most one live member at a time. Only its
//! owner commits its offset; a new coordinator waits out the sessions of the previous one's
//! members before giving their partitions away; a member cut off from the coordinator stops
//! delivering records once its session timeout has passed.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use raftlog_client::record;
use raftlog_client::Client;
use raftlog_client::ClientError;
use raftlog_client::Consumer;
use raftlog_client::ConsumerConfig;
use raftlog_proto::v1;
use raftlog_proto::v1::ErrorReason;
use raftlog_testkit::InProcessCluster;

use crate::client;

const GROUP: &str = "fenced";
const TOPIC: &str = "work";
const SESSION: Duration = Duration::from_millis(2000);

fn join_request(member_id: &str, owned: &[u32]) -> v1::JoinGroupRequest {
    v1::JoinGroupRequest {
        group: GROUP.into(),
        member_id: member_id.into(),
        topics: vec![TOPIC.into()],
        strategy: v1::AssignmentStrategy::Range as i32,
        session_timeout_ms: SESSION.as_millis() as u32,
        client_id: "fencing-test".into(),
        owned: owned
            .iter()
            .map(|partition| v1::TopicPartition {
                topic: TOPIC.into(),
                partition: *partition,
            })
            .collect(),
    }
}

fn partitions(assignment: &[v1::TopicPartition]) -> Vec<u32> {
    let mut partitions: Vec<u32> = assignment.iter().map(|p| p.partition).collect();
    partitions.sort_unstable();
    partitions
}

/// A member driven by hand: its id, the generation it adopted and its partitions.
struct Member {
    id: String,
    generation: u64,
    partitions: Vec<u32>,
}

impl Member {
    async fn join(client: &Client) -> Member {
        let joined = client
            .join_group(join_request("", &[]))
            .await
            .expect("join");
        Member {
            id: joined.member_id,
            generation: joined.generation,
            partitions: partitions(&joined.assignment),
        }
    }

    /// Heartbeats carrying the adopted generation, then adopts the answer.
    async fn heartbeat(&mut self, client: &Client) -> Result<(), ClientError> {
        let answer = client.heartbeat(GROUP, &self.id, self.generation).await?;
        self.generation = answer.generation;
        self.partitions = partitions(&answer.assignment);
        Ok(())
    }
}

/// Two members that heartbeat until they own one of the two partitions each.
async fn two_settled_members(client: &Client) -> (Member, Member) {
    let mut a = Member::join(client).await;
    assert_eq!(a.partitions, vec![0, 1], "the first member gets everything");
    let mut b = Member::join(client).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.partitions.len() != 1 || b.partitions.len() != 1 {
        assert!(
            Instant::now() < deadline,
            "not settled: {:?} {:?}",
            a.partitions,
            b.partitions
        );
        a.heartbeat(client).await.expect("a heartbeats");
        b.heartbeat(client).await.expect("b heartbeats");
        let mut both: Vec<u32> = a.partitions.iter().chain(&b.partitions).copied().collect();
        both.sort_unstable();
        both.dedup();
        assert_eq!(
            both.len(),
            a.partitions.len() + b.partitions.len(),
            "a partition was given to both: {:?} {:?}",
            a.partitions,
            b.partitions
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (a, b)
}

fn offset(partition: u32, offset: u64) -> v1::PartitionOffset {
    v1::PartitionOffset {
        topic: TOPIC.into(),
        partition,
        offset,
    }
}

fn commit(member: &Member, offsets: Vec<v1::PartitionOffset>) -> v1::CommitOffsetsRequest {
    v1::CommitOffsetsRequest {
        group: GROUP.into(),
        member_id: member.id.clone(),
        generation: member.generation,
        offsets,
    }
}

async fn committed(client: &Client, partition: u32) -> Option<u64> {
    let offsets = client
        .fetch_offsets(
            GROUP,
            vec![v1::TopicPartition {
                topic: TOPIC.into(),
                partition,
            }],
        )
        .await
        .expect("fetch offsets");
    offsets.first().map(|o| o.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_partition_s_owner_commits_its_offset() {
    let cluster = InProcessCluster::start_nodes(1).await;
    let client = client(&cluster).await;
    client.create_topic(TOPIC, 2, 1).await.expect("create");
    cluster.wait_for_leaders(TOPIC).await;
    let (a, b) = two_settled_members(&client).await;
    let (owned_by_a, owned_by_b) = (a.partitions[0], b.partitions[0]);
    client
        .commit_offsets(commit(&a, vec![offset(owned_by_a, 5)]))
        .await
        .expect("the owner commits");

    let refused = client
        .commit_offsets(commit(&b, vec![offset(owned_by_a, 9)]))
        .await
        .expect_err("a member committed another's partition");
    assert_eq!(
        refused.reason(),
        Some(ErrorReason::PartitionNotOwned),
        "{refused}"
    );
    let message = refused.to_string();
    let partition = format!("{TOPIC}/{owned_by_a}");
    for part in [b.id.as_str(), a.id.as_str(), GROUP, partition.as_str()] {
        assert!(message.contains(part), "{part:?} missing in {message}");
    }
    assert_eq!(
        committed(&client, owned_by_a).await,
        Some(5),
        "the refused commit moved it"
    );
    // A commit naming one foreign partition commits none of its partitions.
    let refused = client
        .commit_offsets(commit(
            &b,
            vec![offset(owned_by_b, 4), offset(owned_by_a, 9)],
        ))
        .await
        .expect_err("a partly foreign commit was accepted");
    assert_eq!(refused.reason(), Some(ErrorReason::PartitionNotOwned));
    assert_eq!(committed(&client, owned_by_b).await, None);
    client
        .commit_offsets(commit(&b, vec![offset(owned_by_b, 4)]))
        .await
        .expect("b commits its own");
    assert_eq!(committed(&client, owned_by_b).await, Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_coordinator_gives_a_partition_away_only_once_its_owner_s_session_ended() {
    let mut cluster = InProcessCluster::start_nodes(3).await;
    let client = client(&cluster).await;
    client.create_topic(TOPIC, 2, 3).await.expect("create");
    cluster.wait_for_leaders(TOPIC).await;
    let (mut a, mut b) = two_settled_members(&client).await;
    let (owned_by_a, owned_by_b) = (a.partitions[0], b.partitions[0]);
    // b's last heartbeat: its session (and its own fence) runs from this send.
    let b_last_sent = Instant::now();
    b.heartbeat(&client).await.expect("b heartbeats");
    assert_eq!(b.partitions, vec![owned_by_b]);

    let coordinator = client
        .describe_cluster()
        .await
        .expect("describe")
        .controller_leader_id
        .expect("a controller leader");
    cluster.stop(coordinator).await;

    // a notices the new coordinator (UNKNOWN_MEMBER) and joins again, keeping its partition.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "a never re-joined");
        match a.heartbeat(&client).await {
            Err(error) if error.reason() == Some(ErrorReason::UnknownMember) => break,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let rejoined = client
        .join_group(join_request(&a.id, &[owned_by_a]))
        .await
        .expect("re-join");
    a.generation = rejoined.generation;
    a.partitions = partitions(&rejoined.assignment);
    assert!(
        !a.partitions.contains(&owned_by_b),
        "a got b's partition {owned_by_b} when joining the new coordinator, {:?} after b's last heartbeat, {:?} before b's session ended",
        b_last_sent.elapsed(),
        SESSION.saturating_sub(b_last_sent.elapsed())
    );
    assert_eq!(
        a.partitions,
        vec![owned_by_a],
        "a keeps its own partition at once"
    );

    // b never comes back: a gets its partition, but only after b's session has ended.
    loop {
        assert!(Instant::now() < deadline, "a never got b's partition");
        a.heartbeat(&client).await.expect("a heartbeats");
        if a.partitions.contains(&owned_by_b) {
            assert!(
                b_last_sent.elapsed() >= SESSION,
                "a got b's partition {:?} after b's last heartbeat, within b's session",
                b_last_sent.elapsed()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.partitions, vec![0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_join_a_new_coordinator_again_keep_their_partitions() {
    let mut cluster = InProcessCluster::start_nodes(3).await;
    let client = client(&cluster).await;
    client.create_topic(TOPIC, 2, 3).await.expect("create");
    cluster.wait_for_leaders(TOPIC).await;
    let (mut a, mut b) = two_settled_members(&client).await;
    let (owned_by_a, owned_by_b) = (a.partitions[0], b.partitions[0]);
    let coordinator = client
        .describe_cluster()
        .await
        .expect("describe")
        .controller_leader_id
        .expect("a controller leader");
    cluster.stop(coordinator).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "a never re-joined");
        match a.heartbeat(&client).await {
            Err(error) if error.reason() == Some(ErrorReason::UnknownMember) => break,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    // Each joins again under its id, saying what it holds: the new coordinator lets both keep
    // their partition at once, without waiting for the old sessions and without a swap.
    for (member, owned) in [(&mut a, owned_by_a), (&mut b, owned_by_b)] {
        let rejoined = client
            .join_group(join_request(&member.id, &[owned]))
            .await
            .expect("re-join");
        assert_eq!(rejoined.member_id, member.id);
        member.generation = rejoined.generation;
        member.partitions = partitions(&rejoined.assignment);
    }
    let until = Instant::now() + SESSION + Duration::from_secs(1);
    while Instant::now() < until {
        a.heartbeat(&client).await.expect("a heartbeats");
        b.heartbeat(&client).await.expect("b heartbeats");
        assert_eq!(a.partitions, vec![owned_by_a], "a's partitions changed");
        assert_eq!(b.partitions, vec![owned_by_b], "b's partitions changed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_from_the_coordinator_stops_delivering_after_its_session() {
    let mut cluster = InProcessCluster::start_nodes(3).await;
    let client = client(&cluster).await;
    // One replica: its node serves it alone once the other two, and the controller's
    // majority with them, are gone.
    client.create_topic(TOPIC, 1, 1).await.expect("create");
    let host = cluster.wait_for_leaders(TOPIC).await.partitions[0]
        .leader_id
        .expect("a leader");
    let config = ConsumerConfig {
        group: Some(GROUP.into()),
        session_timeout: SESSION,
        poll_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(Arc::clone(&client), config);
    consumer.subscribe(&[TOPIC]).await.expect("subscribe");
    let produce = |i: u32| {
        let client = Arc::clone(&client);
        async move {
            client
                .produce(TOPIC, 0, vec![record(None, format!("r{i}").into_bytes())])
                .await
                .expect("produce");
        }
    };
    produce(0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while consumer.poll().await.expect("poll").is_empty() {
        assert!(
            Instant::now() < deadline,
            "nothing delivered before the cut"
        );
    }

    for id in [1, 2, 3].into_iter().filter(|id| *id != host) {
        cluster.stop(id).await;
    }
    // No heartbeat sent from now on is answered: the member's session ends by this.
    let fenced_by = Instant::now() + SESSION;
    let mut i = 1;
    while Instant::now() < fenced_by {
        produce(i).await;
        i += 1;
        consumer.poll().await.expect("poll");
    }
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        produce(i).await;
        i += 1;
        let records = consumer.poll().await.expect("poll");
        assert!(
            records.is_empty(),
            "{} records delivered {:?} after the member's session ended",
            records.len(),
            fenced_by.elapsed()
        );
    }
    // The records are there to read: only the fence kept them from the application.
    let fetched = client.fetch(TOPIC, 0, 0, 0, 0).await.expect("fetch");
    assert!(fetched.high_watermark >= u64::from(i), "{fetched:?}");
}
