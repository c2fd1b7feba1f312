//! `raftlog.v1.Admin`: topics, their configs, and the cluster description. Metadata changes go
//! through the controller group; a node that is not the controller leader forwards the call to
//! it (once). `DeleteRecords` is a write to one partition, answered by its leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raftlog_proto::internal::GroupStatusRequest;
use raftlog_proto::v1;
use raftlog_proto::v1::admin_client::AdminClient;
use raftlog_proto::v1::admin_server::Admin;
use raftlog_proto::v1::ErrorReason;
use raftlog_types::limits::TOPIC_PARTITIONS_MAX;
use raftlog_types::topic::validate_topic_name;
use raftlog_types::topic_config::validate_topic_config_key;
use raftlog_types::topic_config::validate_topic_configs;
use raftlog_types::topic_config::TopicConfigError;
use raftlog_types::CommandResponse;
use raftlog_types::ControllerCommand;
use raftlog_types::NodeId;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::api::status::answered_by_a_node;
use crate::context::NodeContext;
use crate::controller::assign_replicas;
use crate::controller::ControllerOutcome;
use crate::error::ServerError;

/// Metadata key marking a call already forwarded to the controller leader.
const FORWARDED_HEADER: &str = "raftlog-forwarded";

/// How long a peer may take to report group status for a description.
const STATUS_TIMEOUT: Duration = Duration::from_millis(800);

/// The Admin service.
pub struct AdminService {
    context: Arc<NodeContext>,
}

impl AdminService {
    /// A service over `context`.
    pub fn new(context: Arc<NodeContext>) -> Self {
        AdminService { context }
    }

    fn controller_not_leader(&self, leader_id: Option<NodeId>) -> ServerError {
        ServerError::NotLeader {
            what: "the controller".into(),
            node: self.context.node_id,
            leader_id,
            leader_address: leader_id
                .and_then(|id| self.context.client_addresses.get(&id).cloned()),
        }
    }

