//! The client side of the transport: one lazily connected gRPC channel per peer address,
//! shared by every group, one replication stream on it carrying every group's AppendEntries,
//! and openraft's network traits on top of them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Weak;
use std::task::Poll;
use std::time::Duration;
use std::time::Instant;

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
use raftlog_proto::internal::replicate_reply;
use raftlog_proto::internal::RaftMessage;
use raftlog_proto::internal::ReplicateReply;
use raftlog_proto::internal::ReplicateRequest;
use raftlog_types::limits::GRPC_MESSAGE_BYTES_MAX;
use raftlog_types::limits::HTTP2_FRAME_BYTES_MAX;
use raftlog_types::limits::REPLICATE_STREAMED_MESSAGE_BYTES_MAX;
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

/// How long openraft waits before sending to an unreachable target again (its own default).
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(500);

/// After this long a peer that had no replication stream is offered one again: it may have been
/// upgraded since.
const STREAM_PROBE_INTERVAL: Duration = Duration::from_secs(60);

/// One gRPC channel per peer address. A tonic channel multiplexes concurrent calls over one
/// HTTP/2 connection and reconnects by itself, so every group shares it.
#[derive(Clone, Default)]
pub struct PeerPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    streams: Arc<Mutex<HashMap<String, PeerStream>>>,
    local_address: Option<IpAddr>,
}

/// A peer's replication stream, or the knowledge that the peer has none.
enum PeerStream {
    Open(Arc<ReplicationStream>),
    /// The peer ran a version without `Replicate` when last asked: AppendEntries are calls.
    Unsupported {
        since: Instant,
    },
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

