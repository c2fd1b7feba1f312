//! Node assembly: [`run`] starts one raftlog node and returns when its shutdown future has
//! completed (or start-up failed) and every task it started has stopped.
//!
//! Start-up order matters: the peer transport comes first (peers with new data dirs ask every
//! node who it knows), then the identity check, then storage, the controller group, the client
//! API, and the background tasks (partition replicas, controller learners, consumer-group
//! sessions). Every task is spawned on one [`TaskTracker`] and ends on one
//! [`CancellationToken`], so `run` can wait for all of them.
//!
//! - `listeners`: binding and listening on the two ports;
//! - `directory`: answers to the peers' node-level questions;
//! - `identity`: the node's identity file, the peer registry and the check of a new data dir;
//! - `client_api`: the client port's router (public services, health, reflection);
//! - `partition_replicas`: keeps the partition replicas here in line with the metadata.

mod client_api;
mod directory;
pub(crate) mod identity;
mod listeners;
mod partition_replicas;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::error::InitializeError;
use openraft::error::RaftError;
use raftlog_proto::internal::raft_transport_server::RaftTransportServer;
use raftlog_raft::PeerPool;
use raftlog_raft::RaftGroup;
use raftlog_raft::RaftHost;
use raftlog_raft::TransportService;
use raftlog_storage::DiskSpace;
use raftlog_storage::NodeStorage;
use raftlog_types::limits::GRPC_MESSAGE_BYTES_MAX;
use raftlog_types::limits::HTTP2_FRAME_BYTES_MAX;
use raftlog_types::limits::PEER_PENDING_RESET_STREAMS_MAX;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ClusterConfig;
use crate::config::NodeEntry;
use crate::consumer_group;
use crate::context::NodeContext;
use crate::context::PartitionMap;
use crate::controller;
use crate::controller::ControllerState;
use crate::controller::ControllerStateMachine;
use crate::controller::GroupOffsets;
use crate::error::NodeError;
use directory::NodeDirectory;
use identity::LoadedIdentity;
use identity::NodeIdentity;
use identity::PeerRegistry;
use listeners::listen;
use listeners::no_delay;
use listeners::outgoing_peer_address;
use listeners::reserve;

/// What a gRPC server task ends with.
type ServerTask = JoinHandle<Result<(), tonic::transport::Error>>;

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
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(stop_on(shutdown, stop.clone()));
    let pool = PeerPool::bound_to(outgoing_peer_address(&entry.peer_addr));
    let host = RaftHost::new(node_id, config.raft_timing(), pool);
    let node = Node {
        config,
        entry,
        host: Arc::clone(&host),
        tasks: tasks.clone(),
        stop: stop.clone(),
    };
    let outcome = node.start_and_serve().await;
    // Whatever ended the node, its shutdown future or a failure to start, nothing it started
    // outlives `run` (after a clean shutdown these find nothing left to stop).
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    host.shutdown().await;
    outcome
}

/// Cancels `stop` once `shutdown` completes; ends early if `stop` is cancelled first (a node
/// that failed to start).
async fn stop_on(shutdown: impl Future<Output = ()>, stop: CancellationToken) {
    tokio::select! {
        () = shutdown => stop.cancel(),
        () = stop.cancelled() => {}
    }
}

