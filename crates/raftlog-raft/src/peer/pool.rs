//! The peer pool: one lazily connected gRPC channel per peer address, shared by every group of
//! the node, and the routing of each AppendEntries onto the peer's replication stream
//! (`stream.rs`) or, for large messages and when the stream fails, onto a call of its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use parking_lot::Mutex;
use raftlog_proto::internal::raft_transport_client::RaftTransportClient;
use raftlog_proto::internal::RaftMessage;
use raftlog_types::limits::GRPC_MESSAGE_BYTES_MAX;
use raftlog_types::limits::HTTP2_FRAME_BYTES_MAX;
use raftlog_types::limits::PEER_CONNECT_TIMEOUT_MS;
use raftlog_types::limits::PEER_KEEP_ALIVE_INTERVAL_MS;
use raftlog_types::limits::PEER_KEEP_ALIVE_TIMEOUT_MS;
use raftlog_types::limits::REPLICATE_STREAMED_MESSAGE_BYTES_MAX;
use tonic::transport::Channel;
use tonic::transport::Endpoint;
use tonic::Status;

use super::stream::ReplicationStream;
use super::stream::StreamCall;

/// One gRPC channel per peer address. A tonic channel multiplexes concurrent calls over one
/// HTTP/2 connection and reconnects by itself, so every group shares it.
#[derive(Clone, Default)]
pub struct PeerPool {
    /// By peer address: as many as the node has peers.
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// The replication stream to each peer, by address.
    streams: Arc<Mutex<HashMap<String, Arc<ReplicationStream>>>>,
    local_address: Option<IpAddr>,
}

/// A transport-level failure talking to a peer.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct TransportError {
    what: String,
}

impl TransportError {
    pub(crate) fn new(what: impl Into<String>) -> Self {
        TransportError { what: what.into() }
    }
}

impl PeerPool {
    /// A pool whose connections leave from `local_address`. A node binds them to the address it
    /// advertises to its peers, so firewalls (and partition tests) can tell nodes apart by
    /// source address on multi-homed hosts and on loopback, where the kernel would otherwise
    /// pick 127.0.0.1 for every node.
    pub fn bound_to(local_address: Option<IpAddr>) -> Self {
        PeerPool {
            channels: Arc::default(),
            streams: Arc::default(),
            local_address,
        }
    }

    /// The channel to `peer_addr` (`host:port`), created on first use.
    pub fn channel(&self, peer_addr: &str) -> Result<Channel, TransportError> {
        let mut channels = self.channels.lock();
        if let Some(channel) = channels.get(peer_addr) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{peer_addr}"))
            .map_err(|e| TransportError::new(format!("invalid peer address {peer_addr:?}: {e}")))?
            .connect_timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS))
            .tcp_nodelay(true)
            .max_frame_size(HTTP2_FRAME_BYTES_MAX)
            .local_address(self.local_address)
            .http2_keep_alive_interval(Duration::from_millis(PEER_KEEP_ALIVE_INTERVAL_MS))
            .keep_alive_timeout(Duration::from_millis(PEER_KEEP_ALIVE_TIMEOUT_MS));
        let channel = endpoint.connect_lazy();
        channels.insert(peer_addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// A transport client to `peer_addr` with raftlog's message size limits.
    pub fn client(&self, peer_addr: &str) -> Result<RaftTransportClient<Channel>, TransportError> {
        Ok(RaftTransportClient::new(self.channel(peer_addr)?)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX))
    }

    /// Sends one group's AppendEntries to `peer_addr` and waits up to `timeout` for the reply:
    /// on the peer's replication stream if the message is small enough, else as a call of its
    /// own. Fails with the status the call would have failed with.
    ///
    /// A stream never makes a message worse off than a call: if the stream breaks while the
    /// message waits, whether the peer got it is unknown, and it goes again as a call for the
    /// rest of its time (Raft lets an AppendEntries arrive twice).
    pub async fn append_entries(
        &self,
        peer_addr: &str,
        message: RaftMessage,
        timeout: Duration,
    ) -> Result<RaftMessage, Status> {
        let started = Instant::now();
        if message.payload.len() <= REPLICATE_STREAMED_MESSAGE_BYTES_MAX {
            // A stream seen open may close before the request is queued on it; the request
            // then goes on a fresh one.
            for _ in 0..2 {
                let stream = self.replication_stream(peer_addr)?;
                // A clone shares the payload; it is kept for a call if the stream fails us.
                match stream.call(message.clone(), timeout).await {
                    StreamCall::Answered(outcome) => return outcome,
                    StreamCall::NotSent => {}
                    StreamCall::Broken => break,
                }
            }
        }
        let remaining = timeout.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return Err(Status::deadline_exceeded(format!(
                "no reply within {} ms",
                timeout.as_millis()
            )));
        }
        let mut client = self.client(peer_addr).map_err(unreachable_peer)?;
        let mut request = tonic::Request::new(message);
        request.set_timeout(remaining);
        client
            .append_entries(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// The open replication stream to `peer_addr`, opened now if there is none (or the last one
    /// broke).
    fn replication_stream(&self, peer_addr: &str) -> Result<Arc<ReplicationStream>, Status> {
        let mut streams = self.streams.lock();
        if let Some(stream) = streams.get(peer_addr).filter(|stream| stream.is_open()) {
            return Ok(Arc::clone(stream));
        }
        let client = self.client(peer_addr).map_err(unreachable_peer)?;
        let stream = ReplicationStream::open(client, peer_addr.to_owned());
        streams.insert(peer_addr.to_owned(), Arc::clone(&stream));
        Ok(stream)
    }
}

/// A peer address the channel cannot even be built for is as good as unreachable.
fn unreachable_peer(error: TransportError) -> Status {
    Status::unavailable(error.to_string())
}
