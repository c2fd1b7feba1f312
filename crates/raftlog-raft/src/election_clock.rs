//! Each replica's election clock: when it stands for election unless it hears from a leader
//! first. Timeouts are ranked: the timeout range is cut into one slot per voter, and each voter
//! waits in its own slot (rank rotated by group id, so leaders spread over the nodes), with
//! jitter in the first half of it. When a leader dies its survivors never time out together,
//! so they do not split the vote and wait another timeout — with hundreds of groups failing
//! over at once, some always did.

use std::time::Duration;
use std::time::Instant;

use parking_lot::Mutex;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;

use crate::timing::RaftTiming;

/// This node's place among the sorted voters of a group, which picks its election slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VoterRank {
    position: u64,
    voters: u64,
}

impl VoterRank {
    /// `node`'s rank among `voters`, or `None` if it is not one of them.
    fn of(node: NodeId, voters: impl Iterator<Item = NodeId>) -> Option<VoterRank> {
        let (mut position, mut count, mut member) = (0, 0, false);
        for voter in voters {
            count += 1;
            position += u64::from(voter < node);
            member |= voter == node;
        }
        member.then_some(VoterRank {
            position,
            voters: count,
        })
    }

    /// The rank of `node` in the group whose metrics these are. Runs for every light heartbeat,
    /// so a plain configuration is read in place: openraft's `voter_ids` builds a set each time.
    pub(crate) fn in_metrics(
        node: NodeId,
        metrics: &openraft::RaftMetrics<NodeId, NodeInfo>,
    ) -> Option<Self> {
        let membership = metrics.membership_config.membership();
        match membership.get_joint_config().as_slice() {
            [voters] => VoterRank::of(node, voters.iter().copied()),
            _ => VoterRank::of(node, membership.voter_ids()),
        }
    }
}

/// The election timeout of a replica of `group` with `rank` among its voters, drawn in the
/// replica's slot. A node that is not a voter (or does not know the membership yet) draws from
/// the whole range.
fn ranked_timeout(timing: &RaftTiming, group: GroupId, rank: Option<VoterRank>) -> Duration {
    let (min_ms, max_ms) = (
        timing.election_timeout_min_ms,
        timing.election_timeout_max_ms,
    );
    let Some(VoterRank { position, voters }) = rank else {
        return Duration::from_millis(rand::random_range(min_ms..=max_ms));
    };
    let slot_rank = (position + group.0) % voters;
    let slot_ms = (max_ms - min_ms) / voters;
    let jitter_ms = rand::random_range(0..=slot_ms / 2);
    Duration::from_millis(min_ms + slot_rank * slot_ms + jitter_ms)
}

/// When one replica of a group stands for election unless it hears from a leader first, and
/// when it last heard from one.
pub(crate) struct ElectionClock {
    deadline: Mutex<Instant>,
    /// When a leader whose term this replica accepted last reached it, by a Raft AppendEntries
    /// or a light heartbeat: votes are refused for a while after (`RaftTiming::vote_refusal_ms`).
    heard_leader_at: Mutex<Option<Instant>>,
}

impl ElectionClock {
    /// A clock that runs out one ranked timeout from now.
    pub(crate) fn start(timing: &RaftTiming, group: GroupId, rank: Option<VoterRank>) -> Self {
        ElectionClock {
            deadline: Mutex::new(Instant::now() + ranked_timeout(timing, group, rank)),
            heard_leader_at: Mutex::new(None),
        }
    }

    /// A leader of an accepted term reached this replica: the clock starts over, and votes
    /// for others are refused for the vote-refusal window from now.
    pub(crate) fn heard_from_leader(
        &self,
        timing: &RaftTiming,
        group: GroupId,
        rank: Option<VoterRank>,
    ) {
        let now = Instant::now();
        *self.heard_leader_at.lock() = Some(now);
        *self.deadline.lock() = now + ranked_timeout(timing, group, rank);
    }

    /// Whether a leader reached this replica within `window` before `now`.
    pub(crate) fn heard_leader_within(&self, window: Duration, now: Instant) -> bool {
        self.heard_leader_at
            .lock()
            .is_some_and(|at| now.saturating_duration_since(at) < window)
    }

