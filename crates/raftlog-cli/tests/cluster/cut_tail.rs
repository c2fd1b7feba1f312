//! A follower that restarts with its log cut short past what it knew committed (read as an
//! unsynced tail, and cut off) holds fewer entries than its leader last saw it hold: the leader
//! sends them again and goes on leading, and every replica ends with the same records. The
//! Jepsen corrupt-disk run found the leader's Raft core panicking there instead (openraft's
//! follower-log-reversion assertion) and the node running on without the group.

use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use raftlog_client::Client;
use raftlog_client::ErrorReason;

use crate::kit::RaftTimers;
use crate::kit::TestCluster;

const TOPIC: &str = "cut-tail";
/// Long enough timeouts that the leader keeps its term (and what it knows of the follower's
/// log) while the follower is down, edited and restarted: it steps down after an election
/// timeout without a quorum, and a new term would start its view of the follower afresh.
const TIMERS: RaftTimers = RaftTimers {
    heartbeat_ms: 200,
    election_min_ms: 5_000,
    election_max_ms: 8_000,
};
/// Tries at killing the follower before it learns that its last entry is committed.
const ATTEMPTS: u64 = 8;

/// The last segment file of node `id`'s replica of `group`.
fn last_segment(cluster: &TestCluster, id: u64, group: u64) -> PathBuf {
    let log_dir = cluster
        .data_dir(id)
        .join("groups")
        .join(group.to_string())
        .join("log");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&log_dir)
        .expect("the replica's log directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files.pop().expect("a segment")
}

/// Where the last frame of a segment starts. A frame is `magic "RLOG" | payload length u32 |
/// crc u32 | payload` (raftlog-storage's `frame.rs`); the preallocated rest reads as zeros.
fn last_frame_start(bytes: &[u8]) -> usize {
    const HEADER: usize = 12;
    let (mut pos, mut last) = (0, None);
    while bytes.len() >= pos + HEADER && &bytes[pos..pos + 4] == b"RLOG" {
        let len = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes")) as usize;
        if bytes.len() < pos + HEADER + len {
            break;
        }
        last = Some(pos);
        pos += HEADER + len;
    }
    last.expect("a frame in the segment")
}

/// Waits until node `id` runs its replica of the topic (answers a fetch) or refuses it as
/// damaged (NOT_A_REPLICA); true if it runs it.
async fn runs_replica(cluster: &TestCluster, client: &Client, id: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client
            .fetch_from(&cluster.addr(id), TOPIC, 0, 0, 0, 0)
            .await
        {
            Ok(_) => return true,
            Err(error) if error.reason() == Some(ErrorReason::NotAReplica) => return false,
            Err(error) => assert!(
                Instant::now() < deadline,
                "node {id} neither serves nor refuses its replica: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_tail_was_cut_off_is_caught_up_by_a_leader_that_keeps_leading() {
    let mut cluster = crate::kit::start_with(3, TIMERS).await;
    let client = crate::kit::client(&cluster).await;
    let leader = crate::kit::create_one_partition_topic(&cluster, &client, TOPIC, 3, b"0").await;
    let group = cluster.wait_for_leaders(TOPIC).await.partitions[0].group_id;
    crate::kit::produce_numbers(&client, TOPIC, 1..20).await;
    let mut others = (1..=3).filter(|id| *id != leader);
    let (follower, bystander) = (
        others.next().expect("follower"),
        others.next().expect("other"),
    );
    // With the bystander down, each acknowledgement means the follower holds the entry (the
    // leader saw it fsynced there), and the leader tells it the entry is committed only with a
    // later message (a commit index is held back for up to 5 ms): killed right after the
    // acknowledgement, the follower has neither applied nor recorded it committed, so its
    // restart reads a frame cut short there as an unsynced tail.
    cluster.kill(bystander);
    let mut next = 20;
    let mut cut = false;
    for attempt in 0..ATTEMPTS {
        crate::kit::produce_numbers(&client, TOPIC, next..next + 1).await;
        next += 1;
        cluster.kill(follower);
        let segment = last_segment(&cluster, follower, group);
        let bytes = std::fs::read(&segment).expect("read segment");
        let frame = last_frame_start(&bytes);
        // Half a header of the last entry's frame stays: a write torn there.
        std::fs::write(&segment, &bytes[..frame + 6]).expect("cut the segment");
        cluster.restart(follower).expect("restart the follower");
        if runs_replica(&cluster, &client, follower).await {
            eprintln!("attempt {attempt}: the follower cut off its last entry and runs");
            cut = true;
            break;
        }
        // It knew the entry committed, so it refused the cut log as damaged: put it back.
        eprintln!("attempt {attempt}: the follower knew its last entry committed; again");
        cluster.kill(follower);
        std::fs::write(&segment, &bytes).expect("restore the segment");
        cluster.restart(follower).expect("restart the follower");
        assert!(runs_replica(&cluster, &client, follower).await);
    }
    assert!(
        cut,
        "the follower learned its last entry committed in all {ATTEMPTS} tries"
    );

    // Only the leader and the cut follower run: these are acknowledged only if the leader took
    // the follower's shorter log, sent it the entry again and kept leading.
    crate::kit::produce_numbers(&client, TOPIC, next..next + 10).await;
    next += 10;
    assert!(
        cluster.unexpected_exit(leader).is_none(),
        "the leader exited: {:?}",
        cluster.unexpected_exit(leader)
    );
    cluster.restart(bystander).expect("restart the bystander");
    let expected: Vec<(u64, Vec<u8>)> =
        (0..next).map(|n| (n, n.to_string().into_bytes())).collect();
    let leader_log = std::fs::read_to_string(cluster.log_path(leader)).expect("leader's log");
    assert!(
        leader_log.contains("follower log is reverted"),
        "the leader never found the follower's log shorter than it had seen it: nothing was tested"
    );
    for id in 1..=3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let records = crate::kit::read_all_from(&cluster, &client, id, TOPIC, 0).await;
            if records == expected {
                break;
            }
            assert!(
                Instant::now() < deadline && records.len() < expected.len(),
                "node {id} serves {} records, not the {} acknowledged ones in order",
                records.len(),
                expected.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
