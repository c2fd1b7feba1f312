//! Retention: deleting a partition's oldest records once the topic's `retention.bytes` or
//! `retention.ms` is passed (`cleanup.policy` with `delete`), and moving its log start on
//! `DeleteRecords`.
//!
//! The partition's leader decides where the log start goes (with its own segments and clock)
//! and proposes it as an `AdvanceLogStart` entry, so every replica moves to the same start at
//! the same point of the log, never each on its own clock. Retention cuts only at a segment's
//! end, where the state machine keeps a checkpoint (`raftlog_storage`'s `checkpoint.rs`), or
//! after the last record when all of them are past `retention.ms`. Each replica then takes a
//! snapshot below its new log start and openraft purges its log there, which deletes the
//! segments wholly below it; a replica that lags behind the leader's purge point installs that
//! snapshot and replicates on from it.
//!
//! One task per node (`run`) checks every replica here each `storage.retention_check_interval_ms`.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::ClientWriteError;
use openraft::error::RaftError;
use openraft::ServerState;
use raftlog_storage::CheckpointMark;
use raftlog_storage::SegmentSpan;
use raftlog_types::topic_config::cleanup_policy_includes;
use raftlog_types::topic_config::effective_integer;
use raftlog_types::topic_config::RETENTION_BYTES;
use raftlog_types::topic_config::RETENTION_MS;
use raftlog_types::Command;
use raftlog_types::CommandResponse;
use raftlog_types::GroupId;

use crate::context::NodeContext;
use crate::error::ServerError;
use crate::partition::Partition;

/// Offset-index entries below the log start removed per partition and pass.
const INDEX_TRIM_PER_PASS: usize = 10_000;

/// A topic's retention settings as they apply to one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetentionPolicy {
    /// `retention.bytes` per partition, if limited.
    pub bytes: Option<u64>,
    /// `retention.ms`, if limited.
    pub ms: Option<i64>,
}

impl RetentionPolicy {
    /// The policy of a topic with `configs` over the cluster's `defaults`; `None` unless its
    /// `cleanup.policy` includes `delete`.
    pub(crate) fn of(
        configs: &BTreeMap<String, String>,
        defaults: &BTreeMap<String, String>,
    ) -> Option<RetentionPolicy> {
        if !cleanup_policy_includes("delete", configs, defaults) {
            return None;
        }
        let limit = |key| effective_integer(key, configs, defaults).filter(|v| *v >= 0);
        Some(RetentionPolicy {
            bytes: limit(RETENTION_BYTES).map(|v| v as u64),
            ms: limit(RETENTION_MS),
        })
    }
}

/// What the leader knows of its replica, for [`retention_point`].
pub(crate) struct ReplicaExtent<'a> {
    /// The log's segments, oldest first (the last is the active one).
    pub segments: &'a [SegmentSpan],
    /// The segment-end checkpoints, oldest first.
    pub checkpoints: &'a [CheckpointMark],
    /// The current log start.
    pub log_start_offset: u64,
    /// The high watermark.
    pub high_watermark: u64,
    /// The partition's leader time as of the last apply.
    pub leader_time_ms: i64,
}

/// Where the log start should move under `policy` at `now_ms`, if past where it is.
///
/// Size: whole sealed segments go, oldest first, while what remains is still at least
/// `retention.bytes` (Kafka's rule), so a partition holds under `retention.bytes` plus a segment.
/// Time: sealed segments whose newest entry is older than `retention.ms` go; and once the
/// newest record is, every record does (the active segment too, which a quiet partition never
/// fills). Times are the leaders' stamps (0 for segments of unstamped entries, which time
/// retention leaves alone), never the records' client timestamps.
pub(crate) fn retention_point(
    policy: RetentionPolicy,
    replica: &ReplicaExtent<'_>,
    now_ms: i64,
) -> Option<u64> {
    let checkpoint_at = |log_index: u64| {
        replica
            .checkpoints
            .iter()
            .find(|c| c.log_index == log_index)
    };
    let sealed = replica.segments.len().saturating_sub(1);
    let mut point: Option<u64> = None;
    if let Some(limit) = policy.bytes {
        let mut remaining: u64 = replica.segments.iter().map(|s| s.bytes).sum();
        for segment in &replica.segments[..sealed] {
            if remaining.saturating_sub(segment.bytes) < limit {
                break;
            }
            remaining -= segment.bytes;
            if let Some(checkpoint) = checkpoint_at(segment.next_index.saturating_sub(1)) {
                point = point.max(Some(checkpoint.next_offset));
            }
        }
    }
    if let Some(ms) = policy.ms {
        let cutoff = now_ms.saturating_sub(ms);
        let expired = |time_ms: i64| time_ms > 0 && time_ms < cutoff;
        for segment in &replica.segments[..sealed] {
            match checkpoint_at(segment.next_index.saturating_sub(1)) {
                Some(checkpoint) if expired(checkpoint.leader_time_ms) => {
                    point = point.max(Some(checkpoint.next_offset));
                }
                Some(_) => break,
                None => {}
            }
        }
        if expired(replica.leader_time_ms) {
            point = point.max(Some(replica.high_watermark));
        }
    }
    point.filter(|p| *p > replica.log_start_offset)
}

