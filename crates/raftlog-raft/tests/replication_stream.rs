//! The replication stream of `PeerPool::append_entries`, against a stand-in peer: replies reach
//! their own callers in any order, a message on a broken stream goes again as a call, a stream
//! that answers nothing is replaced without failing its other callers, openraft backs off from
//! a target by what the last send found there, and peers without the stream, or messages too
//! large for it, get calls. (The real peer side, `TransportService`, carries all replication in
//! the cluster tests.)

use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use anyhow::ensure;
use futures::Stream;
use openraft::error::RPCError;
use openraft::network::RPCOption;
use openraft::network::RaftNetwork;
use openraft::network::RaftNetworkFactory;
use openraft::raft::AppendEntriesRequest;
use openraft::Vote;
use raftlog_proto::internal::raft_transport_server::RaftTransport;
use raftlog_proto::internal::raft_transport_server::RaftTransportServer;
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
use raftlog_raft::GroupNetwork;
use raftlog_raft::GroupNetworkFactory;
use raftlog_raft::PeerPool;
use raftlog_types::limits::REPLICATE_STREAMED_MESSAGE_BYTES_MAX;
use raftlog_types::GroupId;
use raftlog_types::NodeInfo;
use raftlog_types::TypeConfig;
use tokio::sync::mpsc;
use tonic::Request;
use tonic::Response;
use tonic::Status;
use tonic::Streaming;

/// How the stand-in peer treats `Replicate`.
#[derive(Clone, Copy, PartialEq)]
enum StreamBehaviour {
    /// Echoes each message after as many milliseconds as its first payload byte says.
    Echo,
    /// Answers `Unimplemented`, like a node of a version without the stream.
    Missing,
    /// Breaks its first stream with an error on the first request; echoes on later streams.
    BreakFirst,
    /// Reads its first stream but never answers on it; echoes on later streams.
    StallFirst,
    /// Up, but the group is not running here yet: every message is answered `NotFound`; once
    /// the test marks the group started, nothing is answered any more (a follower whose disk is
    /// busy).
    GroupMissing,
    /// Up, but never answers a message, on a stream or as a call.
    Silent,
}

fn group_missing(group_id: u64) -> Status {
    Status::not_found(format!(
        "group {group_id} is not running on the stand-in peer"
    ))
}

struct StandInPeer {
    behaviour: StreamBehaviour,
    /// `Replicate` calls, whatever became of them.
    streams_opened: AtomicUsize,
    calls: AtomicUsize,
    group_started: AtomicBool,
}

/// The service face of a shared `StandInPeer`, which the test reads afterwards.
struct StandIn(Arc<StandInPeer>);

type Replies = Pin<Box<dyn Stream<Item = Result<ReplicateReply, Status>> + Send>>;

fn echo(request: &ReplicateRequest) -> ReplicateReply {
    ReplicateReply {
        call_id: request.call_id,
        outcome: request.message.clone().map(replicate_reply::Outcome::Reply),
    }
}

