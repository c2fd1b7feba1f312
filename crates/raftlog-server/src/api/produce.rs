//! `raftlog.v1.Produce`: checks a produce request (record sizes, timestamps against the
//! leader's clock) and queues it for its partition's batcher; issues producer ids.

use std::sync::Arc;

use raftlog_proto::v1;
use raftlog_proto::v1::produce_server::Produce;
use raftlog_proto::v1::ErrorReason;
use raftlog_types::limits::PRODUCER_ID_BLOCK;
use raftlog_types::limits::PRODUCE_REQUEST_BYTES_MAX;
use raftlog_types::limits::RECORD_BYTES_MAX;
use raftlog_types::CommandResponse;
use raftlog_types::ControllerCommand;
use raftlog_types::ProducerSequence;
use raftlog_types::Record;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::api::resolve;
use crate::config::LimitsSection;
use crate::context::NodeContext;
use crate::controller::ControllerOutcome;
use crate::error::ServerError;
use crate::partition::batcher::wall_clock_ms;
use crate::partition::batcher::ProduceJob;

/// The Produce service.
pub struct ProduceService {
    context: Arc<NodeContext>,
}

impl ProduceService {
    /// A service over `context`.
    pub fn new(context: Arc<NodeContext>) -> Self {
        ProduceService { context }
    }

    async fn produce(
        &self,
        request: v1::ProduceRequest,
    ) -> Result<v1::ProduceResponse, ServerError> {
        let resolved = resolve(&self.context, &request.topic, request.partition).await?;
        if request.records.is_empty() {
            return Err(ServerError::invalid(
                "records",
                "at least one record is required",
            ));
        }
        self.context
            .disk_space
            .check()
            .map_err(|low| ServerError::DiskFull {
                what: resolved.what.clone(),
                low,
            })?;
        let now_ms = wall_clock_ms();
        let mut total_bytes = 0usize;
        let mut records = Vec::with_capacity(request.records.len());
        for (i, record) in request.records.into_iter().enumerate() {
            let mut record = Record::from(record);
            let size = record.payload_bytes();
            if size > resolved.max_record_bytes {
                let limit = resolved.max_record_bytes;
                let what = if limit < RECORD_BYTES_MAX {
                    "the topic's max.message.bytes"
                } else {
                    "the limit"
                };
                return Err(ServerError::InvalidArgument {
                    reason: ErrorReason::RecordTooLarge,
                    field: format!("records[{i}]"),
                    message: format!("record is {size} bytes, {what} is {limit}"),
                });
            }
            if resolved.key_required && record.key.is_none() {
                return Err(ServerError::InvalidArgument {
                    reason: ErrorReason::RecordKeyRequired,
                    field: format!("records[{i}].key"),
                    message: format!(
                        "{}'s cleanup.policy compacts it, which keeps the latest record of each key: every record needs a key",
                        resolved.what
                    ),
                });
            }
            // 0 (unset): the leader assigns its time, as ever.
            if record.timestamp_ms == 0 {
                record.timestamp_ms = now_ms;
            }
            check_timestamp(i, record.timestamp_ms, now_ms, &self.context.config.limits)?;
            total_bytes += record.encoded_bytes_estimate() as usize;
            records.push(record);
        }
        if total_bytes > PRODUCE_REQUEST_BYTES_MAX {
            return Err(ServerError::InvalidArgument {
                reason: ErrorReason::BatchTooLarge,
                field: "records".into(),
                message: format!(
                    "batch is {total_bytes} bytes, the limit is {PRODUCE_REQUEST_BYTES_MAX}"
                ),
            });
        }
        let Some(partition) = self.context.partition(resolved.meta.group_id) else {
            return Err(ServerError::NotLeader {
                what: resolved.what,
                node: self.context.node_id,
                leader_id: None,
                leader_address: None,
            });
        };
        let (reply, outcome) = oneshot::channel();
        let producer = request.producer.map(|p| ProducerSequence {
            producer_id: p.producer_id,
            base_sequence: p.base_sequence,
        });
        let job = ProduceJob {
            producer,
            records,
            bytes: total_bytes,
            reply,
        };
        match partition.produce_queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ServerError::Overloaded {
                    what: resolved.what,
                    queued: partition.produce_queue.max_capacity(),
                })
            }
            Err(TrySendError::Closed(_)) => {
                return Err(ServerError::NotReady {
                    state: "shutting down",
                })
            }
        }
        // The batcher took the job; if it is gone before answering, the job may have been
        // proposed, so the outcome is unknown.
        let outcome = outcome.await.map_err(|_| ServerError::Interrupted {
            what: resolved.what.clone(),
        })??;
        Ok(v1::ProduceResponse {
            duplicate: outcome.duplicate,
            base_offset: outcome.base_offset,
            record_count: outcome.record_count,
            receipt: Some(v1::AckReceipt {
                leader_id: outcome.leader_id,
                term: outcome.term,
                log_index: outcome.log_index,
                durability: v1::Durability::MajorityFsynced as i32,
            }),
        })
    }
}

