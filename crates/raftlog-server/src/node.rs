//! Node assembly: `run(config, node_id, shutdown)` starts one raftlog node and returns when
//! `shutdown` completes and every task has stopped.
//!
//! Start-up order matters: the peer transport comes first (peers with new data dirs ask every
//! node who it knows), then the identity check, then storage, the controller group, the client
//! API, and the partition manager.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::InitializeError;
use openraft::error::RaftError;
use parking_lot::RwLock;
use raftlog_proto::internal::raft_transport_server::RaftTransportServer;
use raftlog_proto::internal::GroupStatus;
use raftlog_proto::internal::GroupStatusRequest;
use raftlog_proto::internal::GroupStatusResponse;
use raftlog_proto::internal::IdentifyRequest;
use raftlog_proto::internal::IdentifyResponse;
use raftlog_proto::v1::admin_server::AdminServer;
use raftlog_proto::v1::fetch_server::FetchServer;
use raftlog_proto::v1::groups_server::GroupsServer;
use raftlog_proto::v1::produce_server::ProduceServer;
use raftlog_raft::PeerDirectory;
use raftlog_raft::PeerPool;
use raftlog_raft::RaftGroup;
use raftlog_raft::RaftHost;
use raftlog_raft::TransportService;
use raftlog_storage::NodeStorage;
use raftlog_types::limits::GRPC_MESSAGE_BYTES_MAX;
use raftlog_types::limits::HTTP2_FRAME_BYTES_MAX;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::config::ClusterConfig;
use crate::controller::ControllerState;
use crate::controller::ControllerStateMachine;
use crate::identity;
use crate::identity::LoadedIdentity;
use crate::identity::PeerRegistry;
use crate::manager;
use crate::partition::Partition;
use crate::service::admin::AdminService;
use crate::service::fetch::FetchService;
use crate::service::groups::GroupsService;
use crate::service::produce::ProduceService;

/// How many requests a peer may cancel before the peer server has taken them up, before h2
/// closes the connection. h2's default of 20 guards public servers against "rapid reset"
/// floods. Between peers a cancelled request is ordinary: a vote or append times out on its
/// sender while this node is busy. When a node died, the survivors' hundreds of elections
/// tripped that limit, h2 dropped the connection with every request on it, and a second round
/// of elections pushed failover past 3 s. Peers are members of the cluster, so the bound is only
/// there to stay finite: several RPCs for each of many thousands of groups.
const PEER_PENDING_RESET_STREAMS_MAX: usize = 65_536;

/// Why a node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node id is not in the roster.
    #[error("node id {node} is not in the config's [[nodes]] (ids: {ids:?})")]
    UnknownNode {
        /// The id given.
        node: NodeId,
        /// The ids in the roster.
        ids: Vec<NodeId>,
    },
    /// The data dir cannot be used.
    #[error("data dir {}: {message}", path.display())]
    DataDir {
        /// The data dir.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The identity check refused the data dir.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// Storage could not be opened.
    #[error("storage: {0}")]
    Storage(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what})")]
    Bind {
        /// The address.
        addr: String,
        /// Which listener.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The controller group could not start.
    #[error("controller group: {0}")]
    Controller(String),
    /// A gRPC server failed.
    #[error("gRPC server ({what}): {source}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// Why.
        source: tonic::transport::Error,
    },
}

/// Everything the services and background tasks of a node share.
pub struct NodeContext {
    /// The cluster configuration.
    pub config: ClusterConfig,
    /// This node.
    pub node_id: NodeId,
    /// The node's storage.
    pub storage: NodeStorage,
    /// The Raft groups running here.
    pub host: Arc<RaftHost>,
    /// The controller group.
    pub controller: RaftGroup,
    /// The latest metadata applied here.
    pub controller_state: watch::Receiver<Arc<ControllerState>>,
    /// Partition replicas running here.
    pub partitions: Arc<RwLock<HashMap<GroupId, Arc<Partition>>>>,
    /// Client address of every roster node.
    pub client_addresses: Arc<HashMap<NodeId, String>>,
    /// Consumer groups, while this node leads the controller.
    pub groups: crate::groups::GroupCoordinator,
}

/// How the controller handled a proposed command.
pub enum ControllerOutcome {
    /// Applied here (this node leads the controller), with the state machine's response.
    Applied(raftlog_types::CommandResponse),
    /// Another node leads the controller (if known).
    Forward(Option<NodeId>),
}

