//! The consumer-group workload: a few members consume the test topic through the group API
//! (join, heartbeat, fetch, commit) while the nemesis runs, and record what they believed they
//! owned (every join and heartbeat with its answer), what they delivered, and what they
//! committed or read back as committed.
//!
//! Each member keeps its side of the proto's consumer-group promise, so that a violation in the
//! history is the cluster's: it consumes only what its last adopted answer lists, reports that
//! answer's generation in its next heartbeat, stops consuming once a session timeout has passed
//! since it sent its last answered heartbeat (and then joins again), commits only what it owns,
//! and joins again giving up everything (`owned` empty).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use raftlog_client::v1;
use raftlog_client::Client;
use raftlog_client::ClientError;
use raftlog_client::ClientOptions;
use raftlog_client::ErrorReason;
use tokio::task::JoinHandle;

use super::Recorder;
use crate::history::Action;
use crate::history::Kind;

/// The group the members share.
const GROUP: &str = "jepsen-group";
/// The members' session timeout: short, so that faults expire sessions and move partitions.
const SESSION_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one group or fetch call of a member may take, retries included: well inside the
/// session, so that an answer still leaves time to consume.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a member commits its positions.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// Longest wait of a fetch for new records.
const FETCH_WAIT_MS: u32 = 100;
/// Record bytes per fetch.
const FETCH_BYTES_MAX: u32 = 64 * 1024;
/// Process number of the first member (producers count from 0, plain consumers from 1000).
const FIRST_PROCESS: u64 = 2000;

/// Starts `members` members consuming `topic`; they leave the group once `stop` is set.
pub(super) fn spawn(
    addrs: &[String],
    recorder: &Recorder,
    members: u64,
    topic: &str,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    (0..members)
        .map(|i| {
            let addrs = addrs.to_vec();
            let recorder = recorder.clone();
            let topic = topic.to_owned();
            let stop = Arc::clone(stop);
            tokio::spawn(async move {
                let options = ClientOptions {
                    request_timeout: CALL_TIMEOUT,
                    retry_deadline: CALL_TIMEOUT,
                };
                // The cluster answered the run's own client a moment ago; a member that cannot
                // connect simply takes no part.
                if let Ok(client) = Client::connect_with(&addrs, options).await {
                    Member::new(client, recorder, FIRST_PROCESS + i, topic)
                        .run(&stop)
                        .await;
                }
            })
        })
        .collect()
}

/// How a failed call ended in the history: `fail` if nothing happened, else `info`.
fn outcome(error: &ClientError) -> Kind {
    if error.outcome_unknown() {
        Kind::Info
    } else {
        Kind::Fail
    }
}

struct Member {
    client: Client,
    recorder: Recorder,
    process: u64,
    topic: String,
    /// Member id; `None` before joining and after giving everything up.
    id: Option<String>,
    /// Generation of the last adopted answer.
    generation: u64,
    /// Owned partitions and the position of the next record to deliver (`None` until read from
    /// the committed positions).
    owned: BTreeMap<u32, Option<u64>>,
    /// Partitions whose next poll starts over (a new tenure: monotonicity restarts).
    fresh: BTreeSet<u32>,
    /// A session timeout after sending the last answered join or heartbeat.
    live_until: Instant,
    heartbeat_interval: Duration,
    next_heartbeat: Instant,
    next_commit: Instant,
}

impl Member {
    fn new(client: Client, recorder: Recorder, process: u64, topic: String) -> Member {
        let now = Instant::now();
        Member {
            client,
            recorder,
            process,
            topic,
            id: None,
            generation: 0,
            owned: BTreeMap::new(),
            fresh: BTreeSet::new(),
            live_until: now,
            heartbeat_interval: SESSION_TIMEOUT / 3,
            next_heartbeat: now,
            next_commit: now,
        }
    }

