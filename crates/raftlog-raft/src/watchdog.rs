//! The leader watchdog: a node-wide timer that makes leaders that cannot lead stop, so their
//! followers elect one that can. openraft 0.9 keeps a leader leading as long as no higher term
//! reaches it; these are the gray failures that never fail over otherwise:
//! - **CheckQuorum**: a leader that has had no acknowledgement from a majority of its voters
//!   within `RaftTiming::check_quorum_ms` steps down. Cut off one way (followers → leader), it
//!   keeps reaching its followers, so they would never time out and stand.
//! - **A stalled disk**: while any log on this node has had a write that has not returned, or
//!   written entries whose sync has not completed, for `RaftTiming::disk_stall_ms`, every group
//!   led here steps down (idle ones too: they share the disk), and the node
//!   stands for no election (`election.rs`) until syncs complete again. Its followers' fsyncs
//!   would still commit entries, but this node could not apply or answer them.
//! - **A wedged core**: each group led here has its Raft core probed; only a core that answers
//!   gets light heartbeats sent for it (`heartbeat.rs`), since light heartbeats are built from
//!   the metrics a wedged core last published. Without them its followers time out and stand.
//!
//! - **A stopped core**: a group whose Raft core stopped on a storage error or a panic fails
//!   the node (`RaftHost::failed`): after a failed `fdatasync` the data may be gone from the
//!   page cache, so the node must not go on as if it were durable (fail-stop, as etcd and
//!   Redpanda do); restarted, it recovers from what its disk really holds.
//!
//! Stepping down is openraft patch 5 (`Trigger::step_down`): same term, no new vote saved.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;
use std::time::Instant;

use openraft::error::Fatal;
use openraft::RaftMetrics;
use openraft::ServerState;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use tokio_util::sync::CancellationToken;

use crate::registry::GroupFailure;
use crate::registry::RaftHost;
use crate::ticks::Ticks;

/// Why a leader steps down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepDown {
    /// No majority acknowledged it within the CheckQuorum window.
    NoQuorum,
    /// This node's disk has not completed a sync within the stall window.
    DiskStalled,
}

/// The watchdog task: ends when `stop` is cancelled or the host is gone. It runs twice per
/// heartbeat interval, so a core's probe is never older than a heartbeat round needs.
pub(crate) async fn run(host: Weak<RaftHost>, stop: CancellationToken) {
    let Some(period) = host
        .upgrade()
        .map(|host| Duration::from_millis((host.timing.heartbeat_interval_ms / 2).max(1)))
    else {
        return;
    };
    let mut ticks = Ticks::new(period, stop);
    while let Some(host) = ticks.next(&host).await {
        host.watch_leaders(period).await;
    }
}

impl RaftHost {
    /// Whether this node's disk has stalled: some log here has had a write hang, or written
    /// entries wait for a sync with none completing, for the stall window. Kept in `disk_stalled` for the
    /// heartbeat and election timers between the watchdog's rounds.
    pub(crate) fn disk_stalled(&self) -> bool {
        self.disk_stalled.load(Ordering::Relaxed)
    }

    fn measure_disk_stall(&self, now: Instant) -> bool {
        let window = Duration::from_millis(self.timing.disk_stall_ms());
        let mut stalled = false;
        self.each_group(|_, hosted| {
            stalled |= hosted
                .durability
                .stalled_for(now)
                .is_some_and(|waited| waited >= window);
        });
        let was = self.disk_stalled.swap(stalled, Ordering::Relaxed);
        if stalled != was {
            if stalled {
                tracing::warn!(
                    node = self.node_id,
                    stall_ms = window.as_millis() as u64,
                    "disk stalled: no sync completed within the stall window; leaders here step down"
                );
            } else {
                tracing::info!(node = self.node_id, "disk completes syncs again");
            }
        }
        stalled
    }

    /// How long ago a majority of the group's voters (this leader included) acknowledged it in
    /// its current term, by Raft replication or by light heartbeats; `None` if never. Not
    /// openraft's `millis_since_quorum_ack`: that is the age when the metrics were last
    /// reported, and an idle leader cut off from the others reports nothing (openraft patch 4).
    pub fn quorum_contact_age(
        &self,
        group: GroupId,
        metrics: &RaftMetrics<NodeId, NodeInfo>,
    ) -> Option<Duration> {
        let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        let light = self.light_quorum_age(group, metrics.current_term, &voters);
        let raft = metrics.last_quorum_acked.map(|acked| acked.elapsed());
        match (raft, light) {
            (Some(raft), Some(light)) => Some(raft.min(light)),
            (raft, light) => raft.or(light),
        }
    }