impl NodeContext {
    /// Proposes a metadata change to the controller group and waits for it to be applied.
    pub async fn propose_controller(
        &self,
        command: raftlog_types::ControllerCommand,
    ) -> Result<ControllerOutcome, crate::error::ServerError> {
        use openraft::error::ClientWriteError;
        let write = self
            .controller
            .client_write(raftlog_types::Command::Controller(command));
        match tokio::time::timeout(self.request_timeout(), write).await {
            Err(_) => Err(crate::error::ServerError::Timeout {
                what: "the controller".into(),
                timeout_ms: self.config.limits.request_timeout_ms,
            }),
            Ok(Ok(response)) => Ok(ControllerOutcome::Applied(response.data)),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
                Ok(ControllerOutcome::Forward(forward.leader_id))
            }
            Ok(Err(error)) => Err(crate::error::ServerError::internal(&error)),
        }
    }

    /// How long a produce waits for a majority.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.limits.request_timeout_ms)
    }

    /// The replica of `group` running here.
    pub fn partition(&self, group: GroupId) -> Option<Arc<Partition>> {
        self.partitions.read().get(&group).cloned()
    }

    /// The roster's peer address of `node`.
    pub fn peer_addr(&self, node: NodeId) -> Option<&str> {
        self.config.node(node).map(|n| n.peer_addr.as_str())
    }
}

/// Answers the node-level questions of peers.
struct NodeDirectory {
    peers: PeerRegistry,
    host: Arc<RaftHost>,
    partitions: Arc<RwLock<HashMap<GroupId, Arc<Partition>>>>,
}

impl PeerDirectory for NodeDirectory {
    fn identify(&self, request: IdentifyRequest) -> Result<IdentifyResponse, Status> {
        self.peers.identify(&request)
    }

    fn group_status(&self, request: GroupStatusRequest) -> Result<GroupStatusResponse, Status> {
        let groups = request
            .group_ids
            .into_iter()
            .filter_map(|id| {
                let raft = self.host.group(GroupId(id))?;
                let metrics = raft.metrics().borrow().clone();
                let partition = self.partitions.read().get(&GroupId(id)).cloned();
                let (high_watermark, log_start_offset) = match partition {
                    Some(p) => {
                        // The start first: read after it, the high watermark is never below it.
                        let log_start_offset = p.log_start_offset().unwrap_or(0);
                        (p.view.high_watermark(), log_start_offset)
                    }
                    None => (0, 0),
                };
                Some(GroupStatus {
                    group_id: id,
                    leader_id: metrics.current_leader,
                    term: metrics.current_term,
                    high_watermark,
                    log_start_offset,
                })
            })
            .collect();
        Ok(GroupStatusResponse { groups })
    }
}

