//! `raftlog.v1.Fetch`: fetch with long poll, and the flow-controlled subscription stream.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use futures::Stream;
use raftlog_proto::pb_impl::stored_record;
use raftlog_proto::v1;
use raftlog_proto::v1::fetch_server::Fetch;
use raftlog_types::limits::FETCH_BYTES_DEFAULT;
use raftlog_types::limits::FETCH_BYTES_MAX;
use raftlog_types::limits::FETCH_WAIT_MS_MAX;
use raftlog_types::limits::SUBSCRIBE_BUFFERED_MESSAGES_MAX;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::api::local_replica;
use crate::api::resolve;
use crate::context::NodeContext;
use crate::error::ServerError;
use crate::partition::Partition;

/// How long a subscription waits for new records before it looks again whether its partition
/// still exists.
const SUBSCRIBE_POLL: Duration = Duration::from_secs(1);

/// The Fetch service.
pub struct FetchService {
    context: Arc<NodeContext>,
}

fn max_bytes(requested: u32) -> Result<u64, ServerError> {
    match requested {
        0 => Ok(u64::from(FETCH_BYTES_DEFAULT)),
        n if n > FETCH_BYTES_MAX => Err(ServerError::invalid(
            "max_bytes",
            format!("must be at most {FETCH_BYTES_MAX}, got {n}"),
        )),
        n => Ok(u64::from(n)),
    }
}

fn to_records(records: Vec<(u64, raftlog_types::Record)>) -> Vec<v1::StoredRecord> {
    records
        .into_iter()
        .map(|(offset, record)| stored_record(offset, record))
        .collect()
}

/// Waits until the high watermark passes `offset`, or `wait` elapses.
/// Waits up to `wait` for records at `offset`, or until the node stops.
async fn wait_for_records(
    partition: &Partition,
    offset: u64,
    wait: Duration,
    stop: &CancellationToken,
) {
    let mut watermark = partition.view.watch_high_watermark();
    tokio::select! {
        _ = tokio::time::timeout(wait, watermark.wait_for(|hwm| *hwm > offset)) => {}
        () = stop.cancelled() => {}
    }
}

impl FetchService {
    /// A service over `context`.
    pub fn new(context: Arc<NodeContext>) -> Self {
        FetchService { context }
    }

    async fn fetch(&self, request: v1::FetchRequest) -> Result<v1::FetchResponse, ServerError> {
        let resolved = resolve(&self.context, &request.topic, request.partition).await?;
        let max_bytes = max_bytes(request.max_bytes)?;
        if request.max_wait_ms > FETCH_WAIT_MS_MAX {
            return Err(ServerError::invalid(
                "max_wait_ms",
                format!(
                    "must be at most {FETCH_WAIT_MS_MAX}, got {}",
                    request.max_wait_ms
                ),
            ));
        }
        let partition = local_replica(&self.context, &resolved)?;
        let wait_until = Instant::now() + Duration::from_millis(u64::from(request.max_wait_ms));
        match partition.check_offset(request.offset) {
            // A replica that is behind is waited for like a long poll waits for records.
            Err(ServerError::OffsetNotAvailable { .. }) if request.max_wait_ms > 0 => {
                let remaining = wait_until.saturating_duration_since(Instant::now());
                wait_for_records(
                    &partition,
                    request.offset,
                    remaining,
                    &self.context.shutdown,
                )
                .await;
                partition.check_offset(request.offset)?;
            }
            checked => checked?,
        }
        let mut records = partition.read_records(request.offset, max_bytes).await?;
        let remaining = wait_until.saturating_duration_since(Instant::now());
        if records.is_empty() && !remaining.is_zero() {
            wait_for_records(
                &partition,
                request.offset,
                remaining,
                &self.context.shutdown,
            )
            .await;
            records = partition.read_records(request.offset, max_bytes).await?;
        }
        Ok(v1::FetchResponse {
            records: to_records(records),
            high_watermark: partition.view.high_watermark(),
            log_start_offset: partition.log_start_offset()?,
            served_by: self.context.node_id,
        })
    }
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<v1::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Fetch for FetchService {
    #[tracing::instrument(skip_all, fields(topic = %request.get_ref().topic, partition = request.get_ref().partition, node = self.context.node_id))]
    async fn fetch(
        &self,
        request: Request<v1::FetchRequest>,
    ) -> Result<Response<v1::FetchResponse>, Status> {
        Ok(Response::new(
            FetchService::fetch(self, request.into_inner()).await?,
        ))
    }

    type SubscribeStream = SubscribeStream;

    #[tracing::instrument(skip_all, fields(topic = %request.get_ref().topic, partition = request.get_ref().partition, node = self.context.node_id))]
    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<SubscribeStream>, Status> {
        let request = request.into_inner();
        let resolved = resolve(&self.context, &request.topic, request.partition).await?;
        let max_bytes = max_bytes(request.max_bytes)?;
        let partition = local_replica(&self.context, &resolved)?;
        match partition.check_offset(request.offset) {
            // The stream waits for records anyway, so it waits for a replica that is behind.
            Err(ServerError::OffsetNotAvailable { .. }) => {}
            checked => checked?,
        }
        let (sender, receiver) = mpsc::channel(SUBSCRIBE_BUFFERED_MESSAGES_MAX);
        let context = Arc::clone(&self.context);
        let feed = async move {
            let mut offset = request.offset;
            loop {
                if context.partition(partition.group).is_none() {
                    let _ = sender
                        .send(Err(ServerError::Deleted {
                            what: partition.name(),
                        }
                        .to_status()))
                        .await;
                    return;
                }
                let records = match partition.read_records(offset, max_bytes).await {
                    Ok(records) => records,
                    Err(error) => {
                        let _ = sender.send(Err(error.to_status())).await;
                        return;
                    }
                };
                let Some((last, _)) = records.last() else {
                    tokio::select! {
                        _ = wait_for_records(&partition, offset, SUBSCRIBE_POLL, &context.shutdown) => {}
                        _ = sender.closed() => return,
                    }
                    // Once the node stops, the wait above returns at once and the read before
                    // it may complete without yielding: looping again would spin inside one
                    // poll and never let the task see the stop.
                    if context.shutdown.is_cancelled() {
                        return;
                    }
                    continue;
                };
                offset = last + 1;
                let message = v1::SubscribeResponse {
                    records: to_records(records),
                    high_watermark: partition.view.high_watermark(),
                };
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        };
        // The subscription is one of the node's tasks: when the node stops it ends, wherever
        // it waits (for records or for a slow reader), which ends the stream, and the node
        // waits for it.
        let stop = self.context.shutdown.clone();
        self.context.tasks.spawn(async move {
            tokio::select! {
                () = feed => {}
                () = stop.cancelled() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