    /// Records the first group whose core stopped on a storage error or a panic, and fails the
    /// node. A core stopped by `stop_group` (`Fatal::Stopped`) is a normal end.
    fn look_for_stopped_cores(&self) {
        let mut stopped = None;
        self.each_group(|group, hosted| {
            if stopped.is_some() {
                return;
            }
            let receiver = hosted.raft.metrics();
            // The core holds the only sender of its metrics. A core that panicked reports no
            // running state (it unwound before it could), so its closed channel is how it
            // shows; a group stopped on purpose has left the registry before its core ends.
            let core_gone = receiver.has_changed().is_err();
            let reason = match &receiver.borrow().running_state {
                Err(fatal @ (Fatal::StorageError(_) | Fatal::Panicked)) => Some(fatal.to_string()),
                Ok(()) if core_gone => Some(Fatal::<NodeId>::Panicked.to_string()),
                _ => None,
            };
            if let Some(reason) = reason {
                stopped = Some(GroupFailure { group, reason });
            }
        });
        let Some(stopped) = stopped else {
            return;
        };
        let mut failure = self.failure.lock();
        if failure.is_none() {
            tracing::error!(
                group = stopped.group.0,
                node = self.node_id,
                reason = %stopped.reason,
                "a Raft group stopped on a storage error or a panic: stopping the node (fail-stop)"
            );
            *failure = Some(stopped);
            self.failed.cancel();
        }
    }

    /// One round: probe the cores of the groups led here, and step down where they cannot lead.
    async fn watch_leaders(&self, probe_timeout: Duration) {
        self.look_for_stopped_cores();
        let now = Instant::now();
        let disk_stalled = self.measure_disk_stall(now);
        let check_quorum = Duration::from_millis(self.timing.check_quorum_ms());
        let mut led = Vec::new();
        self.each_group(|group, hosted| {
            let metrics = hosted.raft.metrics();
            let metrics = metrics.borrow();
            let mut led_since = hosted.led_since.lock();
            if metrics.state != ServerState::Leader {
                *led_since = None;
                return;
            }
            let term = metrics.current_term;
            let since = match *led_since {
                Some((led_term, since)) if led_term == term => since,
                _ => {
                    *led_since = Some((term, now));
                    now
                }
            };
            led.push((group, hosted.raft.clone(), term, since));
        });
        let mut stepping_down = Vec::new();
        for (group, raft, term, since) in &led {
            let reason = if disk_stalled {
                Some(StepDown::DiskStalled)
            } else {
                // A leader elected a moment ago has had no acknowledgement in its term yet:
                // it is given the CheckQuorum window from when it was first seen leading.
                let age = self
                    .quorum_contact_age(*group, &raft.metrics().borrow())
                    .unwrap_or_else(|| now.saturating_duration_since(*since));
                (age > check_quorum).then_some(StepDown::NoQuorum)
            };
            if let Some(reason) = reason {
                stepping_down.push((*group, raft.clone(), *term, reason));
            }
        }
        for (group, raft, term, reason) in stepping_down {
            tracing::warn!(
                group = group.0,
                term,
                node = self.node_id,
                ?reason,
                "leader cannot lead: stepping down"
            );
            // Sent without waiting for the core: a wedged one would hold up the round.
            let _ = tokio::time::timeout(probe_timeout, raft.trigger().step_down()).await;
        }
        // Probes: a core answers a closure call once it has handled what came before.
        let probes = led.iter().map(|(group, raft, _, _)| async move {
            let answered = tokio::time::timeout(probe_timeout, raft.with_raft_state(|_| ()))
                .await
                .is_ok_and(|result| result.is_ok());
            (*group, answered)
        });
        for (group, answered) in futures::future::join_all(probes).await {
            if answered {
                if let Some(hosted) = self.hosted(group) {
                    *hosted.core_answered_at.lock() = Instant::now();
                }
            } else {
                tracing::warn!(
                    group = group.0,
                    node = self.node_id,
                    "Raft core did not answer its probe: no light heartbeats for it"
                );
            }
        }
    }
}