    /// Starts the clock over, with a timeout drawn again in this replica's slot. A clock that
    /// kept the timeout it was given when the group started would leave the survivors of a
    /// dead leader with two unrelated draws from the whole range, which collide (and split the
    /// vote) in some of hundreds of groups failing over at once.
    pub(crate) fn restart(&self, timing: &RaftTiming, group: GroupId, rank: Option<VoterRank>) {
        *self.deadline.lock() = Instant::now() + ranked_timeout(timing, group, rank);
    }

    /// Holds back the next candidacy for twice the longest election timeout.
    pub(crate) fn defer(&self, timing: &RaftTiming) {
        *self.deadline.lock() =
            Instant::now() + Duration::from_millis(2 * timing.election_timeout_max_ms);
    }

    /// Whether the clock ran out by `now`.
    pub(crate) fn has_run_out(&self, now: Instant) -> bool {
        now >= *self.deadline.lock()
    }

    #[cfg(test)]
    fn remaining(&self, from: Instant) -> Duration {
        self.deadline.lock().saturating_duration_since(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voter_rank_is_the_place_among_sorted_voters() {
        let voters = [7, 3, 5];
        assert_eq!(
            VoterRank::of(5, voters.into_iter()),
            Some(VoterRank {
                position: 1,
                voters: 3
            })
        );
        assert_eq!(
            VoterRank::of(3, voters.into_iter()).map(|rank| rank.position),
            Some(0)
        );
        assert_eq!(VoterRank::of(4, voters.into_iter()), None);
    }

    /// A clock that starts over when its leader is heard from draws its timeout again, in the
    /// replica's slot: keeping an earlier draw (from the whole range, as at start-up) let two
    /// survivors of a dead leader time out together.
    #[test]
    fn hearing_from_the_leader_draws_the_timeout_in_the_replicas_slot() {
        let timing = RaftTiming::default();
        let group = GroupId(3);
        let clock = ElectionClock {
            deadline: Mutex::new(
                Instant::now() + Duration::from_millis(10 * timing.election_timeout_max_ms),
            ),
            heard_leader_at: Mutex::new(None),
        };
        let rank = VoterRank::of(1, [1, 2, 3].into_iter());
        let before = Instant::now();
        clock.restart(&timing, group, rank);
        let timeout = clock.remaining(before);
        let slot = (timing.election_timeout_max_ms - timing.election_timeout_min_ms) / 3;
        // Node 1 is first among the voters; group 3 rotates it back to the first slot.
        // (The deadline is measured from just before the restart, so allow a little over.)
        let first_slot = Duration::from_millis(timing.election_timeout_min_ms)
            ..=Duration::from_millis(timing.election_timeout_min_ms + slot / 2 + 100);
        assert!(
            first_slot.contains(&timeout),
            "{timeout:?} not in {first_slot:?}"
        );
    }

    /// Whichever voter dies, the two survivors' timeouts lie in different slots, at least half a
    /// slot apart: the first candidacy reaches the other survivor before it stands itself.
    #[test]
    fn survivors_of_a_group_never_draw_overlapping_timeouts() {
        let timing = RaftTiming::default();
        let voters = [1, 2, 3];
        let slot = (timing.election_timeout_max_ms - timing.election_timeout_min_ms) / 3;
        for group in (0..30).map(GroupId) {
            let ranges: Vec<(Duration, Duration)> = voters
                .iter()
                .map(|node| {
                    let rank = VoterRank::of(*node, voters.into_iter());
                    let draws: Vec<Duration> = (0..200)
                        .map(|_| ranked_timeout(&timing, group, rank))
                        .collect();
                    let (min, max) = (draws.iter().min(), draws.iter().max());
                    (*min.unwrap(), *max.unwrap())
                })
                .collect();
            for (a, b) in ranges.iter().zip(ranges.iter().cycle().skip(1)) {
                let gap = if a.1 < b.0 {
                    b.0 - a.1
                } else {
                    a.0.saturating_sub(b.1)
                };
                assert!(
                    gap >= Duration::from_millis(slot / 2),
                    "group {group:?}: timeouts {a:?} and {b:?} are too close"
                );
            }
            for (min, max) in &ranges {
                assert!(*min >= Duration::from_millis(timing.election_timeout_min_ms));
                assert!(*max <= Duration::from_millis(timing.election_timeout_max_ms));
            }
        }
    }
}
