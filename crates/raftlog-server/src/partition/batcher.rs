//! The per-partition produce batcher: batch before Raft.
//!
//! openraft 0.9 flushes once per client write on the leader, so every produce request queued
//! while the previous entry was being proposed is merged into one Raft entry (capped by
//! `PRODUCE_BATCH_BYTES_MAX`): group commit without a timer. Entries are proposed in queue
//! order, so records of one producer keep their order, and up to `PRODUCE_IN_FLIGHT_MAX`
//! entries replicate at once.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::ClientWriteError;
use openraft::ServerState;
use raftlog_proto::v1::ErrorReason;
use raftlog_raft::RaftGroup;
use raftlog_types::limits::PRODUCE_BATCH_BYTES_MAX;
use raftlog_types::limits::PRODUCE_IN_FLIGHT_MAX;
use raftlog_types::BatchResult;
use raftlog_types::Command;
use raftlog_types::CommandResponse;
use raftlog_types::NodeId;
use raftlog_types::ProducerBatch;
use raftlog_types::ProducerSequence;
use raftlog_types::Record;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ServerError;
use crate::partition::lease::QuorumLease;

/// What an acknowledged produce request learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProduceOutcome {
    /// Offset of the request's first record.
    pub base_offset: u64,
    /// Number of records.
    pub record_count: u32,
    /// Leader that committed the entry.
    pub leader_id: NodeId,
    /// Term of that leader.
    pub term: u64,
    /// Raft log index of the entry.
    pub log_index: u64,
    /// The batch was an exact retry of one already written; the offsets are the original's.
    pub duplicate: bool,
}

/// One queued produce request.
pub struct ProduceJob {
    /// Records, already validated.
    pub records: Vec<Record>,
    /// Their estimated encoded bytes.
    pub bytes: usize,
    /// Set for idempotent producers.
    pub producer: Option<ProducerSequence>,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<ProduceOutcome, ServerError>>,
}

/// What the batcher needs to know about its partition.
#[derive(Clone)]
pub struct BatcherContext {
    /// Partition name for messages, `topic/partition`.
    pub what: String,
    /// This node.
    pub node_id: NodeId,
    /// The partition's Raft group.
    pub raft: RaftGroup,
    /// How long to wait for a majority.
    pub timeout: Duration,
    /// A leader that has not heard from a majority within the lease refuses writes up front.
    pub lease: QuorumLease,
    /// Client addresses of the roster, to name the leader in NotLeader errors.
    pub client_addresses: Arc<std::collections::HashMap<NodeId, String>>,
    /// The node's task set: each entry's wait for its commit runs on it.
    pub tasks: TaskTracker,
    /// Cancelled when the node stops: the batcher stops taking requests, and requests waiting
    /// for their entry are answered that the node is shutting down.
    pub shutdown: CancellationToken,
}

impl BatcherContext {
    /// The NotLeader error for this partition, with the leader as this node sees it.
    pub fn not_leader(&self, leader_id: Option<NodeId>) -> ServerError {
        ServerError::NotLeader {
            what: self.what.clone(),
            node: self.node_id,
            leader_id,
            leader_address: leader_id.and_then(|id| self.client_addresses.get(&id).cloned()),
        }
    }

    /// What one batch's apply result means for its producer.
    fn outcome_of(
        &self,
        result: BatchResult,
        log_id: raftlog_types::type_config::LogId,
    ) -> Result<ProduceOutcome, ServerError> {
        let (base_offset, record_count, duplicate) = match result {
            BatchResult::Appended { base_offset, record_count } => (base_offset, record_count, false),
            BatchResult::Duplicate { base_offset, record_count } => (base_offset, record_count, true),
            BatchResult::OutOfOrder { expected, received } => {
                return Err(ServerError::Precondition {
                    reason: ErrorReason::OutOfOrderSequence,
                    message: format!("{}: sequence {received} does not follow the producer's last batch; expected {expected}", self.what),
                })
            }
            BatchResult::UnknownProducer { received } => {
                return Err(ServerError::Precondition {
                    reason: ErrorReason::UnknownProducer,
                    message: format!(
                        "{}: the producer is not known here (new, or forgotten after its retention) and its batch starts at sequence {received}, not 0",
                        self.what
                    ),
                })
            }
        };
        Ok(ProduceOutcome {
            base_offset,
            record_count,
            leader_id: self.node_id,
            term: log_id.leader_id.term,
            log_index: log_id.index,
            duplicate,
        })
    }

    /// Refuses a write that cannot succeed now: not the leader, or no recent quorum contact.
    fn admission_error(&self) -> Option<ServerError> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        if metrics.state != ServerState::Leader {
            return Some(self.not_leader(metrics.current_leader));
        }
        if self.lease.holds(&metrics) {
            return None;
        }
        Some(ServerError::NoQuorum {
            what: self.what.clone(),
            since_ms: self.lease.contact_age_ms(&metrics).unwrap_or(u64::MAX),
        })
    }
}

