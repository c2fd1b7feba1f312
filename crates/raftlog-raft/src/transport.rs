//! The server side of the transport: hands each Raft message to its group's instance.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;

use futures::Future;
use futures::Stream;
use futures::StreamExt;

use openraft::error::RaftError;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::InstallSnapshotRequest;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use raftlog_proto::internal::raft_transport_server::RaftTransport;
use raftlog_proto::internal::replicate_reply;
use raftlog_proto::internal::GroupStatusRequest;
use raftlog_proto::internal::GroupStatusResponse;
use raftlog_proto::internal::HeartbeatRequest;
use raftlog_proto::internal::HeartbeatResponse;
use raftlog_proto::internal::IdentifyRequest;
use raftlog_proto::internal::IdentifyResponse;
use raftlog_proto::internal::PreVoteRequest;
use raftlog_proto::internal::PreVoteResponse;
use raftlog_proto::internal::RaftMessage;
use raftlog_proto::internal::ReplicateFailure;
use raftlog_proto::internal::ReplicateReply;
use raftlog_proto::internal::ReplicateRequest;
use raftlog_types::limits::REPLICATE_DEADLINE_MS_MAX;
use raftlog_types::limits::REPLICATE_IN_FLIGHT_MAX;
use raftlog_types::shared_bytes::decode_sharing;
use raftlog_types::GroupId;
use raftlog_types::TypeConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::Request;
use tonic::Response;
use tonic::Status;
use tonic::Streaming;

use crate::registry::RaftHost;
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
    shutdown: CancellationToken,
}

impl TransportService {
    /// A service dispatching to `host`'s groups. Its replication streams end when `shutdown`
    /// is cancelled, which the server's graceful shutdown waits for.
    pub fn new(
        host: Arc<RaftHost>,
        directory: Arc<dyn PeerDirectory>,
        shutdown: CancellationToken,
    ) -> Self {
        TransportService {
            host,
            directory,
            shutdown,
        }
    }
}

