//! `raftlog.v1.Groups`: consumer group membership and committed offsets, served by the
//! controller leader (the coordinator). Membership calls and commits are answered only after a
//! majority confirmed the leadership, so a deposed coordinator cannot extend a session the new
//! one is waiting out.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use raftlog_proto::v1;
use raftlog_proto::v1::groups_server::Groups;
use raftlog_proto::v1::ErrorReason;
use raftlog_types::topic::validate_topic_name;
use raftlog_types::CommandResponse;
use raftlog_types::ControllerCommand;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::consumer_group::Join;
use crate::consumer_group::Strategy;
use crate::consumer_group::TopicPartition;
use crate::context::NodeContext;
use crate::controller::ControllerOutcome;
use crate::controller::ControllerState;
use crate::error::ServerError;

/// Session timeouts a member may ask for.
const SESSION_TIMEOUT_MS_MIN: u32 = 1000;
const SESSION_TIMEOUT_MS_MAX: u32 = 300_000;
const SESSION_TIMEOUT_MS_DEFAULT: u32 = 10_000;

/// The Groups service.
pub struct GroupsService {
    context: Arc<NodeContext>,
}

fn to_pb(assignment: Vec<TopicPartition>) -> Vec<v1::TopicPartition> {
    assignment
        .into_iter()
        .map(|(topic, partition)| v1::TopicPartition { topic, partition })
        .collect()
}

fn strategy_to_pb(strategy: Strategy) -> v1::AssignmentStrategy {
    match strategy {
        Strategy::Range => v1::AssignmentStrategy::Range,
        Strategy::RoundRobin => v1::AssignmentStrategy::RoundRobin,
    }
}

fn check_group_name(group: &str) -> Result<(), ServerError> {
    validate_topic_name(group).map_err(|e| ServerError::InvalidArgument {
        reason: ErrorReason::InvalidGroupName,
        field: "group".into(),
        message: e.to_string().replace("topic name", "group name"),
    })
}

impl GroupsService {
    /// A service over `context`.
    pub fn new(context: Arc<NodeContext>) -> Self {
        GroupsService { context }
    }

    /// Groups are coordinated by the controller leader; others name it.
    fn require_coordinator(&self) -> Result<(), ServerError> {
        let leader = self.context.controller.metrics().borrow().current_leader;
        if leader == Some(self.context.node_id) {
            return Ok(());
        }
        Err(self.not_coordinator(leader))
    }

    fn not_coordinator(&self, leader: Option<u64>) -> ServerError {
        ServerError::NotLeader {
            what: "the group coordinator (the controller)".into(),
            node: self.context.node_id,
            leader_id: leader,
            leader_address: leader.and_then(|id| self.context.client_addresses.get(&id).cloned()),
        }
    }

    /// Confirms with a majority that this node still leads the controller in the term it
    /// coordinates, after the request arrived: a member's session then cannot outlive a
    /// takeover by more than its timeout. Returns the metadata applied up to that point.
    async fn confirm_coordinator(&self) -> Result<Arc<ControllerState>, ServerError> {
        self.require_coordinator()?;
        let term = self.context.controller.metrics().borrow().current_term;
        let confirmed = tokio::time::timeout(
            self.context.request_timeout(),
            self.context.controller.ensure_linearizable(),
        )
        .await;
        let (leader, term_now) = {
            let metrics = self.context.controller.metrics();
            let metrics = metrics.borrow();
            (metrics.current_leader, metrics.current_term)
        };
        if !matches!(confirmed, Ok(Ok(_)))
            || leader != Some(self.context.node_id)
            || term_now != term
        {
            tracing::debug!(
                term,
                node = self.context.node_id,
                "coordinator leadership not confirmed"
            );
            return Err(self.not_coordinator(leader.filter(|id| *id != self.context.node_id)));
        }
        self.context.consumer_groups.lead(term);
        Ok(self.context.controller_state.borrow().clone())
    }

    /// Records `session_timeout_ms` as the group's longest before a member is admitted with
    /// it, so that a later coordinator knows how long to wait.
    async fn record_session(
        &self,
        group: &str,
        session_timeout_ms: u32,
        metadata: &ControllerState,
    ) -> Result<(), ServerError> {
        if metadata
            .group_session_timeouts_ms
            .get(group)
            .is_some_and(|longest| *longest >= session_timeout_ms)
        {
            return Ok(());
        }
        let command = ControllerCommand::RecordGroupSession {
            group: group.to_owned(),
            session_timeout_ms,
        };
        self.apply(command, CommandResponse::GroupSessionRecorded)
            .await
    }

