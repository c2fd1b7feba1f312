//! `raftlog bench consume`, and the consumer tasks that `e2e` reuses.
//!
//! Each of `--consumers` consumers has its own client (its own connections, as separate
//! processes would) and reads the partitions assigned to it round-robin, all at once: with
//! `fetch`, one request at a time per partition of up to `--fetch-bytes`, long-polling once
//! caught up; with `subscribe`, one server stream per partition, which the server fills a few
//! messages ahead of the reader. Latency is per fetch (or per stream message) while the reader
//! is behind the high watermark; waiting for new records at the end is not counted.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use raftlog_client::v1;
use raftlog_client::Client;
use raftlog_client::ClientError;
use raftlog_client::ErrorReason;
use serde_json::json;
use tokio::task::JoinHandle;

use super::produce;
use super::report;
use super::report::Progress;
use super::report::Stats;
use super::OutputArgs;
use super::Stop;
use super::TopicArgs;

/// Arguments of `raftlog bench consume`.
#[derive(clap::Args)]
pub struct ConsumeBench {
    /// Topic to read (`--partitions` and `--replicas` only matter if `--prefill` creates it).
    #[command(flatten)]
    topic: TopicArgs,
    #[command(flatten)]
    read: ConsumerArgs,
    /// Where to start: every stored record, or only records appended after the start.
    #[arg(long, value_enum, default_value = "beginning")]
    from: StartAt,
    /// Stop after this many records.
    #[arg(long)]
    count: Option<u64>,
    /// At the end of a partition, wait for new records instead of stopping (until `--count` or
    /// `--duration`). Without it, consumers stop at the end as it was when they started.
    #[arg(long)]
    follow: bool,
    /// First produce this many records (with acks=ALL, 64 per request, 4 requests in flight per
    /// partition), creating the topic if needed; not part of the measurement.
    #[arg(long, default_value_t = 0)]
    prefill: u64,
    /// Bytes per record value written by `--prefill`.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Longest time to read, e.g. `30s`, `2m`.
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    duration: Duration,
    #[command(flatten)]
    output: OutputArgs,
}

/// Where consumers start.
#[derive(Clone, Copy, clap::ValueEnum)]
enum StartAt {
    /// The log start of each partition.
    Beginning,
    /// The high watermark of each partition when the benchmark starts.
    Latest,
}

/// How consumers read.
#[derive(clap::Args, Clone)]
pub(super) struct ConsumerArgs {
    /// Concurrent consumers, each with its own connections; partitions are assigned to them
    /// round-robin (more consumers than partitions leaves some idle).
    #[arg(long, default_value_t = 1)]
    pub(super) consumers: usize,
    /// `fetch` requests (one in flight per partition) or `subscribe` server streams.
    #[arg(long, value_enum, default_value = "fetch")]
    pub(super) read_mode: ReadMode,
    /// Most record bytes per fetch response (fetch mode; the server allows up to 64 MiB).
    /// Subscribe streams use the server's default of 1 MiB per message. Larger fetches were no
    /// faster in measurements: the server builds each whole response in memory before sending
    /// it, so bigger responses mostly add latency.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub(super) fetch_bytes: u32,
}

impl ConsumerArgs {
    pub(super) fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.consumers >= 1, "--consumers must be at least 1");
        anyhow::ensure!(self.fetch_bytes >= 1, "--fetch-bytes must be at least 1");
        Ok(())
    }

    /// Parameters for the JSON report.
    pub(super) fn to_json(&self) -> serde_json::Value {
        json!({
            "consumers": self.consumers,
            "read_mode": self.read_mode.name(),
            "fetch_bytes": self.fetch_bytes,
        })
    }
}

/// How a consumer reads a partition.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum ReadMode {
    /// Fetch requests: one in flight per partition, long-polling at the end.
    Fetch,
    /// A Subscribe server stream per partition.
    Subscribe,
}

impl ReadMode {
    fn name(self) -> &'static str {
        match self {
            ReadMode::Fetch => "fetch",
            ReadMode::Subscribe => "subscribe",
        }
    }
}

/// One partition to read, from `start` up to (not including) `end` if given.
pub(super) struct PartitionRead {
    pub(super) partition: u32,
    pub(super) start: u64,
    pub(super) end: Option<u64>,
}

