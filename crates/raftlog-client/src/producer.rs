//! The batching producer: records sent to a topic are routed to a partition, gathered per
//! partition for up to `linger` or `batch_bytes_max`, and sent as one produce request.
//!
//! Memory is bounded: every buffered record holds permits of a semaphore sized
//! `buffer_bytes_max` until it is acknowledged, so `send` waits (and `try_send` fails) while the
//! buffer is full — a producer faster than the cluster is slowed down, never grows unbounded.
//!
//! Idempotence (on by default): each partition's batches carry a producer id and consecutive
//! sequence numbers, so the client may retry any failure, including timeouts and broken
//! connections, without writing a record twice. An idempotent producer keeps one request in
//! flight per partition, which also keeps records in order across retries. If a batch finally
//! fails, its partition starts over with a new producer id, so later batches are not refused.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;

use raftlog_proto::v1;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;

use crate::client::Client;
use crate::error::ClientError;

/// Bytes a buffered record is charged beyond its payload (its bookkeeping).
const RECORD_OVERHEAD_BYTES: usize = 64;

/// How a record without an explicit partition is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioner {
    /// Records with a key go to `hash(key) % partitions` (FNV-1a, as the CLI does), so one key
    /// always lands in one partition; records without a key go round-robin.
    KeyHash,
    /// Every record goes round-robin, key or not.
    RoundRobin,
}

/// Tunables of a [`Producer`].
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// How long a partition's first buffered record waits for more before the batch is sent.
    pub linger: Duration,
    /// A batch is sent once its records reach this many bytes.
    pub batch_bytes_max: usize,
    /// Bytes of records buffered (sent but not yet acknowledged) at most.
    pub buffer_bytes_max: usize,
    /// Requests in flight per partition (ignored, i.e. 1, when idempotent).
    pub in_flight_per_partition: usize,
    /// Placement of records.
    pub partitioner: Partitioner,
    /// Retries never duplicate records (see the module documentation).
    pub idempotent: bool,
    /// Durability to wait for (`ALL`: fsynced on a majority).
    pub acks: v1::Acks,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger: Duration::from_millis(5),
            batch_bytes_max: 1024 * 1024,
            buffer_bytes_max: 32 * 1024 * 1024,
            in_flight_per_partition: 5,
            partitioner: Partitioner::KeyHash,
            idempotent: true,
            acks: v1::Acks::All,
        }
    }
}

/// Where an acknowledged record was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
    /// The record was a retry of one already written (idempotent producers only).
    pub duplicate: bool,
}

/// Resolves when the record is acknowledged (or finally failed).
pub struct DeliveryFuture {
    receiver: oneshot::Receiver<Result<Delivery, ClientError>>,
}

impl Future for DeliveryFuture {
    type Output = Result<Delivery, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver).poll(cx).map(|result| {
            result.unwrap_or_else(|_| {
                Err(ClientError::InvalidArgument(
                    "the producer stopped before the record was sent".into(),
                ))
            })
        })
    }
}

struct Pending {
    record: v1::Record,
    bytes: usize,
    _permit: OwnedSemaphorePermit,
    reply: oneshot::Sender<Result<Delivery, ClientError>>,
}

struct Shared {
    client: Arc<Client>,
    config: ProducerConfig,
    buffer: Arc<Semaphore>,
    queues: Mutex<HashMap<(String, u32), mpsc::UnboundedSender<Pending>>>,
    partition_counts: Mutex<HashMap<String, u32>>,
    round_robin: AtomicU32,
}

/// A batching, optionally idempotent producer. Cheap to clone; clones share buffers.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # // A one-node cluster in this process, so the example runs as a test.
/// # let dir = tempfile::tempdir()?;
/// # let port = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
/// # let (client_port, peer_port) = (port()?, port()?);
/// # let config = raftlog_server::ClusterConfig::parse(&format!(
/// #     "cluster_id = \"doc\"\ndata_dir = {:?}\n[[nodes]]\nid = 1\nclient_addr = \"127.0.0.1:{client_port}\"\npeer_addr = \"127.0.0.1:{peer_port}\"\n",
/// #     dir.path()), std::path::Path::new("doc.toml"))?;
/// # let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// # let node = tokio::spawn(raftlog_server::run(config, 1, async { let _ = stopped.await; }));
/// # let bootstrap = vec![format!("127.0.0.1:{client_port}")];
/// use std::sync::Arc;
/// use raftlog_client::{record, Client, Producer, ProducerConfig};
///
/// let client = Arc::new(Client::connect(&bootstrap).await?);
/// client.create_topic("orders", 3, 1).await?;
/// // Batching, idempotent (retries never duplicate), at most 32 MiB buffered by default.
/// let producer = Producer::new(Arc::clone(&client), ProducerConfig::default());
/// let mut deliveries = Vec::new();
/// for i in 0..100 {
///     let key = format!("customer-{}", i % 7).into_bytes();
///     deliveries.push(producer.send("orders", record(Some(key), format!("order {i}").into_bytes())).await?);
/// }
/// for delivery in deliveries {
///     let delivery = delivery.await?; // acknowledged: fsynced on a majority of replicas
///     assert_eq!(delivery.topic, "orders");
/// }
/// # let _ = stop.send(());
/// # node.await??;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn record_bytes(record: &v1::Record) -> usize {
    let key = record.key.as_ref().map_or(0, |k| k.len());
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.len())
        .sum();
    key + record.value.len() + headers + RECORD_OVERHEAD_BYTES
}

