//! A replica never resumes leadership of the term it led before a restart: it starts as a
//! follower and the group elects a leader of a new term. The leader replicates while it flushes
//! (vendored openraft change 1), so after a power loss its log may end before entries its
//! followers hold; resuming its old term, it would write new entries under (term, index) ids
//! they already hold with other records, and they would keep theirs.

// Tests may panic on broken expectations: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::ServerState;
use openraft::Vote;
use raftlog_raft::PeerPool;
use raftlog_raft::RaftHost;
use raftlog_raft::RaftTiming;
use raftlog_storage::LogConfig;
use raftlog_storage::NodeStorage;
use raftlog_types::GroupId;
use raftlog_types::NodeInfo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_does_not_resume_its_term() -> anyhow::Result<()> {
    let dir = tempfile::TempDir::new()?;
    let group = GroupId(7);
    let members = BTreeMap::from([(1, NodeInfo::default())]);
    let led_term = {
        let storage = NodeStorage::open(dir.path(), LogConfig::default())?;
        let (log, state_machine, _) = storage.open_group(group)?;
        let host = RaftHost::new(1, RaftTiming::default(), PeerPool::bound_to(None));
        let raft = host.start_group(group, log, state_machine).await?;
        raft.initialize(members).await?;
        raft.wait(Some(Duration::from_secs(5)))
            .state(ServerState::Leader, "the only voter leads")
            .await?;
        let term = raft.metrics().borrow().current_term;
        host.shutdown().await;
        term
    };

    let storage = NodeStorage::open(dir.path(), LogConfig::default())?;
    let (log, state_machine, _) = storage.open_group(group)?;
    let host = RaftHost::new(1, RaftTiming::default(), PeerPool::bound_to(None));
    let raft = host.start_group(group, log, state_machine).await?;
    // openraft 0.9 restores a committed vote for itself as leadership at once, on start-up;
    // the host's election timer is not running, so nothing else can make it leader here.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = raft.metrics().borrow().clone();
    anyhow::ensure!(
        metrics.state != ServerState::Leader,
        "restarted as leader of term {} (vote {})",
        metrics.current_term,
        metrics.vote
    );
    anyhow::ensure!(
        metrics.vote == Vote::new(led_term, 1),
        "its vote of term {led_term} for itself stays, uncommitted: {}",
        metrics.vote
    );

    // The group then elects a leader, of a new term.
    host.start_timers();
    let metrics = raft
        .wait(Some(Duration::from_secs(10)))
        .state(ServerState::Leader, "elected again")
        .await?;
    anyhow::ensure!(
        metrics.current_term > led_term,
        "led term {led_term} again instead of a new one"
    );
    host.shutdown().await;
    Ok(())
}
