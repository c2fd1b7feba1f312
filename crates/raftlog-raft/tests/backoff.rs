//! How long openraft's replication leaves a target alone after a failed AppendEntries, through
//! `GroupNetwork::backoff`, against a stand-in peer: a target that is up but has not started
//! the group yet is asked again soon, a dead one after half a second, and one that was only
//! slow to answer at once.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use openraft::error::RPCError;
use openraft::network::RPCOption;
use openraft::network::RaftNetwork;
use openraft::network::RaftNetworkFactory;
use openraft::raft::AppendEntriesRequest;
use openraft::Vote;
use raftlog_proto::internal::raft_transport_server::RaftTransport;
use raftlog_proto::internal::raft_transport_server::RaftTransportServer;
use raftlog_proto::internal::GroupStatusRequest;
use raftlog_proto::internal::GroupStatusResponse;
use raftlog_proto::internal::HeartbeatRequest;
use raftlog_proto::internal::HeartbeatResponse;
use raftlog_proto::internal::IdentifyRequest;
use raftlog_proto::internal::IdentifyResponse;
use raftlog_proto::internal::RaftMessage;
use raftlog_raft::network::GroupNetwork;
use raftlog_raft::network::GroupNetworkFactory;
use raftlog_raft::PeerPool;
use raftlog_types::GroupId;
use raftlog_types::NodeInfo;
use raftlog_types::TypeConfig;
use tonic::Request;
use tonic::Response;
use tonic::Status;

/// A node that is up but runs no group yet, as each replica of a new partition is for a moment;
/// once it has started the group, it answers no AppendEntries in time, as a follower whose
/// disk is busy does.
#[derive(Clone, Default)]
struct StandIn {
    group_started: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl RaftTransport for StandIn {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        if self.group_started.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Err(Status::not_found(format!(
            "group {} is not running on the stand-in peer",
            request.into_inner().group_id
        )))
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

/// Starts the stand-in peer on a free loopback port; it stops with the test's runtime.
async fn start_stand_in(stand_in: StandIn) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let server = tonic::transport::Server::builder()
        .add_service(RaftTransportServer::new(stand_in))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    Ok(address)
}

async fn network_to(address: &str) -> GroupNetwork {
    let mut factory = GroupNetworkFactory::new(GroupId(7), 1, PeerPool::default());
    let target = NodeInfo {
        peer_addr: address.to_owned(),
        client_addr: address.to_owned(),
    };
    factory.new_client(2, &target).await
}

/// Sends a heartbeat as openraft's replication does: inside its own timer of the same length.
async fn send_heartbeat(
    network: &mut GroupNetwork,
    timeout: Duration,
) -> Result<(), RPCError<u64, NodeInfo, openraft::error::RaftError<u64>>> {
    let heartbeat = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let call = network.append_entries(heartbeat, RPCOption::new(timeout));
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

/// openraft's replication to a target waits out the network's backoff after an unreachable
/// one before it sends again.
async fn first_backoff_after_an_append(address: &str) -> anyhow::Result<Duration> {
    let mut network = network_to(address).await;
    let outcome = send_heartbeat(&mut network, Duration::from_secs(2)).await;
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
    let address = start_stand_in(StandIn::default()).await?;
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

/// openraft keeps the backoff it took after the first unreachable send until a send succeeds,
/// and draws from it after every failure, timeouts included. A follower that has started the
/// group but answers slowly (its disk is busy) must not be left alone for half a second each
/// time: its leader would go silent towards it for longer than its election timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_only_answers_late_is_sent_to_again_at_once() -> anyhow::Result<()> {
    let stand_in = StandIn::default();
    let address = start_stand_in(stand_in.clone()).await?;
    let mut network = network_to(&address).await;
    let outcome = send_heartbeat(&mut network, Duration::from_secs(2)).await;
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

    stand_in.group_started.store(true, Ordering::Relaxed);
    for _ in 0..3 {
        let outcome = send_heartbeat(&mut network, Duration::from_millis(200)).await;
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

/// tonic ends a call that outlasts its `grpc-timeout` itself, as `Cancelled`, often in the same
/// millisecond as openraft's timer around it; openraft must see a timeout (it sends again at
/// once), not an unreachable target (it backs off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_outlasts_its_timeout_is_a_timeout_for_openraft() -> anyhow::Result<()> {
    let stand_in = StandIn::default();
    stand_in.group_started.store(true, Ordering::Relaxed);
    let address = start_stand_in(stand_in).await?;
    let mut network = network_to(&address).await;
    let heartbeat = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        network.append_entries(heartbeat, RPCOption::new(Duration::from_millis(200))),
    )
    .await?;
    ensure!(
        matches!(outcome, Err(RPCError::Timeout(_))),
        "a call past its timeout should be a timeout for openraft, got {outcome:?}"
    );
    Ok(())
}
