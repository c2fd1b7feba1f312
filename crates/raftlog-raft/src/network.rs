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
use raftlog_proto::internal::RaftMessageBatch;
use raftlog_proto::internal::RaftReply;
use raftlog_types::limits::GRPC_MESSAGE_BYTES_MAX;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use raftlog_types::TypeConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::transport::Endpoint;
use tonic::Status;

/// How long a connection attempt to a peer may take before the RPC fails as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long an empty AppendEntries waits for others to the same peer. The host triggers every
/// leader's heartbeat at once, so one window gathers nearly all of them into one call.
const COALESCE_WINDOW: Duration = Duration::from_millis(2);

/// Most messages in one coalesced call (each is ~100 bytes).
const COALESCE_MESSAGES_MAX: usize = 4096;

/// An empty AppendEntries waiting for its coalesced call.
struct PendingAppend {
    message: RaftMessage,
    ttl: Duration,
    reply: oneshot::Sender<Result<RaftReply, Status>>,
}

/// One gRPC channel per peer address. A tonic channel multiplexes concurrent calls over one
/// HTTP/2 connection and reconnects by itself, so every group shares it.
#[derive(Clone, Default)]
pub struct PeerPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    coalescers: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<PendingAppend>>>>,
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
            coalescers: Arc::default(),
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

impl PeerPool {
    /// Sends an empty AppendEntries to `peer_addr` in a call shared with every other group's
    /// that is sent within [`COALESCE_WINDOW`], and returns this group's reply.
    async fn append_coalesced(
        &self,
        peer_addr: &str,
        message: RaftMessage,
        ttl: Duration,
    ) -> Result<RaftReply, Status> {
        let sender = {
            let mut coalescers = self.coalescers.lock();
            match coalescers.get(peer_addr) {
                Some(sender) if !sender.is_closed() => sender.clone(),
                _ => {
                    let client = self
                        .client(peer_addr)
                        .map_err(|e| Status::unavailable(e.to_string()))?;
                    let (sender, receiver) = mpsc::unbounded_channel();
                    tokio::spawn(coalesce(client, receiver));
                    coalescers.insert(peer_addr.to_owned(), sender.clone());
                    sender
                }
            }
        };
        let (reply, answer) = oneshot::channel();
        sender
            .send(PendingAppend {
                message,
                ttl,
                reply,
            })
            .map_err(|_| Status::unavailable("heartbeat coalescer stopped"))?;
        answer
            .await
            .map_err(|_| Status::cancelled("heartbeat coalescer dropped the call"))?
    }
}

/// Gathers empty AppendEntries for one peer and sends them in batches, each batch in its own
/// task so a slow or unreachable peer never holds up the next window.
async fn coalesce(
    client: RaftTransportClient<Channel>,
    mut pending: mpsc::UnboundedReceiver<PendingAppend>,
) {
    while let Some(first) = pending.recv().await {
        let window_end = tokio::time::Instant::now() + COALESCE_WINDOW;
        let mut batch = vec![first];
        while batch.len() < COALESCE_MESSAGES_MAX {
            match tokio::time::timeout_at(window_end, pending.recv()).await {
                Ok(Some(next)) => batch.push(next),
                Ok(None) | Err(_) => break,
            }
        }
        tokio::spawn(send_batch(client.clone(), batch));
    }
}

async fn send_batch(mut client: RaftTransportClient<Channel>, batch: Vec<PendingAppend>) {
    let ttl = batch
        .iter()
        .map(|p| p.ttl)
        .min()
        .unwrap_or(Duration::from_secs(1));
    let (messages, replies): (Vec<RaftMessage>, Vec<_>) =
        batch.into_iter().map(|p| (p.message, p.reply)).unzip();
    let mut request = tonic::Request::new(RaftMessageBatch { messages });
    request.set_timeout(ttl);
    match client.append_entries_batch(request).await {
        Ok(response) => {
            let mut answers = response.into_inner().replies.into_iter();
            for reply in replies {
                let answer = answers
                    .next()
                    .ok_or_else(|| Status::internal("peer answered fewer messages than it got"));
                let _ = reply.send(answer);
            }
        }
        Err(status) => {
            for reply in replies {
                let _ = reply.send(Err(status.clone()));
            }
        }
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
        }
    }
}

/// openraft's connection from one group to one target node.
pub struct GroupNetwork {
    group: GroupId,
    target: NodeId,
    peer_addr: String,
    pool: PeerPool,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>;

#[derive(Clone, Copy)]
enum Rpc {
    /// An AppendEntries without entries: a heartbeat or a commit-index update, coalesced.
    EmptyAppendEntries,
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl GroupNetwork {
    async fn call<Req, Resp, E>(
        &self,
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
        let reply = if let Rpc::EmptyAppendEntries = rpc {
            self.pool
                .append_coalesced(&self.peer_addr, message, option.hard_ttl())
                .await
                .and_then(|reply| match reply.error_code {
                    0 => Ok(reply.payload),
                    code => Err(Status::new(code.into(), reply.error_message)),
                })
        } else {
            let mut client = self
                .pool
                .client(&self.peer_addr)
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
            let mut message = tonic::Request::new(message);
            message.set_timeout(option.hard_ttl());
            match rpc {
                Rpc::Vote => client.vote(message).await,
                Rpc::InstallSnapshot => client.install_snapshot(message).await,
                Rpc::AppendEntries | Rpc::EmptyAppendEntries => {
                    client.append_entries(message).await
                }
            }
            .map(|reply| reply.into_inner().payload)
        };
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
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let kind = if rpc.entries.is_empty() {
            Rpc::EmptyAppendEntries
        } else {
            Rpc::AppendEntries
        };
        self.call(kind, &rpc, &option).await
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