    /// Sends one group's AppendEntries to `peer_addr` and waits up to `timeout` for the reply:
    /// on the peer's replication stream if the message is small enough and the peer has one,
    /// else as a call of its own. Fails with the status the call would have failed with.
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
                let Some(stream) = self.replication_stream(peer_addr)? else {
                    break;
                };
                // A clone shares the payload; it is kept for a call if the stream fails us.
                match stream.call(message.clone(), timeout).await {
                    StreamCall::Answered(outcome) => return outcome,
                    StreamCall::NotSent => {}
                    StreamCall::Broken => break,
                    StreamCall::Unsupported => {
                        tracing::info!(
                            peer = peer_addr,
                            "peer has no replication stream: sending AppendEntries as calls"
                        );
                        let mut streams = self.streams.lock();
                        if matches!(streams.get(peer_addr), Some(PeerStream::Open(open)) if Arc::ptr_eq(open, &stream))
                        {
                            streams.insert(
                                peer_addr.to_owned(),
                                PeerStream::Unsupported {
                                    since: Instant::now(),
                                },
                            );
                        }
                        break;
                    }
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
    /// broke); `None` if the peer had none lately.
    fn replication_stream(
        &self,
        peer_addr: &str,
    ) -> Result<Option<Arc<ReplicationStream>>, Status> {
        let mut streams = self.streams.lock();
        match streams.get(peer_addr) {
            Some(PeerStream::Unsupported { since }) if since.elapsed() < STREAM_PROBE_INTERVAL => {
                return Ok(None)
            }
            Some(PeerStream::Open(stream)) if stream.is_open() => {
                return Ok(Some(Arc::clone(stream)))
            }
            _ => {}
        }
        let client = self.client(peer_addr).map_err(unreachable_peer)?;
        let stream = ReplicationStream::open(client, peer_addr.to_owned());
        streams.insert(peer_addr.to_owned(), PeerStream::Open(Arc::clone(&stream)));
        Ok(Some(stream))
    }
}

/// A peer address the channel cannot even be built for is as good as unreachable.
fn unreachable_peer(error: TransportError) -> Status {
    Status::unavailable(error.to_string())
}

/// One `Replicate` stream to a peer: requests go out in the order they are made, each reply
/// finds its caller by call id. When the stream breaks, every caller still waiting learns it at
/// once (and sends its message as a call instead), and the next call opens a new stream.
struct ReplicationStream {
    /// Call ids in the order their requests go out; the requests wait in `calls`, so that one
    /// whose caller gave up (openraft drops a call at its timeout) is dropped at once instead
    /// of being sent late. A stalled peer thus holds at most one request per waiting caller.
    queue: mpsc::UnboundedSender<u64>,
    calls: Mutex<StreamCalls>,
    /// The peer's address, for logs.
    peer_addr: String,
    /// The task that opens the stream and hands out its replies. It holds the stream weakly
    /// and is aborted when the stream is dropped, which ends the HTTP/2 stream.
    driver: Mutex<Option<tokio::task::AbortHandle>>,
}

#[derive(Default)]
struct StreamCalls {
    next_call_id: u64,
    /// Callers waiting, by call id, with their request until it is sent.
    waiting: HashMap<u64, WaitingCall>,
    /// No new request is taken: the stream broke or ended, or it was retired after a stall.
    closed: bool,
    /// Replies received so far, for any caller, including ones that had stopped waiting.
    replies: u64,
}

struct WaitingCall {
    request: Option<ReplicateRequest>,
    reply_to: oneshot::Sender<Delivery>,
}

/// What reaches a waiting caller.
enum Delivery {
    /// The peer's reply, or the status the call would have failed with there.
    Reply(Result<RaftMessage, Status>),
    /// The stream broke: the request may or may not have reached the peer.
    Broken(Status),
}

/// How a call on a replication stream went.
enum StreamCall {
    Answered(Result<RaftMessage, Status>),
    /// The stream had closed before the request was queued: it can go elsewhere.
    NotSent,
    /// The stream broke while the caller waited; the reason is logged.
    Broken,
    /// The peer does not know `Replicate`.
    Unsupported,
}

/// Removes a call from the stream's waiting calls when its caller stops waiting, whether the
/// reply came, the timeout passed, or the caller was dropped (openraft drops a call at its own
/// timeout, which starts first).
struct CallGuard<'a> {
    stream: &'a ReplicationStream,
    call_id: u64,
    asked_at: Instant,
    replies_before: u64,
    timeout: Duration,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        let mut calls = self.stream.calls.lock();
        if calls.waiting.remove(&self.call_id).is_none() {
            return;
        }
        // The caller gave up without a reply. If for most of its wait nothing at all came back
        // on the stream, the stream may be stuck: it is retired, and later messages go on a
        // new one. The callers still waiting on it are left alone, each with its own timeout,
        // as calls would be; failing them all at once would make openraft back off every
        // group whenever a slow disk delays a follower's answers.
        let stalled =
            calls.replies == self.replies_before && self.asked_at.elapsed() >= self.timeout / 2;
        if !stalled || calls.closed {
            return;
        }
        calls.closed = true;
        let still_waiting = calls.waiting.len();
        drop(calls);
        tracing::info!(
            peer = %self.stream.peer_addr,
            waited_ms = self.asked_at.elapsed().as_millis() as u64,
            still_waiting,
            "replication stream answered nothing: later messages go on a new one"
        );
    }
}

impl Drop for ReplicationStream {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.get_mut().take() {
            driver.abort();
        }
    }
}

impl ReplicationStream {
    /// Opens the stream and starts the task that hands out its replies. The task holds the
    /// stream weakly: once the pool and every caller have let go of it, it is dropped, and the
    /// task with it.
    fn open(mut client: RaftTransportClient<Channel>, peer_addr: String) -> Arc<Self> {
        let (queue, mut queued) = mpsc::unbounded_channel::<u64>();
        let stream = Arc::new(ReplicationStream {
            queue,
            calls: Mutex::default(),
            peer_addr: peer_addr.clone(),
            driver: Mutex::default(),
        });
        let requests_of = Arc::downgrade(&stream);
        let replies_to = Arc::downgrade(&stream);
        let driver = tokio::spawn(async move {
            let outgoing = futures::stream::poll_fn(move |cx| loop {
                let Some(call_id) = std::task::ready!(queued.poll_recv(cx)) else {
                    return Poll::Ready(None);
                };
                let Some(stream) = requests_of.upgrade() else {
                    return Poll::Ready(None);
                };
                let request = stream
                    .calls
                    .lock()
                    .waiting
                    .get_mut(&call_id)
                    .and_then(|call| call.request.take());
                if let Some(request) = request {
                    return Poll::Ready(Some(request));
                }
            });
            let ended = match client.replicate(outgoing).await {
                Ok(replies) => Self::hand_out(&replies_to, replies.into_inner()).await,
                Err(status) => status,
            };
            if let Some(stream) = replies_to.upgrade() {
                tracing::info!(
                    peer = %peer_addr,
                    code = ?ended.code(),
                    reason = ended.message(),
                    "replication stream closed"
                );
                stream.close(ended);
            }
        });
        *stream.driver.lock() = Some(driver.abort_handle());
        stream
    }

