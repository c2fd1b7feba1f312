//! The anomaly checker: Jepsen's queue/Kafka workload checks, one file per property, each
//! with its one-line definition. Every check reads the same pre-computed [`Analysis`].

mod aborted_read;
mod divergence;
mod duplicate;
mod inconsistent_offsets;
mod int_nonmonotonic_poll;
mod int_nonmonotonic_send;
mod int_poll_skip;
mod lost_write;
mod nonmonotonic_poll;
mod nonmonotonic_send;
mod poll_skip;
mod realtime_order;
mod unexpected;
mod unseen;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashMap;

use serde::Serialize;

use crate::history::Action;
use crate::history::History;
use crate::history::Kind;

/// Examples kept per anomaly.
const EXAMPLES_MAX: usize = 5;

/// A send with its outcome.
#[derive(Clone, Debug)]
pub struct Send {
    /// Client process.
    pub process: u64,
    /// Partition.
    pub partition: u32,
    /// Values sent.
    pub values: Vec<u64>,
    /// Offsets assigned (for `ok`).
    pub offsets: Vec<u64>,
    /// How it ended (`Info` if the history ends first).
    pub outcome: Kind,
    /// Invocation time.
    pub invoked_ns: u64,
    /// Completion time (`u64::MAX` if never completed).
    pub completed_ns: u64,
}

/// A successful poll.
#[derive(Clone, Debug)]
pub struct Poll {
    /// Client process.
    pub process: u64,
    /// (partition, offset, value) in the order returned.
    pub reads: Vec<(u32, u64, u64)>,
    /// Monotonicity restarts here.
    pub reset: bool,
}

/// Indexes over a history, shared by the checks.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Every send, in invocation order.
    pub sends: Vec<Send>,
    /// Every successful poll, in completion order.
    pub polls: Vec<Poll>,
    /// Final reads: (node, partition) → records.
    pub final_reads: BTreeMap<(u64, u32), Vec<(u64, u64)>>,
    /// Value → index in `sends`.
    pub sent: HashMap<u64, usize>,
    /// Value → every (partition, offset) it was read at (polls and final reads).
    pub read_at: HashMap<u64, BTreeSet<(u32, u64)>>,
    /// (partition, offset) → every value claimed there (reads and acknowledgements).
    pub claims: BTreeMap<(u32, u64), BTreeSet<u64>>,
    /// Per partition, the highest offset any read observed.
    pub highest_read: BTreeMap<u32, u64>,
}

impl Analysis {
    /// Pairs invocations with completions and builds the indexes.
    pub fn new(history: &History) -> Analysis {
        let mut analysis = Analysis::default();
        let mut open_sends: HashMap<u64, usize> = HashMap::new();
        for op in &history.ops {
            match (&op.action, op.kind) {
                (
                    Action::Send {
                        partition, values, ..
                    },
                    Kind::Invoke,
                ) => {
                    let index = analysis.sends.len();
                    for value in values {
                        analysis.sent.insert(*value, index);
                    }
                    analysis.sends.push(Send {
                        process: op.process,
                        partition: *partition,
                        values: values.clone(),
                        offsets: Vec::new(),
                        outcome: Kind::Info,
                        invoked_ns: op.time_ns,
                        completed_ns: u64::MAX,
                    });
                    open_sends.insert(op.process, index);
                }
                (Action::Send { offsets, .. }, outcome) => {
                    if let Some(index) = open_sends.remove(&op.process) {
                        let send = &mut analysis.sends[index];
                        send.outcome = outcome;
                        send.completed_ns = op.time_ns;
                        if outcome == Kind::Ok {
                            send.offsets = offsets.clone();
                            for (value, offset) in send.values.iter().zip(offsets) {
                                analysis
                                    .claims
                                    .entry((send.partition, *offset))
                                    .or_default()
                                    .insert(*value);
                            }
                        }
                    }
                }
                (Action::Poll { reads, reset }, Kind::Ok) => {
                    for (partition, offset, value) in reads {
                        analysis.note_read(*partition, *offset, *value);
                    }
                    analysis.polls.push(Poll {
                        process: op.process,
                        reads: reads.clone(),
                        reset: *reset,
                    });
                }
                (Action::Poll { .. }, _) => {}
                (
                    Action::FinalRead {
                        node,
                        partition,
                        records,
                        ..
                    },
                    _,
                ) => {
                    for (offset, value) in records {
                        analysis.note_read(*partition, *offset, *value);
                    }
                    analysis
                        .final_reads
                        .insert((*node, *partition), records.clone());
                }
                _ => {}
            }
        }
        analysis
    }

