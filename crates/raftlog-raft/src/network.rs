//! The client side of the transport: one lazily connected gRPC channel per peer address,
//! shared by every group, and openraft's network traits on top of it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::InstallSnapshotError;
use openraft::error::NetworkError;
use openraft::error::RPCError;
use openraft::error::RaftError;
use openraft::error::RemoteError;
use openraft::error::Timeout;
use openraft::error::Unreachable;
use openraft::network::Backoff;
use openraft::network::RPCOption;
use openraft::network::RPCTypes;
use openraft::network::RaftNetwork;
use openraft::network::RaftNetworkFactory;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::InstallSnapshotRequest;
use openraft::raft::InstallSnapshotResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use parking_lot::Mutex;
use raftlog_proto::internal::raft_transport_client::RaftTransportClient;
use raftlog_proto::internal::RaftMessage;
use raftlog_types::limits::GRPC_MESSAGE_BYTES_MAX;
use raftlog_types::limits::HTTP2_FRAME_BYTES_MAX;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use raftlog_types::TypeConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

/// How long a connection attempt to a peer may take before the RPC fails as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// One gRPC channel per peer address. A tonic channel multiplexes concurrent calls over one
/// HTTP/2 connection and reconnects by itself, so every group shares it.
#[derive(Clone, Default)]
pub struct PeerPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    local_address: Option<IpAddr>,
}

/// A transport-level failure talking to a peer.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct TransportError {
    what: String,
}

impl TransportError {
    fn new(what: impl Into<String>) -> Self {
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
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .max_frame_size(HTTP2_FRAME_BYTES_MAX)
            .local_address(self.local_address)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
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
}

/// Creates per-target network clients for one group.
pub struct GroupNetworkFactory {
    group: GroupId,
    local: NodeId,
    pool: PeerPool,
}

impl GroupNetworkFactory {
    /// A factory for `group`'s Raft instance on node `local`.
    pub fn new(group: GroupId, local: NodeId, pool: PeerPool) -> Self {
        GroupNetworkFactory { group, local, pool }
    }
}

impl RaftNetworkFactory<TypeConfig> for GroupNetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> GroupNetwork {
        GroupNetwork {
            group: self.group,
            local: self.local,
            target,
            peer_addr: node.peer_addr.clone(),
            pool: self.pool.clone(),
            last_outcome: Arc::default(),
        }
    }
}

/// openraft's connection from one group to one target node.
pub struct GroupNetwork {
    group: GroupId,
    local: NodeId,
    target: NodeId,
    peer_addr: String,
    pool: PeerPool,
    /// What the last call found, shared with the backoff openraft holds (`TargetBackoff`).
    last_outcome: Arc<AtomicU8>,
}

/// What the last call to a target found, as the backoff before the next one needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum CallOutcome {
    /// The target answered, or was too slow to answer in time: it is up.
    Answered = 0,
    /// No connection, or the connection broke.
    Unreachable = 1,
    /// The target is up but has not started the group: it is being created there.
    GroupMissing = 2,
}

impl CallOutcome {
    fn load(cell: &AtomicU8) -> CallOutcome {
        match cell.load(Ordering::Relaxed) {
            1 => CallOutcome::Unreachable,
            2 => CallOutcome::GroupMissing,
            _ => CallOutcome::Answered,
        }
    }
}

/// How long openraft waits before sending to an unreachable target again (its own default).
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(500);

/// How long openraft waits before sending to a target that answered "group not running here",
/// in the rounds after the first such answer; half a second after that. Such a target is
/// creating the group (all replicas of a new partition start within a second or so of each
/// other), and half a second of silence from its leader right then may outlast the new
/// replica's election timeout and cost the group an election.
const GROUP_MISSING_BACKOFF: [Duration; 4] = [
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
];

/// The waits openraft's replication takes between sends to one target once a send found it
/// unreachable. openraft keeps drawing from it, after every failed send, until one succeeds,
/// so each wait follows what the latest send found: a target that was only slow to answer
/// (a timeout, as a follower whose disk is busy gives) is sent to again with the next
/// heartbeat; half a second of silence towards it could outlast its election timeout.
struct TargetBackoff {
    last_outcome: Arc<AtomicU8>,
    group_missing_rounds: usize,
}

impl Iterator for TargetBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(match CallOutcome::load(&self.last_outcome) {
            CallOutcome::Answered => Duration::ZERO,
            CallOutcome::Unreachable => UNREACHABLE_BACKOFF,
            CallOutcome::GroupMissing => {
                let wait = GROUP_MISSING_BACKOFF
                    .get(self.group_missing_rounds)
                    .copied()
                    .unwrap_or(UNREACHABLE_BACKOFF);
                self.group_missing_rounds += 1;
                wait
            }
        })
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>;

impl GroupNetwork {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: RPCTypes,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload =
            postcard::to_stdvec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let message = RaftMessage {
            group_id: self.group.0,
            payload: payload.into(),
        };
        // A call that openraft's timer drops before it ends found a slow target, not a gone one.
        self.last_outcome
            .store(CallOutcome::Answered as u8, Ordering::Relaxed);
        let mut client = self.pool.client(&self.peer_addr).map_err(|e| {
            self.last_outcome
                .store(CallOutcome::Unreachable as u8, Ordering::Relaxed);
            RPCError::Unreachable(Unreachable::new(&e))
        })?;
        let mut message = tonic::Request::new(message);
        message.set_timeout(option.hard_ttl());
        let reply = match rpc {
            RPCTypes::AppendEntries => client.append_entries(message).await,
            RPCTypes::Vote => client.vote(message).await,
            RPCTypes::InstallSnapshot => client.install_snapshot(message).await,
        }
        .map(|reply| reply.into_inner().payload);
        let reply = reply.map_err(|status| {
            let error = TransportError::new(format!("{:?}: {}", status.code(), status.message()));
            let (outcome, error) = match status.code() {
                // The call outlasted its timeout (tonic's client ends it as `Cancelled`, "Timeout
                // expired"): a slow target, sent to again at once. Its timer ends in the same
                // millisecond as openraft's own around the call and, polled first, often wins.
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => (
                    CallOutcome::Answered,
                    RPCError::Timeout(Timeout {
                        action: rpc,
                        id: self.local,
                        target: self.target,
                        timeout: option.hard_ttl(),
                    }),
                ),
                // The group is not started there yet: back off a little and retry.
                tonic::Code::NotFound => (
                    CallOutcome::GroupMissing,
                    RPCError::Unreachable(Unreachable::new(&error)),
                ),
                // Not reachable: back off and retry.
                tonic::Code::Unavailable => (
                    CallOutcome::Unreachable,
                    RPCError::Unreachable(Unreachable::new(&error)),
                ),
                _ => (
                    CallOutcome::Answered,
                    RPCError::Network(NetworkError::new(&error)),
                ),
            };
            self.last_outcome.store(outcome as u8, Ordering::Relaxed);
            error
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            postcard::from_bytes(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for GroupNetwork {
    fn backoff(&self) -> Backoff {
        Backoff::new(TargetBackoff {
            last_outcome: Arc::clone(&self.last_outcome),
            group_missing_rounds: 0,
        })
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.call(RPCTypes::Vote, &rpc, &option).await
    }
}
