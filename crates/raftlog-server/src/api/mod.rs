//! The public gRPC services. Each handler validates its input, calls into the node, and maps
//! errors to statuses once, through `ServerError::to_status` (`status.rs`).

pub(crate) mod admin;
pub(crate) mod consumer_groups;
pub(crate) mod fetch;
pub(crate) mod produce;
pub(crate) mod status;

use std::sync::Arc;

use raftlog_types::GroupId;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::time::Duration;

use raftlog_proto::internal::GroupStatus;
use raftlog_proto::internal::GroupStatusRequest;
use raftlog_proto::v1;
use raftlog_types::limits::RECORD_BYTES_MAX;
use raftlog_types::topic_config::cleanup_policy_includes;
use raftlog_types::topic_config::effective_configs;
use raftlog_types::topic_config::effective_integer;
use raftlog_types::topic_config::ConfigSource;
use raftlog_types::topic_config::MAX_MESSAGE_BYTES;
use raftlog_types::NodeId;
use tonic::Request;

use crate::context::NodeContext;
use crate::controller::PartitionMeta;
use crate::controller::TopicMeta;
use crate::error::ServerError;

/// A topic partition resolved from the metadata.
pub struct ResolvedPartition {
    /// `topic/partition`, followed by why this node's replica is out of service if it refused
    /// to start it: every error about the partition from this node then says so.
    pub what: String,
    /// Its placement.
    pub meta: PartitionMeta,
    /// The largest record the topic accepts (`max.message.bytes`).
    pub max_record_bytes: u64,
    /// Whether every record needs a key: the topic's `cleanup.policy` includes `compact`.
    pub key_required: bool,
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
/// commit index reaches it with the next heartbeat, but a busy node can miss a few; past the
/// election timeout it would have stood for election anyway.
fn metadata_catch_up_wait(context: &NodeContext) -> std::time::Duration {
    std::time::Duration::from_millis(context.config.raft.election_timeout_max_ms)
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
    let what = match context.refused_replica(partition_meta.group_id) {
        Some(reason) => format!(
            "{topic}/{partition} (node {}'s replica is out of service: {reason})",
            context.node_id
        ),
        None => format!("{topic}/{partition}"),
    };
    Ok(ResolvedPartition {
        what,
        meta: partition_meta.clone(),
        max_record_bytes: max_record_bytes(context, meta),
        key_required: cleanup_policy_includes("compact", &meta.configs, &context.topic_defaults),
    })
}

/// `max.message.bytes` in effect for `topic` (on every produce, over the cluster's defaults
/// resolved once at start-up).
fn max_record_bytes(context: &NodeContext, topic: &TopicMeta) -> u64 {
    let value = effective_integer(MAX_MESSAGE_BYTES, &topic.configs, &context.topic_defaults);
    value.map_or(RECORD_BYTES_MAX, |v: i64| {
        u64::try_from(v).map_or(RECORD_BYTES_MAX, |v| v.min(RECORD_BYTES_MAX))
    })
}

/// The replica of a resolved partition running here, or the error telling where replicas are.
pub fn local_replica(
    context: &Arc<NodeContext>,
    resolved: &ResolvedPartition,
) -> Result<Arc<crate::partition::Partition>, ServerError> {
    let group: GroupId = resolved.meta.group_id;
    context.partition(group).ok_or_else(|| {
        // A replica refused here is no replica to send the client to.
        let refused = context.refused_replica(group).is_some();
        let replicas: Vec<NodeId> = resolved
            .meta
            .replicas
            .iter()
            .copied()
            .filter(|id| !(refused && *id == context.node_id))
            .collect();
        ServerError::NotAReplica {
            what: resolved.what.clone(),
            node: context.node_id,
            replica_address: replicas
                .first()
                .and_then(|id| context.client_addresses.get(id).cloned()),
            replicas,
            out_of_service: refused,
        }
    })
}

/// How long a peer may take to report group status for a description.
const STATUS_TIMEOUT: Duration = Duration::from_millis(800);

/// The answer that knows most about a group: the leader's own, and of several nodes that call
/// themselves leader the one of the highest term. A leader that was killed restores its
/// leadership when it restarts and answers as leader of a term the others have left, until it
/// hears from them; its answer must not win over the current leader's. A node of a higher term
/// that leads nothing (a candidate) does not win over the leader either: its high watermark
/// lags. Without a leader's answer, the highest term and high watermark.
fn freshest_status(answers: &[(NodeId, GroupStatus)]) -> Option<GroupStatus> {
    answers
        .iter()
        .filter(|(node, status)| status.leader_id == Some(*node))
        .max_by_key(|(_, status)| status.term)
        .or_else(|| {
            answers
                .iter()
                .max_by_key(|(_, status)| (status.term, status.high_watermark))
        })
        .map(|(_, status)| *status)
}

/// Asks every replica node for the status of the topic's groups and describes the topic
/// with the freshest answer for each partition (the leader's own, when it answered).
pub async fn describe_topic(context: &NodeContext, topic: &TopicMeta) -> v1::TopicDescription {
    let mut groups_by_node: BTreeMap<NodeId, Vec<u64>> = BTreeMap::new();
    for partition in &topic.partitions {
        for replica in &partition.replicas {
            groups_by_node
                .entry(*replica)
                .or_default()
                .push(partition.group_id.0);
        }
    }
    let mut calls = Vec::new();
    for (node, group_ids) in groups_by_node {
        let Some(peer_addr) = context.peer_addr(node).map(str::to_owned) else {
            continue;
        };
        let pool = context.host.peers().clone();
        calls.push(async move {
            let Ok(mut client) = pool.client(&peer_addr) else {
                return (node, Vec::new());
            };
            let mut request = Request::new(GroupStatusRequest { group_ids });
            request.set_timeout(STATUS_TIMEOUT);
            match tokio::time::timeout(STATUS_TIMEOUT, client.group_status(request)).await {
                Ok(Ok(response)) => (node, response.into_inner().groups),
                _ => (node, Vec::new()),
            }
        });
    }
    let mut statuses: HashMap<u64, Vec<(NodeId, GroupStatus)>> = HashMap::new();
    for (node, groups) in futures::future::join_all(calls).await {
        for status in groups {
            statuses
                .entry(status.group_id)
                .or_default()
                .push((node, status));
        }
    }
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, partition)| {
            let answers = statuses.remove(&partition.group_id.0).unwrap_or_default();
            let best = freshest_status(&answers);
            let leader_id = best.as_ref().and_then(|s| s.leader_id);
            v1::PartitionDescription {
                partition: index as u32,
                group_id: partition.group_id.0,
                replicas: partition.replicas.clone(),
                leader_id,
                leader_address: leader_id
                    .and_then(|id| context.client_addresses.get(&id).cloned())
                    .unwrap_or_default(),
                term: best.as_ref().map_or(0, |s| s.term),
                high_watermark: best.as_ref().map_or(0, |s| s.high_watermark),
                log_start_offset: best.as_ref().map_or(0, |s| s.log_start_offset),
            }
        })
        .collect();
    v1::TopicDescription {
        name: topic.name.clone(),
        replicas: topic.replicas,
        partitions,
        configs: topic_configs(context, topic),
    }
}