/// Proposes moving `partition`'s log start to `log_start_offset` (at most its high watermark)
/// and waits until it is applied here; returns the log start then.
pub(crate) async fn advance_log_start(
    context: &NodeContext,
    partition: &Partition,
    log_start_offset: u64,
) -> Result<u64, ServerError> {
    let write = partition
        .raft
        .client_write(Command::AdvanceLogStart { log_start_offset });
    let timeout = context.request_timeout();
    let response =
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| ServerError::Timeout {
                what: partition.name(),
                timeout_ms: timeout.as_millis() as u64,
            })?;
    match response {
        Ok(response) => match response.data {
            CommandResponse::LogStartAdvanced { log_start_offset } => Ok(log_start_offset),
            other => Err(ServerError::Internal {
                message: format!("unexpected apply result {other:?}"),
            }),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            Err(ServerError::NotLeader {
                what: partition.name(),
                node: context.node_id,
                leader_id: forward.leader_id,
                leader_address: forward
                    .leader_id
                    .and_then(|id| context.client_addresses.get(&id).cloned()),
            })
        }
        Err(error) => Err(ServerError::internal(&error)),
    }
}

/// Checks every replica here every `interval` until the node stops.
pub(crate) async fn run(context: Arc<NodeContext>, interval: Duration) {
    // The log start each replica last took a snapshot for: a snapshot is asked for again only
    // once the start moved (or once after the node starts).
    let mut snapshot_for: HashMap<GroupId, u64> = HashMap::new();
    loop {
        tokio::select! {
            () = context.shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
        let partitions: Vec<Arc<Partition>> = context.partitions.read().values().cloned().collect();
        snapshot_for.retain(|group, _| partitions.iter().any(|p| p.group == *group));
        for partition in partitions {
            if context.shutdown.is_cancelled() {
                break;
            }
            if let Err(error) = check(&context, &partition, &mut snapshot_for).await {
                tracing::warn!(group = partition.group.0, node = context.node_id, %error, "retention check failed");
            }
        }
    }
}

/// One pass over one replica: the leader proposes a new log start if retention calls for one;
/// every replica takes a snapshot below a moved log start and trims its offset index.
async fn check(
    context: &NodeContext,
    partition: &Partition,
    snapshot_for: &mut HashMap<GroupId, u64>,
) -> Result<(), ServerError> {
    let is_leader = partition.raft.metrics().borrow().state == ServerState::Leader;
    if is_leader {
        let policy = context
            .controller_state
            .borrow()
            .topics
            .get(&partition.topic)
            .and_then(|topic| RetentionPolicy::of(&topic.configs, &context.topic_defaults));
        if let Some(policy) = policy {
            let segments = partition.log.segments();
            let checkpoints = partition
                .view
                .checkpoints()
                .map_err(|e| ServerError::internal(&e))?;
            let extent = ReplicaExtent {
                segments: &segments,
                checkpoints: &checkpoints,
                log_start_offset: partition.log_start_offset()?,
                high_watermark: partition.view.high_watermark(),
                leader_time_ms: partition.view.leader_time_ms(),
            };
            if let Some(point) =
                retention_point(policy, &extent, crate::partition::batcher::wall_clock_ms())
            {
                let log_start = advance_log_start(context, partition, point).await?;
                tracing::info!(group = partition.group.0, node = context.node_id, topic = %partition.topic, partition = partition.index, log_start_offset = log_start, "retention moved the log start");
            }
        }
    }
    let log_start = partition.log_start_offset()?;
    if log_start > 0 && snapshot_for.get(&partition.group) != Some(&log_start) {
        // The snapshot is built below the log start (or not at all if nothing new is there);
        // openraft purges the log up to it, deleting the segments wholly below.
        partition
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ServerError::internal(&e))?;
        snapshot_for.insert(partition.group, log_start);
    }
    // Up to thousands of sled removals: on the blocking pool, not a runtime thread that
    // serves produce requests.
    let view = partition.view.clone();
    tokio::task::spawn_blocking(move || view.trim_index_below_log_start(INDEX_TRIM_PER_PASS))
        .await
        .map_err(|e| ServerError::internal(&e))?
        .map_err(|e| ServerError::internal(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use raftlog_types::topic_config::CLEANUP_POLICY;

    use super::*;

    fn segments(sizes: &[u64]) -> Vec<SegmentSpan> {
        // Segment i holds entries 10 i + 1 ..= 10 (i + 1).
        sizes
            .iter()
            .enumerate()
            .map(|(i, bytes)| SegmentSpan {
                base_index: 10 * i as u64 + 1,
                next_index: 10 * (i as u64 + 1) + 1,
                bytes: *bytes,
            })
            .collect()
    }

    /// A checkpoint at the end of each sealed segment: entry e holds offset e - 1, stamped e s.
    fn checkpoints(count: usize) -> Vec<CheckpointMark> {
        (1..count as u64)
            .map(|i| CheckpointMark {
                log_index: 10 * i,
                next_offset: 10 * i,
                leader_time_ms: 10 * i as i64 * 1000,
            })
            .collect()
    }

    fn extent<'a>(
        segments: &'a [SegmentSpan],
        checkpoints: &'a [CheckpointMark],
        log_start_offset: u64,
    ) -> ReplicaExtent<'a> {
        ReplicaExtent {
            segments,
            checkpoints,
            log_start_offset,
            high_watermark: 10 * segments.len() as u64,
            leader_time_ms: 10 * segments.len() as i64 * 1000,
        }
    }

    #[test]
    fn size_retention_keeps_at_least_the_limit_and_cuts_at_segment_ends() {
        let segments = segments(&[100, 100, 100, 100, 40]);
        let checkpoints = checkpoints(5);
        let bytes = |limit| RetentionPolicy {
            bytes: Some(limit),
            ms: None,
        };
        let extent = extent(&segments, &checkpoints, 0);
        // 440 bytes: keeping 250 deletes two segments (240 left would be under the limit).
        assert_eq!(retention_point(bytes(200), &extent, 0), Some(20));
        assert_eq!(retention_point(bytes(240), &extent, 0), Some(20));
        assert_eq!(retention_point(bytes(241), &extent, 0), Some(10));
        assert_eq!(retention_point(bytes(440), &extent, 0), None);
        // Never the active segment, whatever the limit.
        assert_eq!(retention_point(bytes(0), &extent, 0), Some(40));
        // Not behind the current start.
        let moved = ReplicaExtent {
            log_start_offset: 20,
            ..extent
        };
        assert_eq!(retention_point(bytes(200), &moved, 0), None);
        // Without a checkpoint at a segment's end, no cut there.
        let extent = ReplicaExtent {
            checkpoints: &checkpoints[1..],
            ..extent
        };
        assert_eq!(retention_point(bytes(241), &extent, 0), None);
    }

    #[test]
    fn time_retention_goes_by_the_leaders_stamps_and_may_take_every_record() {
        let segments = segments(&[100, 100, 100, 40]);
        let checkpoints = checkpoints(4);
        let ms = |limit| RetentionPolicy {
            bytes: None,
            ms: Some(limit),
        };
        let extent = extent(&segments, &checkpoints, 0);
        // Segment ends at 10 s, 20 s, 30 s; the newest record at 40 s.
        assert_eq!(retention_point(ms(1_000), &extent, 25_000), Some(20));
        assert_eq!(retention_point(ms(1_000), &extent, 10_000), None);
        assert_eq!(retention_point(ms(1_000), &extent, 41_001), Some(40));
        // Unstamped (time 0) is never expired.
        let unstamped = [CheckpointMark {
            leader_time_ms: 0,
            ..checkpoints[0]
        }];
        let extent = ReplicaExtent {
            checkpoints: &unstamped,
            leader_time_ms: 0,
            ..extent
        };
        assert_eq!(retention_point(ms(1_000), &extent, 1_000_000), None);
    }

    #[test]
    fn only_a_delete_cleanup_policy_deletes() {
        let configs = |policy: &str| {
            BTreeMap::from([
                (CLEANUP_POLICY.to_string(), policy.to_string()),
                (RETENTION_BYTES.to_string(), "1000".to_string()),
            ])
        };
        let none = BTreeMap::new();
        assert!(RetentionPolicy::of(&configs("compact"), &none).is_none());
        let policy = RetentionPolicy::of(&configs("compact,delete"), &none);
        assert_eq!(policy.and_then(|p| p.bytes), Some(1000));
        // Kafka's defaults: 7 days, no size limit.
        let policy = RetentionPolicy::of(&none, &none);
        assert_eq!(policy.and_then(|p| p.ms), Some(604_800_000));
        assert_eq!(policy.and_then(|p| p.bytes), None);
    }
}