#[tonic::async_trait]
impl RaftTransport for StandIn {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let group_started = self.0.group_started.load(Ordering::SeqCst);
        if self.0.behaviour == StreamBehaviour::GroupMissing && !group_started {
            return Err(group_missing(request.into_inner().group_id));
        }
        if self.0.behaviour == StreamBehaviour::Silent
            || self.0.behaviour == StreamBehaviour::GroupMissing
        {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(request.into_inner()))
    }

    type ReplicateStream = Replies;

    async fn replicate(
        &self,
        request: Request<Streaming<ReplicateRequest>>,
    ) -> Result<Response<Replies>, Status> {
        let first_stream = self.0.streams_opened.fetch_add(1, Ordering::SeqCst) == 0;
        if self.0.behaviour == StreamBehaviour::Missing {
            return Err(Status::unimplemented("Replicate is not known here"));
        }
        let breaks = first_stream && self.0.behaviour == StreamBehaviour::BreakFirst;
        let stalls = (first_stream && self.0.behaviour == StreamBehaviour::StallFirst)
            || self.0.behaviour == StreamBehaviour::Silent;
        let behaviour = self.0.behaviour;
        let peer = Arc::clone(&self.0);
        let mut requests = request.into_inner();
        let (replies, mut outgoing) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(request)) = requests.message().await {
                if breaks {
                    let _ = replies.send(Err(Status::data_loss("stand-in peer broke the stream")));
                    return;
                }
                if stalls {
                    continue;
                }
                if behaviour == StreamBehaviour::GroupMissing {
                    if peer.group_started.load(Ordering::SeqCst) {
                        continue;
                    }
                    let missing = group_missing(request.message.map_or(0, |m| m.group_id));
                    let _ = replies.send(Ok(ReplicateReply {
                        call_id: request.call_id,
                        outcome: Some(replicate_reply::Outcome::Failure(ReplicateFailure {
                            code: missing.code() as i32,
                            message: missing.message().to_owned(),
                        })),
                    }));
                    continue;
                }
                let delay = request
                    .message
                    .as_ref()
                    .and_then(|message| message.payload.first().copied())
                    .unwrap_or(0);
                let replies = replies.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
                    let _ = replies.send(Ok(echo(&request)));
                });
            }
        });
        Ok(Response::new(Box::pin(futures::stream::poll_fn(
            move |cx| outgoing.poll_recv(cx),
        ))))
    }

    async fn heartbeat(
        &self,
        _: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn vote(&self, _: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn pre_vote(
        &self,
        _: Request<PreVoteRequest>,
    ) -> Result<Response<PreVoteResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn install_snapshot(
        &self,
        _: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn identify(
        &self,
        _: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn group_status(
        &self,
        _: Request<GroupStatusRequest>,
    ) -> Result<Response<GroupStatusResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
}

/// Starts a stand-in peer on a free loopback port; it stops with the test's runtime.
async fn start_peer(behaviour: StreamBehaviour) -> anyhow::Result<(Arc<StandInPeer>, String)> {
    let peer = Arc::new(StandInPeer {
        behaviour,
        streams_opened: AtomicUsize::new(0),
        calls: AtomicUsize::new(0),
        group_started: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let server = tonic::transport::Server::builder()
        .add_service(RaftTransportServer::new(StandIn(Arc::clone(&peer))))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    Ok((peer, address))
}

fn message(group_id: u64, payload: Vec<u8>) -> RaftMessage {
    RaftMessage {
        group_id,
        payload: payload.into(),
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_replies_reach_their_own_callers_in_any_order() -> anyhow::Result<()> {
    let (peer, address) = start_peer(StreamBehaviour::Echo).await?;
    let pool = PeerPool::default();
    // The first message is answered last, the last first.
    let calls = (0..4u8).map(|i| {
        let pool = pool.clone();
        let address = address.clone();
        async move {
            let sent = message(u64::from(i), vec![60 - 20 * i, i]);
            let reply = pool.append_entries(&address, sent.clone(), TIMEOUT).await?;
            ensure!(reply == sent, "call {i} got {reply:?}, not its own reply");
            Ok(())
        }
    });
    for outcome in futures::future::join_all(calls).await {
        outcome?;
    }
    ensure!(
        peer.streams_opened.load(Ordering::SeqCst) == 1,
        "one stream for every call"
    );
    ensure!(peer.calls.load(Ordering::SeqCst) == 0, "no call of its own");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_on_a_broken_stream_goes_again_as_a_call_and_the_next_opens_another_stream(
) -> anyhow::Result<()> {
    let (peer, address) = start_peer(StreamBehaviour::BreakFirst).await?;
    let pool = PeerPool::default();
    let started = Instant::now();
    // Whether the peer got a message on a broken stream is unknown; AppendEntries may come
    // twice, so it is sent again as a call at once rather than reported unreachable (openraft
    // would back off for half a second).
    let sent = message(1, vec![0, 3]);
    ensure!(pool.append_entries(&address, sent.clone(), TIMEOUT).await? == sent);
    ensure!(
        started.elapsed() < Duration::from_secs(1),
        "the caller waited {:?}, as for its timeout, not for the break",
        started.elapsed()
    );
    ensure!(
        peer.calls.load(Ordering::SeqCst) == 1,
        "the message went again as a call"
    );
    let sent = message(2, vec![0, 7]);
    ensure!(pool.append_entries(&address, sent.clone(), TIMEOUT).await? == sent);
    ensure!(
        peer.streams_opened.load(Ordering::SeqCst) == 2,
        "a new stream after the break"
    );
    ensure!(
        peer.calls.load(Ordering::SeqCst) == 1,
        "the next message on the new stream"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_stream_gets_calls() -> anyhow::Result<()> {
    let (peer, address) = start_peer(StreamBehaviour::Missing).await?;
    let pool = PeerPool::default();
    for i in 0..3u8 {
        let sent = message(u64::from(i), vec![0, i]);
        ensure!(pool.append_entries(&address, sent.clone(), TIMEOUT).await? == sent);
    }
    ensure!(
        peer.calls.load(Ordering::SeqCst) == 3,
        "every message as a call"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_get_a_call_of_their_own() -> anyhow::Result<()> {
    let (peer, address) = start_peer(StreamBehaviour::Echo).await?;
    let pool = PeerPool::default();
    let large = message(1, vec![0; REPLICATE_STREAMED_MESSAGE_BYTES_MAX + 1]);
    ensure!(
        pool.append_entries(&address, large.clone(), TIMEOUT)
            .await?
            == large
    );
    let small = message(1, vec![0; REPLICATE_STREAMED_MESSAGE_BYTES_MAX]);
    ensure!(
        pool.append_entries(&address, small.clone(), TIMEOUT)
            .await?
            == small
    );
    ensure!(
        peer.calls.load(Ordering::SeqCst) == 1,
        "the large message as a call"
    );
    ensure!(
        peer.streams_opened.load(Ordering::SeqCst) == 1,
        "the small one on the stream"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_answers_nothing_is_replaced_without_failing_its_other_callers(
) -> anyhow::Result<()> {
    let (peer, address) = start_peer(StreamBehaviour::StallFirst).await?;
    let pool = PeerPool::default();
    // openraft gives up on a call at its own timeout, dropping the call.
    let patient_wait = Duration::from_millis(1500);
    let patient = {
        let pool = pool.clone();
        let address = address.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = pool
                .append_entries(&address, message(9, vec![0]), patient_wait)
                .await;
            (outcome, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let wait = Duration::from_millis(300);
    let first = tokio::time::timeout(
        wait,
        pool.append_entries(&address, message(1, vec![0]), wait),
    )
    .await;
    ensure!(
        !matches!(first, Ok(Ok(_))),
        "the stalled stream answered: {first:?}"
    );
    let sent = message(2, vec![0, 1]);
    ensure!(
        pool.append_entries(&address, sent.clone(), TIMEOUT).await? == sent,
        "the next call goes on a new stream and is answered"
    );
    ensure!(
        peer.streams_opened.load(Ordering::SeqCst) == 2,
        "a new stream after the stall"
    );
    // A slow disk on the peer looks like a stall too: the caller still waiting on the old
    // stream keeps its own timeout, as a call would.
    let (outcome, waited) = patient.await?;
    ensure!(
        matches!(&outcome, Err(status) if status.code() == tonic::Code::DeadlineExceeded),
        "the caller on the stalled stream should time out, got {outcome:?}"
    );
    ensure!(
        waited >= patient_wait - Duration::from_millis(50),
        "the caller on the stalled stream was failed after {waited:?}, before its own timeout"
    );
    Ok(())
}

/// openraft's network from node 1 to a target at `address`, for group 7.
async fn network_to(address: &str) -> GroupNetwork {
    let mut factory = GroupNetworkFactory::new(GroupId(7), 1, PeerPool::default());
    let target = NodeInfo {
        peer_addr: address.to_owned(),
        client_addr: address.to_owned(),
    };
    factory.new_client(2, &target).await
}

fn heartbeat() -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    }
}

/// openraft's replication to a target waits out the network's backoff after an unreachable
/// one before it sends again.
async fn first_backoff_after_an_append(address: &str) -> anyhow::Result<Duration> {
    let mut network = network_to(address).await;
    let outcome = send_heartbeat_as_openraft(&mut network, Duration::from_secs(2)).await;
    ensure!(
        matches!(outcome, Err(RPCError::Unreachable(_))),
        "the target should be unreachable for openraft, got {outcome:?}"
    );
    network
        .backoff()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the backoff ended at once"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_creating_the_group_is_asked_again_soon_and_a_dead_one_later() -> anyhow::Result<()>
{
    let (_peer, address) = start_peer(StreamBehaviour::GroupMissing).await?;
    let soon = first_backoff_after_an_append(&address).await?;
    ensure!(
        soon <= Duration::from_millis(50),
        "a target without the group yet is asked again after {soon:?}"
    );
    let nobody = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let dead_address = nobody.local_addr()?.to_string();
    drop(nobody);
    let later = first_backoff_after_an_append(&dead_address).await?;
    ensure!(
        later >= Duration::from_millis(500),
        "a dead target is asked again after {later:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_outlasts_its_timeout_is_a_timeout_for_openraft_not_an_unreachable_target(
) -> anyhow::Result<()> {
    let (_peer, address) = start_peer(StreamBehaviour::Silent).await?;
    let mut network = network_to(&address).await;
    // openraft retries after a timeout at once; after an unreachable target it backs off half
    // a second, which a slow disk on a follower must not cost every group.
    let outcome = network
        .append_entries(heartbeat(), RPCOption::new(Duration::from_millis(200)))
        .await;
    ensure!(
        matches!(outcome, Err(RPCError::Timeout(_))),
        "a silent target should time out, got {outcome:?}"
    );
    Ok(())
}

/// Sends a heartbeat as openraft's replication does: inside its own timer of the same length.
async fn send_heartbeat_as_openraft(
    network: &mut GroupNetwork,
    timeout: Duration,
) -> Result<(), RPCError<u64, NodeInfo, openraft::error::RaftError<u64>>> {
    let call = network.append_entries(heartbeat(), RPCOption::new(timeout));
    match tokio::time::timeout(timeout, call).await {
        Ok(outcome) => outcome.map(|_| ()),
        Err(_) => Err(RPCError::Timeout(openraft::error::Timeout {
            action: openraft::network::RPCTypes::AppendEntries,
            id: 1,
            target: 2,
            timeout,
        })),
    }
}

/// openraft keeps the backoff it took after the first unreachable send until a send succeeds,
/// and draws from it after every failure, timeouts included. A follower that has started the
/// group but answers slowly (its disk is busy) must not be left alone for half a second each
/// time: its leader would go silent towards it for longer than its election timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_only_answers_late_is_sent_to_again_at_once() -> anyhow::Result<()> {
    let (peer, address) = start_peer(StreamBehaviour::GroupMissing).await?;
    let mut network = network_to(&address).await;
    let outcome = send_heartbeat_as_openraft(&mut network, Duration::from_secs(2)).await;
    ensure!(
        matches!(outcome, Err(RPCError::Unreachable(_))),
        "a target without the group should be unreachable for openraft, got {outcome:?}"
    );
    let mut backoff = network.backoff();
    for round in 0..6 {
        let wait = backoff.next();
        ensure!(
            wait.is_some_and(|wait| wait > Duration::ZERO),
            "round {round}: a target without the group is waited for, got {wait:?}"
        );
    }

    peer.group_started.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let outcome = send_heartbeat_as_openraft(&mut network, Duration::from_millis(200)).await;
        ensure!(
            matches!(outcome, Err(RPCError::Timeout(_))),
            "a slow target's send should time out, got {outcome:?}"
        );
        let wait = backoff.next();
        ensure!(
            wait == Some(Duration::ZERO),
            "after a timeout the target is sent to again at once, not after {wait:?}"
        );
    }
    Ok(())
}
