//! `raftlog bench disk`: what the disk under a data directory allows a replicated log, in the
//! spirit of PostgreSQL's `pg_test_fsync` and of `fio` with `--fdatasync=1`.
//!
//! raftlog acknowledges a record once a majority has `fdatasync`ed it, so two properties of the
//! disk bound every produce benchmark, whatever the software does:
//! - the latency of one small synced append, alone and with as many appends at once as a local
//!   cluster has replicas (a leader and its followers sharing one disk sync together);
//! - the bandwidth of large synced appends by that many writers, which every replica's copy of
//!   every record shares when all nodes share the disk.
//!
//! Files are preallocated as log segments are (`raftlog_storage::preallocate`), written in a
//! fresh temporary directory inside `--dir`, and removed afterwards.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::json;
use serde_json::Value;

use super::parse_duration;
use super::report::round;
use super::OutputArgs;

/// Space each writer preallocates; writers wrap around to its start when they reach its end.
const WRITER_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Measure synced-append latency and bandwidth of the disk under a directory.
#[derive(clap::Args)]
pub struct DiskBench {
    /// Directory on the disk to measure (the one the nodes' `data_dir` is on). A temporary
    /// directory is created inside it and removed afterwards.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// How long each measurement runs.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    duration: Duration,
    /// Bytes of each small synced append: a 1 KiB record with its batch and frame headers.
    #[arg(long, default_value_t = 1100, value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    append_bytes: u64,
    /// Bytes of each large synced append in the bandwidth measurements, one measurement per
    /// size: a node syncs a produce request's or an AppendEntries' worth at once, and the disk's
    /// bandwidth grows with it.
    #[arg(long, value_delimiter = ',', default_values_t = [64 << 10, 256 << 10, 1 << 20], value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    chunk_bytes: Vec<u64>,
    /// Writers at once in the concurrent measurements: the replicas of a partition, when every
    /// node of a local cluster keeps its data on this disk.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    writers: u32,
    /// Record size for the records/s ceiling derived from the bandwidth.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    record_size: u64,
    #[command(flatten)]
    output: OutputArgs,
}

/// What one measurement found.
struct SyncedWrites {
    seconds: f64,
    syncs: u64,
    bytes: u64,
    /// `fdatasync` latencies in microseconds.
    latency: Histogram<u64>,
}

impl SyncedWrites {
    fn syncs_per_sec(&self) -> f64 {
        self.syncs as f64 / self.seconds.max(f64::EPSILON)
    }

    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(f64::EPSILON)
    }

    fn quantile_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    fn to_json(&self) -> Value {
        json!({
            "seconds": round(self.seconds, 3),
            "syncs": self.syncs,
            "syncs_per_sec": round(self.syncs_per_sec(), 1),
            "mb_per_sec": round(self.mb_per_sec(), 1),
            "sync_latency_ms": {
                "p50": self.quantile_ms(0.5),
                "p90": self.quantile_ms(0.9),
                "p99": self.quantile_ms(0.99),
                "max": self.latency.max() as f64 / 1000.0,
            },
        })
    }
}

/// The three kinds of measurement of one run.
struct Measurements {
    /// Small appends, one writer.
    alone: SyncedWrites,
    /// Small appends, `--writers` at once.
    together: SyncedWrites,
    /// Large appends by `--writers` at once, per chunk size.
    bandwidth: Vec<(u64, SyncedWrites)>,
}