/// The group a message names, if it runs here.
fn group(host: &RaftHost, group_id: u64) -> Result<RaftGroup, Status> {
    host.group(GroupId(group_id)).ok_or_else(|| {
        Status::not_found(format!(
            "group {group_id} is not running on node {}",
            host.node_id()
        ))
    })
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

fn encode<T: Serialize>(group_id: u64, value: &T) -> Result<RaftMessage, Status> {
    let payload = postcard::to_stdvec(value)
        .map_err(|e| Status::internal(format!("encode Raft reply: {e}")))?;
    Ok(RaftMessage {
        group_id,
        payload: payload.into(),
    })
}

/// Hands an AppendEntries to its group, for a call or for a message on a replication stream.
async fn append_entries(host: &RaftHost, message: RaftMessage) -> Result<RaftMessage, Status> {
    let raft = group(host, message.group_id)?;
    let rpc: AppendEntriesRequest<TypeConfig> = decode(&message)?;
    let group = GroupId(message.group_id);
    let last_sent = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
    let reply = raft.append_entries(rpc).await;
    // The election clock starts over only for a leader whose term was accepted: a deposed
    // leader's AppendEntries (answered HigherVote) must not hold back this replica's
    // candidacy, nor make it refuse votes.
    if let Ok(
        AppendEntriesResponse::Success
        | AppendEntriesResponse::PartialSuccess(_)
        | AppendEntriesResponse::Conflict,
    ) = &reply
    {
        host.note_heard_from_leader(group, &raft);
    }
    // openraft answers for entries it already holds without writing them again; a node that
    // just stepped down as leader may still be syncing some. A success counts this node
    // towards the leader's quorum, so it is sent only once they are durable.
    let matched = match &reply {
        Ok(AppendEntriesResponse::Success) => last_sent,
        Ok(AppendEntriesResponse::PartialSuccess(matched)) => *matched,
        _ => None,
    };
    if let (Some(matched), Some(mut durability)) = (matched, host.durability(group)) {
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

/// The replies of one `Replicate` stream. Every request is handled as soon as it arrives, in a
/// task of its own as a call's handler would be: all of them concurrently (a group waiting for
/// its fsync holds up no other) and on any worker, and each reply goes out as soon as it is
/// ready. Dropping the stream (the sender gone) aborts them all, as a call's handler is dropped
/// with its call. The stream ends once the sender has closed its side and every request has
/// its reply, or when the node shuts down: the server's graceful shutdown waits for every
/// stream to end.
pub struct ReplicateReplies {
    host: Arc<RaftHost>,
    requests: Option<Streaming<ReplicateRequest>>,
    handling: JoinSet<ReplicateReply>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    ended: bool,
}

impl ReplicateReplies {
    fn handle(&mut self, request: ReplicateRequest) {
        let host = Arc::clone(&self.host);
        let call_id = request.call_id;
        // The sender gives up after its timeout, and a call's handler would be dropped then.
        let deadline =
            Duration::from_millis(u64::from(request.timeout_ms.min(REPLICATE_DEADLINE_MS_MAX)));
        self.handling.spawn(async move {
            let outcome = match request.message {
                None => Err(Status::invalid_argument(format!(
                    "replication request {call_id} carries no message"
                ))),
                Some(message) => {
                    let group_id = message.group_id;
                    tokio::time::timeout(deadline, append_entries(&host, message))
                        .await
                        .unwrap_or_else(|_| {
                            Err(Status::deadline_exceeded(format!(
                                "group {group_id}: no answer within the sender's {} ms",
                                deadline.as_millis()
                            )))
                        })
                }
            };
            ReplicateReply {
                call_id,
                outcome: Some(match outcome {
                    Ok(reply) => replicate_reply::Outcome::Reply(reply),
                    Err(status) => replicate_reply::Outcome::Failure(ReplicateFailure {
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                    }),
                }),
            }
        });
    }

    fn end(&mut self) {
        self.ended = true;
        self.requests = None;
        self.handling.abort_all();
    }
}

impl Stream for ReplicateReplies {
    type Item = Result<ReplicateReply, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.shutdown.as_mut().poll(cx).is_ready() {
            self.end();
            return Poll::Ready(Some(Err(Status::unavailable(format!(
                "node {} is shutting down",
                self.host.node_id()
            )))));
        }
        while self.handling.len() < REPLICATE_IN_FLIGHT_MAX {
            let Some(requests) = self.requests.as_mut() else {
                break;
            };
            match requests.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(request))) => {
                    self.handle(request);
                }
                Poll::Ready(Some(Err(status))) => {
                    // The sender's side broke: nobody is left to read the replies.
                    self.end();
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(None) => self.requests = None,
                Poll::Pending => break,
            }
        }
        loop {
            match self.handling.poll_join_next(cx) {
                Poll::Ready(Some(Ok(reply))) => return Poll::Ready(Some(Ok(reply))),
                Poll::Ready(Some(Err(failed))) => {
                    // Its sender times out as it would for a call whose handler failed.
                    tracing::error!(
                        node = self.host.node_id(),
                        error = %failed,
                        "handling a replication stream message failed"
                    );
                }
                // Nothing in hand: done if the sender is, else woken by its next request.
                Poll::Ready(None) if self.requests.is_none() => {
                    self.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[tonic::async_trait]
impl RaftTransport for TransportService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        append_entries(&self.host, request.into_inner())
            .await
            .map(Response::new)
    }

    type ReplicateStream = ReplicateReplies;

    async fn replicate(
        &self,
        request: Request<Streaming<ReplicateRequest>>,
    ) -> Result<Response<ReplicateReplies>, Status> {
        Ok(Response::new(ReplicateReplies {
            host: Arc::clone(&self.host),
            requests: Some(request.into_inner()),
            handling: JoinSet::new(),
            shutdown: Box::pin(self.shutdown.clone().cancelled_owned()),
            ended: false,
        }))
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
        let raft = group(&self.host, message.group_id)?;
        let rpc: VoteRequest<u64> = decode(&message)?;
        let candidate_log = rpc.last_log_id;
        let group = GroupId(message.group_id);
        if self.host.refuses_votes(group) {
            // A leader reached this replica within the vote-refusal window (by a light
            // heartbeat, which openraft's own lease does not see): refuse, as openraft does
            // for its lease, with this replica's vote and no log id (nothing to defer to).
            let vote = raft.metrics().borrow().vote;
            tracing::debug!(
                group = group.0,
                candidate = %rpc.vote,
                "vote refused: a leader was heard within the vote-refusal window"
            );
            let refusal: Result<VoteResponse<u64>, RaftError<u64>> =
                Ok(VoteResponse::new(vote, None, false));
            return encode(message.group_id, &refusal).map(Response::new);
        }
        let reply = raft.vote(rpc).await;
        match &reply {
            Ok(response) if response.vote_granted => self.host.note_vote_granted(group, &raft),
            // A candidate with more log than ours can win and we cannot: stand aside, or our
            // own candidacies (at ever higher terms) would keep refusing its lower-term ones.
            Ok(response) if candidate_log > response.last_log_id => self.host.defer_election(group),
            _ => {}
        }
        encode(message.group_id, &reply).map(Response::new)
    }

    async fn pre_vote(
        &self,
        request: Request<PreVoteRequest>,
    ) -> Result<Response<PreVoteResponse>, Status> {
        let request = request.into_inner();
        let granted_group_ids = request
            .groups
            .iter()
            .filter(|question| self.host.grants_pre_vote(request.candidate_id, question))
            .map(|question| question.group_id)
            .collect();
        Ok(Response::new(PreVoteResponse { granted_group_ids }))
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        let raft = group(&self.host, message.group_id)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&message)?;
        encode(message.group_id, &raft.install_snapshot(rpc).await).map(Response::new)
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
