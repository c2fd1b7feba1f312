//! The registry of the Raft groups running on this node.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use openraft::storage::RaftStateMachine;
use openraft::ServerState;
use parking_lot::Mutex;
use parking_lot::RwLock;
use raftlog_proto::internal::GroupHeartbeat;
use raftlog_proto::internal::HeartbeatRequest;
use raftlog_storage::Durability;
use raftlog_storage::SegmentLog;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use raftlog_types::TypeConfig;

use crate::error::RaftHostError;
use crate::network::GroupNetworkFactory;
use crate::network::PeerPool;
use crate::timing::RaftTiming;
use crate::RaftGroup;

/// Every Raft group of this node, by group id.
pub struct RaftHost {
    node_id: NodeId,
    timing: RaftTiming,
    peers: PeerPool,
    groups: RwLock<HashMap<GroupId, RaftGroup>>,
    /// How far each group's log is durable here, which bounds what a reply to a leader claims.
    durabilities: RwLock<HashMap<GroupId, Durability>>,
    /// When each group stands for election unless it hears from a leader (or grants a vote)
    /// first; drawn again, in this replica's slot, each time it does.
    election_deadlines: Mutex<HashMap<GroupId, Instant>>,
    /// Per group led here: each follower's last light-heartbeat acknowledgement (term, and when
    /// the acknowledged heartbeat was sent).
    light_acks: Mutex<HashMap<GroupId, LightAcks>>,
}

/// Per follower of a group led here: term and send time of its last acknowledged light heartbeat.
type LightAcks = HashMap<NodeId, (u64, Instant)>;

/// This node's place among the sorted voters of a group, which picks its election slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct VoterRank {
    position: u64,
    voters: u64,
}

impl VoterRank {
    /// `node`'s rank among `voters`, or `None` if it is not one of them.
    fn of(node: NodeId, voters: impl Iterator<Item = NodeId>) -> Option<VoterRank> {
        let (mut position, mut count, mut member) = (0, 0, false);
        for voter in voters {
            count += 1;
            position += u64::from(voter < node);
            member |= voter == node;
        }
        member.then_some(VoterRank {
            position,
            voters: count,
        })
    }

    /// The rank of `node` in the group whose metrics these are. Runs for every light heartbeat,
    /// so a plain configuration is read in place: openraft's `voter_ids` builds a set each time.
    fn in_metrics(node: NodeId, metrics: &openraft::RaftMetrics<NodeId, NodeInfo>) -> Option<Self> {
        let membership = metrics.membership_config.membership();
        match membership.get_joint_config().as_slice() {
            [voters] => VoterRank::of(node, voters.iter().copied()),
            _ => VoterRank::of(node, membership.voter_ids()),
        }
    }
}

/// How often the host looks for groups whose election timeout has passed.
const ELECTION_CHECK_PERIOD: Duration = Duration::from_millis(50);

impl RaftHost {
    /// A host with no group yet.
    pub fn new(node_id: NodeId, timing: RaftTiming, peers: PeerPool) -> Arc<RaftHost> {
        Arc::new(RaftHost {
            node_id,
            timing,
            peers,
            groups: RwLock::new(HashMap::new()),
            durabilities: RwLock::new(HashMap::new()),
            election_deadlines: Mutex::new(HashMap::new()),
            light_acks: Mutex::new(HashMap::new()),
        })
    }

    fn random_election_timeout(&self) -> Duration {
        Duration::from_millis(rand::random_range(
            self.timing.election_timeout_min_ms..=self.timing.election_timeout_max_ms,
        ))
    }

