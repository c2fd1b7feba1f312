//! One test run: start a cluster, run producers and consumers while the nemesis injects
//! faults, heal everything, read every partition from every node, and record it all.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use raftlog_client::v1;
use raftlog_client::Client;
use raftlog_client::ClientError;
use raftlog_client::ClientOptions;
use rand::Rng;
use rand::SeedableRng;

use crate::clock::Clocks;
use crate::cluster::ProcessCluster;
use crate::disk::Disks;
use crate::history::Action;
use crate::history::History;
use crate::history::Kind;
use crate::history::Op;
use crate::nemesis;
use crate::network::Network;

pub use crate::nemesis::Fault;

mod final_read;
mod workload_group;

/// `segment.bytes` of a topic with retention: the smallest allowed, so that segments fill and go
/// within seconds.
const RETENTION_SEGMENT_BYTES: u64 = 64 * 1024;

/// Bytes of header padding per record with retention, so that the run writes megabytes.
const RETENTION_RECORD_PADDING: usize = 1024;

/// What to run.
pub struct RunConfig {
    /// Nodes in the cluster.
    pub nodes: u64,
    /// Seconds of workload under faults.
    pub time_limit: Duration,
    /// Faults to mix (empty: none).
    pub faults: Vec<Fault>,
    /// Seed of the fault schedule.
    pub seed: u64,
    /// Partitions of the test topic.
    pub partitions: u32,
    /// Producer processes (half idempotent).
    pub producers: u64,
    /// Consumer processes.
    pub consumers: u64,
    /// The test topic's `retention.bytes` (with `segment.bytes` at its 64 KiB minimum), so that
    /// retention deletes records mid-run; `None` keeps every record. Consumers whose position
    /// falls below the log start move on to it; the checker counts nothing below each
    /// partition's final log start as lost, and still everything above it.
    pub retention_bytes: Option<u64>,
}

/// The consumer-group part of the workload. Apart from [`RunConfig`], so that callers that do
/// not choose it run the default.
#[derive(Clone, Debug)]
pub struct GroupWorkload {
    /// Members sharing the topic through the group API (0 for none).
    pub members: u64,
}

impl Default for GroupWorkload {
    fn default() -> Self {
        GroupWorkload { members: 3 }
    }
}

/// The history being recorded, shared by every process.
#[derive(Clone)]
struct Recorder {
    started: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Recorder {
    fn record(&self, process: u64, kind: Kind, action: Action) {
        let op = Op {
            process,
            kind,
            time_ns: self.started.elapsed().as_nanos() as u64,
            action,
        };
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(op);
        }
    }
}

/// Whether a failed send definitely did not happen. Only a plain producer's refusal qualifies:
/// it never retries an attempt whose outcome was unknown, so every attempt was refused (by a
/// reason the proto classifies retryable: refused before anything was written).
fn definitely_failed(error: &ClientError, idempotent: bool) -> bool {
    !idempotent && error.refused_before_write()
}

/// What one producer process sends.
struct ProducerStyle {
    /// It numbers its batches (an idempotent producer).
    idempotent: bool,
    /// Bytes of header padding per record (0: none).
    padding: usize,
}

