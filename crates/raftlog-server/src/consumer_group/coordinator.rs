//! Consumer group coordination. The controller leader is every group's coordinator: it keeps
//! the live membership in memory (heartbeats are not worth replicating) and computes the
//! assignment whenever membership or the subscribed topics change; committed offsets go through
//! the controller's Raft group.
//!
//! Rebalances are incremental, so that no partition has two consumers at once: in a new
//! generation each member first keeps only the partitions it had and still owns; partitions
//! that change hands are handed out once every member has heartbeated in the new generation,
//! i.e. once their previous owners have stopped reading them. A member that died holds its
//! partitions until its session expires. After a controller leader change the new coordinator starts
//! with no members: members get UNKNOWN_MEMBER on their next heartbeat and join again, and
//! commits from the old membership are refused, so no stale member can move a position.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;

use parking_lot::Mutex;
use raftlog_proto::v1::ErrorReason;

use crate::controller::ControllerState;
use crate::error::ServerError;

/// How partitions are spread over members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Per topic, contiguous ranges of partitions per member.
    Range,
    /// All partitions dealt out in turn.
    RoundRobin,
}

/// A partition of a topic.
pub type TopicPartition = (String, u32);

#[derive(Clone, Debug)]
struct Member {
    client_id: String,
    topics: Vec<String>,
    session_timeout: Duration,
    last_seen: Instant,
}

#[derive(Debug)]
struct GroupRuntime {
    generation: u64,
    strategy: Strategy,
    members: BTreeMap<String, Member>,
    /// The target assignment of this generation.
    assignment: HashMap<String, Vec<TopicPartition>>,
    /// What each member was given before this generation (its effective assignment then).
    previous: HashMap<String, Vec<TopicPartition>>,
    /// Members that have heartbeated (or joined) since this generation began.
    acknowledged: std::collections::HashSet<String>,
    /// Partition counts the assignment was computed from, to notice created or deleted topics.
    computed_from: BTreeMap<String, u32>,
}

/// What a member learns from Join and Heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Member id.
    pub member_id: String,
    /// Current generation.
    pub generation: u64,
    /// The member's partitions.
    pub assignment: Vec<TopicPartition>,
}

/// One member, as DescribeGroup shows it.
#[derive(Clone, Debug)]
pub struct MemberInfo {
    /// Member id.
    pub member_id: String,
    /// Client id it gave.
    pub client_id: String,
    /// Its partitions.
    pub assignment: Vec<TopicPartition>,
    /// Time since its last heartbeat.
    pub since_heartbeat: Duration,
}

/// A group's live state, as DescribeGroup shows it.
#[derive(Clone, Debug)]
pub struct GroupInfo {
    /// Current generation.
    pub generation: u64,
    /// Strategy in use.
    pub strategy: Strategy,
    /// Members.
    pub members: Vec<MemberInfo>,
    /// Topics the members subscribe to.
    pub topics: Vec<String>,
}

/// A member's request to join.
pub struct Join {
    /// Its id when re-joining; `None` for a new member.
    pub member_id: Option<String>,
    /// Topics it consumes.
    pub topics: Vec<String>,
    /// Its preferred strategy (the first member's holds).
    pub strategy: Strategy,
    /// Removed after this long without a heartbeat.
    pub session_timeout: Duration,
    /// Its client's name.
    pub client_id: String,
}

/// Every group coordinated by this node.
#[derive(Default)]
pub struct ConsumerGroupCoordinator {
    groups: Mutex<HashMap<String, GroupRuntime>>,
}

fn partition_counts(topics: &[String], metadata: &ControllerState) -> BTreeMap<String, u32> {
    topics
        .iter()
        .map(|t| {
            (
                t.clone(),
                metadata
                    .topics
                    .get(t)
                    .map_or(0, |m| m.partitions.len() as u32),
            )
        })
        .collect()
}

fn unknown_member(group: &str, member_id: &str) -> ServerError {
    ServerError::Precondition {
        reason: ErrorReason::UnknownMember,
        message: format!("{member_id:?} is not a member of group {group:?} (expired, left, or the coordinator moved); join again"),
    }
}

