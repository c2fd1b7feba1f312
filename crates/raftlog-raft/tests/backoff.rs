//! How long openraft's replication leaves a target alone after a failed AppendEntries, through
//! `GroupNetwork::backoff`, against a stand-in peer: a target that is up but has not started
//! the group yet is asked again soon, a dead one after half a second.

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
use raftlog_raft::network::GroupNetworkFactory;
use raftlog_raft::PeerPool;
use raftlog_types::GroupId;
use raftlog_types::NodeInfo;
use raftlog_types::TypeConfig;
use tonic::Request;
use tonic::Response;
use tonic::Status;

/// A node that is up but runs no group yet, as each replica of a new partition is for a moment.
struct WithoutGroups;

#[tonic::async_trait]
impl RaftTransport for WithoutGroups {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
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
async fn start_peer_without_groups() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let server = tonic::transport::Server::builder()
        .add_service(RaftTransportServer::new(WithoutGroups))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    Ok(address)
}

/// openraft's replication to a target waits out the network's backoff after an unreachable
/// one before it sends again.
async fn first_backoff_after_an_append(address: &str) -> anyhow::Result<Duration> {
    let mut factory = GroupNetworkFactory::new(GroupId(7), PeerPool::default());
    let target = NodeInfo {
        peer_addr: address.to_owned(),
        client_addr: address.to_owned(),
    };
    let mut network = factory.new_client(2, &target).await;
    let heartbeat = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let outcome = network
        .append_entries(heartbeat, RPCOption::new(Duration::from_secs(2)))
        .await;
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
    let address = start_peer_without_groups().await?;
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
