//! Connections to the other nodes: the pool of one channel per peer (`pool.rs`), the one
//! `Replicate` stream per peer that carries every group's AppendEntries (`stream.rs`), and the
//! pacing of openraft's retries towards a target (`backoff.rs`).

mod backoff;
mod pool;
mod stream;

pub(crate) use backoff::CallOutcome;
pub(crate) use backoff::TargetBackoff;
pub use pool::PeerPool;
pub use pool::TransportError;
