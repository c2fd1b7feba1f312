//! The client side of the transport: one lazily connected gRPC channel per peer address,
//! shared by every group, and openraft's network traits on top of it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::InstallSnapshotError;
use openraft::error::NetworkError;
use openraft::error::RPCError;
use openraft::error::RaftError;
use openraft::error::RemoteError;
use openraft::error::Unreachable;
use openraft::network::Backoff;
use openraft::network::RPCOption;
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
    pool: PeerPool,
}

impl GroupNetworkFactory {
    /// A factory for `group`'s Raft instance.
    pub fn new(group: GroupId, pool: PeerPool) -> Self {
        GroupNetworkFactory { group, pool }
    }
}

impl RaftNetworkFactory<TypeConfig> for GroupNetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> GroupNetwork {
        GroupNetwork {
            group: self.group,
            target,
            peer_addr: node.peer_addr.clone(),
            pool: self.pool.clone(),
            group_missing_at_target: false,
        }
    }
}

/// openraft's connection from one group to one target node.
pub struct GroupNetwork {
    group: GroupId,
    target: NodeId,
    peer_addr: String,
    pool: PeerPool,
    /// The last call found the target up but without this group: it is being created there.
    group_missing_at_target: bool,
}

/// How long openraft waits before sending to an unreachable target again (its own default).
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(500);

/// How long openraft waits before sending to a target again after it was unreachable: at once
/// a little, then half a second. A target that answers "group not running here" is creating
/// the group (all replicas of a new partition start within a second or so of each other); half
/// a second of silence from its leader right then may outlast the new replica's election
/// timeout and cost the group an election.
fn backoff_after_missing_group() -> impl Iterator<Item = Duration> {
    [25, 50, 100, 200]
        .into_iter()
        .map(Duration::from_millis)
        .chain(std::iter::repeat(UNREACHABLE_BACKOFF))
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>;

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl GroupNetwork {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
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
        let mut client = self
            .pool
            .client(&self.peer_addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut message = tonic::Request::new(message);
        message.set_timeout(option.hard_ttl());
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(message).await,
            Rpc::Vote => client.vote(message).await,
            Rpc::InstallSnapshot => client.install_snapshot(message).await,
        }
        .map(|reply| reply.into_inner().payload);
        self.group_missing_at_target =
            matches!(&reply, Err(status) if status.code() == tonic::Code::NotFound);
        let reply = reply.map_err(|status| {
            let error = TransportError::new(format!("{:?}: {}", status.code(), status.message()));
            match status.code() {
                // Not reachable, or the group is not started there yet: back off and retry.
                tonic::Code::Unavailable
                | tonic::Code::NotFound
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Cancelled => RPCError::Unreachable(Unreachable::new(&error)),
                _ => RPCError::Network(NetworkError::new(&error)),
            }
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            postcard::from_bytes(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for GroupNetwork {
    fn backoff(&self) -> Backoff {
        if self.group_missing_at_target {
            Backoff::new(backoff_after_missing_group())
        } else {
            Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
        }
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(Rpc::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Rpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
