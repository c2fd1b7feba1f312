//! Rust client for raftlog.
//!
//! [`Client`] talks to any node for metadata, routes produce calls to each partition's leader
//! (following `NOT_LEADER` hints and refreshing its metadata when a leader moves), retries
//! retryable errors with backoff within a deadline, and reads with fetch or a subscription.
//!
//! ```no_run
//! # async fn example() -> Result<(), raftlog_client::ClientError> {
//! let client = raftlog_client::Client::connect(&["127.0.0.1:7001".to_owned()]).await?;
//! client.create_topic("orders", 3, 3).await?;
//! let ack = client.produce("orders", 0, vec![raftlog_client::record(None, b"hello".to_vec())]).await?;
//! let fetched = client.fetch("orders", 0, ack.base_offset, 0, 0).await?;
//! assert_eq!(fetched.records[0].value.as_ref(), b"hello");
//! # Ok(())
//! # }
//! ```

mod client;
mod consumer;
mod error;
mod producer;

pub use client::record;
pub use client::Client;
pub use client::ClientOptions;
pub use consumer::Consumer;
pub use consumer::ConsumerConfig;
pub use consumer::ConsumerRecord;
pub use consumer::OffsetReset;
pub use error::ClientError;
pub use producer::Delivery;
pub use producer::DeliveryFuture;
pub use producer::Partitioner;
pub use producer::Producer;
pub use producer::ProducerConfig;
pub use raftlog_proto::v1;