impl GroupRuntime {
    fn subscribed_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .members
            .values()
            .flat_map(|m| m.topics.iter().cloned())
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    fn rebalance(&mut self, metadata: &ControllerState) {
        self.previous = self
            .members
            .keys()
            .map(|id| (id.clone(), self.effective(id)))
            .collect();
        self.acknowledged.clear();
        self.generation += 1;
        self.computed_from = partition_counts(&self.subscribed_topics(), metadata);
        self.assignment = assign(self.strategy, &self.members, &self.computed_from);
    }

    /// The partitions `member_id` may read now: its target assignment once every member has
    /// acknowledged this generation, until then only what it already had and keeps.
    fn effective(&self, member_id: &str) -> Vec<TopicPartition> {
        let target = self.assignment.get(member_id).cloned().unwrap_or_default();
        if self.members.keys().all(|id| self.acknowledged.contains(id)) {
            return target;
        }
        let had = self.previous.get(member_id);
        target
            .into_iter()
            .filter(|p| had.is_some_and(|had| had.contains(p)))
            .collect()
    }

    fn view(&self, member_id: &str) -> MemberView {
        MemberView {
            member_id: member_id.to_owned(),
            generation: self.generation,
            assignment: self.effective(member_id),
        }
    }
}

/// Computes each member's partitions. Members are taken in id order, so every coordinator
/// computes the same assignment from the same membership.
fn assign(
    strategy: Strategy,
    members: &BTreeMap<String, Member>,
    counts: &BTreeMap<String, u32>,
) -> HashMap<String, Vec<TopicPartition>> {
    let mut assignment: HashMap<String, Vec<TopicPartition>> =
        members.keys().map(|id| (id.clone(), Vec::new())).collect();
    match strategy {
        Strategy::Range => {
            for (topic, count) in counts {
                let subscribers: Vec<&String> = members
                    .iter()
                    .filter(|(_, m)| m.topics.contains(topic))
                    .map(|(id, _)| id)
                    .collect();
                if subscribers.is_empty() {
                    continue;
                }
                let per_member = *count as usize / subscribers.len();
                let extra = *count as usize % subscribers.len();
                let mut next = 0u32;
                for (i, member) in subscribers.iter().enumerate() {
                    let take = per_member + usize::from(i < extra);
                    for _ in 0..take {
                        if let Some(list) = assignment.get_mut(*member) {
                            list.push((topic.clone(), next));
                        }
                        next += 1;
                    }
                }
            }
        }
        Strategy::RoundRobin => {
            let mut turn = 0usize;
            let ids: Vec<&String> = members.keys().collect();
            for (topic, count) in counts {
                for partition in 0..*count {
                    // The next member in turn that subscribes to this topic.
                    for step in 0..ids.len() {
                        let id = ids[(turn + step) % ids.len()];
                        if members.get(id).is_some_and(|m| m.topics.contains(topic)) {
                            if let Some(list) = assignment.get_mut(id) {
                                list.push((topic.clone(), partition));
                            }
                            turn = (turn + step + 1) % ids.len();
                            break;
                        }
                    }
                }
            }
        }
    }
    assignment
}

impl ConsumerGroupCoordinator {
    /// Adds a member (or refreshes a known one) and returns its view.
    pub fn join(&self, group: &str, join: Join, metadata: &ControllerState) -> MemberView {
        let Join {
            member_id,
            topics,
            strategy,
            session_timeout,
            client_id,
        } = join;
        let mut groups = self.groups.lock();
        let runtime = groups
            .entry(group.to_owned())
            .or_insert_with(|| GroupRuntime {
                generation: 0,
                strategy,
                members: BTreeMap::new(),
                assignment: HashMap::new(),
                previous: HashMap::new(),
                acknowledged: std::collections::HashSet::new(),
                computed_from: BTreeMap::new(),
            });
        if runtime.members.is_empty() {
            runtime.strategy = strategy;
        }
        let member_id = match member_id.filter(|id| runtime.members.contains_key(id)) {
            Some(id) => id,
            None => format!("{client_id}-{}", uuid::Uuid::new_v4()),
        };
        let member = Member {
            client_id,
            topics,
            session_timeout,
            last_seen: Instant::now(),
        };
        let changed = runtime
            .members
            .get(&member_id)
            .is_none_or(|old| old.topics != member.topics);
        runtime.members.insert(member_id.clone(), member);
        if changed {
            runtime.rebalance(metadata);
            tracing::info!(group, member = %member_id, generation = runtime.generation, "member joined; rebalanced");
        }
        runtime.acknowledged.insert(member_id.clone());
        runtime.view(&member_id)
    }