/// Runs the measurements and prints what they found.
pub async fn run(args: DiskBench) -> anyhow::Result<()> {
    let DiskBench {
        dir,
        duration,
        append_bytes,
        chunk_bytes,
        writers,
        record_size,
        output,
    } = args;
    anyhow::ensure!(
        !duration.is_zero(),
        "--duration must be longer than 0: each measurement needs at least one sync"
    );
    let scratch = tempfile::Builder::new()
        .prefix(".raftlog-bench-disk-")
        .tempdir_in(&dir)
        .with_context(|| format!("cannot create a directory in {}", dir.display()))?;
    let path = scratch.path().to_path_buf();
    let quiet = output.quiet;
    let say = move |what: String| {
        if !quiet {
            eprintln!("measuring {what} for {duration:?}");
        }
    };
    // Ctrl-C stops the writers at their next sync, so that their files are still removed.
    let interrupted = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&interrupted);
    let measuring = tokio::task::spawn_blocking(move || -> anyhow::Result<Measurements> {
        let stop = stop.as_ref();
        say(format!("synced {append_bytes}-byte appends, 1 writer"));
        let alone = synced_appends(&path, 1, append_bytes, duration, stop)?;
        say(format!(
            "synced {append_bytes}-byte appends, {writers} writers"
        ));
        let together = synced_appends(&path, writers, append_bytes, duration, stop)?;
        let mut bandwidth = Vec::new();
        for chunk in chunk_bytes {
            say(format!("synced {chunk}-byte appends, {writers} writers"));
            bandwidth.push((
                chunk,
                synced_appends(&path, writers, chunk, duration, stop)?,
            ));
        }
        Ok(Measurements {
            alone,
            together,
            bandwidth,
        })
    });
    tokio::pin!(measuring);
    let measured = tokio::select! {
        measured = &mut measuring => Some(measured.context("disk benchmark thread")??),
        _ = crate::stop_requested() => {
            interrupted.store(true, Ordering::Relaxed);
            let _ = measuring.await;
            None
        }
    };
    scratch
        .close()
        .with_context(|| format!("cannot remove the benchmark's files in {}", dir.display()))?;
    let Some(measured) = measured else {
        anyhow::bail!("interrupted; the benchmark's files are removed");
    };
    let Measurements {
        alone,
        together,
        bandwidth,
    } = measured;
    // Every replica writes every record, so with all of them on this disk a record costs
    // `writers` times its size (framing not counted: this is an upper bound).
    let records_ceiling = |writes: &SyncedWrites| {
        writes.mb_per_sec() * 1e6 / (record_size * u64::from(writers)) as f64
    };
    let mut text = format!(
        "synced {append_bytes}-byte appends: 1 writer p50 {:.3} ms p99 {:.3} ms ({:.0} syncs/s); \
         {writers} writers p50 {:.3} ms p99 {:.3} ms ({:.0} syncs/s)",
        alone.quantile_ms(0.5),
        alone.quantile_ms(0.99),
        alone.syncs_per_sec(),
        together.quantile_ms(0.5),
        together.quantile_ms(0.99),
        together.syncs_per_sec(),
    );
    for (chunk, writes) in &bandwidth {
        text.push_str(&format!(
            "\nsynced {chunk}-byte appends, {writers} writers: {:.0} MB/s, at most {:.0} records/s \
             of {record_size} bytes with {writers} replicas on this disk",
            writes.mb_per_sec(),
            records_ceiling(writes),
        ));
    }
    super::report::print(
        output.json,
        json!({
            "mode": "disk",
            "dir": dir.display().to_string(),
            "append_bytes": append_bytes,
            "writers": writers,
            "record_size": record_size,
            "duration_ms": duration.as_millis() as u64,
        }),
        json!({
            "small_appends_alone": alone.to_json(),
            "small_appends_together": together.to_json(),
            "large_appends_together": bandwidth.iter().map(|(chunk, writes)| {
                let mut report = writes.to_json();
                report["chunk_bytes"] = json!(chunk);
                report["records_per_sec_ceiling"] = json!(round(records_ceiling(writes), 0));
                report
            }).collect::<Vec<_>>(),
        }),
        &text,
    );
    Ok(())
}

/// `writers` threads, each appending `bytes` and then calling `fdatasync` in a loop for
/// `duration` (or until `stop` is set), on a preallocated file of its own. The clock starts once
/// every file is ready.
fn synced_appends(
    dir: &Path,
    writers: u32,
    bytes: u64,
    duration: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<SyncedWrites> {
    anyhow::ensure!(!stop.load(Ordering::Relaxed), "interrupted");
    let file_bytes = WRITER_FILE_BYTES.max(bytes);
    let files = (0..writers)
        .map(|writer| prepared_file(&dir.join(format!("writer-{writer}-{bytes}")), file_bytes))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let until = started + duration;
    let results: Vec<anyhow::Result<(u64, Histogram<u64>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|(path, file)| {
                scope.spawn(move || write_and_sync(path, file, bytes, file_bytes, until, stop))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a disk writer thread panicked")))
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    for (path, file) in files {
        drop(file);
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    let mut total = SyncedWrites {
        seconds,
        syncs: 0,
        bytes: 0,
        latency: latency_histogram()?,
    };
    for result in results {
        let (syncs, latency) = result?;
        total.syncs += syncs;
        total.bytes += syncs * bytes;
        total
            .latency
            .add(latency)
            .context("merging latency histograms")?;
    }
    Ok(total)
}

fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).context("latency histogram")
}

/// A new file at `path`, preallocated to `file_bytes` and synced, so that the measurement sees
/// appends into reserved space, as a log segment's are.
fn prepared_file(path: &Path, file_bytes: u64) -> anyhow::Result<(PathBuf, File)> {
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    raftlog_storage::preallocate(&file, path, 0, file_bytes)
        .with_context(|| format!("cannot preallocate {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    Ok((path.to_path_buf(), file))
}

/// One writer: appends `bytes` and syncs until `until`, wrapping around at `file_bytes`;
/// returns its syncs and their latencies.
fn write_and_sync(
    path: &Path,
    file: &File,
    bytes: u64,
    file_bytes: u64,
    until: Instant,
    stop: &AtomicBool,
) -> anyhow::Result<(u64, Histogram<u64>)> {
    let buffer = vec![0x5a_u8; bytes as usize];
    let mut latency = latency_histogram()?;
    let (mut syncs, mut position) = (0u64, 0u64);
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        if position + bytes > file_bytes {
            position = 0;
        }
        file.write_all_at(&buffer, position)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let sync_started = Instant::now();
        file.sync_data()
            .with_context(|| format!("fdatasync of {} failed", path.display()))?;
        latency.saturating_record((sync_started.elapsed().as_micros() as u64).max(1));
        position += bytes;
        syncs += 1;
    }
    Ok((syncs, latency))
}