/// One node while it starts and serves.
struct Node {
    config: ClusterConfig,
    entry: NodeEntry,
    host: Arc<RaftHost>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Node {
    fn id(&self) -> NodeId {
        self.entry.id
    }

    /// Starts the node in order, serves until the node is told to stop, then stops every task
    /// and group and flushes the state store.
    async fn start_and_serve(&self) -> Result<(), NodeError> {
        let data_dir = self.prepare_data_dir()?;
        let loaded = identity::load_identity(&data_dir, &self.config.cluster_id, self.id())?;
        let registry = PeerRegistry::open(&data_dir, &self.config.cluster_id, self.id())?;
        self.host.start_timers();
        let partitions = PartitionMap::default();
        let (client_socket, peer_server) =
            self.start_peer_transport(registry, Arc::clone(&partitions))?;
        let Some(identity) = self.establish_identity(loaded, &data_dir).await? else {
            return Ok(());
        };
        identity::announce(
            &self.config,
            &identity,
            self.host.peers(),
            &self.tasks,
            &self.stop,
        );
        let storage = NodeStorage::open(&data_dir, self.config.log_config())
            .map_err(|e| NodeError::Storage(format!("{e:#}")))?;
        let (controller, controller_state, group_offsets) = self.start_controller(&storage).await?;
        let context = Arc::new(NodeContext {
            config: self.config.clone(),
            topic_defaults: self.config.topic_default_configs(),
            node_id: self.id(),
            storage,
            disk_space: DiskSpace::new(&data_dir, self.config.storage.min_free_bytes),
            producer_ids: tokio::sync::Mutex::new(0..0),
            host: Arc::clone(&self.host),
            controller,
            controller_state,
            group_offsets,
            partitions,
            refused_replicas: Arc::default(),
            client_addresses: Arc::new(self.client_addresses()),
            consumer_groups: Arc::default(),
            tasks: self.tasks.clone(),
            shutdown: self.stop.clone(),
        });
        let client_server = self.serve_clients(&context, client_socket).await?;
        tracing::info!(node = self.id(), client_addr = %self.entry.client_addr, peer_addr = %self.entry.peer_addr, "node started");
        self.start_background_tasks(&context);

        let failed = self.host.failed();
        tokio::select! {
            () = self.stop.cancelled() => {}
            () = failed.cancelled() => {}
        }
        let failure = self.host.failure();
        self.stop.cancel();
        tracing::info!(
            node = self.id(),
            failed = failure.is_some(),
            "shutting down"
        );
        self.tasks.close();
        self.tasks.wait().await;
        self.host.shutdown().await;
        if let Err(error) = context.storage.state_store().flush() {
            tracing::warn!(node = self.id(), %error, "could not flush the state store on shutdown");
        }
        for (what, server) in [
            ("client API", client_server),
            ("peer transport", peer_server),
        ] {
            if let Ok(Err(source)) = server.await {
                return Err(NodeError::Serve { what, source });
            }
        }
        if let Some(failure) = failure {
            return Err(NodeError::GroupFailed {
                group: failure.group.0,
                reason: failure.reason,
            });
        }
        tracing::info!(node = self.id(), "stopped");
        Ok(())
    }

    /// Creates the node's data dir if it is new.
    fn prepare_data_dir(&self) -> Result<PathBuf, NodeError> {
        let data_dir = self.config.node_data_dir(self.id());
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
        Ok(data_dir)
    }

    /// Binds both ports and serves the Raft transport on the peer port; returns the client
    /// port's socket, bound but not yet listening, and the peer server's task.
    ///
    /// Both ports are bound before the first connection to a peer: those leave from this
    /// node's address with a port the kernel picks, and it could pick the client port if that
    /// were still unbound (a test harness that takes free ports from the kernel hands out
    /// ports from that same range). The client port only listens once the node can serve, so
    /// until then clients are refused at once and try another node.
    fn start_peer_transport(
        &self,
        registry: PeerRegistry,
        partitions: PartitionMap,
    ) -> Result<(tokio::net::TcpSocket, ServerTask), NodeError> {
        let entry = &self.entry;
        let client_socket = reserve(&entry.client_addr, "client_addr")?;
        let peer_listener = listen(
            reserve(&entry.peer_addr, "peer_addr")?,
            &entry.peer_addr,
            "peer_addr",
        )?;
        let directory = Arc::new(NodeDirectory {
            peers: registry,
            host: Arc::clone(&self.host),
            partitions,
        });
        let transport = RaftTransportServer::new(TransportService::new(
            Arc::clone(&self.host),
            directory,
            self.stop.clone(),
        ))
        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        let stop = self.stop.clone();
        let server = self.tasks.spawn(
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .max_frame_size(HTTP2_FRAME_BYTES_MAX)
                .http2_max_pending_accept_reset_streams(Some(PEER_PENDING_RESET_STREAMS_MAX))
                .add_service(transport)
                .serve_with_incoming_shutdown(no_delay(peer_listener), async move {
                    stop.cancelled().await
                }),
        );
        Ok((client_socket, server))
    }

    /// The node's identity: the stored one, or for a new data dir a fresh one that no peer
    /// knows under another uuid, stored once checked. `None` if the node was stopped while it
    /// checked.
    async fn establish_identity(
        &self,
        loaded: LoadedIdentity,
        data_dir: &std::path::Path,
    ) -> Result<Option<NodeIdentity>, NodeError> {
        let identity = match loaded {
            LoadedIdentity::Existing(identity) => return Ok(Some(identity)),
            LoadedIdentity::Fresh(identity) => identity,
        };
        tracing::info!(node = self.id(), path = %data_dir.display(), "new data dir: checking with peers that this node id is unused");
        tokio::select! {
            checked = identity::check_with_peers(&self.config, &identity, self.host.peers()) => checked?,
            () = self.stop.cancelled() => return Ok(None),
        }
        identity::store_identity(data_dir, &identity)?;
        Ok(Some(identity))
    }

    /// Starts the controller group over its log, and on a voter of a new cluster initializes
    /// it with the configured voters.
    async fn start_controller(
        &self,
        storage: &NodeStorage,
    ) -> Result<
        (
            RaftGroup,
            watch::Receiver<Arc<ControllerState>>,
            GroupOffsets,
        ),
        NodeError,
    > {
        // Like a partition replica, a controller replica this node held is never recreated
        // empty: it could vote with an empty log and elect a controller leader that lacks
        // committed metadata. Without it the node cannot run, so it stops, naming the files.
        let (log, _, _) = storage
            .open_replica(GroupId::CONTROLLER)
            .map_err(|e| NodeError::Storage(format!("{e:#}")))?;
        let state_machine = ControllerStateMachine::open(storage.state_store(), log.durability())
            .map_err(|e| NodeError::Storage(format!("{e:#}")))?;
        let controller_state = state_machine.subscribe();
        let group_offsets = state_machine.offsets();
        let controller = self
            .host
            .start_group(GroupId::CONTROLLER, log, state_machine)
            .await
            .map_err(|e| NodeError::Controller(e.to_string()))?;
        let voters = self.config.controller_voters();
        if voters.contains(&self.id())
            && !controller
                .is_initialized()
                .await
                .map_err(|e| NodeError::Controller(e.to_string()))?
        {
            let members: BTreeMap<NodeId, NodeInfo> = voters
                .iter()
                .filter_map(|id| self.config.node(*id).map(|n| (*id, node_info(n))))
                .collect();
            match controller.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(error) => return Err(NodeError::Controller(error.to_string())),
            }
        }
        Ok((controller, controller_state, group_offsets))
    }

