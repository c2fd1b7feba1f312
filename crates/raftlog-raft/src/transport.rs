//! The server side of the transport: hands each Raft message to its group's instance.

use std::sync::Arc;

use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::InstallSnapshotRequest;
use openraft::raft::VoteRequest;
use raftlog_proto::internal::raft_transport_server::RaftTransport;
use raftlog_proto::internal::GroupStatusRequest;
use raftlog_proto::internal::GroupStatusResponse;
use raftlog_proto::internal::HeartbeatRequest;
use raftlog_proto::internal::HeartbeatResponse;
use raftlog_proto::internal::IdentifyRequest;
use raftlog_proto::internal::IdentifyResponse;
use raftlog_proto::internal::RaftMessage;
use raftlog_types::shared_bytes::decode_sharing;
use raftlog_types::GroupId;
use raftlog_types::TypeConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::host::RaftHost;
use crate::RaftGroup;

/// The node-level questions peers ask, answered by the node assembly, which owns the identity
/// files and knows what each group is.
pub trait PeerDirectory: Send + Sync + 'static {
    /// Records the asker if it is new, and says what this node knows about it.
    fn identify(&self, request: IdentifyRequest) -> Result<IdentifyResponse, Status>;
    /// Reports on the asked groups that run here.
    fn group_status(&self, request: GroupStatusRequest) -> Result<GroupStatusResponse, Status>;
}

/// The `RaftTransport` gRPC service.
pub struct TransportService {
    host: Arc<RaftHost>,
    directory: Arc<dyn PeerDirectory>,
}

impl TransportService {
    /// A service dispatching to `host`'s groups.
    pub fn new(host: Arc<RaftHost>, directory: Arc<dyn PeerDirectory>) -> Self {
        TransportService { host, directory }
    }

    fn group(&self, group_id: u64) -> Result<RaftGroup, Status> {
        self.host.group(GroupId(group_id)).ok_or_else(|| {
            Status::not_found(format!(
                "group {group_id} is not running on node {}",
                self.host.node_id()
            ))
        })
    }
}

/// Decodes a request; replicated records become slices of its payload, not copies.
fn decode<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, Status> {
    decode_sharing(&message.payload, |payload| postcard::from_bytes(payload)).map_err(|e| {
        Status::invalid_argument(format!(
            "undecodable Raft message for group {}: {e}",
            message.group_id
        ))
    })
}

fn encode<T: Serialize>(group_id: u64, value: &T) -> Result<Response<RaftMessage>, Status> {
    let payload = postcard::to_stdvec(value)
        .map_err(|e| Status::internal(format!("encode Raft reply: {e}")))?;
    Ok(Response::new(RaftMessage {
        group_id,
        payload: payload.into(),
    }))
}

#[tonic::async_trait]
impl RaftTransport for TransportService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        let raft = self.group(message.group_id)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&message)?;
        let group = GroupId(message.group_id);
        self.host.note_heard_from_leader(group, &raft);
        let last_sent = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
        let reply = raft.append_entries(rpc).await;
        // openraft answers for entries it already holds without writing them again; a node that
        // just stepped down as leader may still be syncing some. A success counts this node
        // towards the leader's quorum, so it is sent only once they are durable.
        let matched = match &reply {
            Ok(AppendEntriesResponse::Success) => last_sent,
            Ok(AppendEntriesResponse::PartialSuccess(matched)) => *matched,
            _ => None,
        };
        if let (Some(matched), Some(mut durability)) = (matched, self.host.durability(group)) {
            if !durability.is_durable(matched.index) {
                tracing::debug!(
                    group = group.0,
                    index = matched.index,
                    "answering a leader once its entries are durable here"
                );
                durability
                    .wait(matched.index)
                    .await
                    .map_err(|e| Status::unavailable(format!("group {}: {e}", group.0)))?;
            }
        }
        encode(message.group_id, &reply)
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let request = request.into_inner();
        let accepted_group_ids = request
            .groups
            .iter()
            .filter(|heartbeat| {
                self.host
                    .accept_light_heartbeat(request.leader_id, heartbeat)
            })
            .map(|heartbeat| heartbeat.group_id)
            .collect();
        Ok(Response::new(HeartbeatResponse { accepted_group_ids }))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        let raft = self.group(message.group_id)?;
        let rpc: VoteRequest<u64> = decode(&message)?;
        let candidate_log = rpc.last_log_id;
        let reply = raft.vote(rpc).await;
        let group = GroupId(message.group_id);
        match &reply {
            Ok(response) if response.vote_granted => self.host.note_heard_from_leader(group, &raft),
            // A candidate with more log than ours can win and we cannot: stand aside, or our
            // own candidacies (at ever higher terms) would keep refusing its lower-term ones.
            Ok(response) if candidate_log > response.last_log_id => self.host.defer_election(group),
            _ => {}
        }
        encode(message.group_id, &reply)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        let raft = self.group(message.group_id)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&message)?;
        encode(message.group_id, &raft.install_snapshot(rpc).await)
    }

    async fn identify(
        &self,
        request: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        self.directory
            .identify(request.into_inner())
            .map(Response::new)
    }

    async fn group_status(
        &self,
        request: Request<GroupStatusRequest>,
    ) -> Result<Response<GroupStatusResponse>, Status> {
        self.directory
            .group_status(request.into_inner())
            .map(Response::new)
    }
}
