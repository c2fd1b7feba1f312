//! The registry of the Raft groups running on this node: one [`HostedGroup`] per group in one
//! map, so a group's Raft instance, its durability, its election deadline and its followers'
//! light-heartbeat acknowledgements are added and removed together. The node-wide timers that
//! read the registry (heartbeats in `heartbeat.rs`, elections in `election.rs`) are started by
//! `RaftHost::start_timers` (`timers.rs`) and cancelled and joined by [`RaftHost::shutdown`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::sync::Weak;
use std::time::Instant;

use openraft::storage::RaftStateMachine;
use parking_lot::Mutex;
use parking_lot::RwLock;
use raftlog_storage::Durability;
use raftlog_storage::SegmentLog;
use raftlog_types::type_config::Vote;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::TypeConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::election_clock::ElectionClock;
use crate::election_clock::VoterRank;
use crate::error::RaftHostError;
use crate::openraft_network::GroupNetworkFactory;
use crate::peer::PeerPool;
use crate::timing::RaftTiming;
use crate::RaftGroup;

/// Every Raft group of this node, by group id, and the node-wide timers that drive them.
pub struct RaftHost {
    pub(crate) node_id: NodeId,
    pub(crate) timing: RaftTiming,
    pub(crate) peers: PeerPool,
    groups: RwLock<HashMap<GroupId, Arc<HostedGroup>>>,
    /// The heartbeat and election tasks.
    timers: TaskTracker,
    /// Cancelled by [`RaftHost::shutdown`]: the timers end at their next tick.
    stop_timers: CancellationToken,
    /// Whether this node's disk has stalled, as the watchdog last measured (`watchdog.rs`).
    pub(crate) disk_stalled: AtomicBool,
    /// The first group whose Raft core stopped on a storage error (or a panic), and why; the
    /// node stops when it is set (`RaftHost::failed`).
    pub(crate) failure: Mutex<Option<GroupFailure>>,
    /// Cancelled once `failure` is set.
    pub(crate) failed: CancellationToken,
}

/// A group whose Raft core stopped, so that the node can no longer keep its promises for it.
#[derive(Clone, Debug)]
pub struct GroupFailure {
    /// The group.
    pub group: GroupId,
    /// What stopped it (openraft's `Fatal`: a storage error, or a panic in the core).
    pub reason: String,
}

/// Per follower of a group led here: term and send time of its last acknowledged light
/// heartbeat (`heartbeat.rs`). Keyed by the group's members, so as bounded as its membership.
pub(crate) type LightAcks = HashMap<NodeId, (u64, Instant)>;

/// One Raft group as this node hosts it.
pub(crate) struct HostedGroup {
    pub(crate) raft: RaftGroup,
    /// How far the group's log is durable here, which bounds what a reply to a leader claims.
    pub(crate) durability: Durability,
    /// When this replica stands for election unless it hears from a leader (or grants a vote)
    /// first.
    pub(crate) election: ElectionClock,
    /// While this node leads the group: each follower's last light-heartbeat acknowledgement.
    pub(crate) light_acks: Mutex<LightAcks>,
    /// The group's log (a handle to it): its last log id, for pre-votes without waking the
    /// Raft core, and its durability, whose stalls the watchdog looks for.
    pub(crate) log: SegmentLog,
    /// When the group's Raft core last answered the watchdog's probe (`watchdog.rs`): light
    /// heartbeats are sent only for a core that does, as a wedged core still publishes the
    /// metrics it last had.
    pub(crate) core_answered_at: Mutex<Instant>,
    /// The term this node leads the group in and since when the watchdog has seen it lead
    /// (`watchdog.rs`): a leader elected a moment ago has had no acknowledgement yet.
    pub(crate) led_since: Mutex<Option<(u64, Instant)>>,
}

