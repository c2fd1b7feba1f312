//! `raftlog bench produce`, and the producer tasks that `consume --prefill` and `e2e` reuse.
//!
//! Producer `i` writes to partition `i mod partitions` and keeps `--in-flight` requests of
//! `--batch` records outstanding against it, with acks=ALL unless `--acks` says otherwise.
//! Latency is per request, from send to acknowledgement, and every receipt is checked for
//! "fsynced on a majority". With `--idempotent` each of those request slots is an idempotent
//! producer of its own (its own producer id and sequence), as `kafka-producer-perf-test` runs
//! with `enable.idempotence=true`: the partition checks every request's sequence.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use raftlog_client::v1;
use raftlog_client::Client;
use serde_json::json;
use tokio::task::JoinHandle;

use super::report;
use super::report::Progress;
use super::report::Stats;
use super::OutputArgs;
use super::Stop;
use super::TopicArgs;

/// Arguments of `raftlog bench produce`.
#[derive(clap::Args)]
pub struct ProduceBench {
    #[command(flatten)]
    topic: TopicArgs,
    #[command(flatten)]
    load: ProducerArgs,
    /// How long to run, e.g. `20s`, `500ms`, `2m`.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    duration: Duration,
    /// Send this many records in all and stop, instead of running for `--duration`.
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    #[command(flatten)]
    output: OutputArgs,
}

/// How producers load the cluster.
#[derive(clap::Args, Clone)]
pub(super) struct ProducerArgs {
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    pub(super) record_size: usize,
    /// Records per produce request.
    #[arg(long, default_value_t = 64)]
    pub(super) batch: usize,
    /// Concurrent producers; producer i writes to partition i mod partitions.
    #[arg(long, default_value_t = 4)]
    pub(super) producers: usize,
    /// Requests each producer keeps in flight.
    #[arg(long, default_value_t = 1)]
    pub(super) in_flight: usize,
    /// Target records/s over all producers (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub(super) rate: u64,
    /// Idempotent producers: each request slot gets a producer id, and every request carries
    /// its sequence, so that a retry is never written twice.
    #[arg(long)]
    pub(super) idempotent: bool,
    /// Durability to ask for. raftlog acknowledges only what is fsynced on a majority, so
    /// `leader` is answered like `all`; the report counts any receipt that says otherwise.
    #[arg(long, value_enum, default_value_t = BenchAcks::All)]
    pub(super) acks: BenchAcks,
}

/// `--acks` of the producer benchmarks.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BenchAcks {
    /// Fsynced on a majority of the replicas.
    All,
    /// Fsynced on the leader.
    Leader,
}

impl BenchAcks {
    fn to_proto(self) -> v1::Acks {
        match self {
            BenchAcks::All => v1::Acks::All,
            BenchAcks::Leader => v1::Acks::Leader,
        }
    }

    fn name(self) -> &'static str {
        match self {
            BenchAcks::All => "all",
            BenchAcks::Leader => "leader",
        }
    }
}

impl ProducerArgs {
    pub(super) fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.batch >= 1 && self.producers >= 1 && self.in_flight >= 1,
            "--batch, --producers and --in-flight must be at least 1"
        );
        Ok(())
    }

    /// Parameters for the JSON report.
    pub(super) fn to_json(&self) -> serde_json::Value {
        json!({
            "record_size": self.record_size, "batch": self.batch, "producers": self.producers,
            "in_flight": self.in_flight, "rate": self.rate, "acks": self.acks.name(),
            "idempotent": self.idempotent,
        })
    }
}

/// Stamps each value so that a consumer can tell when it was sent: bytes 0..8 hold the send
/// time as nanoseconds since `origin` and bytes 8..16 the `run` id (little endian), so that
/// records of another run are not mistaken for this one's.
#[derive(Clone, Copy)]
pub(super) struct Stamp {
    pub(super) origin: Instant,
    pub(super) run: u64,
}

/// Bytes a stamp occupies at the start of a value.
pub(super) const STAMP_BYTES: usize = 16;