    fn check_partitions(&self, offsets: &[(String, u32, u64)]) -> Result<(), ServerError> {
        let state = self.context.controller_state.borrow().clone();
        for (topic, partition, _) in offsets {
            let Some(meta) = state.topics.get(topic) else {
                return Err(ServerError::TopicNotFound {
                    topic: topic.clone(),
                });
            };
            if *partition as usize >= meta.partitions.len() {
                return Err(ServerError::PartitionNotFound {
                    topic: topic.clone(),
                    partition: *partition,
                    partitions: meta.partitions.len() as u32,
                });
            }
        }
        Ok(())
    }

    async fn commit(
        &self,
        group: &str,
        offsets: Vec<(String, u32, u64)>,
    ) -> Result<(), ServerError> {
        let command = ControllerCommand::CommitOffsets {
            group: group.to_owned(),
            offsets,
        };
        self.apply(command, CommandResponse::OffsetsCommitted).await
    }

    /// Proposes `command` to the controller and expects `expected` back.
    async fn apply(
        &self,
        command: ControllerCommand,
        expected: CommandResponse,
    ) -> Result<(), ServerError> {
        match self.context.propose_controller(command).await? {
            ControllerOutcome::Applied(response) if response == expected => Ok(()),
            ControllerOutcome::Applied(other) => Err(ServerError::Internal {
                message: format!("unexpected controller result {other:?}"),
            }),
            ControllerOutcome::Forward(leader) => Err(self.not_coordinator(leader)),
        }
    }

    fn committed(&self, group: &str) -> BTreeMap<(String, u32), u64> {
        self.context.group_offsets.of_group(group)
    }
}

