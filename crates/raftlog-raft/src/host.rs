//! The registry of the Raft groups running on this node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use openraft::storage::RaftStateMachine;
use openraft::ServerState;
use parking_lot::Mutex;
use parking_lot::RwLock;
use raftlog_storage::SegmentLog;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
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
    election_clocks: Mutex<HashMap<GroupId, ElectionClock>>,
}

/// When a group last heard from a leader (or granted a vote), and how long it waits before
/// standing for election: randomized per attempt, so two survivors rarely collide.
struct ElectionClock {
    last_heard: Instant,
    timeout: Duration,
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
            election_clocks: Mutex::new(HashMap::new()),
        })
    }

    fn random_election_timeout(&self) -> Duration {
        Duration::from_millis(rand::random_range(
            self.timing.election_timeout_min_ms..=self.timing.election_timeout_max_ms,
        ))
    }

    /// Records that `group` heard from its leader (or granted a vote): its election timer
    /// starts over.
    pub fn note_heard_from_leader(&self, group: GroupId) {
        if let Some(clock) = self.election_clocks.lock().get_mut(&group) {
            clock.last_heard = Instant::now();
        }
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
        let network = GroupNetworkFactory::new(group, self.peers.clone());
        let raft = openraft::Raft::new(self.node_id, config, network, log, state_machine)
            .await
            .map_err(|source| RaftHostError::Start {
                group,
                source: Box::new(source),
            })?;
        self.election_clocks.lock().insert(
            group,
            ElectionClock {
                last_heard: Instant::now(),
                timeout: self.random_election_timeout(),
            },
        );
        self.groups.write().insert(group, raft.clone());
        tracing::info!(group = group.0, node = self.node_id, "started Raft group");
        Ok(raft)
    }

    /// The running group, if any.
    pub fn group(&self, group: GroupId) -> Option<RaftGroup> {
        self.groups.read().get(&group).cloned()
    }

    /// Ids of every running group.
    pub fn group_ids(&self) -> Vec<GroupId> {
        self.groups.read().keys().copied().collect()
    }

    /// Stops a group and forgets it.
    pub async fn stop_group(&self, group: GroupId) {
        let raft = self.groups.write().remove(&group);
        self.election_clocks.lock().remove(&group);
        if let Some(raft) = raft {
            if let Err(error) = raft.shutdown().await {
                tracing::warn!(group = group.0, %error, "Raft group did not shut down cleanly");
            }
            tracing::info!(group = group.0, node = self.node_id, "stopped Raft group");
        }
    }

    /// Starts the node's heartbeat: every heartbeat interval, each group this node leads sends
    /// its heartbeats at the same moment, so the transport carries all of them to a peer in one
    /// call (openraft's own per-group heartbeat timers are off: their phases drift apart and
    /// 1,000 groups would cost thousands of RPCs a second). The task ends with the host.
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
                let leaders: Vec<RaftGroup> = host
                    .groups
                    .read()
                    .values()
                    .filter(|raft| raft.metrics().borrow().state == ServerState::Leader)
                    .cloned()
                    .collect();
                drop(host);
                for raft in leaders {
                    // Fails only once the group has shut down.
                    let _ = raft.trigger().heartbeat().await;
                }
            }
        });
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
        let mut clocks = self.election_clocks.lock();
        let mut due = Vec::new();
        for (group, raft) in groups.iter() {
            let Some(clock) = clocks.get_mut(group) else {
                continue;
            };
            let metrics = raft.metrics().borrow().clone();
            let is_voter = metrics
                .membership_config
                .membership()
                .voter_ids()
                .any(|id| id == self.node_id);
            if metrics.state == ServerState::Leader || !is_voter {
                clock.last_heard = now;
                continue;
            }
            if now.duration_since(clock.last_heard) >= clock.timeout {
                clock.last_heard = now;
                clock.timeout = self.random_election_timeout();
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
