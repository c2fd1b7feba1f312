//! `raftlog.v1.Produce`.

use std::sync::Arc;

use raftlog_proto::v1;
use raftlog_proto::v1::produce_server::Produce;
use raftlog_proto::v1::ErrorReason;
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
use crate::context::NodeContext;
use crate::controller::ControllerOutcome;
use crate::error::ServerError;
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
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut total_bytes = 0usize;
        let mut records = Vec::with_capacity(request.records.len());
        for (i, record) in request.records.into_iter().enumerate() {
            let mut record = Record::from(record);
            let size = record.payload_bytes();
            if size > RECORD_BYTES_MAX {
                return Err(ServerError::InvalidArgument {
                    reason: ErrorReason::RecordTooLarge,
                    field: format!("records[{i}]"),
                    message: format!("record is {size} bytes, the limit is {RECORD_BYTES_MAX}"),
                });
            }
            if record.timestamp_ms == 0 {
                record.timestamp_ms = now_ms;
            }
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
        match self
            .context
            .propose_controller(ControllerCommand::AllocateProducerId)
            .await?
        {
            ControllerOutcome::Applied(CommandResponse::ProducerIdAllocated { producer_id }) => {
                Ok(Response::new(v1::InitProducerResponse { producer_id }))
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