/// Refuses record `i`'s timestamp if it is further from the leader's clock `now_ms` than the
/// configured bounds: `timestamp_after_max_ms` ahead, `timestamp_before_max_ms` (if set)
/// behind, and never before the Unix epoch (Kafka's producer refuses negative timestamps too).
/// Time-based state no longer reads client timestamps; the bound keeps what consumers see (and
/// any later time index) sane, and refuses the whole request, so nothing of it is written.
fn check_timestamp(
    i: usize,
    timestamp_ms: i64,
    now_ms: i64,
    limits: &LimitsSection,
) -> Result<(), ServerError> {
    let after_max_ms = limits.timestamp_after_max_ms;
    // The epoch is the furthest back any bound reaches.
    let to_epoch_ms = now_ms.max(0).unsigned_abs();
    let (before_max_ms, before_key) = match limits.timestamp_before_max_ms {
        Some(max_ms) if max_ms < to_epoch_ms => (max_ms, "limits.timestamp_before_max_ms"),
        _ => (to_epoch_ms, "the Unix epoch"),
    };
    let offset_ms = timestamp_ms.abs_diff(now_ms);
    let (broken, side, key) = if timestamp_ms > now_ms && offset_ms > after_max_ms {
        (after_max_ms, "ahead of", "limits.timestamp_after_max_ms")
    } else if timestamp_ms < now_ms && offset_ms > before_max_ms {
        (before_max_ms, "behind", before_key)
    } else {
        return Ok(());
    };
    Err(ServerError::InvalidTimestamp {
        field: format!("records[{i}].timestamp_ms"),
        message: format!(
            "{timestamp_ms} is {offset_ms} ms {side} the leader's clock ({now_ms}); at most {broken} ms is accepted ({key}); send 0 to have the leader assign its time"
        ),
        leader_time_ms: now_ms,
        max_skew_ms: broken,
    })
}

#[tonic::async_trait]
impl Produce for ProduceService {
    #[tracing::instrument(skip_all, fields(topic = %request.get_ref().topic, partition = request.get_ref().partition, node = self.context.node_id))]
    async fn produce(
        &self,
        request: Request<v1::ProduceRequest>,
    ) -> Result<Response<v1::ProduceResponse>, Status> {
        Ok(Response::new(
            ProduceService::produce(self, request.into_inner()).await?,
        ))
    }

    async fn init_producer(
        &self,
        _request: Request<v1::InitProducerRequest>,
    ) -> Result<Response<v1::InitProducerResponse>, Status> {
        // Ids come from a block the controller issued to this node as its leader: one Raft
        // write per PRODUCER_ID_BLOCK producers. A block is this node's alone once committed,
        // so it may hand the rest out even after it stops leading.
        let mut block = self.context.producer_ids.lock().await;
        if let Some(producer_id) = block.next() {
            return Ok(Response::new(v1::InitProducerResponse { producer_id }));
        }
        let command = ControllerCommand::AllocateProducerIdBlock {
            count: PRODUCER_ID_BLOCK,
        };
        match self.context.propose_controller(command).await? {
            ControllerOutcome::Applied(CommandResponse::ProducerIdBlockAllocated {
                first,
                count,
            }) => {
                *block = first..first.saturating_add(count);
                match block.next() {
                    Some(producer_id) => {
                        Ok(Response::new(v1::InitProducerResponse { producer_id }))
                    }
                    None => Err(ServerError::Internal {
                        message: "the controller issued an empty block of producer ids".into(),
                    }
                    .into()),
                }
            }
            ControllerOutcome::Applied(other) => Err(ServerError::Internal {
                message: format!("unexpected controller result {other:?}"),
            }
            .into()),
            ControllerOutcome::Forward(leader_id) => Err(ServerError::NotLeader {
                what: "the controller (which issues producer ids)".into(),
                node: self.context.node_id,
                leader_id,
                leader_address: leader_id
                    .and_then(|id| self.context.client_addresses.get(&id).cloned()),
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_700_000_000_000;

    fn skew_of(timestamp_ms: i64, limits: &LimitsSection) -> Option<u64> {
        match check_timestamp(3, timestamp_ms, NOW_MS, limits) {
            Ok(()) => None,
            Err(ServerError::InvalidTimestamp {
                field,
                leader_time_ms,
                max_skew_ms,
                ..
            }) => {
                assert_eq!(
                    (field.as_str(), leader_time_ms),
                    ("records[3].timestamp_ms", NOW_MS)
                );
                Some(max_skew_ms)
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn timestamps_are_bounded_ahead_and_never_before_the_epoch() {
        let limits = LimitsSection::default();
        let hour_ms = 3_600_000;
        assert_eq!(skew_of(NOW_MS, &limits), None);
        assert_eq!(skew_of(NOW_MS + hour_ms, &limits), None);
        assert_eq!(skew_of(NOW_MS + hour_ms + 1, &limits), Some(3_600_000));
        assert_eq!(skew_of(i64::MAX, &limits), Some(3_600_000));
        // No past bound by default, but the epoch.
        assert_eq!(skew_of(1, &limits), None);
        assert_eq!(skew_of(-1, &limits), Some(NOW_MS as u64));
        assert_eq!(skew_of(i64::MIN, &limits), Some(NOW_MS as u64));
        let limits = LimitsSection {
            timestamp_before_max_ms: Some(hour_ms as u64),
            ..LimitsSection::default()
        };
        assert_eq!(skew_of(NOW_MS - hour_ms, &limits), None);
        assert_eq!(skew_of(NOW_MS - hour_ms - 1, &limits), Some(3_600_000));
        assert_eq!(skew_of(i64::MIN, &limits), Some(3_600_000));
    }
}
