//! `raftlog bench produce`: load generator in the spirit of `kafka-producer-perf-test` and
//! `nats bench`: records/s, MB/s and latency percentiles from an HDR histogram.
//!
//! Each of `--producers` tasks keeps `--in-flight` produce requests of `--batch` records
//! outstanding against its partition (round-robin over the topic's partitions), with acks=ALL.
//! Latency is measured per request, from send to acknowledgement.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use hdrhistogram::Histogram;
use raftlog_client::v1;

/// Benchmarks.
#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Produce as fast as the settings allow (or at `--rate`) and report throughput and latency.
    Produce(ProduceBench),
}

/// Arguments of `raftlog bench produce`.
#[derive(clap::Args)]
pub struct ProduceBench {
    /// Topic to write to; created if missing.
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// Replicas per partition when the topic is created.
    #[arg(long, default_value_t = 3)]
    replicas: u32,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Records per produce request.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Concurrent producers.
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Requests each producer keeps in flight.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Target records/s over all producers (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to run, e.g. `20s`, `2m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 20s, 500ms, 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("invalid duration unit in {text:?}: use ms, s or m")),
    }
}

/// Runs a benchmark.
pub async fn run(command: BenchCommand, bootstrap: &[String]) -> anyhow::Result<()> {
    match command {
        BenchCommand::Produce(args) => produce(args, bootstrap).await,
    }
}

async fn produce(args: ProduceBench, bootstrap: &[String]) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.batch >= 1 && args.producers >= 1 && args.in_flight >= 1,
        "--batch, --producers and --in-flight must be at least 1"
    );
    let client = Arc::new(crate::connect(bootstrap).await?);
    let partitions = match client.describe_topic(&args.topic).await {
        Ok(topic) => topic.partitions.len() as u32,
        Err(error) if error.reason() == Some("TOPIC_NOT_FOUND") => {
            client
                .create_topic(&args.topic, args.partitions, args.replicas)
                .await?;
            args.partitions
        }
        Err(error) => return Err(error.into()),
    };
    // Wait for leaders before measuring.
    let ready_by = Instant::now() + Duration::from_secs(30);
    while client
        .describe_topic(&args.topic)
        .await?
        .partitions
        .iter()
        .any(|p| p.leader_id.is_none())
    {
        anyhow::ensure!(
            Instant::now() < ready_by,
            "partitions of {} have no leader after 30 s",
            args.topic
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?,
    ));
    let records_done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let value = bytes::Bytes::from(vec![b'x'; args.record_size]);
    let per_task_interval = (args.rate > 0).then(|| {
        let requests_per_sec =
            args.rate as f64 / args.batch as f64 / (args.producers * args.in_flight) as f64;
        Duration::from_secs_f64(1.0 / requests_per_sec.max(1e-6))
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for producer in 0..args.producers {
        for slot in 0..args.in_flight {
            let client = Arc::clone(&client);
            let histogram = Arc::clone(&histogram);
            let records_done = Arc::clone(&records_done);
            let errors = Arc::clone(&errors);
            let stop = Arc::clone(&stop);
            let topic = args.topic.clone();
            let value = value.clone();
            let batch = args.batch;
            let partition = ((producer * args.in_flight + slot) as u32) % partitions;
            tasks.push(tokio::spawn(async move {
                let mut next_send = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(interval) = per_task_interval {
                        tokio::time::sleep_until(next_send.into()).await;
                        next_send += interval;
                    }
                    let records = (0..batch)
                        .map(|_| v1::Record {
                            key: None,
                            value: value.clone(),
                            headers: Vec::new(),
                            timestamp_ms: 0,
                        })
                        .collect();
                    let sent = Instant::now();
                    match client.produce(&topic, partition, records).await {
                        Ok(_) => {
                            let micros = sent.elapsed().as_micros() as u64;
                            if let Ok(mut h) = histogram.lock() {
                                let _ = h.record(micros.max(1));
                            }
                            records_done.fetch_add(batch as u64, Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    let mut last = 0u64;
    while started.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !args.json {
            let now = records_done.load(Ordering::Relaxed);
            eprintln!(
                "{:>5.1}s  {:>9} records/s",
                started.elapsed().as_secs_f64(),
                now - last
            );
            last = now;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let records = records_done.load(Ordering::Relaxed);
    let records_per_sec = records as f64 / elapsed;
    let mb_per_sec = records_per_sec * args.record_size as f64 / 1e6;
    let h = histogram
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram poisoned"))?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let report = serde_json::json!({
        "topic": args.topic, "partitions": partitions, "record_size": args.record_size, "batch": args.batch,
        "producers": args.producers, "in_flight": args.in_flight, "acks": "all",
        "seconds": elapsed, "records": records, "errors": errors.load(Ordering::Relaxed),
        "records_per_sec": records_per_sec, "mb_per_sec": mb_per_sec,
        "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": h.max() as f64 / 1000.0},
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{records} records in {elapsed:.1} s: {records_per_sec:.0} records/s, {mb_per_sec:.1} MB/s; request latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}; {} errors",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            h.max() as f64 / 1000.0,
            errors.load(Ordering::Relaxed)
        );
    }
    Ok(())
}
