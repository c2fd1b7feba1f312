//! Append throughput of the segment log against the disk's own limit.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//!
//! For batches of 1, 16, 256 and 4096 records of 1 KiB, each batch made durable by one sync,
//! it measures the segment log (one Raft entry per batch, as the produce batcher builds them,
//! acknowledged by the group-commit flusher) beside a raw baseline of `pwrite` + `fdatasync`
//! into preallocated 64 MiB files, measured in the same run. At the end it prints MB/s and
//! syncs/s for both and the log's share of the baseline (goal: at least 80 %).
//!
//! Run with `cargo bench -p raftlog-storage`.

use std::collections::BTreeMap;
use std::fs::File;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use criterion::BenchmarkId;
use criterion::Criterion;
use criterion::Throughput;
use openraft::CommittedLeaderId;
use openraft::EntryPayload;
use raftlog_storage::LogConfig;
use raftlog_storage::NodeStorage;
use raftlog_storage::SegmentLog;
use raftlog_types::type_config::Entry;
use raftlog_types::type_config::LogId;
use raftlog_types::Command;
use raftlog_types::GroupId;
use raftlog_types::ProducerBatch;
use raftlog_types::Record;

const RECORD_BYTES: usize = 1024;
const BATCH_SIZES: [usize; 4] = [1, 16, 256, 4096];
const FILE_BYTES: u64 = 64 * 1024 * 1024;

/// (kind, batch size) → (bytes, syncs, elapsed) summed over every measured iteration.
type Totals = BTreeMap<(&'static str, usize), (u64, u64, Duration)>;
static TOTALS: Mutex<Totals> = Mutex::new(BTreeMap::new());

fn record_total(kind: &'static str, batch: usize, iterations: u64, elapsed: Duration) {
    if let Ok(mut totals) = TOTALS.lock() {
        let slot = totals.entry((kind, batch)).or_default();
        slot.0 += iterations * (batch * RECORD_BYTES) as u64;
        slot.1 += iterations;
        slot.2 += elapsed;
    }
}

/// Sequential `pwrite` + `fdatasync` into preallocated files, rolling to a new file when full.
struct RawWriter {
    dir: PathBuf,
    file: File,
    position: u64,
    generation: u64,
}

impl RawWriter {
    fn new(dir: &Path) -> RawWriter {
        let file = Self::create(dir, 0);
        RawWriter {
            dir: dir.to_path_buf(),
            file,
            position: 0,
            generation: 0,
        }
    }

    fn create(dir: &Path, generation: u64) -> File {
        let path = dir.join(format!("raw-{generation}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create raw file");
        // SAFETY: plain syscall on a descriptor owned by `file`.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, FILE_BYTES as i64) };
        assert_eq!(rc, 0, "fallocate failed");
        file.sync_all().expect("sync raw file");
        File::open(dir)
            .and_then(|d| d.sync_all())
            .expect("sync dir");
        file
    }

    fn write_synced(&mut self, buffer: &[u8]) {
        if self.position + buffer.len() as u64 > FILE_BYTES {
            let old = self.dir.join(format!("raw-{}", self.generation));
            self.generation += 1;
            self.file = Self::create(&self.dir, self.generation);
            self.position = 0;
            std::fs::remove_file(old).expect("remove old raw file");
        }
        self.file
            .write_all_at(buffer, self.position)
            .expect("write");
        self.file.sync_data().expect("fdatasync");
        self.position += buffer.len() as u64;
    }
}

fn batch_entry(index: u64, batch: usize) -> Entry {
    let value = Bytes::from(vec![0xa5u8; RECORD_BYTES]);
    let record = Record {
        key: None,
        value,
        headers: Vec::new(),
        timestamp_ms: 0,
    };
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command::AppendBatches(vec![ProducerBatch {
            producer: None,
            records: vec![record; batch],
        }])),
    }
}

fn append_synced(log: &SegmentLog, entry: Entry) {
    let (done, wait) = mpsc::channel();
    log.append_entries([entry], Box::new(move |result| drop(done.send(result))))
        .expect("append");
    wait.recv().expect("callback").expect("sync");
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_1KiB_records");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for batch in BATCH_SIZES {
        group.throughput(Throughput::Bytes((batch * RECORD_BYTES) as u64));

        group.bench_with_input(
            BenchmarkId::new("raw_pwrite_fdatasync", batch),
            &batch,
            |b, &batch| {
                let dir = tempfile::TempDir::new().expect("temp dir");
                let mut writer = RawWriter::new(dir.path());
                let buffer = vec![0xa5u8; batch * RECORD_BYTES];
                b.iter_custom(|iterations| {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        writer.write_synced(&buffer);
                    }
                    let elapsed = started.elapsed();
                    record_total("raw", batch, iterations, elapsed);
                    elapsed
                });
            },
        );

        group.bench_with_input(
            BenchmarkId::new("segment_log", batch),
            &batch,
            |b, &batch| {
                let dir = tempfile::TempDir::new().expect("temp dir");
                let storage =
                    NodeStorage::open(dir.path(), LogConfig::default()).expect("open storage");
                let (log, _state_machine, _) = storage.open_group(GroupId(1)).expect("open group");
                let mut next = 0u64;
                b.iter_custom(|iterations| {
                    let entries: Vec<Entry> = (0..iterations)
                        .map(|i| batch_entry(next + i, batch))
                        .collect();
                    let started = Instant::now();
                    for entry in entries {
                        append_synced(&log, entry);
                    }
                    let elapsed = started.elapsed();
                    next += iterations;
                    record_total("segment_log", batch, iterations, elapsed);
                    // Keep the disk from filling: drop sealed segments, outside the measurement.
                    if let Some(last) = log.last_log_id() {
                        log.purge_upto(last).expect("purge");
                    }
                    elapsed
                });
            },
        );
    }
    group.finish();
}

fn print_summary() {
    let Ok(totals) = TOTALS.lock() else { return };
    println!();
    println!("batch  | raw MB/s | raw syncs/s | log MB/s | log syncs/s | log/raw");
    println!("-------|----------|-------------|----------|-------------|--------");
    for batch in BATCH_SIZES {
        let rate = |kind| {
            totals.get(&(kind, batch)).map(|(bytes, syncs, elapsed)| {
                let secs = elapsed.as_secs_f64().max(f64::EPSILON);
                (*bytes as f64 / secs / 1e6, *syncs as f64 / secs)
            })
        };
        if let (Some((raw_mb, raw_syncs)), Some((log_mb, log_syncs))) =
            (rate("raw"), rate("segment_log"))
        {
            println!(
                "{batch:>6} | {raw_mb:>8.1} | {raw_syncs:>11.0} | {log_mb:>8.1} | {log_syncs:>11.0} | {:>5.0} %",
                100.0 * log_mb / raw_mb
            );
        }
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_append(&mut criterion);
    criterion.final_summary();
    print_summary();
}
