//! How long openraft waits before sending to one target again after a send failed, chosen by
//! what the latest send found: a target that was only slow to answer is sent to again at once,
//! one that is creating the group soon, one that is unreachable after half a second.

use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long openraft waits before sending to an unreachable target again (its own default).
const UNREACHABLE_BACKOFF_MS: u64 = 500;

/// What the last call to a target found, as the backoff before the next one needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CallOutcome {
    /// The target answered, or was too slow to answer in time: it is up.
    Answered = 0,
    /// No connection, or the connection broke.
    Unreachable = 1,
    /// The target is up but has not started the group: it is being created there.
    GroupMissing = 2,
}

impl CallOutcome {
    /// Records this outcome in `cell`, shared between a target's calls and its backoff.
    pub(crate) fn store(self, cell: &AtomicU8) {
        cell.store(self as u8, Ordering::Relaxed);
    }

    /// The outcome last recorded in `cell`.
    pub(crate) fn load(cell: &AtomicU8) -> CallOutcome {
        match cell.load(Ordering::Relaxed) {
            1 => CallOutcome::Unreachable,
            2 => CallOutcome::GroupMissing,
            _ => CallOutcome::Answered,
        }
    }
}

/// How long openraft waits before sending to a target that answered "group not running here",
/// in the rounds after the first such answer; half a second after that. Such a target is
/// creating the group (all replicas of a new partition start within a second or so of each
/// other), and half a second of silence from its leader right then may outlast the new
/// replica's election timeout and cost the group an election.
const GROUP_MISSING_BACKOFF: [Duration; 4] = [
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
];

/// The waits openraft's replication takes between sends to one target once a send found it
/// unreachable. openraft keeps drawing from it, after every failed send, until one succeeds,
/// so each wait follows what the latest send found: a target that was only slow to answer
/// (a timeout, as a follower whose disk is busy gives) is sent to again with the next
/// heartbeat; half a second of silence towards it could outlast its election timeout.
pub(crate) struct TargetBackoff {
    last_outcome: Arc<AtomicU8>,
    group_missing_rounds: usize,
}

impl TargetBackoff {
    /// The backoff of a target whose calls record their outcome in `last_outcome`.
    pub(crate) fn new(last_outcome: Arc<AtomicU8>) -> Self {
        TargetBackoff {
            last_outcome,
            group_missing_rounds: 0,
        }
    }
}

impl Iterator for TargetBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(match CallOutcome::load(&self.last_outcome) {
            CallOutcome::Answered => Duration::ZERO,
            CallOutcome::Unreachable => Duration::from_millis(UNREACHABLE_BACKOFF_MS),
            CallOutcome::GroupMissing => {
                let wait = GROUP_MISSING_BACKOFF
                    .get(self.group_missing_rounds)
                    .copied()
                    .unwrap_or(Duration::from_millis(UNREACHABLE_BACKOFF_MS));
                self.group_missing_rounds += 1;
                wait
            }
        })
    }
}