    /// Records a heartbeat; rebalances first if the subscribed topics' partitions changed.
    pub fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        metadata: &ControllerState,
    ) -> Result<MemberView, ServerError> {
        let mut groups = self.groups.lock();
        let runtime = groups
            .get_mut(group)
            .ok_or_else(|| unknown_member(group, member_id))?;
        let member = runtime
            .members
            .get_mut(member_id)
            .ok_or_else(|| unknown_member(group, member_id))?;
        member.last_seen = Instant::now();
        if partition_counts(&runtime.subscribed_topics(), metadata) != runtime.computed_from {
            runtime.rebalance(metadata);
            tracing::info!(
                group,
                generation = runtime.generation,
                "topics changed; rebalanced"
            );
        }
        runtime.acknowledged.insert(member_id.to_owned());
        Ok(runtime.view(member_id))
    }

    /// Removes a member at once.
    pub fn leave(&self, group: &str, member_id: &str, metadata: &ControllerState) {
        let mut groups = self.groups.lock();
        if let Some(runtime) = groups.get_mut(group) {
            if runtime.members.remove(member_id).is_some() {
                runtime.rebalance(metadata);
                tracing::info!(group, member = %member_id, generation = runtime.generation, "member left; rebalanced");
            }
        }
    }

    /// Removes members whose session expired; returns how many.
    pub fn expire(&self, metadata: &ControllerState) -> usize {
        let mut groups = self.groups.lock();
        let mut expired = 0;
        for (group, runtime) in groups.iter_mut() {
            let before = runtime.members.len();
            runtime.members.retain(|id, m| {
                let alive = m.last_seen.elapsed() <= m.session_timeout;
                if !alive {
                    tracing::info!(group = %group, member = %id, "member session expired");
                }
                alive
            });
            if runtime.members.len() != before {
                expired += before - runtime.members.len();
                runtime.rebalance(metadata);
            }
        }
        expired
    }

    /// Checks that a commit comes from a current member of the current generation. An empty
    /// member id is a standalone consumer, allowed only while the group has no members.
    pub fn check_commit(
        &self,
        group: &str,
        member_id: &str,
        generation: u64,
    ) -> Result<(), ServerError> {
        let groups = self.groups.lock();
        let runtime = groups.get(group).filter(|r| !r.members.is_empty());
        match (member_id.is_empty(), runtime) {
            (true, None) => Ok(()),
            (true, Some(_)) => Err(ServerError::Precondition {
                reason: ErrorReason::GroupActive,
                message: format!("group {group:?} has active members; only they may commit"),
            }),
            (false, None) => Err(unknown_member(group, member_id)),
            (false, Some(runtime)) => {
                if !runtime.members.contains_key(member_id) {
                    return Err(unknown_member(group, member_id));
                }
                if runtime.generation != generation {
                    return Err(ServerError::Precondition {
                        reason: ErrorReason::IllegalGeneration,
                        message: format!(
                            "generation {generation} is over; group {group:?} is at {}",
                            runtime.generation
                        ),
                    });
                }
                Ok(())
            }
        }
    }

    /// Whether the group has live members.
    pub fn is_active(&self, group: &str) -> bool {
        self.groups
            .lock()
            .get(group)
            .is_some_and(|r| !r.members.is_empty())
    }

    /// Live state of a group.
    pub fn describe(&self, group: &str) -> Option<GroupInfo> {
        let groups = self.groups.lock();
        let runtime = groups.get(group)?;
        Some(GroupInfo {
            generation: runtime.generation,
            strategy: runtime.strategy,
            topics: runtime.subscribed_topics(),
            members: runtime
                .members
                .iter()
                .map(|(id, m)| MemberInfo {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    assignment: runtime.effective(id),
                    since_heartbeat: m.last_seen.elapsed(),
                })
                .collect(),
        })
    }

    /// Names and sizes of the groups with live members.
    pub fn summaries(&self) -> Vec<(String, usize, u64)> {
        self.groups
            .lock()
            .iter()
            .filter(|(_, r)| !r.members.is_empty())
            .map(|(name, r)| (name.clone(), r.members.len(), r.generation))
            .collect()
    }

    /// Forgets every member (this node stopped coordinating).
    pub fn clear(&self) {
        self.groups.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(topics: &[&str]) -> Member {
        Member {
            client_id: "c".into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            session_timeout: Duration::from_secs(10),
            last_seen: Instant::now(),
        }
    }

    #[test]
    fn range_and_round_robin_cover_every_partition_once() {
        let members: BTreeMap<String, Member> = [
            ("a", member(&["t"])),
            ("b", member(&["t"])),
            ("c", member(&["t"])),
        ]
        .into_iter()
        .map(|(id, m)| (id.to_owned(), m))
        .collect();
        let counts: BTreeMap<String, u32> = [("t".to_owned(), 7)].into_iter().collect();
        for strategy in [Strategy::Range, Strategy::RoundRobin] {
            let assignment = assign(strategy, &members, &counts);
            let mut all: Vec<u32> = assignment.values().flatten().map(|(_, p)| *p).collect();
            all.sort_unstable();
            assert_eq!(all, (0..7).collect::<Vec<_>>(), "{strategy:?}");
            let sizes: Vec<usize> = assignment.values().map(Vec::len).collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "{strategy:?}: {sizes:?}"
            );
        }
        let range = assign(Strategy::Range, &members, &counts);
        assert_eq!(
            range["a"],
            vec![
                ("t".to_owned(), 0),
                ("t".to_owned(), 1),
                ("t".to_owned(), 2)
            ]
        );
    }

    #[test]
    fn partitions_change_hands_only_after_every_member_acknowledged() {
        let coordinator = ConsumerGroupCoordinator::default();
        let mut metadata = ControllerState::default();
        metadata.topics.insert(
            "t".into(),
            crate::controller::TopicMeta {
                name: "t".into(),
                partitions: (0..4)
                    .map(|i| crate::controller::PartitionMeta {
                        group_id: raftlog_types::GroupId(i + 1),
                        replicas: vec![1],
                    })
                    .collect(),
                replicas: 1,
                created_at_ms: 0,
            },
        );
        let join = |id: Option<&str>| Join {
            member_id: id.map(str::to_owned),
            topics: vec!["t".into()],
            strategy: Strategy::Range,
            session_timeout: Duration::from_secs(10),
            client_id: "c".into(),
        };
        let a = coordinator.join("g", join(None), &metadata);
        assert_eq!(a.assignment.len(), 4);
        let b = coordinator.join("g", join(None), &metadata);
        // b is new: it gets nothing until a, the previous owner, acknowledges the generation.
        assert!(b.assignment.is_empty(), "{b:?}");
        let a_now = coordinator
            .heartbeat("g", &a.member_id, &metadata)
            .expect("a heartbeats");
        assert_eq!(a_now.assignment.len(), 2, "{a_now:?}");
        let b_now = coordinator
            .heartbeat("g", &b.member_id, &metadata)
            .expect("b heartbeats");
        assert_eq!(b_now.assignment.len(), 2, "{b_now:?}");
        let mut all: Vec<_> = a_now
            .assignment
            .iter()
            .chain(&b_now.assignment)
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4);
    }
}