impl Producer {
    /// A producer over `client`.
    pub fn new(client: Arc<Client>, config: ProducerConfig) -> Producer {
        let buffer = Arc::new(Semaphore::new(config.buffer_bytes_max));
        Producer {
            shared: Arc::new(Shared {
                client,
                config,
                buffer,
                queues: Mutex::default(),
                partition_counts: Mutex::default(),
                round_robin: AtomicU32::new(0),
            }),
        }
    }

    /// Bytes currently buffered (sent to the producer, not yet acknowledged).
    pub fn buffered_bytes(&self) -> usize {
        self.shared.config.buffer_bytes_max - self.shared.buffer.available_permits()
    }

    async fn partition_for(&self, topic: &str, record: &v1::Record) -> Result<u32, ClientError> {
        let known = self
            .shared
            .partition_counts
            .lock()
            .ok()
            .and_then(|c| c.get(topic).copied());
        let count = match known {
            Some(count) => count,
            None => {
                let count = self
                    .shared
                    .client
                    .describe_topic(topic)
                    .await?
                    .partitions
                    .len() as u32;
                if let Ok(mut counts) = self.shared.partition_counts.lock() {
                    counts.insert(topic.to_owned(), count);
                }
                count
            }
        };
        if count == 0 {
            return Err(ClientError::InvalidArgument(format!(
                "topic {topic:?} has no partitions"
            )));
        }
        Ok(match (self.shared.config.partitioner, &record.key) {
            (Partitioner::KeyHash, Some(key)) => (key_hash(key) % u64::from(count)) as u32,
            _ => self.shared.round_robin.fetch_add(1, Ordering::Relaxed) % count,
        })
    }

    fn check_size(&self, bytes: usize) -> Result<u32, ClientError> {
        if bytes > self.shared.config.buffer_bytes_max {
            return Err(ClientError::InvalidArgument(format!(
                "record of {bytes} bytes is larger than the producer's buffer ({} bytes)",
                self.shared.config.buffer_bytes_max
            )));
        }
        u32::try_from(bytes).map_err(|_| {
            ClientError::InvalidArgument(format!("record of {bytes} bytes is too large"))
        })
    }

    /// Queues a record, waiting while the buffer is full (back pressure). The returned future
    /// resolves when the record is acknowledged.
    pub async fn send(
        &self,
        topic: &str,
        record: v1::Record,
    ) -> Result<DeliveryFuture, ClientError> {
        let partition = self.partition_for(topic, &record).await?;
        self.send_to(topic, partition, record).await
    }