/// Sees every batch of records read, e.g. to measure end-to-end latency.
pub(super) type Sink = Arc<dyn Fn(&[v1::StoredRecord]) + Send + Sync>;

/// What consumer tasks do.
pub(super) struct Reads {
    pub(super) topic: String,
    pub(super) partitions: Vec<PartitionRead>,
    pub(super) args: ConsumerArgs,
    /// Fire `stop` once this many records were read in total.
    pub(super) count: Option<u64>,
    pub(super) sink: Option<Sink>,
}

/// One client per consumer, at most one per partition (more would sit idle). Connecting is
/// done before the clock starts.
pub(super) async fn connect_consumers(
    bootstrap: &[String],
    args: &ConsumerArgs,
    partitions: usize,
) -> anyhow::Result<Vec<Arc<Client>>> {
    let mut clients = Vec::new();
    for _ in 0..args.consumers.min(partitions).max(1) {
        clients.push(Arc::new(crate::connect(bootstrap).await?));
    }
    Ok(clients)
}

/// Starts one task per partition, on the consumers' clients round-robin. A task ends at its
/// partition's `end`, when `stop` fires, or with an error that retrying did not cure.
pub(super) fn spawn_consumers(
    clients: &[Arc<Client>],
    reads: Reads,
    stats: &Arc<Stats>,
    stop: &Stop,
) -> Vec<JoinHandle<anyhow::Result<()>>> {
    let claimed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (read, client) in reads.partitions.into_iter().zip(clients.iter().cycle()) {
        let reader = Reader {
            client: Arc::clone(client),
            topic: reads.topic.clone(),
            read,
            args: reads.args.clone(),
            count: reads.count.map(|count| (count, Arc::clone(&claimed))),
            sink: reads.sink.clone(),
            stats: Arc::clone(stats),
            stop: stop.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let partition = reader.read.partition;
            let topic = reader.topic.clone();
            let result = match reader.args.read_mode {
                ReadMode::Fetch => reader.fetch_loop().await,
                ReadMode::Subscribe => reader.subscribe_loop().await,
            };
            result.with_context(|| format!("reading {topic}/{partition}"))
        }));
    }
    tasks
}