impl Stamp {
    /// The send time of a stamped value, if it carries this run's id.
    pub(super) fn sent_at(&self, value: &[u8]) -> Option<Duration> {
        let nanos = u64::from_le_bytes(value.get(0..8)?.try_into().ok()?);
        let run = u64::from_le_bytes(value.get(8..16)?.try_into().ok()?);
        (run == self.run).then(|| Duration::from_nanos(nanos))
    }
}

/// What producer tasks do.
pub(super) struct Load {
    pub(super) topic: String,
    pub(super) partitions: u32,
    pub(super) args: ProducerArgs,
    /// Stop after this many records in total (None: until stopped).
    pub(super) limit: Option<u64>,
    pub(super) stamp: Option<Stamp>,
}

/// Starts the producer tasks; they run until `stop` fires or `load.limit` records are sent.
pub(super) fn spawn_producers(
    client: &Arc<Client>,
    load: Load,
    stats: &Arc<Stats>,
    stop: &Stop,
) -> Vec<JoinHandle<()>> {
    let args = &load.args;
    let template = Bytes::from(vec![b'x'; args.record_size]);
    // Each slot paces itself: the slots together send `rate` records/s.
    let slot_interval = (args.rate > 0).then(|| {
        let requests_per_sec =
            args.rate as f64 / args.batch as f64 / (args.producers * args.in_flight) as f64;
        Duration::from_secs_f64(1.0 / requests_per_sec.max(1e-6))
    });
    let claimed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for producer in 0..args.producers {
        let partition = (producer as u32) % load.partitions.max(1);
        for slot in 0..args.in_flight {
            let client = Arc::clone(client);
            let stats = Arc::clone(stats);
            let stop = stop.clone();
            let claimed = Arc::clone(&claimed);
            let topic = load.topic.clone();
            let template = template.clone();
            let (batch, limit, stamp) = (args.batch as u64, load.limit, load.stamp);
            let (idempotent, acks) = (args.idempotent, args.acks.to_proto());
            // Spread the slots' first sends over one interval so that a paced run does not
            // send in bursts of producers * in_flight requests.
            let offset = slot_interval.map(|i| {
                i.mul_f64(
                    (producer * args.in_flight + slot) as f64
                        / (args.producers * args.in_flight) as f64,
                )
            });
            tasks.push(tokio::spawn(async move {
                let mut next_send = Instant::now() + offset.unwrap_or_default();
                // (producer id, next sequence) of this slot when idempotent.
                let mut sequence: Option<(u64, u64)> = None;
                while !stop.is_set() {
                    if idempotent && sequence.is_none() {
                        match client.init_producer().await {
                            Ok(id) => sequence = Some((id, 0)),
                            Err(error) => {
                                tracing::debug!(%error, "init producer failed");
                                stats.error();
                                tokio::select! {
                                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                                    _ = stop.wait() => {}
                                }
                                continue;
                            }
                        }
                    }
                    let count = match limit {
                        None => batch,
                        Some(limit) => {
                            let first = claimed.fetch_add(batch, Ordering::Relaxed);
                            if first >= limit {
                                break;
                            }
                            batch.min(limit - first)
                        }
                    };
                    if let Some(interval) = slot_interval {
                        tokio::select! {
                            _ = tokio::time::sleep_until(next_send.into()) => {}
                            _ = stop.wait() => break,
                        }
                        next_send += interval;
                    }
                    let sent = Instant::now();
                    let value = match stamp {
                        Some(stamp) => stamped(&template, stamp, sent),
                        None => template.clone(),
                    };
                    let records = (0..count)
                        .map(|_| v1::Record {
                            key: None,
                            value: value.clone(),
                            headers: Vec::new(),
                            timestamp_ms: 0,
                        })
                        .collect();
                    let producer =
                        sequence.map(|(producer_id, base_sequence)| v1::ProducerSequence {
                            producer_id,
                            base_sequence,
                        });
                    let request = v1::ProduceRequest {
                        topic: topic.clone(),
                        partition,
                        records,
                        acks: acks as i32,
                        timeout_ms: 0,
                        producer,
                    };
                    match client.send_produce(request).await {
                        Ok(response) => {
                            let durability = response.receipt.map(|r| r.durability());
                            if durability != Some(v1::Durability::MajorityFsynced) {
                                stats.below_majority();
                            }
                            stats.latency(sent.elapsed());
                            stats.add(count, count * template.len() as u64);
                            if let Some((_, next)) = sequence.as_mut() {
                                *next += count;
                            }
                        }
                        Err(error) => {
                            tracing::debug!(%error, partition, "produce failed");
                            stats.error();
                            // The partition's view of this sequence is unknown now: go on
                            // under a new producer id, as the client's producer does.
                            sequence = None;
                        }
                    }
                }
            }));
        }
    }
    tasks
}

