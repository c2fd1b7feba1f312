//! Consumer group coordination. The controller leader is every group's coordinator: it keeps
//! the live membership in memory (heartbeats are not worth replicating) and computes the
//! assignment whenever membership or the subscribed topics change; committed offsets go through
//! the controller's Raft group.
//!
//! The invariant: a partition is owned by at most one live member at a time, provided clocks run
//! at the same rate. A member owns what the last answer it adopted gave it, until it adopts one
//! that does not list it, or until its session deadline (session timeout after it *sent* its
//! last answered heartbeat; the client fences itself then). So a partition changes hands only
//! - once every member has acknowledged the new generation (a heartbeat carrying it: the
//!   member has adopted an answer of this generation, so holds at most its target), or
//! - once its previous owner left or its session expired here (no heartbeat *received* for a
//!   session timeout, so the owner's own deadline, measured from an earlier send, has passed).
//!
//! In a new generation each member first keeps only what it had and still owns; the rest is
//! handed out when everyone has acknowledged. Joining gives up everything the member held except
//! what it lists as still owned.
//!
//! After a controller leader change (a new term) the coordinator starts with no members and
//! does not know who held what: until the longest session timeout ever granted in the group
//! (replicated controller state) plus a margin has passed since it took over, a member gets only
//! partitions it says it still holds from before and nobody else claims.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;
use std::time::Duration;
use std::time::Instant;

use parking_lot::Mutex;
use raftlog_proto::v1::ErrorReason;

use crate::controller::ControllerState;
use crate::error::ServerError;

/// Added to the longest session timeout a new coordinator waits out: covers the session
/// checks' granularity and small differences in clock rates.
const TAKEOVER_MARGIN: Duration = Duration::from_secs(1);

/// Longest member id a re-joining member may keep.
const MEMBER_ID_BYTES_MAX: usize = 256;

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
    /// Partitions it said, when it joined, it still held from a previous coordinator.
    claimed: Vec<TopicPartition>,
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
    /// Members known to hold at most their target of this generation: they joined in it
    /// holding nothing else, or heartbeated carrying it.
    acknowledged: HashSet<String>,
    /// Partition counts the assignment was computed from, to notice created or deleted topics.
    computed_from: BTreeMap<String, u32>,
    /// Until then, members of a previous coordinator may still hold this group's partitions.
    takeover_wait_until: Option<Instant>,
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
    /// Partitions it still holds from a previous membership.
    pub owned: Vec<TopicPartition>,
}

/// The controller term this node coordinates in, and its groups.
#[derive(Default)]
struct Coordination {
    /// The term, and when this node noticed it leads in it.
    term: Option<(u64, Instant)>,
    groups: HashMap<String, GroupRuntime>,
}

/// Every group coordinated by this node.
#[derive(Default)]
pub struct ConsumerGroupCoordinator {
    state: Mutex<Coordination>,
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

fn not_owned(
    group: &str,
    member_id: &str,
    (topic, partition): &TopicPartition,
    owner: Option<&str>,
) -> ServerError {
    let owner = match owner {
        Some(owner) => format!("it is owned by {owner:?}"),
        None => "it has no owner now".to_owned(),
    };
    ServerError::Precondition {
        reason: ErrorReason::PartitionNotOwned,
        message: format!(
            "member {member_id:?} of group {group:?} does not own {topic}/{partition} in the current generation ({owner}); join again"
        ),
    }
}

impl GroupRuntime {
    fn new(strategy: Strategy, takeover_wait_until: Option<Instant>) -> GroupRuntime {
        GroupRuntime {
            generation: 0,
            strategy,
            members: BTreeMap::new(),
            assignment: HashMap::new(),
            previous: HashMap::new(),
            acknowledged: HashSet::new(),
            computed_from: BTreeMap::new(),
            takeover_wait_until,
        }
    }

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