/// Waits for the reader tasks, and returns the first error.
pub(super) async fn join_readers(tasks: Vec<JoinHandle<anyhow::Result<()>>>) -> anyhow::Result<()> {
    let mut first_error = None;
    for task in tasks {
        let result = task
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("reader task failed: {e}")));
        if let Err(error) = result {
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// How long a partition may fail to be read before the benchmark gives up on it.
const FAILING_MAX: Duration = Duration::from_secs(30);
/// How long a fetch at the end of a partition waits for new records: short, so that the
/// reader notices `stop` and watermark changes promptly.
const LONG_POLL_MS: u32 = 500;

struct Reader {
    client: Arc<Client>,
    topic: String,
    read: PartitionRead,
    args: ConsumerArgs,
    /// `--count`, and the records all readers have counted towards it.
    count: Option<(u64, Arc<AtomicU64>)>,
    sink: Option<Sink>,
    stats: Arc<Stats>,
    stop: Stop,
}

impl Reader {
    fn done(&self, offset: u64) -> bool {
        self.stop.is_set() || self.read.end.is_some_and(|end| offset >= end)
    }

    /// Accounts for records read, returning the offset after them. Records at or past `end`
    /// are not counted: another run's records appended meanwhile are not part of this one;
    /// nor are records past `--count`, so that the report says exactly how many were asked for.
    fn deliver(&self, records: &[v1::StoredRecord], offset: u64) -> u64 {
        let Some(last) = records.last() else {
            return offset;
        };
        let next = last.offset + 1;
        let mut keep = match self.read.end {
            Some(end) => records.iter().take_while(|r| r.offset < end).count(),
            None => records.len(),
        };
        if let Some((count, claimed)) = &self.count {
            let before = claimed.fetch_add(keep as u64, Ordering::Relaxed);
            if before + keep as u64 >= *count {
                self.stop.fire();
            }
            keep = keep.min(count.saturating_sub(before) as usize);
        }
        let records = &records[..keep];
        let bytes: usize = records.iter().map(|r| r.value.len()).sum();
        if let Some(sink) = &self.sink {
            sink(records);
        }
        self.stats.add(records.len() as u64, bytes as u64);
        next
    }

    /// Counts an error and decides whether to go on: retryable errors are, for a while.
    async fn failed(
        &self,
        error: ClientError,
        failing_since: &mut Option<Instant>,
    ) -> anyhow::Result<()> {
        self.stats.error();
        let since = *failing_since.get_or_insert_with(Instant::now);
        let retryable = error.is_retryable() || error.reason() == Some(ErrorReason::NotAReplica);
        if !retryable || since.elapsed() > FAILING_MAX {
            return Err(error.into());
        }
        let partition = self.read.partition;
        tracing::debug!(%error, topic = %self.topic, partition, "read failed; retrying");
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Refreshes the client's idea of the partition's leader.
        let _ = self.client.describe_topic(&self.topic).await;
        Ok(())
    }

    async fn fetch_loop(self) -> anyhow::Result<()> {
        let partition = self.read.partition;
        let mut offset = self.read.start;
        // Until the first answer, assume records are waiting so that the first fetch counts.
        let mut high_watermark = u64::MAX;
        let mut failing_since = None;
        while !self.done(offset) {
            let behind = offset < high_watermark;
            let wait_ms = if behind { 0 } else { LONG_POLL_MS };
            let sent = Instant::now();
            let fetch = self.client.fetch(
                &self.topic,
                partition,
                offset,
                self.args.fetch_bytes,
                wait_ms,
            );
            let result = tokio::select! {
                result = fetch => result,
                _ = self.stop.wait() => break,
            };
            match result {
                Ok(response) => {
                    failing_since = None;
                    if behind {
                        self.stats.latency(sent.elapsed());
                    }
                    high_watermark = response.high_watermark;
                    offset = self.deliver(&response.records, offset);
                }
                Err(error) => self.failed(error, &mut failing_since).await?,
            }
        }
        Ok(())
    }

    async fn subscribe_loop(self) -> anyhow::Result<()> {
        let partition = self.read.partition;
        let mut offset = self.read.start;
        let mut failing_since = None;
        'connect: while !self.done(offset) {
            let leader = self
                .client
                .describe_topic(&self.topic)
                .await
                .ok()
                .and_then(|d| {
                    d.partitions
                        .get(partition as usize)
                        .map(|p| p.leader_address.clone())
                })
                .filter(|address| !address.is_empty());
            let Some(address) = leader else {
                let error = ClientError::InvalidArgument(format!(
                    "{}/{partition} has no leader",
                    self.topic
                ));
                // No leader is a passing state during an election.
                self.stats.error();
                if failing_since.get_or_insert_with(Instant::now).elapsed() > FAILING_MAX {
                    return Err(error.into());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let subscribe = self
                .client
                .subscribe(&address, &self.topic, partition, offset);
            let mut stream = tokio::select! {
                result = subscribe => match result {
                    Ok(stream) => stream,
                    Err(error) => {
                        self.failed(error, &mut failing_since).await?;
                        continue;
                    }
                },
                _ = self.stop.wait() => break,
            };
            let mut high_watermark = u64::MAX;
            while !self.done(offset) {
                let behind = offset < high_watermark;
                let waited = Instant::now();
                let message = tokio::select! {
                    message = stream.message() => message,
                    _ = self.stop.wait() => break 'connect,
                };
                match message {
                    Ok(Some(message)) => {
                        failing_since = None;
                        if behind {
                            self.stats.latency(waited.elapsed());
                        }
                        high_watermark = message.high_watermark;
                        offset = self.deliver(&message.records, offset);
                    }
                    // The server ended the stream (it is stopping): subscribe again.
                    Ok(None) => continue 'connect,
                    Err(status) => {
                        self.failed(ClientError::from_status(&status), &mut failing_since)
                            .await?;
                        continue 'connect;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads for `--duration` (or to the end, or `--count`) and reports throughput and latency.
pub(super) async fn run(args: ConsumeBench, bootstrap: &[String]) -> anyhow::Result<()> {
    args.read.check()?;
    let client = Arc::new(crate::connect(bootstrap).await?);
    if args.prefill > 0 {
        prefill(&client, &args).await?;
    }
    let topic = &args.topic.topic;
    let description = super::existing_topic(&client, topic).await?;
    let watermarks = super::leader_watermarks(&client, &description).await?;
    let stored: u64 = watermarks.iter().map(|(start, end)| end - start).sum();
    if !args.follow {
        match args.from {
            StartAt::Beginning => anyhow::ensure!(
                stored > 0,
                "topic {topic} is empty: write to it first (raftlog bench produce --topic {topic}) or pass --prefill N"
            ),
            StartAt::Latest => anyhow::bail!(
                "--from latest reads only records appended after the start: add --follow (and run a producer)"
            ),
        }
    }
    let partitions = description
        .partitions
        .iter()
        .zip(&watermarks)
        .map(|(p, (log_start, high_watermark))| PartitionRead {
            partition: p.partition,
            start: match args.from {
                StartAt::Beginning => *log_start,
                StartAt::Latest => *high_watermark,
            },
            end: (!args.follow).then_some(*high_watermark),
        })
        .collect();

    let consumers = connect_consumers(bootstrap, &args.read, description.partitions.len()).await?;
    let stats = Stats::new()?;
    let stop = Stop::new();
    let started = Instant::now();
    let tasks = spawn_consumers(
        &consumers,
        Reads {
            topic: topic.clone(),
            partitions,
            args: args.read.clone(),
            count: args.count,
            sink: None,
        },
        &stats,
        &stop,
    );
    let progress = Progress::start(vec![("consume", Arc::clone(&stats))], args.output.quiet);
    // Either every reader reaches its end, or time (or --count, via `stop`) runs out.
    let readers = join_readers(tasks);
    tokio::pin!(readers);
    let finished = tokio::select! {
        result = &mut readers => Some(result),
        _ = super::run_for(args.duration, &stop) => None,
    };
    let seconds = started.elapsed().as_secs_f64();
    stop.fire();
    let result = match finished {
        Some(result) => result,
        None => readers.await,
    };
    drop(progress);
    result?;

    let summary = stats.summary(seconds);
    let mut parameters = json!({
        "mode": "consume", "topic": topic, "partitions": description.partitions.len(),
        "consumers_connected": consumers.len(),
        "from": match args.from { StartAt::Beginning => "beginning", StartAt::Latest => "latest" },
        "stored_records": stored,
    });
    if let (Some(p), serde_json::Value::Object(read)) =
        (parameters.as_object_mut(), args.read.to_json())
    {
        p.extend(read);
    }
    report::print(
        args.output.json,
        parameters,
        summary.to_json(),
        &summary.text("fetch"),
    );
    anyhow::ensure!(
        summary.records > 0,
        "read no records from {topic} in {seconds:.1} s"
    );
    Ok(())
}

/// Writes `--prefill` records, as fast as acks=ALL allows, before the measurement.
async fn prefill(client: &Arc<Client>, args: &ConsumeBench) -> anyhow::Result<()> {
    let description = super::ensure_topic(client, &args.topic).await?;
    let partitions = description.partitions.len() as u32;
    let stats = Stats::new()?;
    let stop = Stop::new();
    let progress = Progress::start(vec![("prefill", Arc::clone(&stats))], args.output.quiet);
    let tasks = produce::spawn_producers(
        client,
        produce::Load {
            topic: args.topic.topic.clone(),
            partitions,
            args: produce::ProducerArgs {
                record_size: args.record_size,
                batch: 64,
                producers: partitions as usize,
                in_flight: 4,
                rate: 0,
                idempotent: false,
                acks: produce::BenchAcks::All,
            },
            limit: Some(args.prefill),
            stamp: None,
        },
        &stats,
        &stop,
    );
    let interrupted = tokio::select! {
        _ = futures::future::join_all(tasks) => false,
        _ = crate::stop_requested() => true,
    };
    stop.fire();
    drop(progress);
    anyhow::ensure!(!interrupted, "interrupted while prefilling");
    let summary = stats.summary(0.0);
    anyhow::ensure!(
        summary.errors == 0,
        "prefill: {} produce requests failed ({} of {} records written)",
        summary.errors,
        summary.records,
        args.prefill
    );
    Ok(())
}
