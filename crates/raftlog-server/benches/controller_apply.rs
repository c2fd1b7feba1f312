//! What applying one consumer-group offset commit costs the controller's state machine, with
//! 1, 100 and 1,000 consumer groups each holding committed offsets of 100 partitions (and a
//! recorded session), beside a 100-partition topic: the lifecycle issue's goal is a cost that
//! does not grow with the number of groups. Each measured iteration applies one
//! `CommitOffsets` entry of one partition, already durable in the controller's log, through
//! openraft's `RaftStateMachine::apply` (the sled batch and its flush included). At the end it
//! prints the mean per commit for each size and the ratio of the largest to the smallest.
//!
//! Run with `cargo bench -p raftlog-server --bench controller_apply`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use criterion::BenchmarkId;
use criterion::Criterion;
use openraft::storage::RaftStateMachine;
use openraft::CommittedLeaderId;
use openraft::EntryPayload;
use raftlog_server::ControllerStateMachine;
use raftlog_storage::LogConfig;
use raftlog_storage::NodeStorage;
use raftlog_storage::SegmentLog;
use raftlog_types::type_config::Entry;
use raftlog_types::type_config::LogId;
use raftlog_types::Command;
use raftlog_types::ControllerCommand;
use raftlog_types::GroupId;

const GROUP_COUNTS: [u64; 3] = [1, 100, 1_000];
const PARTITIONS: u32 = 100;

/// Groups → (commits, time) over every measured iteration.
static TOTALS: Mutex<BTreeMap<u64, (u64, Duration)>> = Mutex::new(BTreeMap::new());

/// A controller's log and state machine in a temporary directory, and the next log index.
struct Controller {
    _dir: tempfile::TempDir,
    _storage: NodeStorage,
    log: SegmentLog,
    machine: ControllerStateMachine,
    next_index: u64,
}

impl Controller {
    fn new() -> Controller {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = NodeStorage::open(dir.path(), LogConfig::default()).expect("storage");
        let (log, _, _) = storage.open_group(GroupId::CONTROLLER).expect("log");
        let machine =
            ControllerStateMachine::open(storage.state_store(), log.durability()).expect("sm");
        Controller {
            _dir: dir,
            _storage: storage,
            log,
            machine,
            next_index: 1,
        }
    }

    /// `commands` as entries, appended to the log and synced, ready to apply.
    fn durable_entries(&mut self, commands: Vec<ControllerCommand>) -> Vec<Entry> {
        let entries: Vec<Entry> = commands
            .into_iter()
            .map(|command| {
                let index = self.next_index;
                self.next_index += 1;
                Entry {
                    log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                    payload: EntryPayload::Normal(Command::Controller(command)),
                }
            })
            .collect();
        let (done, wait) = mpsc::channel();
        self.log
            .append_entries(
                entries.clone(),
                Box::new(move |result| drop(done.send(result))),
            )
            .expect("append");
        wait.recv().expect("callback").expect("sync");
        entries
    }

    async fn apply(&mut self, commands: Vec<ControllerCommand>) -> Duration {
        let entries = self.durable_entries(commands);
        let start = Instant::now();
        self.machine.apply(entries).await.expect("apply");
        start.elapsed()
    }

    /// A 100-partition topic and `groups` groups, each with a session and 100 offsets.
    async fn preload(&mut self, groups: u64) {
        self.apply(vec![ControllerCommand::CreateTopicWithConfigs {
            name: "orders".into(),
            assignments: vec![vec![1, 2, 3]; PARTITIONS as usize],
            created_at_ms: 0,
            configs: BTreeMap::new(),
        }])
        .await;
        for chunk in (0..groups).collect::<Vec<_>>().chunks(100) {
            let mut commands = Vec::new();
            for g in chunk {
                commands.push(ControllerCommand::RecordGroupSession {
                    group: format!("group-{g}"),
                    session_timeout_ms: 10_000,
                });
                commands.push(ControllerCommand::CommitOffsets {
                    group: format!("group-{g}"),
                    offsets: (0..PARTITIONS).map(|p| ("orders".into(), p, 1)).collect(),
                });
            }
            self.apply(commands).await;
        }
    }
}

fn bench_commit_apply(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut bench = c.benchmark_group("controller_apply_one_offset_commit");
    bench
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for groups in GROUP_COUNTS {
        let mut controller = Controller::new();
        runtime.block_on(controller.preload(groups));
        let mut offset = 1;
        bench.bench_with_input(BenchmarkId::from_parameter(groups), &groups, |b, groups| {
            b.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                for i in 0..iterations {
                    offset += 1;
                    let commit = ControllerCommand::CommitOffsets {
                        group: format!("group-{}", i % groups),
                        offsets: vec![(
                            "orders".into(),
                            (i % u64::from(PARTITIONS)) as u32,
                            offset,
                        )],
                    };
                    elapsed += runtime.block_on(controller.apply(vec![commit]));
                }
                if let Ok(mut totals) = TOTALS.lock() {
                    let slot = totals.entry(*groups).or_default();
                    slot.0 += iterations;
                    slot.1 += elapsed;
                }
                elapsed
            });
        });
    }
    bench.finish();
}

fn print_summary() {
    let Ok(totals) = TOTALS.lock() else { return };
    let mean = |groups: u64| {
        totals
            .get(&groups)
            .map(|(n, time)| time.as_secs_f64() * 1e6 / *n.max(&1) as f64)
    };
    println!("\nmean apply per offset commit ({PARTITIONS} partitions per group):");
    for groups in GROUP_COUNTS {
        if let Some(us) = mean(groups) {
            println!("  {groups:>5} groups: {us:8.1} µs");
        }
    }
    if let (Some(small), Some(large)) = (mean(GROUP_COUNTS[0]), mean(GROUP_COUNTS[2])) {
        println!(
            "  {} groups / {} group: {:.2}x (goal: about 1)",
            GROUP_COUNTS[2],
            GROUP_COUNTS[0],
            large / small
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_commit_apply(&mut criterion);
    criterion.final_summary();
    print_summary();
}