    /// The election timeout of this replica of `group`: the timeout range is cut into one slot
    /// per voter, and each voter waits in its own slot (rank rotated by group id, so leaders
    /// spread over the nodes), with jitter in the first half of it. When a leader dies its
    /// survivors never time out together, so they do not split the vote and wait another
    /// timeout — with hundreds of groups failing over at once, some always did. A node that is
    /// not a voter (or does not know the membership yet) draws from the whole range.
    fn ranked_election_timeout(&self, group: GroupId, rank: Option<VoterRank>) -> Duration {
        let Some(VoterRank { position, voters }) = rank else {
            return self.random_election_timeout();
        };
        let slot_rank = (position + group.0) % voters;
        let slot =
            (self.timing.election_timeout_max_ms - self.timing.election_timeout_min_ms) / voters;
        let jitter = rand::random_range(0..=slot / 2);
        Duration::from_millis(self.timing.election_timeout_min_ms + slot_rank * slot + jitter)
    }

    /// Starts `group`'s election timer over, in this replica's slot.
    fn restart_election_clock(&self, group: GroupId, rank: Option<VoterRank>) {
        let deadline = Instant::now() + self.ranked_election_timeout(group, rank);
        if let Some(current) = self.election_deadlines.lock().get_mut(&group) {
            *current = deadline;
        }
    }

    /// Holds back this replica's next candidacy in `group` for twice the longest election
    /// timeout: another replica with more log is standing, and only it can win (openraft's own
    /// timer does the same for a node that learns of a greater log).
    pub fn defer_election(&self, group: GroupId) {
        let deadline =
            Instant::now() + Duration::from_millis(2 * self.timing.election_timeout_max_ms);
        if let Some(current) = self.election_deadlines.lock().get_mut(&group) {
            *current = deadline;
        }
    }