async fn producer(
    client: Arc<Client>,
    recorder: Recorder,
    process: u64,
    style: ProducerStyle,
    partitions: u32,
    next_value: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let ProducerStyle {
        idempotent,
        padding,
    } = style;
    let mut producer_id = None;
    let mut sequences = vec![0u64; partitions as usize];
    let mut partition = (process as u32) % partitions;
    while !stop.load(Ordering::Relaxed) {
        partition = (partition + 1) % partitions;
        let values: Vec<u64> = (0..4)
            .map(|_| next_value.fetch_add(1, Ordering::Relaxed))
            .collect();
        if idempotent && producer_id.is_none() {
            producer_id = client.init_producer().await.ok();
            sequences.iter_mut().for_each(|s| *s = 0);
            if producer_id.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let sequence = producer_id.map(|id| v1::ProducerSequence {
            producer_id: id,
            base_sequence: sequences[partition as usize],
        });
        let request = v1::ProduceRequest {
            topic: "jepsen".into(),
            partition,
            records: values
                .iter()
                .map(|v| {
                    let mut record = raftlog_client::record(None, v.to_string().into_bytes());
                    if padding > 0 {
                        record.headers.push(v1::Header {
                            key: "padding".into(),
                            value: vec![b'.'; padding].into(),
                        });
                    }
                    record
                })
                .collect(),
            acks: v1::Acks::All as i32,
            timeout_ms: 0,
            producer: sequence,
        };
        recorder.record(
            process,
            Kind::Invoke,
            Action::Send {
                partition,
                values: values.clone(),
                offsets: Vec::new(),
            },
        );
        match client.send_produce(request).await {
            Ok(ack) => {
                let offsets = (0..values.len() as u64)
                    .map(|i| ack.base_offset + i)
                    .collect();
                if idempotent {
                    sequences[partition as usize] += values.len() as u64;
                }
                recorder.record(
                    process,
                    Kind::Ok,
                    Action::Send {
                        partition,
                        values,
                        offsets,
                    },
                );
            }
            Err(error) => {
                let kind = if definitely_failed(&error, idempotent) {
                    Kind::Fail
                } else {
                    Kind::Info
                };
                // After an unknown outcome an idempotent producer starts over under a new id.
                if idempotent {
                    producer_id = None;
                }
                recorder.record(
                    process,
                    kind,
                    Action::Send {
                        partition,
                        values,
                        offsets: Vec::new(),
                    },
                );
            }
        }
    }
}

async fn consumer(
    client: Arc<Client>,
    recorder: Recorder,
    process: u64,
    partitions: u32,
    stop: Arc<AtomicBool>,
) {
    let mut positions = vec![0u64; partitions as usize];
    // Partitions whose position moved to the log start past deleted records: their next poll
    // is a reset, which the checker does not count as a skip.
    let mut moved = vec![false; partitions as usize];
    while !stop.load(Ordering::Relaxed) {
        for partition in 0..partitions {
            let reset = std::mem::take(&mut moved[partition as usize]);
            recorder.record(
                process,
                Kind::Invoke,
                Action::Poll {
                    reads: Vec::new(),
                    reset,
                },
            );
            match client
                .fetch(
                    "jepsen",
                    partition,
                    positions[partition as usize],
                    64 * 1024,
                    100,
                )
                .await
            {
                Ok(response) => {
                    let reads = parse_records(partition, &response.records);
                    if let Some((_, offset, _)) = reads.last() {
                        positions[partition as usize] = offset + 1;
                    }
                    recorder.record(process, Kind::Ok, Action::Poll { reads, reset });
                }
                Err(error) => {
                    let position = positions[partition as usize];
                    record_consume_error(&recorder, process, partition, position, &error);
                    // Retention deleted what this consumer had not read yet: on to the start.
                    if let Some(log_start) = below_log_start(&error, position) {
                        positions[partition as usize] = log_start;
                        moved[partition as usize] = true;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// The log start an OFFSET_OUT_OF_RANGE names, if `position` is below it.
pub(crate) fn below_log_start(error: &ClientError, position: u64) -> Option<u64> {
    if error.reason() != Some(raftlog_client::ErrorReason::OffsetOutOfRange) {
        return None;
    }
    error
        .metadata("log_start_offset")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|start| *start > position)
}

/// The test's records as (partition, offset, value); the values are decimal numbers.
fn parse_records(partition: u32, records: &[v1::StoredRecord]) -> Vec<(u32, u64, u64)> {
    records
        .iter()
        .filter_map(|r| {
            std::str::from_utf8(&r.value)
                .ok()?
                .parse()
                .ok()
                .map(|v| (partition, r.offset, v))
        })
        .collect()
}

/// Completes a poll with its error and the ErrorReason the server gave: `fail` when the
/// server refused (nothing was read), else `info`.
fn record_consume_error(
    recorder: &Recorder,
    process: u64,
    partition: u32,
    offset: u64,
    error: &ClientError,
) {
    let kind = if error.outcome_unknown() {
        Kind::Info
    } else {
        Kind::Fail
    };
    recorder.record(
        process,
        kind,
        Action::ConsumeError {
            partition: Some(partition),
            offset: Some(offset),
            reason: error.reason_name().map(str::to_owned),
            message: error.to_string(),
        },
    );
}

/// Ends every fault: disks released, processes running (also those that exited on their own,
/// whose ids are returned), links restored, clocks reset.
fn heal(
    cluster: &mut ProcessCluster,
    network: &mut Network,
    clocks: Option<&Clocks>,
    disks: Option<&Disks>,
) -> anyhow::Result<Vec<u64>> {
    network.heal()?;
    if let Some(clocks) = clocks {
        for id in cluster.ids() {
            clocks.set_offset(id, 0)?;
        }
    }
    if let Some(disks) = disks {
        disks.heal();
    }
    let exited = crate::disk::reap_exited(cluster);
    cluster.heal()?;
    Ok(exited)
}

/// The leader of a random partition of the test topic, if one is known.
async fn random_leader(client: &Client, rng: &mut impl Rng) -> Option<u64> {
    match client.describe_topic("jepsen").await {
        Ok(topic) if !topic.partitions.is_empty() => {
            let pick = rng.random_range(0..topic.partitions.len());
            topic.partitions[pick].leader_id
        }
        _ => None,
    }
}

/// The seed of a test's run: `RAFTLOG_JEPSEN_SEED` if it is set (to replay a failure), else a
/// fresh random one each time; printed either way, so that a failure can be replayed.
pub fn test_seed() -> u64 {
    let seed = std::env::var("RAFTLOG_JEPSEN_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("seed {seed} (replay with RAFTLOG_JEPSEN_SEED={seed})");
    seed
}

/// Runs the test with the default group workload; see [`run_with_group`].
pub async fn run(config: &RunConfig, raftlog: &Path, results: &Path) -> anyhow::Result<History> {
    run_with_group(config, &GroupWorkload::default(), raftlog, results).await
}

/// Runs the test and returns its history; node logs and the nemesis log go to `results`.
pub async fn run_with_group(
    config: &RunConfig,
    group: &GroupWorkload,
    raftlog: &Path,
    results: &Path,
) -> anyhow::Result<History> {
    std::fs::create_dir_all(results)?;
    let clocks = if config.faults.contains(&Fault::Clock) {
        Some(Clocks::find(results)?)
    } else {
        None
    };
    if config.faults.iter().any(|f| f.is_partition()) {
        Network::check_available()?;
    }
    // Declared before the cluster, so dropped after it: no node holds a file when unmounting.
    let disks = if config.faults.iter().any(|f| f.is_disk()) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed ^ 0xD15C);
        Some(Disks::mount(results, config.nodes, &mut rng)?)
    } else {
        None
    };
    let mut cluster = crate::cluster::start(raftlog, results, config.nodes, clocks.clone())?;
    if let Some(disks) = &disks {
        disks.check_layout(&cluster)?;
    }
    let mut network = Network::new(
        format!("raftlog-jepsen-{}", std::process::id()),
        cluster.ips(),
    );
    let options = ClientOptions {
        request_timeout: Duration::from_secs(5),
        retry_deadline: Duration::from_secs(10),
    };
    let client = Arc::new(Client::connect_with(&cluster.addrs(), options).await?);
    let mut configs = std::collections::HashMap::new();
    if let Some(bytes) = config.retention_bytes {
        configs.insert(
            "segment.bytes".to_owned(),
            RETENTION_SEGMENT_BYTES.to_string(),
        );
        configs.insert("retention.bytes".to_owned(), bytes.to_string());
    }
    client
        .create_topic_with_configs(
            "jepsen",
            config.partitions,
            config.nodes.min(3) as u32,
            configs,
        )
        .await?;
    // Metadata reaches every node (and leaders are elected) shortly after the create returns.
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .describe_topic("jepsen")
            .await
            .map(|t| t.partitions.iter().all(|p| p.leader_id.is_some()));
        if matches!(ready, Ok(true)) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < ready_by,
            "the test topic has no leaders after 30 s: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let recorder = Recorder {
        started: Instant::now(),
        ops: Arc::default(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let next_value = Arc::new(AtomicU64::new(1));
    let mut workers = Vec::new();
    for process in 0..config.producers {
        let task = producer(
            Arc::clone(&client),
            recorder.clone(),
            process,
            ProducerStyle {
                idempotent: process % 2 == 0,
                // With retention, records of about 1 KiB fill segments within the run.
                padding: if config.retention_bytes.is_some() {
                    RETENTION_RECORD_PADDING
                } else {
                    0
                },
            },
            config.partitions,
            Arc::clone(&next_value),
            Arc::clone(&stop),
        );
        workers.push(tokio::spawn(task));
    }
    for i in 0..config.consumers {
        let task = consumer(
            Arc::clone(&client),
            recorder.clone(),
            1000 + i,
            config.partitions,
            Arc::clone(&stop),
        );
        workers.push(tokio::spawn(task));
    }
    workers.extend(workload_group::spawn(
        &cluster.addrs(),
        &recorder,
        group.members,
        "jepsen",
        &stop,
    ));

    // The nemesis: one fault at a time, healed before the next, so a majority is up and
    // connected between faults.
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let mut nemesis_log = String::new();
    let node_ids: Vec<u64> = cluster.ids();
    let deadline = Instant::now() + config.time_limit;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1000..3000))).await;
        if config.faults.is_empty() || Instant::now() >= deadline {
            continue;
        }
        let fault = config.faults[rng.random_range(0..config.faults.len())];
        let at = recorder.started.elapsed().as_secs_f64();
        let label = match fault {
            Fault::Kill | Fault::Pause => {
                let node = rng.random_range(1..=config.nodes);
                if fault == Fault::Kill {
                    cluster.kill(node);
                } else {
                    cluster.pause(node);
                }
                format!("{fault:?} node {node}")
            }
            Fault::Partition(shape) => {
                let leader = random_leader(&client, &mut rng).await;
                let links = nemesis::partition_links(shape, &node_ids, leader, &mut rng);
                for (a, b) in &links {
                    network.cut(*a, *b)?;
                }
                let links: Vec<String> = links.iter().map(|(a, b)| format!("{a}-{b}")).collect();
                format!("Partition {shape:?} cut {}", links.join(" "))
            }
            Fault::PartitionOneWay => {
                let leader = random_leader(&client, &mut rng).await;
                let (shape, links) = nemesis::oneway_links(&node_ids, leader, &mut rng);
                for (from, to) in &links {
                    network.cut_one_way(*from, *to)?;
                }
                let links: Vec<String> = links.iter().map(|(a, b)| format!("{a}>{b}")).collect();
                format!("OneWay {shape} cut {}", links.join(" "))
            }
            disk_fault @ (Fault::PowerLoss
            | Fault::PowerLossAll
            | Fault::Corrupt
            | Fault::DiskStall
            | Fault::DiskFull) => match &disks {
                Some(disks) => disks.inject(disk_fault, &mut cluster, &mut rng)?,
                None => anyhow::bail!("{disk_fault:?} without fault file systems"),
            },
            Fault::Clock => {
                let offsets = nemesis::clock_offsets(&node_ids, &mut rng);
                let mut label = String::from("Clock");
                if let Some(clocks) = &clocks {
                    for (node, offset_ms) in &offsets {
                        clocks.set_offset(*node, *offset_ms)?;
                        label
                            .push_str(&format!(" node {node} {:+.3}s", *offset_ms as f64 / 1000.0));
                    }
                }
                label
            }
        };
        tokio::time::sleep(Duration::from_millis(rng.random_range(1000..4000))).await;
        let exited = heal(&mut cluster, &mut network, clocks.as_ref(), disks.as_ref())?;
        let mut exited: String = exited
            .iter()
            .map(|id| format!(" (node {id} had exited)"))
            .collect();
        if let Some(disks) = &disks {
            exited.push_str(&disks.settle(&mut cluster).await?);
        }
        nemesis_log.push_str(&format!(
            "{at:.3} {:.3} {label}{exited}\n",
            recorder.started.elapsed().as_secs_f64()
        ));
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    heal(&mut cluster, &mut network, clocks.as_ref(), disks.as_ref())?;
    if let Some(disks) = &disks {
        disks.settle(&mut cluster).await?;
    }
    std::fs::write(results.join("nemesis.log"), nemesis_log)?;

    // Final reads: every partition from each of its replicas, to the replica's end.
    final_read::read_all(&client, &mut cluster, &recorder, "jepsen").await?;
    let ops = recorder
        .ops
        .lock()
        .map_err(|_| anyhow::anyhow!("history poisoned"))?
        .clone();
    Ok(History { ops })
}
