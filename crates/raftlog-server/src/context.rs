//! `NodeContext`: what every service and background task of a node shares. It is the bottom
//! floor of the node: it reads the controller's metadata, the partition replicas and the
//! consumer-group coordinator, and nothing here imports the API or the assembly above it.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use raftlog_raft::RaftGroup;
use raftlog_raft::RaftHost;
use raftlog_storage::DiskSpace;
use raftlog_storage::NodeStorage;
use raftlog_types::ControllerCommand;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ClusterConfig;
use crate::consumer_group::ConsumerGroupCoordinator;
use crate::controller;
use crate::controller::ControllerOutcome;
use crate::controller::ControllerState;
use crate::controller::GroupOffsets;
use crate::error::ServerError;
use crate::partition::Partition;

/// The partition replicas running here, by Raft group.
pub(crate) type PartitionMap = Arc<RwLock<HashMap<GroupId, Arc<Partition>>>>;

/// Replicas the metadata places here that this node refused to start, by Raft group, each with
/// the storage error that names the damaged or missing file. At most one per group assigned here.
pub(crate) type RefusedReplicas = Arc<RwLock<HashMap<GroupId, String>>>;

/// Everything the services and background tasks of a node share.
pub(crate) struct NodeContext {
    /// The cluster configuration.
    pub config: ClusterConfig,
    /// The cluster's topic config defaults, resolved once (`ClusterConfig::topic_default_configs`).
    pub topic_defaults: BTreeMap<String, String>,
    /// This node.
    pub node_id: NodeId,
    /// The node's storage.
    pub storage: NodeStorage,
    /// The free space of the node's data dir: produces are refused below its minimum.
    pub disk_space: DiskSpace,
    /// Producer ids the controller issued to this node as its leader and not handed out yet
    /// (a block at a time; locked across the proposal of the next block).
    pub producer_ids: tokio::sync::Mutex<std::ops::Range<u64>>,
    /// The Raft groups running here.
    pub host: Arc<RaftHost>,
    /// The controller group.
    pub controller: RaftGroup,
    /// The latest metadata applied here.
    pub controller_state: watch::Receiver<Arc<ControllerState>>,
    /// Consumer groups' committed offsets as applied here.
    pub group_offsets: GroupOffsets,
    /// Partition replicas running here.
    pub partitions: PartitionMap,
    /// Partition replicas assigned here but refused (damaged or lost data): never started, and
    /// requests for them are answered with the reason.
    pub refused_replicas: RefusedReplicas,
    /// Client address of every roster node.
    pub client_addresses: Arc<HashMap<NodeId, String>>,
    /// Consumer groups, while this node leads the controller.
    pub consumer_groups: Arc<ConsumerGroupCoordinator>,
    /// Every task the node spawns after start-up (batchers, subscriptions, background loops):
    /// the node waits for all of them before it returns.
    pub tasks: TaskTracker,
    /// Cancelled when the node shuts down: every tracked task ends on it.
    pub shutdown: CancellationToken,
}

impl NodeContext {
    /// Proposes a metadata change to the controller group and waits for it to be applied.
    pub async fn propose_controller(
        &self,
        command: ControllerCommand,
    ) -> Result<ControllerOutcome, ServerError> {
        controller::propose(&self.controller, command, self.request_timeout()).await
    }

    /// How long a produce waits for a majority.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.limits.request_timeout_ms)
    }

    /// The replica of `group` running here.
    pub fn partition(&self, group: GroupId) -> Option<Arc<Partition>> {
        self.partitions.read().get(&group).cloned()
    }

    /// Why this node refused to start its replica of `group`, if it did.
    pub fn refused_replica(&self, group: GroupId) -> Option<String> {
        self.refused_replicas.read().get(&group).cloned()
    }

    /// The roster's peer address of `node`.
    pub fn peer_addr(&self, node: NodeId) -> Option<&str> {
        self.config.node(node).map(|n| n.peer_addr.as_str())
    }
}