    /// Records that `group` heard from its leader (or granted a vote): its election timer
    /// starts over. The timeout is drawn again in this replica's slot: a clock that kept the
    /// timeout it was given when the group started would leave the survivors of a dead leader
    /// with two unrelated draws from the whole range, which collide (and split the vote) in
    /// some of hundreds of groups failing over at once.
    pub fn note_heard_from_leader(&self, group: GroupId, raft: &RaftGroup) {
        let rank = VoterRank::in_metrics(self.node_id, &raft.metrics().borrow());
        self.restart_election_clock(group, rank);
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The shared peer connections.
    pub fn peers(&self) -> &PeerPool {
        &self.peers
    }

    /// Starts a group's Raft instance over its log and state machine.
    pub async fn start_group<SM>(
        &self,
        group: GroupId,
        log: SegmentLog,
        state_machine: SM,
    ) -> Result<RaftGroup, RaftHostError>
    where
        SM: RaftStateMachine<TypeConfig>,
    {
        if self.groups.read().contains_key(&group) {
            return Err(RaftHostError::AlreadyRunning { group });
        }
        let config = self.timing.openraft_config(group)?;
        let network = GroupNetworkFactory::new(group, self.node_id, self.peers.clone());
        let durability = log.durability();
        let raft = openraft::Raft::new(self.node_id, config, network, log, state_machine)
            .await
            .map_err(|source| RaftHostError::Start {
                group,
                source: Box::new(source),
            })?;
        let rank = VoterRank::in_metrics(self.node_id, &raft.metrics().borrow());
        self.election_deadlines.lock().insert(
            group,
            Instant::now() + self.ranked_election_timeout(group, rank),
        );
        self.groups.write().insert(group, raft.clone());
        self.durabilities.write().insert(group, durability);
        tracing::info!(group = group.0, node = self.node_id, "started Raft group");
        Ok(raft)
    }

    /// The running group, if any.
    pub fn group(&self, group: GroupId) -> Option<RaftGroup> {
        self.groups.read().get(&group).cloned()
    }

    /// How far the group's log is durable here, if the group runs.
    pub fn durability(&self, group: GroupId) -> Option<Durability> {
        self.durabilities.read().get(&group).cloned()
    }

    /// Ids of every running group.
    pub fn group_ids(&self) -> Vec<GroupId> {
        self.groups.read().keys().copied().collect()
    }

    /// Stops a group and forgets it.
    pub async fn stop_group(&self, group: GroupId) {
        let raft = self.groups.write().remove(&group);
        self.durabilities.write().remove(&group);
        self.election_deadlines.lock().remove(&group);
        self.light_acks.lock().remove(&group);
        if let Some(raft) = raft {
            if let Err(error) = raft.shutdown().await {
                tracing::warn!(group = group.0, %error, "Raft group did not shut down cleanly");
            }
            tracing::info!(group = group.0, node = self.node_id, "stopped Raft group");
        }
    }

    /// Starts the node's heartbeat: every heartbeat interval, each follower gets one call
    /// carrying a light heartbeat for every group this node leads (see `Heartbeat` in
    /// transport.proto). openraft's own heartbeats are off: one RPC and a pass through two
    /// Raft cores per group per follower per interval cost ~70% of a core with 1,000
    /// partitions. Groups with anything in flight, and groups a follower refuses, get a full
    /// Raft heartbeat instead. The task ends with the host.
    pub fn spawn_heartbeats(self: &Arc<Self>) {
        let host = Arc::downgrade(self);
        let period = Duration::from_millis(self.timing.heartbeat_interval_ms);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(host) = host.upgrade() else {
                    return;
                };
                host.send_heartbeats(period).await;
            }
        });
    }

    async fn send_heartbeats(&self, timeout: Duration) {
        let mut light: HashMap<NodeId, (String, Vec<GroupHeartbeat>)> = HashMap::new();
        let mut full = Vec::new();
        for (group, raft) in self.groups.read().iter() {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            if metrics.state != ServerState::Leader {
                continue;
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
                full.push(raft.clone());
                continue;
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
        }
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
        let mut refused = Vec::new();
        {
            let mut acks = self.light_acks.lock();
            for heartbeat in &groups {
                if accepted.contains(&heartbeat.group_id) {
                    acks.entry(GroupId(heartbeat.group_id))
                        .or_default()
                        .insert(follower, (heartbeat.term, sent_at));
                } else {
                    refused.push(GroupId(heartbeat.group_id));
                }
            }
        }
        for group in refused {
            if let Some(raft) = self.group(group) {
                tracing::debug!(
                    group = group.0,
                    node = follower,
                    "light heartbeat refused: sending a full one"
                );
                let _ = raft.trigger().heartbeat().await;
            }
        }
    }

    /// Whether a light heartbeat from `leader` matches this replica of its group: same term and
    /// leader, and everything up to `last_index` applied. If so the group's election timer
    /// starts over, as a Raft heartbeat would restart it.
    pub fn accept_light_heartbeat(&self, leader: NodeId, heartbeat: &GroupHeartbeat) -> bool {
        let group = GroupId(heartbeat.group_id);
        let Some(raft) = self.group(group) else {
            return false;
        };
        let matching_rank = {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            let matches = metrics.state != ServerState::Leader
                && metrics.current_term == heartbeat.term
                && metrics.current_leader == Some(leader)
                && metrics.last_applied.map(|id| id.index) == Some(heartbeat.last_index);
            matches.then(|| VoterRank::in_metrics(self.node_id, &metrics))
        };
        match matching_rank {
            Some(rank) => {
                self.restart_election_clock(group, rank);
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
        let acks = self.light_acks.lock();
        let acks = acks.get(&group)?;
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

    /// Starts the node's election timer: a follower or candidate that has not heard from a
    /// leader for its randomized election timeout stands for election. openraft's per-group
    /// tick is off: at ~1.5 ticks per heartbeat interval it woke every group's core several
    /// times a second, which with 1,000 groups cost more CPU than the heartbeats themselves.
    /// The task ends with the host.
    pub fn spawn_election_timer(self: &Arc<Self>) {
        let host = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(ELECTION_CHECK_PERIOD);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(host) = host.upgrade() else {
                    return;
                };
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
        });
    }

    fn groups_due_for_election(&self) -> Vec<(GroupId, RaftGroup)> {
        let now = Instant::now();
        let groups = self.groups.read();
        let mut deadlines = self.election_deadlines.lock();
        let mut due = Vec::new();
        for (group, deadline) in deadlines.iter_mut() {
            if now < *deadline {
                continue;
            }
            let Some(raft) = groups.get(group) else {
                continue;
            };
            // Only groups whose timeout passed look at their metrics (a borrow, not a copy):
            // leaders and learners start over, the others stand for election.
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            let rank = VoterRank::in_metrics(self.node_id, &metrics);
            *deadline = now + self.ranked_election_timeout(*group, rank);
            if metrics.state != ServerState::Leader && rank.is_some() {
                due.push((*group, raft.clone()));
            }
        }
        due
    }

    /// Stops every group.
    pub async fn shutdown(&self) {
        for group in self.group_ids() {
            self.stop_group(group).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voter_rank_is_the_place_among_sorted_voters() {
        let voters = [7, 3, 5];
        assert_eq!(
            VoterRank::of(5, voters.into_iter()),
            Some(VoterRank {
                position: 1,
                voters: 3
            })
        );
        assert_eq!(
            VoterRank::of(3, voters.into_iter()).map(|rank| rank.position),
            Some(0)
        );
        assert_eq!(VoterRank::of(4, voters.into_iter()), None);
    }

    /// A clock that starts over when its leader is heard from draws its timeout again, in the
    /// replica's slot: keeping an earlier draw (from the whole range, as at start-up) let two
    /// survivors of a dead leader time out together.
    #[test]
    fn hearing_from_the_leader_draws_the_timeout_in_the_replicas_slot() {
        let timing = RaftTiming::default();
        let host = RaftHost::new(1, timing, PeerPool::bound_to(None));
        let group = GroupId(3);
        let far_outside_every_slot = Duration::from_millis(10 * timing.election_timeout_max_ms);
        host.election_deadlines
            .lock()
            .insert(group, Instant::now() + far_outside_every_slot);
        let rank = VoterRank::of(1, [1, 2, 3].into_iter());
        let before = Instant::now();
        host.restart_election_clock(group, rank);
        let timeout = host.election_deadlines.lock()[&group] - before;
        let slot = (timing.election_timeout_max_ms - timing.election_timeout_min_ms) / 3;
        // Node 1 is first among the voters; group 3 rotates it back to the first slot.
        // (The deadline is measured from just before the restart, so allow a little over.)
        let first_slot = Duration::from_millis(timing.election_timeout_min_ms)
            ..=Duration::from_millis(timing.election_timeout_min_ms + slot / 2 + 100);
        assert!(
            first_slot.contains(&timeout),
            "{timeout:?} not in {first_slot:?}"
        );
    }

    /// Whichever voter dies, the two survivors' timeouts lie in different slots, at least half a
    /// slot apart: the first candidacy reaches the other survivor before it stands itself.
    #[test]
    fn survivors_of_a_group_never_draw_overlapping_timeouts() {
        let timing = RaftTiming::default();
        let voters = [1, 2, 3];
        let hosts: Vec<Arc<RaftHost>> = voters
            .iter()
            .map(|id| RaftHost::new(*id, timing, PeerPool::bound_to(None)))
            .collect();
        let slot = (timing.election_timeout_max_ms - timing.election_timeout_min_ms) / 3;
        for group in (0..30).map(GroupId) {
            let ranges: Vec<(Duration, Duration)> = hosts
                .iter()
                .map(|host| {
                    let rank = VoterRank::of(host.node_id, voters.into_iter());
                    let draws: Vec<Duration> = (0..200)
                        .map(|_| host.ranked_election_timeout(group, rank))
                        .collect();
                    let (min, max) = (draws.iter().min(), draws.iter().max());
                    (*min.unwrap(), *max.unwrap())
                })
                .collect();
            for (a, b) in ranges.iter().zip(ranges.iter().cycle().skip(1)) {
                let gap = if a.1 < b.0 {
                    b.0 - a.1
                } else {
                    a.0.saturating_sub(b.1)
                };
                assert!(
                    gap >= Duration::from_millis(slot / 2),
                    "group {group:?}: timeouts {a:?} and {b:?} are too close"
                );
            }
            for (min, max) in &ranges {
                assert!(*min >= Duration::from_millis(timing.election_timeout_min_ms));
                assert!(*max <= Duration::from_millis(timing.election_timeout_max_ms));
            }
        }
    }
}