    /// Like [`Producer::send`], to a given partition.
    pub async fn send_to(
        &self,
        topic: &str,
        partition: u32,
        record: v1::Record,
    ) -> Result<DeliveryFuture, ClientError> {
        let bytes = record_bytes(&record);
        let permits = self.check_size(bytes)?;
        let permit = Arc::clone(&self.shared.buffer)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| ClientError::InvalidArgument("the producer is closed".into()))?;
        Ok(self.enqueue(topic, partition, record, bytes, permit))
    }

    /// Queues a record without waiting; fails with `BUFFER_FULL` while the buffer is full.
    pub async fn try_send(
        &self,
        topic: &str,
        record: v1::Record,
    ) -> Result<DeliveryFuture, ClientError> {
        let partition = self.partition_for(topic, &record).await?;
        let bytes = record_bytes(&record);
        let permits = self.check_size(bytes)?;
        let permit = Arc::clone(&self.shared.buffer)
            .try_acquire_many_owned(permits)
            .map_err(|_| ClientError::BufferFull {
                buffered_bytes: self.buffered_bytes(),
                buffer_bytes_max: self.shared.config.buffer_bytes_max,
            })?;
        Ok(self.enqueue(topic, partition, record, bytes, permit))
    }

    fn enqueue(
        &self,
        topic: &str,
        partition: u32,
        record: v1::Record,
        bytes: usize,
        permit: OwnedSemaphorePermit,
    ) -> DeliveryFuture {
        let (reply, receiver) = oneshot::channel();
        let pending = Pending {
            record,
            bytes,
            _permit: permit,
            reply,
        };
        let key = (topic.to_owned(), partition);
        let Ok(mut queues) = self.shared.queues.lock() else {
            let _ = pending.reply.send(Err(ClientError::InvalidArgument(
                "producer state poisoned".into(),
            )));
            return DeliveryFuture { receiver };
        };
        let queue = queues.entry(key).or_insert_with(|| {
            let (sender, queue) = mpsc::unbounded_channel();
            tokio::spawn(run_partition(
                Arc::clone(&self.shared),
                topic.to_owned(),
                partition,
                queue,
            ));
            sender
        });
        if let Err(mpsc::error::SendError(pending)) = queue.send(pending) {
            let _ = pending.reply.send(Err(ClientError::InvalidArgument(
                "the partition sender stopped".into(),
            )));
        }
        DeliveryFuture { receiver }
    }

    /// Waits until every record queued so far is acknowledged or failed.
    pub async fn flush(&self) {
        let all = self.shared.config.buffer_bytes_max as u32;
        if let Ok(permit) = self.shared.buffer.acquire_many(all).await {
            drop(permit);
        }
    }
}

/// One partition's batching loop: gathers, sends, and answers the records' futures.
async fn run_partition(
    shared: Arc<Shared>,
    topic: String,
    partition: u32,
    mut queue: mpsc::UnboundedReceiver<Pending>,
) {
    let config = shared.config.clone();
    let in_flight = Arc::new(Semaphore::new(if config.idempotent {
        1
    } else {
        config.in_flight_per_partition.max(1)
    }));
    let mut producer_id: Option<u64> = None;
    let mut next_sequence = 0u64;
    while let Some(first) = queue.recv().await {
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + config.linger;
        while bytes < config.batch_bytes_max {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(pending)) => {
                    bytes += pending.bytes;
                    batch.push(pending);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        let producer = if config.idempotent {
            let id = match producer_id {
                Some(id) => id,
                None => match shared.client.init_producer().await {
                    Ok(id) => {
                        producer_id = Some(id);
                        next_sequence = 0;
                        id
                    }
                    Err(error) => {
                        for pending in batch {
                            let _ = pending.reply.send(Err(clone_error(&error)));
                        }
                        continue;
                    }
                },
            };
            let sequence = v1::ProducerSequence {
                producer_id: id,
                base_sequence: next_sequence,
            };
            next_sequence += batch.len() as u64;
            Some(sequence)
        } else {
            None
        };
        let mut replies = Vec::with_capacity(batch.len());
        let mut records = Vec::with_capacity(batch.len());
        let mut permits = Vec::with_capacity(batch.len());
        for pending in batch {
            records.push(pending.record);
            replies.push(pending.reply);
            permits.push(pending._permit);
        }
        let request = v1::ProduceRequest {
            topic: topic.clone(),
            partition,
            records,
            acks: config.acks as i32,
            timeout_ms: 0,
            producer,
        };
        let client = Arc::clone(&shared.client);
        let topic_name = topic.clone();
        let send = async move {
            let result = client.send_produce(request).await;
            let failed = result.is_err();
            match result {
                Ok(response) => {
                    for (i, reply) in replies.into_iter().enumerate() {
                        let _ = reply.send(Ok(Delivery {
                            topic: topic_name.clone(),
                            partition,
                            offset: response.base_offset + i as u64,
                            duplicate: response.duplicate,
                        }));
                    }
                }
                Err(error) => {
                    for reply in replies {
                        let _ = reply.send(Err(clone_error(&error)));
                    }
                }
            }
            drop(permits);
            drop(permit);
            failed
        };
        if config.idempotent {
            // One request at a time keeps sequences in order; after a final failure the
            // partition's state is unknown, so it continues under a new producer id.
            if send.await {
                producer_id = None;
            }
        } else {
            tokio::spawn(send);
        }
    }
}

fn clone_error(error: &ClientError) -> ClientError {
    match error {
        ClientError::Server {
            code,
            reason,
            message,
            metadata,
            retry_after,
        } => ClientError::Server {
            code: *code,
            reason: reason.clone(),
            message: message.clone(),
            metadata: metadata.clone(),
            retry_after: *retry_after,
        },
        other => ClientError::InvalidArgument(other.to_string()),
    }
}
