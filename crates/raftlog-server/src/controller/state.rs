//! The cluster metadata the controller group replicates: topics, the replica assignment of
//! every partition, producer ids and consumer groups' committed offsets, and how each
//! controller command changes it.

use std::collections::BTreeMap;

use raftlog_proto::v1::ErrorReason;
use raftlog_types::CommandResponse;
use raftlog_types::ControllerCommand;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use serde::Deserialize;
use serde::Serialize;

/// One partition's placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// The Raft group replicating it.
    pub group_id: GroupId,
    /// Nodes holding replicas; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
}

/// One topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Partitions in order.
    pub partitions: Vec<PartitionMeta>,
    /// Replicas per partition.
    pub replicas: u32,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Configs set on the topic (validated, canonical); unset keys take the cluster's
    /// defaults (`raftlog_types::topic_config`).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// The cluster metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMeta>,
    /// The next group id to allocate; group ids are never reused.
    pub next_group_id: u64,
    /// The last producer id issued; ids are never reused.
    #[serde(default)]
    pub last_producer_id: u64,
    /// Committed positions as metadata written before they got keys of their own
    /// (`offsets.rs`): read once, when such metadata is opened or installed, and never written.
    #[serde(rename = "group_offsets", default, skip_serializing)]
    pub legacy_group_offsets: BTreeMap<String, BTreeMap<String, BTreeMap<u32, u64>>>,
    /// Per consumer group, the longest session timeout (ms) any member was granted: how long a
    /// new coordinator must assume the previous coordinator's members may still be consuming.
    #[serde(default)]
    pub group_session_timeouts_ms: BTreeMap<String, u32>,
}

impl ControllerState {
    pub(super) fn apply(&mut self, command: ControllerCommand) -> CommandResponse {
        match command {
            ControllerCommand::CreateTopic {
                name,
                assignments,
                created_at_ms,
            } => self.create_topic(name, assignments, created_at_ms, BTreeMap::new()),
            ControllerCommand::CreateTopicWithConfigs {
                name,
                assignments,
                created_at_ms,
                configs,
            } => self.create_topic(name, assignments, created_at_ms, configs),
            ControllerCommand::AlterTopicConfigs { name, set, delete } => {
                let Some(topic) = self.topics.get_mut(&name) else {
                    return CommandResponse::Rejected {
                        reason: ErrorReason::TopicNotFound.as_str_name().into(),
                        message: format!("topic {name:?} does not exist"),
                    };
                };
                for key in delete {
                    topic.configs.remove(&key);
                }
                topic.configs.extend(set);
                CommandResponse::TopicConfigsAltered
            }
            ControllerCommand::AllocateProducerId => {
                self.last_producer_id += 1;
                CommandResponse::ProducerIdAllocated {
                    producer_id: self.last_producer_id,
                }
            }
            ControllerCommand::AllocateProducerIdBlock { count } => {
                let first = self.last_producer_id + 1;
                self.last_producer_id = self.last_producer_id.saturating_add(count);
                CommandResponse::ProducerIdBlockAllocated { first, count }
            }
            // The state machine keeps committed offsets apart (`offsets.rs`).
            ControllerCommand::CommitOffsets { .. } => CommandResponse::OffsetsCommitted,
            ControllerCommand::RecordGroupSession {
                group,
                session_timeout_ms,
            } => {
                let longest = self.group_session_timeouts_ms.entry(group).or_default();
                *longest = (*longest).max(session_timeout_ms);
                CommandResponse::GroupSessionRecorded
            }
            ControllerCommand::DeleteTopic { name } => match self.topics.remove(&name) {
                // The state machine forgets the topic's committed offsets too.
                Some(_) => CommandResponse::TopicDeleted,
                None => CommandResponse::Rejected {
                    reason: ErrorReason::TopicNotFound.as_str_name().into(),
                    message: format!("topic {name:?} does not exist"),
                },
            },
        }
    }

    /// Adds topic `name` with partition `i` on `assignments[i]`, unless it exists.
    fn create_topic(
        &mut self,
        name: String,
        assignments: Vec<Vec<NodeId>>,
        created_at_ms: i64,
        configs: BTreeMap<String, String>,
    ) -> CommandResponse {
        if self.topics.contains_key(&name) {
            return CommandResponse::Rejected {
                reason: ErrorReason::TopicExists.as_str_name().into(),
                message: format!("topic {name:?} already exists"),
            };
        }
        let first_group_id = self.next_group_id.max(1);
        let replicas = assignments.first().map_or(0, |r| r.len() as u32);
        let partitions = assignments
            .into_iter()
            .enumerate()
            .map(|(i, replicas)| PartitionMeta {
                group_id: GroupId(first_group_id + i as u64),
                replicas,
            })
            .collect::<Vec<_>>();
        self.next_group_id = first_group_id + partitions.len() as u64;
        self.topics.insert(
            name.clone(),
            TopicMeta {
                name,
                partitions,
                replicas,
                created_at_ms,
                configs,
            },
        );
        CommandResponse::TopicCreated { first_group_id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_and_delete_allocate_fresh_group_ids() {
        let mut state = ControllerState::default();
        let create = |name: &str| ControllerCommand::CreateTopic {
            name: name.into(),
            assignments: vec![vec![1], vec![1]],
            created_at_ms: 0,
        };
        assert_eq!(
            state.apply(create("a")),
            CommandResponse::TopicCreated { first_group_id: 1 }
        );
        assert!(matches!(
            state.apply(create("a")),
            CommandResponse::Rejected { .. }
        ));
        assert_eq!(
            state.apply(ControllerCommand::DeleteTopic { name: "a".into() }),
            CommandResponse::TopicDeleted
        );
        assert_eq!(
            state.apply(create("a")),
            CommandResponse::TopicCreated { first_group_id: 3 }
        );
    }

    #[test]
    fn configs_are_set_at_creation_and_altered_all_at_once() {
        let mut state = ControllerState::default();
        let configs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        state.apply(ControllerCommand::CreateTopicWithConfigs {
            name: "t".into(),
            assignments: vec![vec![1]],
            created_at_ms: 0,
            configs: configs(&[("retention.ms", "1000"), ("cleanup.policy", "compact")]),
        });
        assert_eq!(
            state.apply(ControllerCommand::AlterTopicConfigs {
                name: "t".into(),
                set: configs(&[("retention.bytes", "4096"), ("retention.ms", "2000")]),
                delete: vec!["cleanup.policy".into()],
            }),
            CommandResponse::TopicConfigsAltered
        );
        assert_eq!(
            state.topics["t"].configs,
            configs(&[("retention.bytes", "4096"), ("retention.ms", "2000")])
        );
        assert!(matches!(
            state.apply(ControllerCommand::AlterTopicConfigs {
                name: "missing".into(),
                set: BTreeMap::new(),
                delete: Vec::new(),
            }),
            CommandResponse::Rejected { .. }
        ));
    }
}