    async fn forward_client(
        &self,
        leader_id: Option<NodeId>,
        forwarded: bool,
    ) -> Result<AdminClient<tonic::transport::Channel>, ServerError> {
        let Some(address) = leader_id
            .filter(|_| !forwarded)
            .and_then(|id| self.context.client_addresses.get(&id).cloned())
        else {
            return Err(self.controller_not_leader(leader_id));
        };
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| ServerError::Internal {
                message: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await
            .map_err(|_| self.controller_not_leader(leader_id))?;
        Ok(AdminClient::new(channel))
    }

    /// Sends a call on to the controller leader, once: a call that was already forwarded is
    /// answered with NOT_LEADER instead, so two nodes with different views cannot loop.
    async fn forward<Req, Resp, F, Fut>(
        &self,
        leader: Option<NodeId>,
        forwarded: bool,
        request: Req,
        call: F,
    ) -> Result<Resp, Status>
    where
        F: FnOnce(AdminClient<tonic::transport::Channel>, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
    {
        let client = self.forward_client(leader, forwarded).await?;
        let mut forwarded_request = Request::new(request);
        forwarded_request.metadata_mut().insert(
            FORWARDED_HEADER,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        match call(client, forwarded_request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) if answered_by_a_node(&status) => Err(status),
            // The connection to the leader failed, not the call: the client is sent there.
            Err(_) => Err(self.controller_not_leader(leader).into()),
        }
    }

    async fn create_topic(
        &self,
        request: v1::CreateTopicRequest,
        forwarded: bool,
    ) -> Result<v1::CreateTopicResponse, Status> {
        validate_topic_name(&request.name).map_err(|e| ServerError::InvalidArgument {
            reason: ErrorReason::InvalidTopicName,
            field: "name".into(),
            message: e.to_string(),
        })?;
        if request.partitions == 0 || request.partitions > TOPIC_PARTITIONS_MAX {
            return Err(ServerError::invalid(
                "partitions",
                format!(
                    "must be in 1 ..= {TOPIC_PARTITIONS_MAX}, got {}",
                    request.partitions
                ),
            )
            .into());
        }
        let nodes: Vec<NodeId> = self.context.config.nodes.iter().map(|n| n.id).collect();
        if request.replicas == 0 || request.replicas as usize > nodes.len() {
            return Err(ServerError::InvalidArgument {
                reason: ErrorReason::NotEnoughNodes,
                field: "replicas".into(),
                message: format!(
                    "must be in 1 ..= {} (the number of nodes), got {}",
                    nodes.len(),
                    request.replicas
                ),
            }
            .into());
        }
        if self
            .context
            .controller_state
            .borrow()
            .topics
            .contains_key(&request.name)
        {
            return Err(ServerError::TopicExists {
                topic: request.name,
            }
            .into());
        }
        let configs = validate_configs(&request.configs)?;
        let offset = request.name.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        let command = ControllerCommand::CreateTopicWithConfigs {
            name: request.name.clone(),
            assignments: assign_replicas(&nodes, request.partitions, request.replicas, offset),
            created_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            configs,
        };
        match self.context.propose_controller(command).await? {
            ControllerOutcome::Applied(CommandResponse::TopicCreated { .. }) => {
                // Tell the followers about the commit now rather than at the next heartbeat.
                let _ = self.context.controller.trigger().heartbeat().await;
                let topic = self
                    .context
                    .controller_state
                    .borrow()
                    .topics
                    .get(&request.name)
                    .cloned();
                let topic = topic.ok_or_else(|| ServerError::Internal {
                    message: "created topic is missing from the metadata".into(),
                })?;
                Ok(v1::CreateTopicResponse {
                    topic: Some(crate::api::describe_topic(&self.context, &topic).await),
                })
            }
            ControllerOutcome::Applied(CommandResponse::Rejected { reason, .. })
                if reason == ErrorReason::TopicExists.as_str_name() =>
            {
                Err(ServerError::TopicExists {
                    topic: request.name,
                }
                .into())
            }
            ControllerOutcome::Applied(other) => Err(ServerError::Internal {
                message: format!("unexpected controller result {other:?}"),
            }
            .into()),
            ControllerOutcome::Forward(leader) => {
                self.forward(leader, forwarded, request, |mut c, r| async move {
                    c.create_topic(r).await
                })
                .await
            }
        }
    }

    async fn delete_topic(
        &self,
        request: v1::DeleteTopicRequest,
        forwarded: bool,
    ) -> Result<v1::DeleteTopicResponse, Status> {
        match self
            .context
            .propose_controller(ControllerCommand::DeleteTopic {
                name: request.name.clone(),
            })
            .await?
        {
            ControllerOutcome::Applied(CommandResponse::TopicDeleted) => {
                Ok(v1::DeleteTopicResponse {})
            }
            ControllerOutcome::Applied(CommandResponse::Rejected { .. }) => {
                Err(ServerError::TopicNotFound {
                    topic: request.name,
                }
                .into())
            }
            ControllerOutcome::Applied(other) => Err(ServerError::Internal {
                message: format!("unexpected controller result {other:?}"),
            }
            .into()),
            ControllerOutcome::Forward(leader) => {
                self.forward(leader, forwarded, request, |mut c, r| async move {
                    c.delete_topic(r).await
                })
                .await
            }
        }
    }
}

impl AdminService {
    async fn alter_topic_configs(
        &self,
        request: v1::AlterTopicConfigsRequest,
        forwarded: bool,
    ) -> Result<v1::AlterTopicConfigsResponse, Status> {
        let set = validate_configs(&request.set)?;
        for (i, key) in request.delete.iter().enumerate() {
            validate_topic_config_key(key)
                .map_err(|e| config_error(&format!("delete[{i}]"), &e))?;
            if set.contains_key(key) {
                return Err(ServerError::InvalidArgument {
                    reason: ErrorReason::InvalidConfig,
                    field: format!("delete[{i}]"),
                    message: format!("`{key}` is both set and deleted"),
                }
                .into());
            }
        }
        let command = ControllerCommand::AlterTopicConfigs {
            name: request.name.clone(),
            set,
            delete: request.delete.clone(),
        };
        match self.context.propose_controller(command).await? {
            ControllerOutcome::Applied(CommandResponse::TopicConfigsAltered) => {
                let _ = self.context.controller.trigger().heartbeat().await;
                let topic = self
                    .context
                    .controller_state
                    .borrow()
                    .topics
                    .get(&request.name)
                    .cloned();
                let Some(topic) = topic else {
                    return Err(ServerError::TopicNotFound {
                        topic: request.name,
                    }
                    .into());
                };
                Ok(v1::AlterTopicConfigsResponse {
                    configs: crate::api::topic_configs(&self.context, &topic),
                })
            }
            ControllerOutcome::Applied(CommandResponse::Rejected { .. }) => {
                Err(ServerError::TopicNotFound {
                    topic: request.name,
                }
                .into())
            }
            ControllerOutcome::Applied(other) => Err(ServerError::Internal {
                message: format!("unexpected controller result {other:?}"),
            }
            .into()),
            ControllerOutcome::Forward(leader) => {
                self.forward(leader, forwarded, request, |mut c, r| async move {
                    c.alter_topic_configs(r).await
                })
                .await
            }
        }
    }
}

/// Validates a request's configs (keys in order, so the first bad one is named) into their
/// canonical values.
fn validate_configs(
    configs: &std::collections::HashMap<String, String>,
) -> Result<BTreeMap<String, String>, ServerError> {
    let mut sorted: Vec<(&String, &String)> = configs.iter().collect();
    sorted.sort();
    validate_topic_configs(sorted.into_iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| config_error(&format!("configs[{}]", e.key()), &e))
}

fn config_error(field: &str, error: &TopicConfigError) -> ServerError {
    ServerError::InvalidArgument {
        reason: ErrorReason::InvalidConfig,
        field: field.to_owned(),
        message: error.to_string(),
    }
}

fn is_forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_HEADER)
}