/// Every config key of `topic` with its value in effect and where that comes from.
pub fn topic_configs(context: &NodeContext, topic: &TopicMeta) -> Vec<v1::TopicConfig> {
    effective_configs(&topic.configs, &context.topic_defaults)
        .into_iter()
        .map(|entry| v1::TopicConfig {
            name: entry.name.to_owned(),
            value: entry.value,
            source: match entry.source {
                ConfigSource::Topic => v1::ConfigSource::Topic,
                ConfigSource::ClusterDefault => v1::ConfigSource::ClusterDefault,
                ConfigSource::Default => v1::ConfigSource::Default,
            }
            .into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(leader_id: Option<u64>, term: u64, high_watermark: u64) -> GroupStatus {
        GroupStatus {
            group_id: 1,
            leader_id,
            term,
            high_watermark,
            log_start_offset: 0,
            snapshot_index: None,
            purged_index: None,
            last_log_index: None,
        }
    }

    #[test]
    fn a_restarted_leader_of_an_old_term_does_not_win_over_the_current_one() {
        // Node 2 led term 5, was killed and restarted; node 3 leads term 7.
        let answers = [
            (1, status(Some(3), 7, 800)),
            (2, status(Some(2), 5, 560)),
            (3, status(Some(3), 7, 800)),
        ];
        let best = freshest_status(&answers).expect("an answer");
        assert_eq!((best.leader_id, best.term), (Some(3), 7));
    }

    #[test]
    fn in_one_term_the_leaders_own_answer_wins() {
        let answers = [
            (1, status(Some(3), 7, 810)),
            (3, status(Some(3), 7, 800)),
            (2, status(None, 6, 900)),
        ];
        let best = freshest_status(&answers).expect("an answer");
        assert_eq!((best.leader_id, best.high_watermark), (Some(3), 800));
        assert_eq!(freshest_status(&[]), None);
    }

    #[test]
    fn a_candidate_of_a_higher_term_does_not_hide_the_leaders_answer() {
        // Node 2 timed out and stands in term 2; node 1 still leads term 1 and has applied more.
        let answers = [
            (1, status(Some(1), 1, 2)),
            (2, status(None, 2, 0)),
            (3, status(Some(1), 1, 2)),
        ];
        let best = freshest_status(&answers).expect("an answer");
        assert_eq!((best.leader_id, best.high_watermark), (Some(1), 2));
        // With no leader answering, the highest term.
        let best = freshest_status(&answers[1..]).expect("an answer");
        assert_eq!((best.leader_id, best.term), (None, 2));
    }
}