    /// Whether members of a previous coordinator may still hold partitions of this group.
    fn waiting_out_takeover(&self) -> bool {
        self.takeover_wait_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// The partitions `member_id` may read now. While the coordinator waits out a takeover:
    /// those of its target that it alone claimed to hold (no one else can hold them, so they
    /// need no acknowledgement). Then: its target once every member has acknowledged this
    /// generation, until then only what it already had and keeps.
    fn effective(&self, member_id: &str) -> Vec<TopicPartition> {
        let target = self.assignment.get(member_id).cloned().unwrap_or_default();
        if self.waiting_out_takeover() {
            return target
                .into_iter()
                .filter(|p| {
                    let mut claimants = self.members.iter().filter(|(_, m)| m.claimed.contains(p));
                    claimants.next().is_some_and(|(id, _)| id == member_id)
                        && claimants.next().is_none()
                })
                .collect();
        }
        // Members this generation was computed for; one just added holds nothing yet.
        let all_acknowledged = self
            .members
            .keys()
            .filter(|id| self.assignment.contains_key(*id))
            .all(|id| self.acknowledged.contains(id));
        let had = self.previous.get(member_id);
        target
            .into_iter()
            .filter(|p| all_acknowledged || had.is_some_and(|had| had.contains(p)))
            .collect()
    }

    /// The member whose effective assignment holds `partition`.
    fn owner(&self, partition: &TopicPartition) -> Option<&str> {
        self.members
            .keys()
            .find(|id| self.effective(id).contains(partition))
            .map(String::as_str)
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

impl Coordination {
    /// When a group created now stops waiting for a previous coordinator's members: the
    /// longest session timeout the group ever granted, plus a margin, after the takeover.
    fn takeover_wait_until(&self, group: &str, metadata: &ControllerState) -> Option<Instant> {
        let (_, took_over_at) = self.term?;
        let longest_ms = *metadata.group_session_timeouts_ms.get(group)?;
        let until = took_over_at + Duration::from_millis(u64::from(longest_ms)) + TAKEOVER_MARGIN;
        (Instant::now() < until).then_some(until)
    }
}

impl ConsumerGroupCoordinator {
    /// Notes that this node leads the controller in `term`. A new term means another node may
    /// have coordinated meanwhile: every member is forgotten, and partitions are handed out
    /// again only once the previous members' sessions have certainly ended.
    pub fn lead(&self, term: u64) {
        let mut state = self.state.lock();
        if state.term.is_some_and(|(t, _)| t == term) {
            return;
        }
        tracing::info!(term, "coordinating consumer groups from now");
        state.groups.clear();
        state.term = Some((term, Instant::now()));
    }

    /// Adds a member (or refreshes a known one) and returns its view.
    pub fn join(&self, group: &str, join: Join, metadata: &ControllerState) -> MemberView {
        let Join {
            member_id,
            topics,
            strategy,
            session_timeout,
            client_id,
            owned,
        } = join;
        let mut state = self.state.lock();
        let wait_until = state.takeover_wait_until(group, metadata);
        let runtime = state
            .groups
            .entry(group.to_owned())
            .or_insert_with(|| GroupRuntime::new(strategy, wait_until));
        if runtime.members.is_empty() {
            runtime.strategy = strategy;
        }
        let member_id = match member_id {
            Some(id) if runtime.members.contains_key(&id) => id,
            // A member of the previous coordinator keeps its id, so the assignment (computed in
            // id order) stays as it was and nobody has to wait for a partition to change hands.
            Some(id) if runtime.waiting_out_takeover() && id.len() <= MEMBER_ID_BYTES_MAX => id,
            _ => format!("{client_id}-{}", uuid::Uuid::new_v4()),
        };
        // Claims matter only while a takeover is waited out: later, any partition a member
        // still held from a previous coordinator has been given up at its session deadline.
        let claimed = if runtime.waiting_out_takeover() {
            owned
        } else {
            Vec::new()
        };
        let member = Member {
            client_id,
            topics,
            session_timeout,
            last_seen: Instant::now(),
            claimed: claimed.clone(),
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
        // By joining the member gives up everything but its claims, so it holds at most its
        // target once the answer covers every claim.
        runtime.acknowledged.insert(member_id.clone());
        let view = runtime.view(&member_id);
        if !claimed.iter().all(|p| view.assignment.contains(p)) {
            runtime.acknowledged.remove(&member_id);
        }
        view
    }

    /// Records a heartbeat of a member that has adopted `generation`'s answer; rebalances first
    /// if the subscribed topics' partitions changed.
    pub fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        generation: u64,
        metadata: &ControllerState,
    ) -> Result<MemberView, ServerError> {
        let mut state = self.state.lock();
        let runtime = state
            .groups
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
        if generation == runtime.generation {
            runtime.acknowledged.insert(member_id.to_owned());
        }
        Ok(runtime.view(member_id))
    }

    /// Removes a member at once.
    pub fn leave(&self, group: &str, member_id: &str, metadata: &ControllerState) {
        let mut state = self.state.lock();
        if let Some(runtime) = state.groups.get_mut(group) {
            if runtime.members.remove(member_id).is_some() {
                runtime.rebalance(metadata);
                tracing::info!(group, member = %member_id, generation = runtime.generation, "member left; rebalanced");
            }
        }
    }

    /// Removes members whose session expired; returns how many.
    pub fn expire(&self, metadata: &ControllerState) -> usize {
        let mut state = self.state.lock();
        let mut expired = 0;
        for (group, runtime) in state.groups.iter_mut() {
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

    /// Checks that a commit comes from the owner of every partition in `partitions` in the
    /// current generation. An empty member id is a standalone consumer, allowed only while the
    /// group has no members (and none of a previous coordinator may still be live).
    pub fn check_commit(
        &self,
        group: &str,
        member_id: &str,
        generation: u64,
        partitions: &[TopicPartition],
        metadata: &ControllerState,
    ) -> Result<(), ServerError> {
        let state = self.state.lock();
        let runtime = state.groups.get(group).filter(|r| !r.members.is_empty());
        if member_id.is_empty() {
            if runtime.is_some() || state.takeover_wait_until(group, metadata).is_some() {
                return Err(ServerError::Precondition {
                    reason: ErrorReason::GroupActive,
                    message: format!("group {group:?} has active members; only they may commit"),
                });
            }
            return Ok(());
        }
        let Some(runtime) = runtime.filter(|r| r.members.contains_key(member_id)) else {
            return Err(unknown_member(group, member_id));
        };
        if runtime.generation != generation {
            return Err(ServerError::Precondition {
                reason: ErrorReason::IllegalGeneration,
                message: format!(
                    "generation {generation} is over; group {group:?} is at {}",
                    runtime.generation
                ),
            });
        }
        let owned = runtime.effective(member_id);
        match partitions.iter().find(|p| !owned.contains(p)) {
            Some(partition) => Err(not_owned(
                group,
                member_id,
                partition,
                runtime.owner(partition),
            )),
            None => Ok(()),
        }
    }

    /// Whether the group has live members, or may have some of a previous coordinator.
    pub fn is_active(&self, group: &str, metadata: &ControllerState) -> bool {
        let state = self.state.lock();
        state
            .groups
            .get(group)
            .is_some_and(|r| !r.members.is_empty())
            || state.takeover_wait_until(group, metadata).is_some()
    }

    /// Live state of a group.
    pub fn describe(&self, group: &str) -> Option<GroupInfo> {
        let state = self.state.lock();
        let runtime = state.groups.get(group)?;
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
        self.state
            .lock()
            .groups
            .iter()
            .filter(|(_, r)| !r.members.is_empty())
            .map(|(name, r)| (name.clone(), r.members.len(), r.generation))
            .collect()
    }

    /// Forgets every member (this node stopped coordinating).
    pub fn clear(&self) {
        let mut state = self.state.lock();
        state.groups.clear();
        state.term = None;
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
            claimed: Vec::new(),
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
                configs: Default::default(),
            },
        );
        let join = |id: Option<&str>| Join {
            member_id: id.map(str::to_owned),
            topics: vec!["t".into()],
            strategy: Strategy::Range,
            session_timeout: Duration::from_secs(10),
            client_id: "c".into(),
            owned: Vec::new(),
        };
        let a = coordinator.join("g", join(None), &metadata);
        assert_eq!(a.assignment.len(), 4);
        let b = coordinator.join("g", join(None), &metadata);
        // b is new: it gets nothing until a, the previous owner, acknowledges the generation.
        assert!(b.assignment.is_empty(), "{b:?}");
        // A heartbeat of a that has not yet adopted generation 2 acknowledges nothing.
        let a_stale = coordinator
            .heartbeat("g", &a.member_id, a.generation, &metadata)
            .expect("a heartbeats");
        assert_eq!(a_stale.assignment.len(), 2, "{a_stale:?}");
        let b_waits = coordinator
            .heartbeat("g", &b.member_id, b.generation, &metadata)
            .expect("b heartbeats");
        assert!(b_waits.assignment.is_empty(), "{b_waits:?}");
        let a_now = coordinator
            .heartbeat("g", &a.member_id, a_stale.generation, &metadata)
            .expect("a heartbeats");
        assert_eq!(a_now.assignment.len(), 2, "{a_now:?}");
        let b_now = coordinator
            .heartbeat("g", &b.member_id, b.generation, &metadata)
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

    fn four_partitions() -> ControllerState {
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
                configs: Default::default(),
            },
        );
        metadata
    }

    #[test]
    fn a_new_coordinator_hands_out_only_claimed_partitions_until_old_sessions_end() {
        let coordinator = ConsumerGroupCoordinator::default();
        let mut metadata = four_partitions();
        // Sessions of up to 200 ms were granted under an earlier coordinator.
        metadata.group_session_timeouts_ms.insert("g".into(), 200);
        coordinator.lead(7);
        let p = |i: u32| ("t".to_owned(), i);
        let join = |id: &str, owned: Vec<TopicPartition>| Join {
            member_id: Some(id.to_owned()),
            topics: vec!["t".into()],
            strategy: Strategy::Range,
            session_timeout: Duration::from_secs(10),
            client_id: "c".into(),
            owned,
        };
        // a held 0 and 1 from before; 2 and 3 belonged to members that have not come back.
        let a = coordinator.join("g", join("a", vec![p(0), p(1)]), &metadata);
        assert_eq!(a.member_id, "a", "a re-joining member keeps its id");
        assert_eq!(a.assignment, vec![p(0), p(1)], "{a:?}");
        assert!(coordinator.is_active("g", &metadata));
        // A claim already made by another member is given to neither.
        let b = coordinator.join("g", join("b", vec![p(1)]), &metadata);
        let a = coordinator
            .heartbeat("g", "a", b.generation, &metadata)
            .expect("a heartbeats");
        let b = coordinator
            .heartbeat("g", "b", b.generation, &metadata)
            .expect("b heartbeats");
        assert_eq!(a.assignment, vec![p(0)], "{a:?}");
        assert!(b.assignment.is_empty(), "{b:?}");
        std::thread::sleep(Duration::from_millis(200) + TAKEOVER_MARGIN);
        let a = coordinator
            .heartbeat("g", "a", a.generation, &metadata)
            .expect("a heartbeats");
        let b = coordinator
            .heartbeat("g", "b", b.generation, &metadata)
            .expect("b heartbeats");
        assert_eq!(a.assignment, vec![p(0), p(1)], "{a:?}");
        assert_eq!(b.assignment, vec![p(2), p(3)], "{b:?}");
        // A new term starts the wait again and forgets the members.
        coordinator.lead(8);
        assert!(coordinator
            .heartbeat("g", "a", a.generation, &metadata)
            .is_err());
        let c = coordinator.join("g", join("c", Vec::new()), &metadata);
        assert!(c.assignment.is_empty(), "{c:?}");
    }

    #[test]
    fn only_the_owner_commits_a_partition() {
        let coordinator = ConsumerGroupCoordinator::default();
        let metadata = four_partitions();
        coordinator.lead(1);
        let join = Join {
            member_id: None,
            topics: vec!["t".into()],
            strategy: Strategy::Range,
            session_timeout: Duration::from_secs(10),
            client_id: "c".into(),
            owned: Vec::new(),
        };
        let a = coordinator.join("g", join, &metadata);
        let p = |i: u32| ("t".to_owned(), i);
        coordinator
            .check_commit("g", &a.member_id, a.generation, &[p(0), p(3)], &metadata)
            .expect("the owner commits");
        let error = coordinator
            .check_commit("g", "stranger", a.generation, &[p(0)], &metadata)
            .expect_err("a stranger does not");
        assert!(
            matches!(
                error,
                ServerError::Precondition {
                    reason: ErrorReason::UnknownMember,
                    ..
                }
            ),
            "{error:?}"
        );
        let error = coordinator
            .check_commit("g", "", 0, &[p(0)], &metadata)
            .expect_err("nor does a standalone consumer while the group has members");
        assert!(
            matches!(
                error,
                ServerError::Precondition {
                    reason: ErrorReason::GroupActive,
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
