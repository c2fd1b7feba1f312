//! The partition replicas of this node: follows the controller's metadata and keeps the
//! replicas running here in line with it, starting the groups assigned to this node (each with
//! its produce batcher) and stopping (and deleting) the groups of deleted topics.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::InitializeError;
use openraft::error::RaftError;
use raftlog_types::limits::PRODUCE_QUEUE_MAX;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use tokio::sync::mpsc;
use tokio::sync::watch;

use super::node_info;
use crate::context::NodeContext;
use crate::controller::ControllerState;
use crate::controller::PartitionMeta;
use crate::partition::batcher::run_batcher;
use crate::partition::batcher::BatcherContext;
use crate::partition::lease::QuorumLease;
use crate::partition::Partition;

/// How often the manager re-checks even without a metadata change (to retry failed starts).
const RECONCILE_INTERVAL: Duration = Duration::from_secs(3);

/// Pause between starting two groups, so that their timers do not tick in lockstep
/// (openraft issue #1959).
const GROUP_START_STAGGER: Duration = Duration::from_millis(7);

/// Runs until the node stops.
pub(super) async fn run(
    context: Arc<NodeContext>,
    mut state: watch::Receiver<Arc<ControllerState>>,
) {
    let shutdown = context.shutdown.clone();
    loop {
        let current = state.borrow_and_update().clone();
        reconcile(&context, &current).await;
        tokio::select! {
            changed = state.changed() => if changed.is_err() { break },
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
        }
    }
}

async fn reconcile(context: &Arc<NodeContext>, state: &ControllerState) {
    let node_id = context.node_id;
    let mut desired: HashMap<GroupId, (String, u32, PartitionMeta)> = HashMap::new();
    for topic in state.topics.values() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            if partition.replicas.contains(&node_id) {
                desired.insert(
                    partition.group_id,
                    (topic.name.clone(), index as u32, partition.clone()),
                );
            }
        }
    }
    let running: Vec<GroupId> = context.partitions.read().keys().copied().collect();
    for group in running {
        if !desired.contains_key(&group) {
            stop_and_delete(context, group).await;
        }
    }
    let mut to_start: Vec<_> = desired
        .into_iter()
        .filter(|(group, _)| !context.partitions.read().contains_key(group))
        .collect();
    to_start.sort_by_key(|(group, _)| *group);
    for (group, (topic, index, meta)) in to_start {
        if let Err(error) = start_partition(context, &topic, index, &meta).await {
            tracing::error!(group = group.0, node = node_id, topic = %topic, partition = index, %error, "could not start partition");
        }
        tokio::time::sleep(GROUP_START_STAGGER).await;
    }
}

fn members(context: &NodeContext, replicas: &[NodeId]) -> BTreeMap<NodeId, NodeInfo> {
    replicas
        .iter()
        .filter_map(|id| context.config.node(*id).map(|n| (*id, node_info(n))))
        .collect()
}

async fn start_partition(
    context: &Arc<NodeContext>,
    topic: &str,
    index: u32,
    meta: &PartitionMeta,
) -> Result<(), String> {
    let group = meta.group_id;
    let (log, state_machine, _report) = context
        .storage
        .open_group(group)
        .map_err(|e| format!("{e:#}"))?;
    let view = state_machine.view();
    let raft = context
        .host
        .start_group(group, log.clone(), state_machine)
        .await
        .map_err(|e| e.to_string())?;
    let fresh = !raft.is_initialized().await.map_err(|e| e.to_string())?;
    if fresh {
        // Every replica initializes with the same membership, which openraft allows; the
        // preferred leader then stands for election at once so leaders spread over nodes.
        match raft.initialize(members(context, &meta.replicas)).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(error) => return Err(error.to_string()),
        }
        if meta.replicas.first() == Some(&context.node_id) {
            let _ = raft.trigger().elect().await;
        }
    }
    let (produce_queue, queue) = mpsc::channel(PRODUCE_QUEUE_MAX);
    let lease = QuorumLease {
        host: Arc::clone(&context.host),
        group,
        lease: Duration::from_millis(context.config.raft.read_lease_ms()),
    };
    let partition = Arc::new(Partition {
        topic: topic.to_owned(),
        index,
        group,
        raft: raft.clone(),
        log,
        view,
        produce_queue,
        lease: lease.clone(),
    });
    let batcher = BatcherContext {
        what: partition.name(),
        node_id: context.node_id,
        raft,
        timeout: context.request_timeout(),
        lease,
        client_addresses: Arc::clone(&context.client_addresses),
        tasks: context.tasks.clone(),
        shutdown: context.shutdown.clone(),
    };
    context.tasks.spawn(run_batcher(batcher, queue));
    context.partitions.write().insert(group, partition);
    tracing::info!(
        group = group.0,
        node = context.node_id,
        topic,
        partition = index,
        fresh,
        "partition replica running"
    );
    Ok(())
}

async fn stop_and_delete(context: &NodeContext, group: GroupId) {
    let removed = context.partitions.write().remove(&group);
    context.host.stop_group(group).await;
    drop(removed);
    let dir = context.storage.group_dir(group);
    if let Err(error) = std::fs::remove_dir_all(&dir) {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(group = group.0, path = %dir.display(), %error, "could not delete the files of a deleted partition");
        }
    }
    if let Err(error) = context.storage.state_store().drop_group(group) {
        tracing::warn!(group = group.0, %error, "could not drop the state of a deleted partition");
    }
    tracing::info!(
        group = group.0,
        node = context.node_id,
        "deleted partition replica"
    );
}