    /// Gives each reply to its caller until the stream ends; returns why it ended.
    async fn hand_out(
        stream: &Weak<ReplicationStream>,
        mut replies: tonic::Streaming<ReplicateReply>,
    ) -> Status {
        loop {
            let reply = match replies.message().await {
                Ok(Some(reply)) => reply,
                Ok(None) => return Status::unavailable("the peer ended the replication stream"),
                Err(status) => return status,
            };
            let Some(stream) = stream.upgrade() else {
                return Status::cancelled("nobody uses the replication stream any more");
            };
            stream.deliver(reply);
        }
    }

    fn deliver(&self, reply: ReplicateReply) {
        // A caller that stopped waiting is gone from the map; its late reply is dropped.
        let caller = {
            let mut calls = self.calls.lock();
            calls.replies += 1;
            calls.waiting.remove(&reply.call_id)
        };
        let Some(caller) = caller else {
            return;
        };
        let outcome = match reply.outcome {
            Some(replicate_reply::Outcome::Reply(message)) => Ok(message),
            Some(replicate_reply::Outcome::Failure(failure)) => Err(Status::new(
                tonic::Code::from(failure.code),
                failure.message,
            )),
            None => Err(Status::internal(format!(
                "reply {} on the replication stream carries no outcome",
                reply.call_id
            ))),
        };
        let _ = caller.reply_to.send(Delivery::Reply(outcome));
    }

    /// Tells every waiting caller that the stream ended, and why.
    fn close(&self, reason: Status) {
        let waiting = {
            let mut calls = self.calls.lock();
            calls.closed = true;
            std::mem::take(&mut calls.waiting)
        };
        for (_, caller) in waiting {
            let _ = caller.reply_to.send(Delivery::Broken(reason.clone()));
        }
    }

    fn is_open(&self) -> bool {
        !self.calls.lock().closed
    }

    async fn call(&self, message: RaftMessage, timeout: Duration) -> StreamCall {
        let (reply_to, reply) = oneshot::channel();
        let asked_at = Instant::now();
        let (call_id, replies_before) = {
            let mut calls = self.calls.lock();
            // Checked under the lock `close` takes: a caller is either told by `close` or
            // sees the stream closed, never left waiting on a dead stream.
            if calls.closed {
                return StreamCall::NotSent;
            }
            calls.next_call_id += 1;
            let call_id = calls.next_call_id;
            let request = ReplicateRequest {
                call_id,
                message: Some(message),
                timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            };
            calls.waiting.insert(
                call_id,
                WaitingCall {
                    request: Some(request),
                    reply_to,
                },
            );
            (call_id, calls.replies)
        };
        let _guard = CallGuard {
            stream: self,
            call_id,
            asked_at,
            replies_before,
            timeout,
        };
        if self.queue.send(call_id).is_err() {
            // The driver is gone, so the request was never sent, and none will be.
            self.calls.lock().closed = true;
            return StreamCall::NotSent;
        }
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(Delivery::Reply(outcome))) => StreamCall::Answered(outcome),
            // Only opening the stream fails so, before any request was read.
            Ok(Ok(Delivery::Broken(status))) if status.code() == tonic::Code::Unimplemented => {
                StreamCall::Unsupported
            }
            Ok(Ok(Delivery::Broken(_)) | Err(_)) => StreamCall::Broken,
            Err(_) => StreamCall::Answered(Err(Status::deadline_exceeded(format!(
                "no reply within {} ms",
                timeout.as_millis()
            )))),
        }
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
    /// Remembers what the latest call found, for the backoff openraft holds.
    fn record(&self, outcome: CallOutcome) {
        self.last_outcome.store(outcome as u8, Ordering::Relaxed);
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