#[tonic::async_trait]
impl Groups for GroupsService {
    #[tracing::instrument(skip_all, fields(group = %request.get_ref().group, node = self.context.node_id))]
    async fn join_group(
        &self,
        request: Request<v1::JoinGroupRequest>,
    ) -> Result<Response<v1::JoinGroupResponse>, Status> {
        self.require_coordinator()?;
        let request = request.into_inner();
        check_group_name(&request.group)?;
        if request.topics.is_empty() {
            return Err(ServerError::invalid("topics", "at least one topic is required").into());
        }
        for topic in &request.topics {
            if !crate::api::wait_for_topic(&self.context, topic).await {
                return Err(ServerError::TopicNotFound {
                    topic: topic.clone(),
                }
                .into());
            }
        }
        let session_timeout_ms = match request.session_timeout_ms {
            0 => SESSION_TIMEOUT_MS_DEFAULT,
            ms if (SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&ms) => ms,
            ms => {
                return Err(ServerError::invalid(
                    "session_timeout_ms",
                    format!(
                    "must be in {SESSION_TIMEOUT_MS_MIN} ..= {SESSION_TIMEOUT_MS_MAX}, got {ms}"
                ),
                )
                .into())
            }
        };
        let strategy = match v1::AssignmentStrategy::try_from(request.strategy) {
            Ok(v1::AssignmentStrategy::RoundRobin) => Strategy::RoundRobin,
            Ok(_) => Strategy::Range,
            Err(_) => {
                return Err(ServerError::invalid(
                    "strategy",
                    format!("unknown strategy {}", request.strategy),
                )
                .into())
            }
        };
        let metadata = self.confirm_coordinator().await?;
        self.record_session(&request.group, session_timeout_ms, &metadata)
            .await?;
        let member_id = (!request.member_id.is_empty()).then_some(request.member_id);
        let client_id = if request.client_id.is_empty() {
            "consumer".to_owned()
        } else {
            request.client_id
        };
        let join = Join {
            member_id,
            topics: request.topics,
            strategy,
            session_timeout: Duration::from_millis(u64::from(session_timeout_ms)),
            client_id,
            owned: request
                .owned
                .into_iter()
                .map(|p| (p.topic, p.partition))
                .collect(),
        };
        let view = self
            .context
            .consumer_groups
            .join(&request.group, join, &metadata);
        Ok(Response::new(v1::JoinGroupResponse {
            member_id: view.member_id,
            generation: view.generation,
            assignment: to_pb(view.assignment),
            heartbeat_interval_ms: (session_timeout_ms / 4).max(100),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let request = request.into_inner();
        let metadata = self.confirm_coordinator().await?;
        let view = self.context.consumer_groups.heartbeat(
            &request.group,
            &request.member_id,
            request.generation,
            &metadata,
        )?;
        Ok(Response::new(v1::HeartbeatResponse {
            generation: view.generation,
            assignment: to_pb(view.assignment),
        }))
    }

    async fn leave_group(
        &self,
        request: Request<v1::LeaveGroupRequest>,
    ) -> Result<Response<v1::LeaveGroupResponse>, Status> {
        self.require_coordinator()?;
        let request = request.into_inner();
        let metadata = self.context.controller_state.borrow().clone();
        self.context
            .consumer_groups
            .leave(&request.group, &request.member_id, &metadata);
        Ok(Response::new(v1::LeaveGroupResponse {}))
    }

    #[tracing::instrument(skip_all, fields(group = %request.get_ref().group, node = self.context.node_id))]
    async fn commit_offsets(
        &self,
        request: Request<v1::CommitOffsetsRequest>,
    ) -> Result<Response<v1::CommitOffsetsResponse>, Status> {
        let request = request.into_inner();
        check_group_name(&request.group)?;
        let metadata = self.confirm_coordinator().await?;
        let offsets: Vec<(String, u32, u64)> = request
            .offsets
            .into_iter()
            .map(|o| (o.topic, o.partition, o.offset))
            .collect();
        self.check_partitions(&offsets)?;
        let partitions: Vec<TopicPartition> =
            offsets.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        self.context.consumer_groups.check_commit(
            &request.group,
            &request.member_id,
            request.generation,
            &partitions,
            &metadata,
        )?;
        self.commit(&request.group, offsets).await?;
        Ok(Response::new(v1::CommitOffsetsResponse {}))
    }

    async fn fetch_offsets(
        &self,
        request: Request<v1::FetchOffsetsRequest>,
    ) -> Result<Response<v1::FetchOffsetsResponse>, Status> {
        self.require_coordinator()?;
        let request = request.into_inner();
        let committed = self.committed(&request.group);
        let wanted: BTreeSet<(String, u32)> = request
            .partitions
            .into_iter()
            .map(|p| (p.topic, p.partition))
            .collect();
        let offsets = committed
            .into_iter()
            .filter(|(key, _)| wanted.is_empty() || wanted.contains(key))
            .map(|((topic, partition), offset)| v1::PartitionOffset {
                topic,
                partition,
                offset,
            })
            .collect();
        Ok(Response::new(v1::FetchOffsetsResponse { offsets }))
    }

    async fn list_groups(
        &self,
        _request: Request<v1::ListGroupsRequest>,
    ) -> Result<Response<v1::ListGroupsResponse>, Status> {
        self.require_coordinator()?;
        let mut groups: BTreeMap<String, v1::GroupSummary> = BTreeMap::new();
        for name in self.context.group_offsets.groups() {
            groups.insert(
                name.clone(),
                v1::GroupSummary {
                    group: name.clone(),
                    members: 0,
                    generation: 0,
                },
            );
        }
        for (name, members, generation) in self.context.consumer_groups.summaries() {
            groups.insert(
                name.clone(),
                v1::GroupSummary {
                    group: name,
                    members: members as u32,
                    generation,
                },
            );
        }
        Ok(Response::new(v1::ListGroupsResponse {
            groups: groups.into_values().collect(),
        }))
    }

    async fn describe_group(
        &self,
        request: Request<v1::DescribeGroupRequest>,
    ) -> Result<Response<v1::DescribeGroupResponse>, Status> {
        self.require_coordinator()?;
        let group = request.into_inner().group;
        let info = self.context.consumer_groups.describe(&group);
        let committed = self.committed(&group);
        if info.is_none() && committed.is_empty() {
            return Err(ServerError::GroupNotFound { group }.into());
        }
        let mut topics: BTreeSet<String> = committed.keys().map(|(t, _)| t.clone()).collect();
        let mut owner: BTreeMap<(String, u32), String> = BTreeMap::new();
        if let Some(info) = &info {
            topics.extend(info.topics.iter().cloned());
            for member in &info.members {
                for key in &member.assignment {
                    owner.insert(key.clone(), member.member_id.clone());
                }
            }
        }
        let mut partitions = Vec::new();
        for topic in topics {
            let Some(meta) = self
                .context
                .controller_state
                .borrow()
                .topics
                .get(&topic)
                .cloned()
            else {
                continue;
            };
            let description = crate::api::describe_topic(&self.context, &meta).await;
            for p in description.partitions {
                let key = (topic.clone(), p.partition);
                let committed_offset = committed.get(&key).copied();
                // A committed offset below the log start counts from the start: the records
                // before it were deleted, and the group resumes there.
                let from =
                    committed_offset.map_or(p.log_start_offset, |c| c.max(p.log_start_offset));
                partitions.push(v1::PartitionLag {
                    topic: topic.clone(),
                    partition: p.partition,
                    committed_offset,
                    high_watermark: p.high_watermark,
                    lag: p.high_watermark.saturating_sub(from),
                    member_id: owner.get(&key).cloned().unwrap_or_default(),
                });
            }
        }
        let (generation, strategy, members) = match info {
            Some(info) => (
                info.generation,
                strategy_to_pb(info.strategy) as i32,
                info.members
                    .into_iter()
                    .map(|m| v1::MemberDescription {
                        member_id: m.member_id,
                        client_id: m.client_id,
                        assignment: to_pb(m.assignment),
                        last_heartbeat_ms_ago: m.since_heartbeat.as_millis() as u64,
                    })
                    .collect(),
            ),
            None => (0, v1::AssignmentStrategy::Range as i32, Vec::new()),
        };
        Ok(Response::new(v1::DescribeGroupResponse {
            group,
            generation,
            strategy,
            members,
            partitions,
        }))
    }

    #[tracing::instrument(skip_all, fields(group = %request.get_ref().group, node = self.context.node_id))]
    async fn reset_offsets(
        &self,
        request: Request<v1::ResetOffsetsRequest>,
    ) -> Result<Response<v1::ResetOffsetsResponse>, Status> {
        self.require_coordinator()?;
        let request = request.into_inner();
        check_group_name(&request.group)?;
        let metadata = self.confirm_coordinator().await?;
        if self
            .context
            .consumer_groups
            .is_active(&request.group, &metadata)
        {
            return Err(ServerError::Precondition {
                reason: ErrorReason::GroupActive,
                message: format!(
                    "group {:?} has active members; stop them before resetting its offsets",
                    request.group
                ),
            }
            .into());
        }
        let Some(meta) = self
            .context
            .controller_state
            .borrow()
            .topics
            .get(&request.topic)
            .cloned()
        else {
            return Err(ServerError::TopicNotFound {
                topic: request.topic,
            }
            .into());
        };
        if let Some(p) = request.partition {
            if p as usize >= meta.partitions.len() {
                return Err(ServerError::PartitionNotFound {
                    topic: request.topic,
                    partition: p,
                    partitions: meta.partitions.len() as u32,
                }
                .into());
            }
        }
        let to = v1::ResetTo::try_from(request.to).unwrap_or(v1::ResetTo::Unspecified);
        if to == v1::ResetTo::Unspecified {
            return Err(ServerError::invalid("to", "must be EARLIEST, LATEST or OFFSET").into());
        }
        let description = crate::api::describe_topic(&self.context, &meta).await;
        let mut offsets = Vec::new();
        for p in description
            .partitions
            .iter()
            .filter(|p| request.partition.is_none_or(|only| only == p.partition))
        {
            let offset = match to {
                v1::ResetTo::Earliest => p.log_start_offset,
                v1::ResetTo::Latest => p.high_watermark,
                _ => {
                    if request.offset > p.high_watermark {
                        return Err(ServerError::OffsetOutOfRange {
                            offset: request.offset,
                            log_start_offset: p.log_start_offset,
                            high_watermark: p.high_watermark,
                        }
                        .into());
                    }
                    request.offset
                }
            };
            offsets.push((request.topic.clone(), p.partition, offset));
        }
        self.commit(&request.group, offsets.clone()).await?;
        Ok(Response::new(v1::ResetOffsetsResponse {
            offsets: offsets
                .into_iter()
                .map(|(topic, partition, offset)| v1::PartitionOffset {
                    topic,
                    partition,
                    offset,
                })
                .collect(),
        }))
    }
}