    fn note_read(&mut self, partition: u32, offset: u64, value: u64) {
        self.read_at
            .entry(value)
            .or_default()
            .insert((partition, offset));
        self.claims
            .entry((partition, offset))
            .or_default()
            .insert(value);
        let highest = self.highest_read.entry(partition).or_insert(offset);
        *highest = (*highest).max(offset);
    }

    /// Whether some read or acknowledgement shows a record at (partition, offset).
    pub fn exists(&self, partition: u32, offset: u64) -> bool {
        self.claims.contains_key(&(partition, offset))
    }

    /// Each consumer's step from its last offset in one poll to its first offset in its next
    /// poll of the same partition: (process, partition, previous, next). Reset polls start over.
    pub fn poll_steps(&self) -> Vec<(u64, u32, u64, u64)> {
        let mut steps = Vec::new();
        let mut last: HashMap<(u64, u32), u64> = HashMap::new();
        for poll in &self.polls {
            if poll.reset {
                last.retain(|(process, _), _| *process != poll.process);
            }
            let mut first_in_poll: BTreeMap<u32, u64> = BTreeMap::new();
            for (partition, offset, _) in &poll.reads {
                first_in_poll.entry(*partition).or_insert(*offset);
            }
            for (partition, first) in first_in_poll {
                if let Some(previous) = last.get(&(poll.process, partition)) {
                    steps.push((poll.process, partition, *previous, first));
                }
            }
            for (partition, offset, _) in &poll.reads {
                last.insert((poll.process, *partition), *offset);
            }
        }
        steps
    }

    /// Each step between consecutive records of one partition inside a single poll:
    /// (process, partition, previous, next).
    pub fn steps_within_polls(&self) -> Vec<(u64, u32, u64, u64)> {
        let mut steps = Vec::new();
        for poll in &self.polls {
            let mut last: HashMap<u32, u64> = HashMap::new();
            for (partition, offset, _) in &poll.reads {
                if let Some(previous) = last.insert(*partition, *offset) {
                    steps.push((poll.process, *partition, previous, *offset));
                }
            }
        }
        steps
    }

    /// Acknowledged values no read ever returned: (value, partition, offset, whether some read
    /// of the partition went past that offset).
    pub fn unread_acknowledged(&self) -> Vec<(u64, u32, u64, bool)> {
        let mut unread = Vec::new();
        for send in self.sends.iter().filter(|s| s.outcome == Kind::Ok) {
            for (value, offset) in send.values.iter().zip(&send.offsets) {
                if !self.read_at.contains_key(value) {
                    let read_past = self
                        .highest_read
                        .get(&send.partition)
                        .is_some_and(|h| h > offset);
                    unread.push((*value, send.partition, *offset, read_past));
                }
            }
        }
        unread
    }

    /// Offsets known to exist strictly between `low` and `high` in `partition`.
    pub fn existing_between(&self, partition: u32, low: u64, high: u64) -> Vec<u64> {
        if high <= low + 1 {
            return Vec::new();
        }
        self.claims
            .range((partition, low + 1)..(partition, high))
            .map(|((_, o), _)| *o)
            .collect()
    }
}

/// One kind of anomaly found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// What it means.
    pub definition: &'static str,
    /// How many times it occurred.
    pub count: usize,
    /// A few occurrences, described.
    pub examples: Vec<String>,
}

/// Counts of what the history holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Sends acknowledged.
    pub sends_ok: usize,
    /// Sends that definitely failed.
    pub sends_failed: usize,
    /// Sends with unknown outcome.
    pub sends_unknown: usize,
    /// Values acknowledged.
    pub values_acknowledged: usize,
    /// Distinct values read.
    pub values_read: usize,
    /// Successful polls.
    pub polls: usize,
}