/// Says on stderr when producers fell short of `--rate`: each slot waits for its request's
/// acknowledgement, so a paced run cannot go faster than the slots' round trips allow, and
/// latencies at a rate that was not reached describe a different load.
pub(super) fn warn_if_rate_missed(args: &ProducerArgs, summary: &report::Summary) {
    let achieved = summary.records_per_sec();
    if args.rate > 0 && achieved < 0.95 * args.rate as f64 {
        eprintln!(
            "warning: producers reached {achieved:.0} of the --rate {} records/s; raise --in-flight, --producers or --batch",
            args.rate
        );
    }
}

fn stamped(template: &Bytes, stamp: Stamp, sent: Instant) -> Bytes {
    let mut value = template.to_vec();
    let nanos = sent.duration_since(stamp.origin).as_nanos() as u64;
    // Values shorter than a stamp (refused by `e2e` up front) go out unstamped.
    if let Some(head) = value.get_mut(0..STAMP_BYTES) {
        head[0..8].copy_from_slice(&nanos.to_le_bytes());
        head[8..16].copy_from_slice(&stamp.run.to_le_bytes());
    }
    Bytes::from(value)
}

/// Produces for `--duration` and reports throughput and request latency.
pub(super) async fn run(args: ProduceBench, bootstrap: &[String]) -> anyhow::Result<()> {
    args.load.check()?;
    let client = Arc::new(crate::connect(bootstrap).await?);
    let description = super::ensure_topic(&client, &args.topic).await?;
    let partitions = description.partitions.len() as u32;
    let stats = Stats::new()?;
    let stop = Stop::new();
    let progress = Progress::start(vec![("produce", Arc::clone(&stats))], args.output.quiet);
    let started = Instant::now();
    let mut tasks = spawn_producers(
        &client,
        Load {
            topic: args.topic.topic.clone(),
            partitions,
            args: args.load.clone(),
            limit: args.count,
            stamp: None,
        },
        &stats,
        &stop,
    );
    match args.count {
        // The producers stop by themselves once every record is claimed.
        Some(_) => {
            let all_done = async {
                for task in tasks.iter_mut() {
                    let _ = task.await;
                }
            };
            tokio::select! {
                _ = all_done => {}
                _ = crate::stop_requested() => {}
            }
        }
        None => super::run_for(args.duration, &stop).await,
    }
    stop.fire();
    // Tasks already awaited above are finished; a JoinHandle must not be polled again.
    for task in tasks.iter_mut().filter(|task| !task.is_finished()) {
        let _ = task.await;
    }
    drop(progress);
    let summary = stats.summary(started.elapsed().as_secs_f64());
    let mut parameters = json!({
        "mode": "produce", "topic": args.topic.topic, "partitions": partitions,
        "acks_below_majority": stats.acks_below_majority(),
    });
    if let (Some(p), serde_json::Value::Object(load)) =
        (parameters.as_object_mut(), args.load.to_json())
    {
        p.extend(load);
    }
    report::print(
        args.output.json,
        parameters,
        summary.to_json(),
        &summary.text("request"),
    );
    warn_if_rate_missed(&args.load, &summary);
    anyhow::ensure!(
        summary.records > 0,
        "no produce request succeeded ({} failed); see RAFTLOG_LOG=debug for why",
        summary.errors
    );
    Ok(())
}