    async fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.step().await;
        }
        self.leave().await;
    }

    /// One round: keep the membership, then read and commit what is owned.
    async fn step(&mut self) {
        if self.id.is_some() && Instant::now() >= self.live_until {
            // The session may have expired at the coordinator: stop consuming, join again.
            self.id = None;
        }
        if self.id.is_none() {
            self.join().await;
        } else if Instant::now() >= self.next_heartbeat {
            self.heartbeat().await;
        }
        self.resolve_positions().await;
        let positions: Vec<(u32, u64)> = self
            .owned
            .iter()
            .filter_map(|(p, position)| position.map(|o| (*p, o)))
            .collect();
        for (partition, position) in &positions {
            self.fetch(*partition, *position).await;
        }
        if Instant::now() >= self.next_commit {
            self.commit().await;
            self.next_commit = Instant::now() + COMMIT_INTERVAL;
        }
        if positions.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn heartbeat_action(&self, join: bool, answer: Option<(&str, u64, Vec<u32>)>) -> Action {
        let (member, generation, assignment) = match answer {
            Some((member, generation, assignment)) => (member.to_owned(), generation, assignment),
            None => (self.id.clone().unwrap_or_default(), 0, Vec::new()),
        };
        Action::Heartbeat {
            group: GROUP.into(),
            join,
            member,
            generation,
            assignment,
            session_timeout_ms: SESSION_TIMEOUT.as_millis() as u64,
            reason: None,
        }
    }

    /// Joins as a new member, giving up everything held (first in the history, then here).
    async fn join(&mut self) {
        self.owned.clear();
        let sent = Instant::now();
        self.recorder.record(
            self.process,
            Kind::Invoke,
            self.heartbeat_action(true, None),
        );
        let request = v1::JoinGroupRequest {
            group: GROUP.into(),
            member_id: String::new(),
            topics: vec![self.topic.clone()],
            strategy: v1::AssignmentStrategy::Range as i32,
            session_timeout_ms: SESSION_TIMEOUT.as_millis() as u32,
            client_id: format!("jepsen-{}", self.process),
            owned: Vec::new(),
        };
        match self.client.join_group(request).await {
            Ok(answer) => {
                let interval = Duration::from_millis(u64::from(answer.heartbeat_interval_ms));
                self.heartbeat_interval =
                    interval.clamp(Duration::from_millis(100), SESSION_TIMEOUT / 3);
                self.answered(
                    true,
                    sent,
                    &answer.member_id,
                    answer.generation,
                    &answer.assignment,
                );
            }
            Err(error) => {
                self.failed(true, &error);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    async fn heartbeat(&mut self) {
        let Some(id) = self.id.clone() else {
            return;
        };
        let sent = Instant::now();
        self.recorder.record(
            self.process,
            Kind::Invoke,
            self.heartbeat_action(false, None),
        );
        match self.client.heartbeat(GROUP, &id, self.generation).await {
            Ok(answer) => self.answered(false, sent, &id, answer.generation, &answer.assignment),
            Err(error) => {
                self.failed(false, &error);
                if matches!(
                    error.reason(),
                    Some(ErrorReason::UnknownMember | ErrorReason::IllegalGeneration)
                ) {
                    self.id = None;
                }
            }
        }
        self.next_heartbeat = Instant::now() + self.heartbeat_interval;
    }

    /// Records an answer and adopts it, unless it came too late to be live on.
    fn answered(
        &mut self,
        join: bool,
        sent: Instant,
        member: &str,
        generation: u64,
        assignment: &[v1::TopicPartition],
    ) {
        let assignment: Vec<u32> = assignment
            .iter()
            .filter(|p| p.topic == self.topic)
            .map(|p| p.partition)
            .collect();
        let action = self.heartbeat_action(join, Some((member, generation, assignment.clone())));
        self.recorder.record(self.process, Kind::Ok, action);
        if Instant::now() >= sent + SESSION_TIMEOUT {
            self.id = None;
            self.owned.clear();
            return;
        }
        self.id = Some(member.to_owned());
        self.generation = generation;
        self.live_until = sent + SESSION_TIMEOUT;
        self.owned.retain(|p, _| assignment.contains(p));
        for partition in assignment {
            if let std::collections::btree_map::Entry::Vacant(entry) = self.owned.entry(partition) {
                entry.insert(None);
                self.fresh.insert(partition);
            }
        }
    }

    fn failed(&self, join: bool, error: &ClientError) {
        let mut action = self.heartbeat_action(join, None);
        if let Action::Heartbeat { reason, .. } = &mut action {
            *reason = error.reason_name().map(str::to_owned);
        }
        self.recorder.record(self.process, outcome(error), action);
    }

    /// Reads the committed positions of owned partitions that have none yet.
    async fn resolve_positions(&mut self) {
        let unknown: Vec<u32> = self
            .owned
            .iter()
            .filter(|(_, position)| position.is_none())
            .map(|(p, _)| *p)
            .collect();
        if unknown.is_empty() {
            return;
        }
        let action = |offsets| Action::CommittedOffsets {
            group: GROUP.into(),
            offsets,
        };
        self.recorder
            .record(self.process, Kind::Invoke, action(Vec::new()));
        let wanted = unknown
            .iter()
            .map(|p| v1::TopicPartition {
                topic: self.topic.clone(),
                partition: *p,
            })
            .collect();
        match self.client.fetch_offsets(GROUP, wanted).await {
            Ok(committed) => {
                let committed: BTreeMap<u32, u64> = committed
                    .into_iter()
                    .filter(|o| o.topic == self.topic)
                    .map(|o| (o.partition, o.offset))
                    .collect();
                let read = committed.iter().map(|(p, o)| (*p, *o)).collect();
                self.recorder.record(self.process, Kind::Ok, action(read));
                for partition in unknown {
                    if let Some(position) = self.owned.get_mut(&partition) {
                        // The topic keeps everything, so without a commit the log starts at 0.
                        *position = Some(committed.get(&partition).copied().unwrap_or(0));
                    }
                }
            }
            Err(_) => {
                self.recorder
                    .record(self.process, Kind::Fail, action(Vec::new()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Fetches one owned partition and delivers what it got, if still live and owning it.
    async fn fetch(&mut self, partition: u32, position: u64) {
        let reset = self.fresh.contains(&partition);
        self.recorder.record(
            self.process,
            Kind::Invoke,
            Action::Poll {
                reads: Vec::new(),
                reset,
            },
        );
        let fetched = self
            .client
            .fetch(
                &self.topic,
                partition,
                position,
                FETCH_BYTES_MAX,
                FETCH_WAIT_MS,
            )
            .await;
        match fetched {
            Ok(response) => {
                let live = Instant::now() < self.live_until && self.owned.contains_key(&partition);
                let reads: Vec<(u32, u64, u64)> = if live {
                    super::parse_records(partition, &response.records)
                } else {
                    Vec::new()
                };
                if let Some((_, offset, _)) = reads.last() {
                    self.owned.insert(partition, Some(offset + 1));
                }
                self.fresh.remove(&partition);
                self.recorder
                    .record(self.process, Kind::Ok, Action::Poll { reads, reset });
            }
            Err(error) => {
                super::record_consume_error(
                    &self.recorder,
                    self.process,
                    partition,
                    position,
                    &error,
                );
                // Retention deleted what this member had not read yet: on to the log start,
                // as a reset (the checker does not count it as a skip).
                if let Some(log_start) = super::below_log_start(&error, position) {
                    if let Some(owned) = self.owned.get_mut(&partition) {
                        *owned = Some(log_start);
                        self.fresh.insert(partition);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Commits the positions of what it owns and has delivered, while live.
    async fn commit(&mut self) {
        let Some(id) = self.id.clone() else {
            return;
        };
        let offsets: Vec<(u32, u64)> = self
            .owned
            .iter()
            .filter_map(|(p, position)| position.map(|o| (*p, o)))
            .collect();
        if offsets.is_empty() || Instant::now() >= self.live_until {
            return;
        }
        let mut action = Action::Commit {
            group: GROUP.into(),
            member: id.clone(),
            generation: self.generation,
            offsets: offsets.clone(),
            reset: false,
            reason: None,
        };
        self.recorder
            .record(self.process, Kind::Invoke, action.clone());
        let request = v1::CommitOffsetsRequest {
            group: GROUP.into(),
            member_id: id,
            generation: self.generation,
            offsets: offsets
                .iter()
                .map(|(partition, offset)| v1::PartitionOffset {
                    topic: self.topic.clone(),
                    partition: *partition,
                    offset: *offset,
                })
                .collect(),
        };
        match self.client.commit_offsets(request).await {
            Ok(()) => self.recorder.record(self.process, Kind::Ok, action),
            Err(error) => {
                if let Action::Commit { reason, .. } = &mut action {
                    *reason = error.reason_name().map(str::to_owned);
                }
                self.recorder.record(self.process, outcome(&error), action);
            }
        }
    }

    /// Leaves the group: from the request on it owns nothing.
    async fn leave(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        self.owned.clear();
        let action = Action::Leave {
            group: GROUP.into(),
            member: id.clone(),
        };
        self.recorder
            .record(self.process, Kind::Invoke, action.clone());
        let kind = match self.client.leave_group(GROUP, &id).await {
            Ok(()) => Kind::Ok,
            Err(error) => outcome(&error),
        };
        self.recorder.record(self.process, kind, action);
    }
}