    /// Listens on the client port and serves the client API there.
    async fn serve_clients(
        &self,
        context: &Arc<NodeContext>,
        client_socket: tokio::net::TcpSocket,
    ) -> Result<ServerTask, NodeError> {
        let router = client_api::router(context).await?;
        let listener = listen(client_socket, &self.entry.client_addr, "client_addr")?;
        let stop = self.stop.clone();
        Ok(self.tasks.spawn(
            router.serve_with_incoming_shutdown(no_delay(listener), async move {
                stop.cancelled().await
            }),
        ))
    }

    /// The node's background loops, each ending on the node's stop.
    fn start_background_tasks(&self, context: &Arc<NodeContext>) {
        self.tasks.spawn(partition_replicas::run(
            Arc::clone(context),
            context.controller_state.clone(),
        ));
        self.tasks.spawn(controller::run_learners(
            context.controller.clone(),
            self.id(),
            self.config.nodes.clone(),
            self.stop.clone(),
        ));
        self.tasks.spawn(crate::partition::retention::run(
            Arc::clone(context),
            std::time::Duration::from_millis(self.config.storage.retention_check_interval_ms),
        ));
        self.tasks.spawn(consumer_group::run_sessions(
            Arc::clone(&context.consumer_groups),
            context.controller.clone(),
            self.id(),
            context.controller_state.clone(),
            self.stop.clone(),
        ));
    }

    /// Client address of every roster node.
    fn client_addresses(&self) -> HashMap<NodeId, String> {
        self.config
            .nodes
            .iter()
            .map(|n| (n.id, n.client_addr.clone()))
            .collect()
    }
}

/// A roster entry as Raft membership holds it.
pub(crate) fn node_info(entry: &NodeEntry) -> NodeInfo {
    NodeInfo {
        peer_addr: entry.peer_addr.clone(),
        client_addr: entry.client_addr.clone(),
    }
}
