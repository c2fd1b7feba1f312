//! The partition replicas of this node: follows the controller's metadata and keeps the
//! replicas running here in line with it, starting the groups assigned to this node (each with
//! its produce batcher) and stopping (and deleting) the groups of deleted topics.
//!
//! A replica whose stored data is damaged or lost (`StorageError::is_damaged_data`: a corrupt
//! segment, a lost directory) is refused, never recreated empty: an empty voter could help
//! elect a leader that lacks acknowledged entries. It stays out of service (no Raft group, so
//! it neither votes nor counts toward a majority; requests here are answered with the reason)
//! until an operator repairs it and restarts the node; the other replicas serve the partition.
//! Other failures to start (I/O errors) are retried every `RECONCILE_INTERVAL`.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::InitializeError;
use openraft::error::RaftError;
use raftlog_storage::StorageError;
use raftlog_types::limits::PRODUCE_QUEUE_MAX;
use raftlog_types::topic_config::effective_integer;
use raftlog_types::topic_config::SEGMENT_BYTES;
use raftlog_types::topic_config::SEGMENT_MS;
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
    // Topic configs the running replicas follow as they change.
    for topic in state.topics.values() {
        for partition in &topic.partitions {
            if let Some(running) = context.partitions.read().get(&partition.group_id) {
                follow_segment_configs(context, &running.log, &topic.configs);
            }
        }
    }
    let running: Vec<GroupId> = context.partitions.read().keys().copied().collect();
    let refused: Vec<GroupId> = context.refused_replicas.read().keys().copied().collect();
    for group in running.into_iter().chain(refused) {
        if !desired.contains_key(&group) {
            stop_and_delete(context, group).await;
        }
    }
    let mut to_start: Vec<_> = desired
        .into_iter()
        .filter(|(group, _)| {
            !context.partitions.read().contains_key(group)
                && !context.refused_replicas.read().contains_key(group)
        })
        .collect();
    to_start.sort_by_key(|(group, _)| *group);
    for (group, (topic, index, meta)) in to_start {
        match start_partition(context, &topic, index, &meta).await {
            Ok(()) => {}
            Err(StartFailure::DamagedData(error)) => {
                tracing::error!(group = group.0, node = node_id, topic = %topic, partition = index, %error, "refusing to start a partition replica whose stored data is damaged or lost: it stays out of service here, the other replicas serve the partition");
                context
                    .refused_replicas
                    .write()
                    .insert(group, error.to_string());
            }
            Err(StartFailure::Other(error)) => {
                tracing::error!(group = group.0, node = node_id, topic = %topic, partition = index, %error, "could not start partition");
            }
        }
        tokio::time::sleep(GROUP_START_STAGGER).await;
    }
}

/// Sets `log`'s segment size and age from its topic's `segment.bytes` and `segment.ms`.
fn follow_segment_configs(
    context: &NodeContext,
    log: &raftlog_storage::SegmentLog,
    configs: &BTreeMap<String, String>,
) {
    if let Some(bytes) = effective_integer(SEGMENT_BYTES, configs, &context.topic_defaults) {
        log.set_segment_bytes(bytes.max(0) as u64);
    }
    if let Some(ms) = effective_integer(SEGMENT_MS, configs, &context.topic_defaults) {
        log.set_segment_ms(ms.max(0) as u64);
    }
}

/// Why a replica did not start.
enum StartFailure {
    /// Its stored data is damaged or lost: it must not start until repaired.
    DamagedData(StorageError),
    /// Anything else, tried again at the next reconcile.
    Other(String),
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
) -> Result<(), StartFailure> {
    let group = meta.group_id;
    let (log, state_machine, _report) = context.storage.open_replica(group).map_err(|error| {
        if error.is_damaged_data() {
            StartFailure::DamagedData(error)
        } else {
            StartFailure::Other(format!("{error:#}"))
        }
    })?;
    let topic_configs = context
        .controller_state
        .borrow()
        .topics
        .get(topic)
        .map(|t| t.configs.clone())
        .unwrap_or_default();
    follow_segment_configs(context, &log, &topic_configs);
    let view = state_machine.view();
    let other = |error: &dyn std::fmt::Display| StartFailure::Other(error.to_string());
    let raft = context
        .host
        .start_group(group, log.clone(), state_machine)
        .await
        .map_err(|e| other(&e))?;
    let fresh = !raft.is_initialized().await.map_err(|e| other(&e))?;
    if fresh {
        // Every replica initializes with the same membership, which openraft allows; the
        // preferred leader then stands for election at once so leaders spread over nodes.
        match raft.initialize(members(context, &meta.replicas)).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(error) => return Err(other(&error)),
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
    context.refused_replicas.write().remove(&group);
    context.host.stop_group(group).await;
    drop(removed);
    if let Err(error) = context.storage.delete_replica(group) {
        tracing::warn!(group = group.0, %error, "could not delete the files of a deleted partition");
    }
    tracing::info!(
        group = group.0,
        node = context.node_id,
        "deleted partition replica"
    );
}