/// The checker's verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when no anomaly was found.
    pub valid: bool,
    /// Anomaly name → what was found (every check is listed, with count 0 when clean).
    pub anomalies: BTreeMap<&'static str, Anomaly>,
    /// What the history holds.
    pub stats: Stats,
}

type Check = (&'static str, &'static str, fn(&Analysis) -> Vec<String>);

/// Every check: name, definition, function.
const CHECKS: &[Check] = &[
    ("lost-write", lost_write::DEFINITION, lost_write::check),
    ("unseen", unseen::DEFINITION, unseen::check),
    ("duplicate", duplicate::DEFINITION, duplicate::check),
    (
        "inconsistent-offsets",
        inconsistent_offsets::DEFINITION,
        inconsistent_offsets::check,
    ),
    (
        "aborted-read",
        aborted_read::DEFINITION,
        aborted_read::check,
    ),
    ("unexpected", unexpected::DEFINITION, unexpected::check),
    ("poll-skip", poll_skip::DEFINITION, poll_skip::check),
    (
        "nonmonotonic-poll",
        nonmonotonic_poll::DEFINITION,
        nonmonotonic_poll::check,
    ),
    (
        "int-poll-skip",
        int_poll_skip::DEFINITION,
        int_poll_skip::check,
    ),
    (
        "int-nonmonotonic-poll",
        int_nonmonotonic_poll::DEFINITION,
        int_nonmonotonic_poll::check,
    ),
    (
        "nonmonotonic-send",
        nonmonotonic_send::DEFINITION,
        nonmonotonic_send::check,
    ),
    (
        "int-nonmonotonic-send",
        int_nonmonotonic_send::DEFINITION,
        int_nonmonotonic_send::check,
    ),
    (
        "realtime-order",
        realtime_order::DEFINITION,
        realtime_order::check,
    ),
    ("divergence", divergence::DEFINITION, divergence::check),
];

/// Runs every check over `history`.
pub fn check(history: &History) -> Report {
    let analysis = Analysis::new(history);
    let mut anomalies = BTreeMap::new();
    for (name, definition, run) in CHECKS {
        let found = run(&analysis);
        let anomaly = Anomaly {
            definition,
            count: found.len(),
            examples: found.into_iter().take(EXAMPLES_MAX).collect(),
        };
        anomalies.insert(*name, anomaly);
    }
    let stats = Stats {
        sends_ok: analysis
            .sends
            .iter()
            .filter(|s| s.outcome == Kind::Ok)
            .count(),
        sends_failed: analysis
            .sends
            .iter()
            .filter(|s| s.outcome == Kind::Fail)
            .count(),
        sends_unknown: analysis
            .sends
            .iter()
            .filter(|s| s.outcome == Kind::Info)
            .count(),
        values_acknowledged: analysis
            .sends
            .iter()
            .filter(|s| s.outcome == Kind::Ok)
            .map(|s| s.values.len())
            .sum(),
        values_read: analysis.read_at.len(),
        polls: analysis.polls.len(),
    };
    let valid = anomalies.values().all(|a| a.count == 0);
    Report {
        valid,
        anomalies,
        stats,
    }
}

impl Report {
    /// The summary table people read first: anomaly, count, an example.
    pub fn table(&self) -> String {
        let mut out = format!("{:<24} {:>7}  EXAMPLE\n", "ANOMALY", "COUNT");
        for (name, anomaly) in &self.anomalies {
            let example = anomaly.examples.first().map_or("", String::as_str);
            out.push_str(&format!("{name:<24} {:>7}  {example}\n", anomaly.count));
        }
        out.push_str(&format!(
            "{} sends ok ({} values), {} failed, {} unknown; {} polls; {} distinct values read: {}\n",
            self.stats.sends_ok,
            self.stats.values_acknowledged,
            self.stats.sends_failed,
            self.stats.sends_unknown,
            self.stats.polls,
            self.stats.values_read,
            if self.valid { "VALID" } else { "INVALID" }
        ));
        out
    }
}

#[cfg(test)]
mod tests;
