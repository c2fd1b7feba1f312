//! Rust client for raftlog.
//!
//! [`Client`] talks to any node for metadata, routes produce calls to each partition's leader
//! (following `NOT_LEADER` hints and refreshing its metadata when a leader moves), retries
//! retryable errors with backoff within a deadline, and reads with fetch or a subscription.
//!
//! See [`Producer`], [`Consumer`] and [`Consumer::subscribe`] for examples that run as tests.

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
pub use raftlog_proto::v1::ErrorReason;
pub use raftlog_proto::RetryClass;
