//! The anomaly checker: Jepsen's queue/Kafka workload checks, one file per property, each
//! with its one-line definition. Every check reads the same pre-computed [`Analysis`].
//!
//! Besides anomalies the verdict can be INCOMPLETE ([`completeness`]): the history does not
//! show every replica's whole log, so what it does not show cannot be vouched for.

mod aborted_read;
mod commit_past_end;
mod completeness;
mod denied_record;
mod divergence;
mod duplicate;
mod group_exclusive;
mod inconsistent_offsets;
mod int_nonmonotonic_poll;
mod int_nonmonotonic_send;
mod int_poll_skip;
mod lost_write;
mod membership;
mod nonmonotonic_commit;
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
use crate::history::Op;

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
    /// Invocation time (the completion's if no invocation was recorded).
    pub invoked_ns: u64,
    /// Completion time: when the records were delivered.
    pub completed_ns: u64,
}

/// A poll that failed, with what the server said.
#[derive(Clone, Debug)]
pub struct ConsumeError {
    /// Client process.
    pub process: u64,
    /// The partition asked for.
    pub partition: Option<u32>,
    /// The offset asked for.
    pub offset: Option<u64>,
    /// The ErrorReason name, if the server sent one.
    pub reason: Option<String>,
    /// The error as the client showed it.
    pub message: String,
    /// Invocation time.
    pub invoked_ns: u64,
}

/// One node's final read of one partition.
#[derive(Clone, Debug, Default)]
pub struct FinalRead {
    /// (offset, value) from the log start.
    pub records: Vec<(u64, u64)>,
    /// The offset it had to reach.
    pub target: u64,
    /// The offset after the last record read.
    pub reached: u64,
    /// Why it stopped short.
    pub error: Option<String>,
    /// The node refused this replica as corrupt or lost (see `Action::FinalRead`).
    pub out_of_service: bool,
    /// Where the replica's log started when read: records below were deleted by retention.
    pub log_start: u64,
}

impl FinalRead {
    /// Whether it read the replica to its end.
    pub fn complete(&self) -> bool {
        self.reached >= self.target
    }
}

/// A consumer-group member's join or heartbeat.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    /// Client process (one member at a time).
    pub process: u64,
    /// Consumer group.
    pub group: String,
    /// A join (the member gives up what it owned when it sends it).
    pub join: bool,
    /// Member id answered (or sent).
    pub member: String,
    /// Generation answered.
    pub generation: u64,
    /// Partitions owned in it.
    pub assignment: Vec<u32>,
    /// The member's session timeout.
    pub session_timeout_ms: u64,
    /// How it ended (`Info` if the history ends first).
    pub outcome: Kind,
    /// Invocation time: the member's session deadline runs from here.
    pub invoked_ns: u64,
    /// Completion time (`u64::MAX` if never completed).
    pub completed_ns: u64,
}

/// A commit of group positions, or a read of them.
#[derive(Clone, Debug)]
pub struct GroupOffsets {
    /// Client process.
    pub process: u64,
    /// Consumer group.
    pub group: String,
    /// A commit (else a read of the committed positions).
    pub commit: bool,
    /// An explicit reset (positions may go back).
    pub reset: bool,
    /// The committing member and its generation (commits only).
    pub member: String,
    /// The committing member's generation.
    pub generation: u64,
    /// (partition, position).
    pub offsets: Vec<(u32, u64)>,
    /// How it ended (`Info` if the history ends first).
    pub outcome: Kind,
    /// Invocation time.
    pub invoked_ns: u64,
    /// Completion time (`u64::MAX` if never completed).
    pub completed_ns: u64,
}

/// Invocations waiting for their completion, per process (a process does one thing at a time).
#[derive(Default)]
struct Open {
    /// Process → invocation time.
    invoked: HashMap<u64, u64>,
    /// Process → index in `sends`.
    sends: HashMap<u64, usize>,
    /// Process → index in `heartbeats`.
    heartbeats: HashMap<u64, usize>,
    /// Process → index in `group_offsets`.
    group_offsets: HashMap<u64, usize>,
}

