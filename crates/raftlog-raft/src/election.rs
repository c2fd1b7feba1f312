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

    /// Records that a leader of a term this replica accepted reached it in `group` (a Raft
    /// AppendEntries or a light heartbeat): its election clock starts over, in this replica's
    /// slot, and it refuses votes for the vote-refusal window.
    pub fn note_heard_from_leader(&self, group: GroupId, raft: &RaftGroup) {
        let rank = VoterRank::in_metrics(self.node_id, &raft.metrics().borrow());
        if let Some(hosted) = self.hosted(group) {
            hosted.election.heard_from_leader(&self.timing, group, rank);
        }
    }

    /// Records that this replica granted a vote in `group`: its election clock starts over, so
    /// it gives the candidate time to win.
    pub fn note_vote_granted(&self, group: GroupId, raft: &RaftGroup) {
        let rank = VoterRank::in_metrics(self.node_id, &raft.metrics().borrow());
        if let Some(hosted) = self.hosted(group) {
            hosted.election.restart(&self.timing, group, rank);
        }
    }

    /// Whether this replica of `group` refuses to vote for anyone now: a leader reached it
    /// within the vote-refusal window. openraft's own lease counts only Raft AppendEntries;
    /// this counts light heartbeats too, which is what keeps a leader's read lease shorter
    /// than the time its voters refuse others (`RaftTiming::read_lease_ms`).
    pub fn refuses_votes(&self, group: GroupId) -> bool {
        let window = Duration::from_millis(self.timing.vote_refusal_ms());
        self.hosted(group)
            .is_some_and(|hosted| hosted.election.heard_leader_within(window, Instant::now()))
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
///
/// A group whose clock ran out first asks its voters for a pre-vote (`pre_vote.rs`) and stands
/// only where a majority would grant it. A node whose own disk has stalled stands nowhere: it
/// could not save its vote, nor its entries as leader.
pub(crate) async fn run(host: Weak<RaftHost>, stop: CancellationToken) {
    let mut ticks = Ticks::new(Duration::from_millis(ELECTION_CHECK_PERIOD_MS), stop);
    while let Some(host) = ticks.next(&host).await {
        let due = host.groups_due_for_election();
        if due.is_empty() {
            continue;
        }
        if host.disk_stalled() {
            tracing::debug!(
                node = host.node_id,
                groups = due.len(),
                "disk stalled: standing for no election"
            );
            continue;
        }
        let standing = host.pre_vote(due).await;
        drop(host);
        for (group, raft) in standing {
            let term = raft.metrics().borrow().current_term;
            tracing::info!(
                group = group.0,
                term,
                "no leader heard within the election timeout, and a majority would vote: standing for election"
            );
            let _ = raft.trigger().elect().await;
        }
    }
}