/// Accepted connections with TCP_NODELAY. tonic sets it only on listeners it binds itself;
/// without it, small responses wait for the peer's delayed ACK (40 ms on Linux).
fn no_delay(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The source address for connections to peers: the address this node listens on for them,
/// unless that is a wildcard (then the kernel chooses).
fn outgoing_peer_address(peer_addr: &str) -> Option<std::net::IpAddr> {
    let ip = peer_addr.parse::<SocketAddr>().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Binds `addr` (with `SO_REUSEADDR`, as `TcpListener::bind` does, so a restart is not refused
/// for the connections of the killed process) without listening yet.
fn reserve(addr: &str, what: &'static str) -> Result<tokio::net::TcpSocket, NodeError> {
    let error = |source| NodeError::Bind {
        addr: addr.to_owned(),
        what,
        source,
    };
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|e: std::net::AddrParseError| error(std::io::Error::other(e)))?;
    let socket = if parsed.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(error)?;
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(parsed).map_err(error)?;
    Ok(socket)
}

/// Starts listening on a socket from [`reserve`].
fn listen(
    socket: tokio::net::TcpSocket,
    addr: &str,
    what: &'static str,
) -> Result<tokio::net::TcpListener, NodeError> {
    socket
        .listen(LISTEN_BACKLOG)
        .map_err(|source| NodeError::Bind {
            addr: addr.to_owned(),
            what,
            source,
        })
}

/// Pending connections each listener queues; the default of `TcpListener::bind`.
const LISTEN_BACKLOG: u32 = 1024;

/// Runs node `node_id` of `config` until `shutdown` completes.
pub async fn run(
    config: ClusterConfig,
    node_id: NodeId,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let Some(entry) = config.node(node_id).cloned() else {
        return Err(NodeError::UnknownNode {
            node: node_id,
            ids: config.nodes.iter().map(|n| n.id).collect(),
        });
    };
    let cancel = CancellationToken::new();
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            shutdown.await;
            cancel.cancel();
        });
    }

    let data_dir = config.node_data_dir(node_id);
    std::fs::create_dir_all(&data_dir).map_err(|e| NodeError::DataDir {
        path: data_dir.clone(),
        message: e.to_string(),
    })?;
    if !data_dir.is_dir() {
        return Err(NodeError::DataDir {
            path: data_dir,
            message: "is not a directory".into(),
        });
    }
    let loaded = identity::load_identity(&data_dir, &config.cluster_id, node_id)?;
    let registry = PeerRegistry::open(&data_dir, &config.cluster_id, node_id)?;

    // The peer transport starts first: other new nodes need our answers to their checks.
    let pool = PeerPool::bound_to(outgoing_peer_address(&entry.peer_addr));
    let host = RaftHost::new(node_id, config.raft_timing(), pool.clone());
    host.start_timers();
    let partitions: Arc<RwLock<HashMap<GroupId, Arc<Partition>>>> = Arc::default();
    let directory = Arc::new(NodeDirectory {
        peers: registry,
        host: Arc::clone(&host),
        partitions: Arc::clone(&partitions),
    });
    // Both ports are bound before the first connection to a peer: those leave from this node's
    // address with a port the kernel picks, and it could pick the client port if that were
    // still unbound (a test harness that takes free ports from the kernel hands out ports from
    // that same range). The client port only listens once the node can serve, so until then
    // clients are refused at once and try another node.
    let client_socket = reserve(&entry.client_addr, "client_addr")?;
    let peer_listener = listen(
        reserve(&entry.peer_addr, "peer_addr")?,
        &entry.peer_addr,
        "peer_addr",
    )?;
    let transport = RaftTransportServer::new(TransportService::new(
        Arc::clone(&host),
        directory,
        cancel.clone(),
    ))
    .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
    .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    let peer_server = {
        let cancel = cancel.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .max_frame_size(HTTP2_FRAME_BYTES_MAX)
                .http2_max_pending_accept_reset_streams(Some(PEER_PENDING_RESET_STREAMS_MAX))
                .add_service(transport)
                .serve_with_incoming_shutdown(no_delay(peer_listener), async move {
                    cancel.cancelled().await
                }),
        )
    };

    let identity = match loaded {
        LoadedIdentity::Existing(identity) => identity,
        LoadedIdentity::Fresh(identity) => {
            tracing::info!(node = node_id, path = %data_dir.display(), "new data dir: checking with peers that this node id is unused");
            let checked = tokio::select! {
                checked = identity::check_with_peers(&config, &identity, &pool) => checked,
                _ = cancel.cancelled() => return Ok(()),
            };
            checked?;
            identity::store_identity(&data_dir, &identity)?;
            identity
        }
    };
    announce_identity(&config, &identity, &pool);

    let storage = NodeStorage::open(&data_dir, config.log_config())
        .map_err(|e| NodeError::Storage(format!("{e:#}")))?;
    let (controller_log, _, _) = storage
        .open_group(GroupId::CONTROLLER)
        .map_err(|e| NodeError::Storage(format!("{e:#}")))?;
    let controller_sm =
        ControllerStateMachine::open(storage.state_store(), controller_log.durability())
            .map_err(|e| NodeError::Storage(format!("{e:#}")))?;
    let controller_state = controller_sm.subscribe();
    let controller = host
        .start_group(GroupId::CONTROLLER, controller_log, controller_sm)
        .await
        .map_err(|e| NodeError::Controller(e.to_string()))?;
    let voters = config.controller_voters();
    if voters.contains(&node_id)
        && !controller
            .is_initialized()
            .await
            .map_err(|e| NodeError::Controller(e.to_string()))?
    {
        let members: std::collections::BTreeMap<NodeId, NodeInfo> = voters
            .iter()
            .filter_map(|id| {
                config.node(*id).map(|n| {
                    (
                        *id,
                        NodeInfo {
                            peer_addr: n.peer_addr.clone(),
                            client_addr: n.client_addr.clone(),
                        },
                    )
                })
            })
            .collect();
        match controller.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(error) => return Err(NodeError::Controller(error.to_string())),
        }
    }

    let client_addresses = Arc::new(
        config
            .nodes
            .iter()
            .map(|n| (n.id, n.client_addr.clone()))
            .collect::<HashMap<_, _>>(),
    );
    let context = Arc::new(NodeContext {
        config: config.clone(),
        node_id,
        storage,
        host: Arc::clone(&host),
        controller,
        controller_state: controller_state.clone(),
        partitions,
        client_addresses,
        groups: crate::groups::GroupCoordinator::default(),
    });

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AdminServer<AdminService>>()
        .await;
    health_reporter
        .set_serving::<ProduceServer<ProduceService>>()
        .await;
    health_reporter
        .set_serving::<FetchServer<FetchService>>()
        .await;
    health_reporter
        .set_serving::<GroupsServer<GroupsService>>()
        .await;
    // Reflection lists exactly what the client port serves: the public raftlog.v1 services,
    // health, and reflection itself, in v1 and in v1alpha (what Python's grpcio-reflection,
    // older grpcurl and Postman speak). The internal transport is served on the peer port only.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(raftlog_proto::V1_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_error = |e| NodeError::Controller(format!("reflection service: {e}"));
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
    let client_listener = listen(client_socket, &entry.client_addr, "client_addr")?;
    let client_server = {
        let cancel = cancel.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .max_frame_size(HTTP2_FRAME_BYTES_MAX)
                .add_service(health_service)
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .add_service(
                    AdminServer::new(AdminService::new(Arc::clone(&context)))
                        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX),
                )
                .add_service(
                    ProduceServer::new(ProduceService::new(Arc::clone(&context)))
                        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                        .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
                )
                .add_service(GroupsServer::new(GroupsService::new(Arc::clone(&context))))
                .add_service(
                    FetchServer::new(FetchService::new(Arc::clone(&context)))
                        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                        .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
                )
                .serve_with_incoming_shutdown(no_delay(client_listener), async move {
                    cancel.cancelled().await
                }),
        )
    };
    tracing::info!(node = node_id, client_addr = %entry.client_addr, peer_addr = %entry.peer_addr, "node started");

    let manager = tokio::spawn(manager::run_partition_manager(
        Arc::clone(&context),
        controller_state,
        cancel.clone(),
    ));
    let learners = tokio::spawn(manager::run_controller_learners(
        Arc::clone(&context),
        cancel.clone(),
    ));

    let group_sessions = tokio::spawn(manager::run_group_sessions(
        Arc::clone(&context),
        cancel.clone(),
    ));

    cancel.cancelled().await;
    tracing::info!(node = node_id, "shutting down");
    let _ = manager.await;
    let _ = learners.await;
    let _ = group_sessions.await;
    let client_result = client_server.await;
    let peer_result = peer_server.await;
    host.shutdown().await;
    if let Err(error) = context.storage.state_store().flush() {
        tracing::warn!(node = node_id, %error, "could not flush the state store on shutdown");
    }
    for (what, result) in [
        ("client API", client_result),
        ("peer transport", peer_result),
    ] {
        if let Ok(Err(source)) = result {
            return Err(NodeError::Serve { what, source });
        }
    }
    tracing::info!(node = node_id, "stopped");
    Ok(())
}

/// Tells every peer this node's uuid, so that they can recognise a wiped disk later.
fn announce_identity(config: &ClusterConfig, identity: &identity::NodeIdentity, pool: &PeerPool) {
    for peer in config.nodes.iter().filter(|n| n.id != identity.node_id) {
        let Ok(mut client) = pool.client(&peer.peer_addr) else {
            continue;
        };
        let request = IdentifyRequest {
            cluster_id: identity.cluster_id.clone(),
            node_id: identity.node_id,
            node_uuid: identity.node_uuid.clone(),
        };
        let peer_id = peer.id;
        tokio::spawn(async move {
            for _ in 0..60 {
                if client.identify(request.clone()).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            tracing::debug!(
                peer = peer_id,
                "peer never answered the identity announcement"
            );
        });
    }
}
