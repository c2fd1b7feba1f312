//! The node's light heartbeats: every heartbeat interval, each follower gets one `Heartbeat`
//! call carrying a light heartbeat (group, term, last index) for every idle group this node
//! leads (see `Heartbeat` in transport.proto). openraft's own heartbeats are off: one RPC and
//! a pass through two Raft cores per group per follower per interval made an idle node with
//! 1,000 partitions busy (docs/ARCHITECTURE.md, many partitions). Groups with anything in
//! flight, and groups a follower refuses, get a full Raft heartbeat instead.
//!
//! A follower's acceptance restarts its election clock; the leader keeps each follower's last
//! acknowledgement, from which the quorum lease of an idle leader is measured.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Weak;
use std::time::Duration;
use std::time::Instant;

use openraft::ServerState;
use raftlog_proto::internal::GroupHeartbeat;
use raftlog_proto::internal::HeartbeatRequest;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use tokio_util::sync::CancellationToken;

use crate::election_clock::VoterRank;
use crate::registry::RaftHost;
use crate::ticks::Ticks;

/// The heartbeat task: ends when `stop` is cancelled or the host is gone.
pub(crate) async fn run(host: Weak<RaftHost>, stop: CancellationToken) {
    let Some(period) = host
        .upgrade()
        .map(|host| Duration::from_millis(host.timing.heartbeat_interval_ms))
    else {
        return;
    };
    let mut ticks = Ticks::new(period, stop);
    while let Some(host) = ticks.next(&host).await {
        // A round waits at most one period for its answers (each call's timeout).
        host.send_heartbeats(period).await;
    }
}

impl RaftHost {
    /// One heartbeat round: a light heartbeat per idle group led here to each of its
    /// followers, batched per follower, and a full Raft heartbeat for the other groups led here.
    async fn send_heartbeats(&self, timeout: Duration) {
        let mut light: HashMap<NodeId, (String, Vec<GroupHeartbeat>)> = HashMap::new();
        let mut full = Vec::new();
        // A node whose disk stalled sends none: its leaders are stepping down (`watchdog.rs`).
        if self.disk_stalled() {
            return;
        }
        // Light heartbeats speak for a core only while it answers the watchdog's probes: the
        // metrics they are built from stay as they were when a core wedges.
        let core_answer_window = Duration::from_millis(self.timing.election_timeout_min_ms / 2);
        let now = Instant::now();
        self.each_group(|group, hosted| {
            let metrics = hosted.raft.metrics();
            let metrics = metrics.borrow();
            if metrics.state != ServerState::Leader {
                return;
            }
            if now.saturating_duration_since(*hosted.core_answered_at.lock()) > core_answer_window {
                return;
            }
            let applied = metrics.last_applied.map(|id| id.index);
            let caught_up = metrics.replication.as_ref().is_some_and(|followers| {
                followers
                    .values()
                    .all(|matched| matched.map(|id| id.index) == metrics.last_log_index)
            });
            // Entries not yet applied here, or not yet on every follower: Raft's own heartbeat
            // carries the commit index and restarts replication.
            let (Some(last_index), true) = (
                metrics.last_log_index,
                applied == metrics.last_log_index && caught_up,
            ) else {
                full.push(hosted.raft.clone());
                return;
            };
            for (node, info) in metrics.membership_config.membership().nodes() {
                if *node == self.node_id {
                    continue;
                }
                light
                    .entry(*node)
                    .or_insert_with(|| (info.peer_addr.clone(), Vec::new()))
                    .1
                    .push(GroupHeartbeat {
                        group_id: group.0,
                        term: metrics.current_term,
                        last_index,
                    });
            }
        });
        for raft in full {
            let _ = raft.trigger().heartbeat().await;
        }
        let calls = light.into_iter().map(|(follower, (peer_addr, groups))| {
            self.send_light_heartbeats(follower, peer_addr, groups, timeout)
        });
        futures::future::join_all(calls).await;
    }

    async fn send_light_heartbeats(
        &self,
        follower: NodeId,
        peer_addr: String,
        groups: Vec<GroupHeartbeat>,
        timeout: Duration,
    ) {
        let Ok(mut client) = self.peers.client(&peer_addr) else {
            return;
        };
        let mut request = tonic::Request::new(HeartbeatRequest {
            leader_id: self.node_id,
            groups: groups.clone(),
        });
        request.set_timeout(timeout);
        // The acknowledgement counts from when the heartbeat left, not when the answer came
        // back: the follower heard from this leader no earlier than that, so a lease measured
        // from it ends before the follower's election timeout can, however late the answer.
        let sent_at = Instant::now();
        // An unreachable follower acknowledges nothing; a full heartbeat would not reach it
        // either, and Raft replication retries on its own.
        let Ok(response) = client.heartbeat(request).await else {
            return;
        };
        let accepted: HashSet<u64> = response
            .into_inner()
            .accepted_group_ids
            .into_iter()
            .collect();
        for heartbeat in &groups {
            let group = GroupId(heartbeat.group_id);
            let Some(hosted) = self.hosted(group) else {
                continue;
            };
            if accepted.contains(&heartbeat.group_id) {
                hosted
                    .light_acks
                    .lock()
                    .insert(follower, (heartbeat.term, sent_at));
            } else {
                tracing::debug!(
                    group = group.0,
                    node = follower,
                    "light heartbeat refused: sending a full one"
                );
                let _ = hosted.raft.trigger().heartbeat().await;
            }
        }
    }

    /// Whether a light heartbeat from `leader` matches this replica of its group: same term and
    /// leader, and everything up to `last_index` applied. If so the group's election timer
    /// starts over, as a Raft heartbeat would restart it.
    pub fn accept_light_heartbeat(&self, leader: NodeId, heartbeat: &GroupHeartbeat) -> bool {
        let group = GroupId(heartbeat.group_id);
        let Some(hosted) = self.hosted(group) else {
            return false;
        };
        let matching_rank = {
            let metrics = hosted.raft.metrics();
            let metrics = metrics.borrow();
            let matches = metrics.state != ServerState::Leader
                && metrics.current_term == heartbeat.term
                && metrics.current_leader == Some(leader)
                && metrics.last_applied.map(|id| id.index) == Some(heartbeat.last_index);
            matches.then(|| VoterRank::in_metrics(self.node_id, &metrics))
        };
        match matching_rank {
            Some(rank) => {
                hosted.election.heard_from_leader(&self.timing, group, rank);
                true
            }
            None => false,
        }
    }

    /// How long ago a majority of `voters` (this leader included) last acknowledged a light
    /// heartbeat of `term` for `group`; `None` if they never did.
    pub fn light_quorum_age(
        &self,
        group: GroupId,
        term: u64,
        voters: &[NodeId],
    ) -> Option<Duration> {
        let others_needed =
            (voters.len() / 2 + 1).saturating_sub(usize::from(voters.contains(&self.node_id)));
        if others_needed == 0 {
            return Some(Duration::ZERO);
        }
        let hosted = self.hosted(group)?;
        let acks = hosted.light_acks.lock();
        let now = Instant::now();
        let mut ages: Vec<Duration> = voters
            .iter()
            .filter(|id| **id != self.node_id)
            .filter_map(|id| acks.get(id))
            .filter(|(ack_term, _)| *ack_term == term)
            .map(|(_, at)| now.duration_since(*at))
            .collect();
        ages.sort();
        ages.get(others_needed - 1).copied()
    }
}