impl RaftHost {
    /// A host with no group yet and no timer running.
    pub fn new(node_id: NodeId, timing: RaftTiming, peers: PeerPool) -> Arc<RaftHost> {
        Arc::new(RaftHost {
            node_id,
            timing,
            peers,
            groups: RwLock::new(HashMap::new()),
            timers: TaskTracker::new(),
            stop_timers: CancellationToken::new(),
            disk_stalled: AtomicBool::new(false),
            failure: Mutex::new(None),
            failed: CancellationToken::new(),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Cancelled once a group's Raft core has stopped on a storage error or a panic: the node
    /// must stop (fail-stop), as after a failed `fdatasync` Linux may have dropped the data and
    /// a retry would report it durable. [`RaftHost::failure`] says which group and why.
    pub fn failed(&self) -> CancellationToken {
        self.failed.clone()
    }

    /// The group failure that cancelled [`RaftHost::failed`], if any.
    pub fn failure(&self) -> Option<GroupFailure> {
        self.failure.lock().clone()
    }

    /// The shared peer connections.
    pub fn peers(&self) -> &PeerPool {
        &self.peers
    }

    /// Spawns one of the node-wide timers (`timers.rs`): it gets the host weakly and the
    /// token that [`RaftHost::shutdown`] cancels before it waits for it.
    pub(crate) fn spawn_timer<F>(
        self: &Arc<Self>,
        timer: impl FnOnce(Weak<RaftHost>, CancellationToken) -> F,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        self.timers
            .spawn(timer(Arc::downgrade(self), self.stop_timers.clone()));
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
        self.restart_as_follower(group, &log)?;
        let config = self.timing.openraft_config(group)?;
        let network = GroupNetworkFactory::new(group, self.node_id, self.peers.clone());
        let durability = log.durability();
        let raft = openraft::Raft::new(self.node_id, config, network, log.clone(), state_machine)
            .await
            .map_err(|source| RaftHostError::Start {
                group,
                source: Box::new(source),
            })?;
        let rank = VoterRank::in_metrics(self.node_id, &raft.metrics().borrow());
        let hosted = HostedGroup {
            raft: raft.clone(),
            durability,
            election: ElectionClock::start(&self.timing, group, rank),
            light_acks: Mutex::default(),
            log,
            core_answered_at: Mutex::new(Instant::now()),
            led_since: Mutex::new(None),
        };
        self.groups.write().insert(group, Arc::new(hosted));
        tracing::info!(group = group.0, node = self.node_id, "started Raft group");
        Ok(raft)
    }

    /// Makes a replica that led its group before this start a follower of its stored term.
    ///
    /// openraft 0.9 restores a stored committed vote for itself as leadership of that term at
    /// once. But the leader replicates while it flushes (vendored change 1), so after a power
    /// loss its log may end before entries its followers hold: leading the same term again, it
    /// would write new entries under (term, index) ids they already hold with other records,
    /// and they would keep theirs. As etcd and Redpanda do, it starts as a follower instead: the
    /// vote stays (it voted for itself in that term and for no one else), but uncommitted, so
    /// the group elects a leader of a new term, whose entries never reuse an id.
    fn restart_as_follower(&self, group: GroupId, log: &SegmentLog) -> Result<(), RaftHostError> {
        let Some(vote) = log.vote() else {
            return Ok(());
        };
        if !vote.is_committed() || vote.leader_id().voted_for() != Some(self.node_id) {
            return Ok(());
        }
        let term = vote.leader_id().get_term();
        log.store_vote(&Vote::new(term, self.node_id))
            .map_err(|source| RaftHostError::Storage {
                group,
                source: Box::new(source),
            })?;
        tracing::info!(
            group = group.0,
            term,
            node = self.node_id,
            "led the group before this start: starting as a follower, not as leader of its old term"
        );
        Ok(())
    }

    /// The running group, if any.
    pub fn group(&self, group: GroupId) -> Option<RaftGroup> {
        self.hosted(group).map(|hosted| hosted.raft.clone())
    }

    /// How far the group's log is durable here, if the group runs.
    pub fn durability(&self, group: GroupId) -> Option<Durability> {
        self.hosted(group).map(|hosted| hosted.durability.clone())
    }

    /// Ids of every running group.
    pub fn group_ids(&self) -> Vec<GroupId> {
        self.groups.read().keys().copied().collect()
    }

    /// Stops a group and forgets it.
    pub async fn stop_group(&self, group: GroupId) {
        let Some(hosted) = self.groups.write().remove(&group) else {
            return;
        };
        if let Err(error) = hosted.raft.shutdown().await {
            tracing::warn!(group = group.0, %error, "Raft group did not shut down cleanly");
        }
        tracing::info!(group = group.0, node = self.node_id, "stopped Raft group");
    }

    /// Stops the timers, waits for them to end, then stops every group.
    pub async fn shutdown(&self) {
        self.stop_timers.cancel();
        self.timers.close();
        self.timers.wait().await;
        for group in self.group_ids() {
            self.stop_group(group).await;
        }
    }

    /// The hosted group, if it runs here.
    pub(crate) fn hosted(&self, group: GroupId) -> Option<Arc<HostedGroup>> {
        self.groups.read().get(&group).cloned()
    }

    /// Calls `visit` with every hosted group, under the registry's read lock: `visit` must not
    /// wait (a group's metrics are borrowed, not awaited), or starting and stopping groups
    /// would wait with it.
    pub(crate) fn each_group(&self, mut visit: impl FnMut(GroupId, &HostedGroup)) {
        for (group, hosted) in self.groups.read().iter() {
            visit(*group, hosted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shutdown cancels the timers and waits for them: none is left running afterwards.
    #[tokio::test]
    async fn shutdown_waits_for_the_timers() {
        let host = RaftHost::new(1, RaftTiming::default(), PeerPool::bound_to(None));
        host.start_timers();
        assert_eq!(host.timers.len(), 3);
        tokio::time::timeout(std::time::Duration::from_secs(5), host.shutdown())
            .await
            .expect("shutdown ends");
        assert!(host.timers.is_closed() && host.timers.is_empty());
    }
}
