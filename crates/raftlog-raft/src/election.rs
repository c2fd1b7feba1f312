//! The node's election timer: one task checks every group's election clock
//! (`ELECTION_CHECK_PERIOD_MS`) and has each follower or candidate that has not heard from a
//! leader within its election timeout stand for election. openraft's per-group tick is off: at
//! ~1.5 ticks per heartbeat interval it woke every group's core several times a second, which
//! with 1,000 groups cost more CPU than the heartbeats themselves (docs/ARCHITECTURE.md, many
//! partitions).

use std::sync::Weak;
use std::time::Duration;
use std::time::Instant;

use openraft::ServerState;
use raftlog_types::limits::ELECTION_CHECK_PERIOD_MS;
use raftlog_types::GroupId;
use tokio_util::sync::CancellationToken;

use crate::election_clock::VoterRank;
use crate::registry::RaftHost;
use crate::ticks::Ticks;
use crate::RaftGroup;

impl RaftHost {
    /// Holds back this replica's next candidacy in `group` for twice the longest election
    /// timeout: another replica with more log is standing, and only it can win (openraft's own
    /// timer does the same for a node that learns of a greater log).
    pub fn defer_election(&self, group: GroupId) {
        if let Some(hosted) = self.hosted(group) {
            hosted.election.defer(&self.timing);
        }
    }

    /// Records that `group` heard from its leader (or granted a vote): its election timer
    /// starts over, in this replica's slot.
    pub fn note_heard_from_leader(&self, group: GroupId, raft: &RaftGroup) {
        let rank = VoterRank::in_metrics(self.node_id, &raft.metrics().borrow());
        if let Some(hosted) = self.hosted(group) {
            hosted.election.restart(&self.timing, group, rank);
        }
    }

    /// The groups whose election clock ran out and that should stand: followers and
    /// candidates among the voters. Every clock that ran out starts over, leaders' and
    /// learners' too.
    fn groups_due_for_election(&self) -> Vec<(GroupId, RaftGroup)> {
        let now = Instant::now();
        let mut due = Vec::new();
        self.each_group(|group, hosted| {
            if !hosted.election.has_run_out(now) {
                return;
            }
            // Only groups whose timeout passed look at their metrics (a borrow, not a copy).
            let metrics = hosted.raft.metrics();
            let metrics = metrics.borrow();
            let rank = VoterRank::in_metrics(self.node_id, &metrics);
            hosted.election.restart(&self.timing, group, rank);
            if metrics.state != ServerState::Leader && rank.is_some() {
                due.push((group, hosted.raft.clone()));
            }
        });
        due
    }
}

/// The election timer task: ends when `stop` is cancelled or the host is gone.
pub(crate) async fn run(host: Weak<RaftHost>, stop: CancellationToken) {
    let mut ticks = Ticks::new(Duration::from_millis(ELECTION_CHECK_PERIOD_MS), stop);
    while let Some(host) = ticks.next(&host).await {
        let due = host.groups_due_for_election();
        drop(host);
        for (group, raft) in due {
            let term = raft.metrics().borrow().current_term;
            tracing::info!(
                group = group.0,
                term,
                "no leader heard within the election timeout: standing for election"
            );
            let _ = raft.trigger().elect().await;
        }
    }
}
