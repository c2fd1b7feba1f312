//! The public gRPC services. Each handler validates its input, calls into the node, and maps
//! errors to statuses once, through `ServerError::to_status`.

pub mod admin;
pub mod fetch;
pub mod produce;

use std::sync::Arc;

use raftlog_types::GroupId;

use crate::controller::PartitionMeta;
use crate::error::ServerError;
use crate::node::NodeContext;

/// A topic partition resolved from the metadata.
pub struct ResolvedPartition {
    /// `topic/partition`.
    pub what: String,
    /// Its placement.
    pub meta: PartitionMeta,
}

/// Looks `topic`/`partition` up in the metadata applied on this node. A node that is not the
/// controller leader may lag it by a heartbeat: a topic created a moment ago elsewhere is
/// waited for (briefly) before it is reported missing.
pub async fn resolve(
    context: &NodeContext,
    topic: &str,
    partition: u32,
) -> Result<ResolvedPartition, ServerError> {
    let mut result = resolve_now(context, topic, partition);
    if result.is_ok()
        || context.controller.metrics().borrow().current_leader == Some(context.node_id)
    {
        return result;
    }
    let mut changes = context.controller_state.clone();
    let deadline = tokio::time::Instant::now() + metadata_catch_up_wait(context);
    while result.is_err() {
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => result = resolve_now(context, topic, partition),
            _ => break,
        }
    }
    result
}

/// Waits until a topic exists in this node's metadata, for at most a few heartbeats.
pub async fn wait_for_topic(context: &NodeContext, topic: &str) -> bool {
    let mut changes = context.controller_state.clone();
    let deadline = tokio::time::Instant::now() + metadata_catch_up_wait(context);
    loop {
        if changes.borrow_and_update().topics.contains_key(topic) {
            return true;
        }
        if !matches!(
            tokio::time::timeout_at(deadline, changes.changed()).await,
            Ok(Ok(()))
        ) {
            return false;
        }
    }
}

/// How long a follower of the controller may take to apply what the leader committed: the
/// commit index reaches it with the next heartbeat.
fn metadata_catch_up_wait(context: &NodeContext) -> std::time::Duration {
    std::time::Duration::from_millis(3 * context.config.raft.heartbeat_interval_ms)
}

fn resolve_now(
    context: &NodeContext,
    topic: &str,
    partition: u32,
) -> Result<ResolvedPartition, ServerError> {
    let state = context.controller_state.borrow().clone();
    let Some(meta) = state.topics.get(topic) else {
        return Err(ServerError::TopicNotFound {
            topic: topic.to_owned(),
        });
    };
    let Some(partition_meta) = meta.partitions.get(partition as usize) else {
        return Err(ServerError::PartitionNotFound {
            topic: topic.to_owned(),
            partition,
            partitions: meta.partitions.len() as u32,
        });
    };
    Ok(ResolvedPartition {
        what: format!("{topic}/{partition}"),
        meta: partition_meta.clone(),
    })
}

/// The replica of a resolved partition running here, or the error telling where replicas are.
pub fn local_replica(
    context: &Arc<NodeContext>,
    resolved: &ResolvedPartition,
) -> Result<Arc<crate::partition::Partition>, ServerError> {
    let group: GroupId = resolved.meta.group_id;
    context
        .partition(group)
        .ok_or_else(|| ServerError::NotAReplica {
            what: resolved.what.clone(),
            node: context.node_id,
            replicas: resolved.meta.replicas.clone(),
            replica_address: resolved
                .meta
                .replicas
                .first()
                .and_then(|id| context.client_addresses.get(id).cloned()),
        })
}
