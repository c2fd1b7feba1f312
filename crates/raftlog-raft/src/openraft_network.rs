//! openraft's network traits for one group: a [`GroupNetworkFactory`] per group hands openraft
//! a [`GroupNetwork`] per target node, which encodes each Raft RPC with postcard and sends it
//! through the node's shared [`PeerPool`]. Failures are mapped to what openraft's replication
//! needs to decide how soon to send again (`peer/backoff.rs`).

use std::sync::atomic::AtomicU8;
use std::sync::Arc;

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
use raftlog_proto::internal::RaftMessage;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use raftlog_types::TypeConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::peer::CallOutcome;
use crate::peer::PeerPool;
use crate::peer::TargetBackoff;
use crate::peer::TransportError;

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

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>;

impl GroupNetwork {
    /// Remembers what the latest call found, for the backoff openraft holds.
    fn record(&self, outcome: CallOutcome) {
        outcome.store(&self.last_outcome);
    }

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
        self.record(CallOutcome::Answered);
        let reply = match rpc {
            RPCTypes::AppendEntries => {
                self.pool
                    .append_entries(&self.peer_addr, message, option.hard_ttl())
                    .await
            }
            RPCTypes::Vote | RPCTypes::InstallSnapshot => {
                let mut client = self.pool.client(&self.peer_addr).map_err(|e| {
                    self.record(CallOutcome::Unreachable);
                    RPCError::Unreachable(Unreachable::new(&e))
                })?;
                let mut message = tonic::Request::new(message);
                message.set_timeout(option.hard_ttl());
                if matches!(rpc, RPCTypes::Vote) {
                    client.vote(message).await
                } else {
                    client.install_snapshot(message).await
                }
                .map(tonic::Response::into_inner)
            }
        }
        .map(|reply| reply.payload);
        let reply = reply.map_err(|status| {
            let error = TransportError::new(format!("{:?}: {}", status.code(), status.message()));
            let (outcome, error) = match status.code() {
                // The call or stream message outlasted its timeout (tonic's client ends a call as
                // `Cancelled`, "Timeout expired"): a slow target, sent to again at once. Its
                // timer ends in the same millisecond as openraft's own around the call and,
                // polled first, often wins.
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
            self.record(outcome);
            error
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            postcard::from_bytes(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for GroupNetwork {
    fn backoff(&self) -> Backoff {
        Backoff::new(TargetBackoff::new(Arc::clone(&self.last_outcome)))
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