/// Runs until the queue's senders are gone or the node stops.
pub async fn run_batcher(context: BatcherContext, mut queue: mpsc::Receiver<ProduceJob>) {
    let in_flight = Arc::new(Semaphore::new(PRODUCE_IN_FLIGHT_MAX));
    // A job that would have made the previous entry too large starts the next one.
    let mut carried: Option<ProduceJob> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match tokio::select! {
                job = queue.recv() => job,
                () = context.shutdown.cancelled() => None,
            } {
                Some(job) => job,
                None => break,
            },
        };
        let mut bytes = first.bytes;
        let mut jobs = vec![first];
        while let Ok(job) = queue.try_recv() {
            if bytes + job.bytes > PRODUCE_BATCH_BYTES_MAX {
                carried = Some(job);
                break;
            }
            bytes += job.bytes;
            jobs.push(job);
        }
        if let Some(error) = context.admission_error() {
            for job in jobs {
                let _ = job.reply.send(Err(clone_error(&error)));
            }
            continue;
        }
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };

        let mut replies = Vec::with_capacity(jobs.len());
        let mut batches = Vec::with_capacity(jobs.len());
        for job in jobs {
            batches.push(ProducerBatch {
                producer: job.producer,
                records: job.records,
            });
            replies.push(job.reply);
        }
        // The leader's clock, which every replica's producer expiry runs on (never the
        // records' client timestamps); replicas keep the largest stamp seen, so a stamp behind
        // an earlier leader's does not turn the partition's time back.
        let command = Command::StampedAppendBatches {
            leader_time_ms: wall_clock_ms(),
            batches,
        };
        let receiver = match context.raft.client_write_ff(command).await {
            Ok(receiver) => receiver,
            Err(fatal) => {
                let error = ServerError::internal(&fatal);
                for reply in replies {
                    let _ = reply.send(Err(clone_error(&error)));
                }
                continue;
            }
        };
        let context = context.clone();
        let tasks = context.tasks.clone();
        tasks.spawn(async move {
            let _permit = permit;
            // `None`: the node stops, which answers as a stopping group does (it drops the
            // receiver), so no request outlives the node. Either way the entry was proposed
            // and may still commit: the outcome is unknown, not a refusal.
            let committed = tokio::select! {
                committed = tokio::time::timeout(context.timeout, receiver) => Some(committed),
                () = context.shutdown.cancelled() => None,
            };
            let outcome = match committed {
                Some(Err(_elapsed)) => Err(ServerError::Timeout {
                    what: context.what.clone(),
                    timeout_ms: context.timeout.as_millis() as u64,
                }),
                None | Some(Ok(Err(_))) => Err(ServerError::Interrupted {
                    what: context.what.clone(),
                }),
                Some(Ok(Ok(Err(ClientWriteError::ForwardToLeader(forward))))) => {
                    Err(context.not_leader(forward.leader_id))
                }
                Some(Ok(Ok(Err(error)))) => Err(ServerError::internal(&error)),
                Some(Ok(Ok(Ok(response)))) => match response.data {
                    CommandResponse::Batches(results) if results.len() == replies.len() => {
                        Ok((results, response.log_id))
                    }
                    other => Err(ServerError::Internal {
                        message: format!("unexpected apply result {other:?}"),
                    }),
                },
            };
            match outcome {
                Ok((results, log_id)) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(context.outcome_of(result, log_id));
                    }
                }
                Err(error) => {
                    for reply in replies {
                        let _ = reply.send(Err(clone_error(&error)));
                    }
                }
            }
        });
    }
}

/// This node's wall clock in ms since the Unix epoch (0 for a clock before it, and saturated
/// far in the future), as stamped into entries and compared with client timestamps.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `ServerError` holds no sources, so it is rebuilt variant by variant for each waiter.
fn clone_error(error: &ServerError) -> ServerError {
    match error {
        ServerError::NotLeader {
            what,
            node,
            leader_id,
            leader_address,
        } => ServerError::NotLeader {
            what: what.clone(),
            node: *node,
            leader_id: *leader_id,
            leader_address: leader_address.clone(),
        },
        ServerError::NoQuorum { what, since_ms } => ServerError::NoQuorum {
            what: what.clone(),
            since_ms: *since_ms,
        },
        ServerError::Timeout { what, timeout_ms } => ServerError::Timeout {
            what: what.clone(),
            timeout_ms: *timeout_ms,
        },
        ServerError::NotReady { state } => ServerError::NotReady { state },
        ServerError::Interrupted { what } => ServerError::Interrupted { what: what.clone() },
        other => ServerError::Internal {
            message: other.to_string(),
        },
    }
}