/// Indexes over a history, shared by the checks.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Every send, in invocation order.
    pub sends: Vec<Send>,
    /// Every successful poll, in completion order.
    pub polls: Vec<Poll>,
    /// Final reads: (node, partition) → what was read.
    pub final_reads: BTreeMap<(u64, u32), FinalRead>,
    /// Every failed poll.
    pub consume_errors: Vec<ConsumeError>,
    /// Every group join and heartbeat, in invocation order.
    pub heartbeats: Vec<Heartbeat>,
    /// Every group leave: (process, invocation time).
    pub leaves: Vec<(u64, u64)>,
    /// Every commit and committed-offsets read, in invocation order.
    pub group_offsets: Vec<GroupOffsets>,
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
        let mut open = Open::default();
        for op in &history.ops {
            if op.kind == Kind::Invoke {
                analysis.invoke(op, &mut open);
            } else {
                analysis.complete(op, &mut open);
            }
        }
        analysis
    }

    fn invoke(&mut self, op: &Op, open: &mut Open) {
        open.invoked.insert(op.process, op.time_ns);
        let group_offsets =
            |group: &String, commit, reset, member: &String, generation, offsets| GroupOffsets {
                process: op.process,
                group: group.clone(),
                commit,
                reset,
                member: member.clone(),
                generation,
                offsets,
                outcome: Kind::Info,
                invoked_ns: op.time_ns,
                completed_ns: u64::MAX,
            };
        match &op.action {
            Action::Send {
                partition, values, ..
            } => {
                let index = self.sends.len();
                for value in values {
                    self.sent.insert(*value, index);
                }
                self.sends.push(Send {
                    process: op.process,
                    partition: *partition,
                    values: values.clone(),
                    offsets: Vec::new(),
                    outcome: Kind::Info,
                    invoked_ns: op.time_ns,
                    completed_ns: u64::MAX,
                });
                open.sends.insert(op.process, index);
            }
            Action::Heartbeat {
                group,
                join,
                member,
                session_timeout_ms,
                ..
            } => {
                open.heartbeats.insert(op.process, self.heartbeats.len());
                self.heartbeats.push(Heartbeat {
                    process: op.process,
                    group: group.clone(),
                    join: *join,
                    member: member.clone(),
                    generation: 0,
                    assignment: Vec::new(),
                    session_timeout_ms: *session_timeout_ms,
                    outcome: Kind::Info,
                    invoked_ns: op.time_ns,
                    completed_ns: u64::MAX,
                });
            }
            Action::Leave { .. } => self.leaves.push((op.process, op.time_ns)),
            Action::Commit {
                group,
                member,
                generation,
                offsets,
                reset,
                ..
            } => {
                open.group_offsets
                    .insert(op.process, self.group_offsets.len());
                let commit =
                    group_offsets(group, true, *reset, member, *generation, offsets.clone());
                self.group_offsets.push(commit);
            }
            Action::CommittedOffsets { group, .. } => {
                open.group_offsets
                    .insert(op.process, self.group_offsets.len());
                let read = group_offsets(group, false, false, &String::new(), 0, Vec::new());
                self.group_offsets.push(read);
            }
            Action::Poll { .. } | Action::ConsumeError { .. } | Action::FinalRead { .. } => {}
        }
    }

    fn complete(&mut self, op: &Op, open: &mut Open) {
        // Final reads have no invocation (and run under process 0, a producer's number too).
        if let Action::FinalRead {
            node,
            partition,
            records,
            target,
            reached,
            error,
            out_of_service,
            log_start,
        } = &op.action
        {
            for (offset, value) in records {
                self.note_read(*partition, *offset, *value);
            }
            let read = FinalRead {
                records: records.clone(),
                target: *target,
                reached: *reached,
                error: error.clone(),
                out_of_service: *out_of_service,
                log_start: *log_start,
            };
            self.final_reads.insert((*node, *partition), read);
            return;
        }
        let invoked_ns = open.invoked.remove(&op.process).unwrap_or(op.time_ns);
        match &op.action {
            Action::Send { offsets, .. } => self.complete_send(op, offsets, open),
            Action::Poll { reads, reset } if op.kind == Kind::Ok => {
                for (partition, offset, value) in reads {
                    self.note_read(*partition, *offset, *value);
                }
                self.polls.push(Poll {
                    process: op.process,
                    reads: reads.clone(),
                    reset: *reset,
                    invoked_ns,
                    completed_ns: op.time_ns,
                });
            }
            Action::ConsumeError {
                partition,
                offset,
                reason,
                message,
            } => self.consume_errors.push(ConsumeError {
                process: op.process,
                partition: *partition,
                offset: *offset,
                reason: reason.clone(),
                message: message.clone(),
                invoked_ns,
            }),
            Action::Heartbeat {
                member,
                generation,
                assignment,
                ..
            } => {
                if let Some(index) = open.heartbeats.remove(&op.process) {
                    let heartbeat = &mut self.heartbeats[index];
                    heartbeat.outcome = op.kind;
                    heartbeat.completed_ns = op.time_ns;
                    if op.kind == Kind::Ok {
                        heartbeat.member = member.clone();
                        heartbeat.generation = *generation;
                        heartbeat.assignment = assignment.clone();
                    }
                }
            }
            Action::Commit { .. } | Action::CommittedOffsets { .. } => {
                if let Some(index) = open.group_offsets.remove(&op.process) {
                    let entry = &mut self.group_offsets[index];
                    entry.outcome = op.kind;
                    entry.completed_ns = op.time_ns;
                    if let (Action::CommittedOffsets { offsets, .. }, Kind::Ok) =
                        (&op.action, op.kind)
                    {
                        entry.offsets = offsets.clone();
                    }
                }
            }
            Action::Poll { .. } | Action::Leave { .. } | Action::FinalRead { .. } => {}
        }
    }

    fn complete_send(&mut self, op: &Op, offsets: &[u64], open: &mut Open) {
        let Some(index) = open.sends.remove(&op.process) else {
            return;
        };
        let send = &mut self.sends[index];
        send.outcome = op.kind;
        send.completed_ns = op.time_ns;
        if op.kind == Kind::Ok {
            send.offsets = offsets.to_vec();
            for (value, offset) in send.values.iter().zip(offsets) {
                self.claims
                    .entry((send.partition, *offset))
                    .or_default()
                    .insert(*value);
            }
        }
    }

    /// Per partition, the offset after the highest one known to exist anywhere in the history
    /// (acknowledged, polled or in a final read).
    pub fn known_end(&self, partition: u32) -> Option<u64> {
        self.claims
            .range((partition, 0)..=(partition, u64::MAX))
            .next_back()
            .map(|((_, offset), _)| offset + 1)
    }

    /// Per partition, the offset after the highest acknowledged one.
    pub fn acknowledged_end(&self) -> BTreeMap<u32, u64> {
        let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
        for send in self.sends.iter().filter(|s| s.outcome == Kind::Ok) {
            if let Some(highest) = send.offsets.iter().max() {
                let end = ends.entry(send.partition).or_default();
                *end = (*end).max(highest + 1);
            }
        }
        ends
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
            let deleted_below = self.deleted_below(send.partition);
            for (value, offset) in send.values.iter().zip(&send.offsets) {
                if !self.read_at.contains_key(value) && *offset >= deleted_below {
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

    /// The offset below which `partition`'s records were deleted by retention: the lowest log
    /// start of its replicas' final reads (the replicas agree on it; the lowest is the one that
    /// excuses the fewest values). An unread value below it is not lost.
    pub fn deleted_below(&self, partition: u32) -> u64 {
        self.final_reads
            .iter()
            .filter(|((_, p), read)| *p == partition && !read.out_of_service)
            .map(|(_, read)| read.log_start)
            .min()
            .unwrap_or(0)
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
    /// Failed polls (each with its reason in the history).
    pub poll_errors: usize,
    /// Consumer-group tenures: a member owning a partition while live.
    pub group_tenures: usize,
    /// Successful group commits.
    pub commits_ok: usize,
    /// Acknowledged values below their partition's final log start: deleted by retention
    /// (those of them never read are not counted lost).
    pub values_deleted: usize,
}

/// What a run shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// No anomaly, and every replica was read to its end.
    #[default]
    Valid,
    /// At least one anomaly.
    Invalid,
    /// No anomaly in what was seen, but some replica was not read to its end.
    Incomplete,
}

/// The checker's verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when the verdict is VALID.
    pub valid: bool,
    /// VALID, INVALID (anomalies win) or INCOMPLETE.
    pub verdict: Verdict,
    /// Why the verdict would be INCOMPLETE: replicas not read to their end, partitions never
    /// read at the end.
    pub incomplete: Vec<String>,
    /// Replicas their nodes refused at start-up as corrupt or lost (after `corrupt`): not read,
    /// and not counted as incomplete; their partitions were read on other replicas.
    pub out_of_service: Vec<String>,
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
    (
        "denied-record",
        denied_record::DEFINITION,
        denied_record::check,
    ),
    (
        "group-exclusive",
        group_exclusive::DEFINITION,
        group_exclusive::check,
    ),
    (
        "nonmonotonic-commit",
        nonmonotonic_commit::DEFINITION,
        nonmonotonic_commit::check,
    ),
    (
        "commit-past-end",
        commit_past_end::DEFINITION,
        commit_past_end::check,
    ),
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
        values_deleted: analysis
            .sends
            .iter()
            .filter(|s| s.outcome == Kind::Ok)
            .map(|s| {
                let deleted_below = analysis.deleted_below(s.partition);
                s.values
                    .iter()
                    .zip(&s.offsets)
                    .filter(|(_, offset)| **offset < deleted_below)
                    .count()
            })
            .sum(),
        polls: analysis.polls.len(),
        poll_errors: analysis.consume_errors.len(),
        group_tenures: membership::tenures(&analysis).len(),
        commits_ok: analysis
            .group_offsets
            .iter()
            .filter(|e| e.commit && e.outcome == Kind::Ok)
            .count(),
    };
    let incomplete = completeness::missing(&analysis);
    let out_of_service = completeness::out_of_service(&analysis);
    let verdict = if anomalies.values().any(|a| a.count > 0) {
        Verdict::Invalid
    } else if !incomplete.is_empty() {
        Verdict::Incomplete
    } else {
        Verdict::Valid
    };
    Report {
        valid: verdict == Verdict::Valid,
        verdict,
        incomplete,
        out_of_service,
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
        for line in &self.out_of_service {
            out.push_str(&format!(
                "out of service (refused as corrupt or lost): {line}\n"
            ));
        }
        for line in &self.incomplete {
            out.push_str(&format!("incomplete: {line}\n"));
        }
        let verdict = match self.verdict {
            Verdict::Valid => "VALID",
            Verdict::Invalid => "INVALID",
            Verdict::Incomplete => "INCOMPLETE",
        };
        out.push_str(&format!(
            "{} sends ok ({} values), {} failed, {} unknown; {} polls ({} failed); {} distinct values read, {} deleted by retention; {} group tenures, {} commits: {verdict}\n",
            self.stats.sends_ok,
            self.stats.values_acknowledged,
            self.stats.sends_failed,
            self.stats.sends_unknown,
            self.stats.polls,
            self.stats.poll_errors,
            self.stats.values_read,
            self.stats.values_deleted,
            self.stats.group_tenures,
            self.stats.commits_ok,
        ));
        out
    }
}

#[cfg(test)]
mod tests;