impl AdminService {
    /// `DeleteRecords` on the partition's leader: checked against the high watermark here,
    /// then proposed as `AdvanceLogStart`, which every replica applies.
    async fn delete_records(
        &self,
        request: v1::DeleteRecordsRequest,
    ) -> Result<v1::DeleteRecordsResponse, ServerError> {
        let resolved =
            crate::api::resolve(&self.context, &request.topic, request.partition).await?;
        let partition = crate::api::local_replica(&self.context, &resolved)?;
        // Up to the high watermark, as a leader caught up with its term knows it (elsewhere
        // the offset may merely not be here yet: OFFSET_NOT_AVAILABLE, retried). One below the
        // log start is no error: those records are gone already.
        if request.before_offset >= partition.log_start_offset()? {
            partition.check_offset(request.before_offset)?;
        }
        let log_start_offset = crate::partition::retention::advance_log_start(
            &self.context,
            &partition,
            request.before_offset,
        )
        .await?;
        tracing::info!(group = partition.group.0, node = self.context.node_id, topic = %request.topic, partition = request.partition, log_start_offset, "records deleted on request");
        Ok(v1::DeleteRecordsResponse {
            log_start_offset,
            high_watermark: partition.view.high_watermark(),
        })
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    #[tracing::instrument(skip_all, fields(topic = %request.get_ref().topic, partition = request.get_ref().partition, node = self.context.node_id))]
    async fn delete_records(
        &self,
        request: Request<v1::DeleteRecordsRequest>,
    ) -> Result<Response<v1::DeleteRecordsResponse>, Status> {
        let response = AdminService::delete_records(self, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(topic = %request.get_ref().name, node = self.context.node_id))]
    async fn create_topic(
        &self,
        request: Request<v1::CreateTopicRequest>,
    ) -> Result<Response<v1::CreateTopicResponse>, Status> {
        let forwarded = is_forwarded(&request);
        AdminService::create_topic(self, request.into_inner(), forwarded)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(topic = %request.get_ref().name, node = self.context.node_id))]
    async fn delete_topic(
        &self,
        request: Request<v1::DeleteTopicRequest>,
    ) -> Result<Response<v1::DeleteTopicResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let name = request.get_ref().name.clone();
        if !crate::api::wait_for_topic(&self.context, &name).await {
            return Err(ServerError::TopicNotFound { topic: name }.into());
        }
        AdminService::delete_topic(self, request.into_inner(), forwarded)
            .await
            .map(Response::new)
    }

    async fn list_topics(
        &self,
        _request: Request<v1::ListTopicsRequest>,
    ) -> Result<Response<v1::ListTopicsResponse>, Status> {
        let state = self.context.controller_state.borrow().clone();
        let topics = state
            .topics
            .values()
            .map(|t| v1::TopicSummary {
                name: t.name.clone(),
                partitions: t.partitions.len() as u32,
                replicas: t.replicas,
            })
            .collect();
        Ok(Response::new(v1::ListTopicsResponse { topics }))
    }

    #[tracing::instrument(skip_all, fields(topic = %request.get_ref().name, node = self.context.node_id))]
    async fn describe_topic(
        &self,
        request: Request<v1::DescribeTopicRequest>,
    ) -> Result<Response<v1::DescribeTopicResponse>, Status> {
        let name = request.into_inner().name;
        crate::api::wait_for_topic(&self.context, &name).await;
        let topic = self
            .context
            .controller_state
            .borrow()
            .topics
            .get(&name)
            .cloned();
        let Some(topic) = topic else {
            return Err(ServerError::TopicNotFound { topic: name }.into());
        };
        Ok(Response::new(v1::DescribeTopicResponse {
            topic: Some(crate::api::describe_topic(&self.context, &topic).await),
        }))
    }

    #[tracing::instrument(skip_all, fields(topic = %request.get_ref().name, node = self.context.node_id))]
    async fn describe_topic_configs(
        &self,
        request: Request<v1::DescribeTopicConfigsRequest>,
    ) -> Result<Response<v1::DescribeTopicConfigsResponse>, Status> {
        let name = request.into_inner().name;
        crate::api::wait_for_topic(&self.context, &name).await;
        let topic = self
            .context
            .controller_state
            .borrow()
            .topics
            .get(&name)
            .cloned();
        let Some(topic) = topic else {
            return Err(ServerError::TopicNotFound { topic: name }.into());
        };
        Ok(Response::new(v1::DescribeTopicConfigsResponse {
            configs: crate::api::topic_configs(&self.context, &topic),
        }))
    }

    #[tracing::instrument(skip_all, fields(topic = %request.get_ref().name, node = self.context.node_id))]
    async fn alter_topic_configs(
        &self,
        request: Request<v1::AlterTopicConfigsRequest>,
    ) -> Result<Response<v1::AlterTopicConfigsResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let name = request.get_ref().name.clone();
        if !crate::api::wait_for_topic(&self.context, &name).await {
            return Err(ServerError::TopicNotFound { topic: name }.into());
        }
        AdminService::alter_topic_configs(self, request.into_inner(), forwarded)
            .await
            .map(Response::new)
    }

    async fn describe_cluster(
        &self,
        _request: Request<v1::DescribeClusterRequest>,
    ) -> Result<Response<v1::DescribeClusterResponse>, Status> {
        let voters = self.context.config.controller_voters();
        let controller_leader_id = self.context.controller.metrics().borrow().current_leader;
        let mut probes = Vec::new();
        for node in &self.context.config.nodes {
            let id = node.id;
            let own = id == self.context.node_id;
            let pool = self.context.host.peers().clone();
            let peer_addr = node.peer_addr.clone();
            probes.push(async move {
                if own {
                    return true;
                }
                let Ok(mut client) = pool.client(&peer_addr) else {
                    return false;
                };
                let mut request = Request::new(GroupStatusRequest {
                    group_ids: Vec::new(),
                });
                request.set_timeout(STATUS_TIMEOUT);
                matches!(
                    tokio::time::timeout(STATUS_TIMEOUT, client.group_status(request)).await,
                    Ok(Ok(_))
                )
            });
        }
        let reachable = futures::future::join_all(probes).await;
        let nodes = self
            .context
            .config
            .nodes
            .iter()
            .zip(reachable)
            .map(|(node, reachable)| v1::NodeDescription {
                id: node.id,
                client_address: node.client_addr.clone(),
                peer_address: node.peer_addr.clone(),
                controller_voter: voters.contains(&node.id),
                reachable,
            })
            .collect();
        Ok(Response::new(v1::DescribeClusterResponse {
            cluster_id: self.context.config.cluster_id.clone(),
            nodes,
            controller_leader_id,
            answered_by: self.context.node_id,
        }))
    }
}
