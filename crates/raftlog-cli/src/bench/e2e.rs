//! `raftlog bench e2e`: producers and consumers at once, measuring for every record the time
//! from the produce request being sent to a consumer reading it.
//!
//! Producers stamp each value with its send time (nanoseconds since an `Instant` this process
//! took at the start, so no clock synchronisation is involved) and a run id; consumers start at
//! the high watermark before the producers start and measure every stamped record they read.
//! After `--duration` the producers stop and the consumers get up to `--drain` to catch up.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use serde_json::json;
use serde_json::Value;

use super::consume;
use super::consume::ConsumerArgs;
use super::consume::PartitionRead;
use super::produce;
use super::produce::ProducerArgs;
use super::produce::Stamp;
use super::report;
use super::report::Progress;
use super::report::Stats;
use super::OutputArgs;
use super::Stop;
use super::TopicArgs;

/// Arguments of `raftlog bench e2e`.
#[derive(clap::Args)]
pub struct E2eBench {
    #[command(flatten)]
    topic: TopicArgs,
    #[command(flatten)]
    load: ProducerArgs,
    #[command(flatten)]
    read: ConsumerArgs,
    /// How long to produce, e.g. `20s`, `2m`.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    duration: Duration,
    /// How long consumers may take after the producers stop to read what was produced.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    drain: Duration,
    #[command(flatten)]
    output: OutputArgs,
}

/// A run id that differs between runs and processes, so that records a previous run left in
/// the topic are never measured.
fn run_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Runs producers and consumers together and reports end-to-end latency.
pub(super) async fn run(args: E2eBench, bootstrap: &[String]) -> anyhow::Result<()> {
    args.load.check()?;
    args.read.check()?;
    anyhow::ensure!(
        args.load.record_size >= produce::STAMP_BYTES,
        "--record-size must be at least {} for e2e: each value carries its send time",
        produce::STAMP_BYTES
    );
    let client = Arc::new(crate::connect(bootstrap).await?);
    let description = super::ensure_topic(&client, &args.topic).await?;
    let topic = description.name.clone();
    let partitions = description.partitions.len() as u32;
    let watermarks = super::leader_watermarks(&client, &description).await?;

    let stamp = Stamp {
        origin: Instant::now(),
        run: run_id(),
    };
    let produced = Stats::new()?;
    let fetched = Stats::new()?;
    let seen = Stats::new()?;
    let sink: consume::Sink = {
        let seen = Arc::clone(&seen);
        Arc::new(move |records| {
            let now = stamp.origin.elapsed();
            let mut bytes = 0u64;
            let latencies: Vec<Duration> = records
                .iter()
                .filter_map(|r| {
                    let sent = stamp.sent_at(&r.value)?;
                    bytes += r.value.len() as u64;
                    Some(now.saturating_sub(sent))
                })
                .collect();
            seen.add(latencies.len() as u64, bytes);
            seen.latencies(latencies);
        })
    };
    let consumers =
        consume::connect_consumers(bootstrap, &args.read, description.partitions.len()).await?;
    let consumer_stop = Stop::new();
    let readers = consume::spawn_consumers(
        &consumers,
        consume::Reads {
            topic: topic.clone(),
            partitions: description
                .partitions
                .iter()
                .zip(&watermarks)
                .map(|(p, (_, high_watermark))| PartitionRead {
                    partition: p.partition,
                    start: *high_watermark,
                    end: None,
                })
                .collect(),
            args: args.read.clone(),
            count: None,
            sink: Some(sink),
        },
        &fetched,
        &consumer_stop,
    );

    let progress = Progress::start(
        vec![
            ("produce", Arc::clone(&produced)),
            ("e2e", Arc::clone(&seen)),
        ],
        args.output.quiet,
    );
    let producer_stop = Stop::new();
    let started = Instant::now();
    let producers = produce::spawn_producers(
        &client,
        produce::Load {
            topic: topic.clone(),
            partitions,
            args: args.load.clone(),
            limit: None,
            stamp: Some(stamp),
        },
        &produced,
        &producer_stop,
    );
    super::run_for(args.duration, &producer_stop).await;
    producer_stop.fire();
    futures::future::join_all(producers).await;
    let produce_seconds = started.elapsed().as_secs_f64();

    // Consumers may still be reading what was acknowledged last.
    let drain_by = Instant::now() + args.drain;
    let mut drained = false;
    while Instant::now() < drain_by {
        if seen.records() >= produced.records() {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = if drained {
        started.elapsed().as_secs_f64()
    } else {
        produce_seconds
    };
    consumer_stop.fire();
    let read_result = consume::join_readers(readers).await;
    drop(progress);
    read_result?;

    let produce_summary = produced.summary(produce_seconds);
    let summary = seen.summary(seconds);
    let unseen = produce_summary.records.saturating_sub(summary.records);
    let mut parameters = json!({"mode": "e2e", "topic": topic, "partitions": partitions});
    for extra in [args.load.to_json(), args.read.to_json()] {
        if let (Some(p), Value::Object(extra)) = (parameters.as_object_mut(), extra) {
            p.extend(extra);
        }
    }
    let mut measured = summary.to_json();
    if let Some(m) = measured.as_object_mut() {
        m.insert("produce".into(), produce_summary.to_json());
        m.insert("unseen".into(), json!(unseen));
        m.insert(
            "fetch_errors".into(),
            json!(fetched.summary(seconds).errors),
        );
    }
    let text = format!(
        "produce: {}\nend-to-end: {}{}",
        produce_summary.text("request"),
        summary.text("end-to-end"),
        if unseen > 0 {
            format!("\n{unseen} acknowledged records were not read within --drain")
        } else {
            String::new()
        }
    );
    report::print(args.output.json, parameters, measured, &text);
    produce::warn_if_rate_missed(&args.load, &produce_summary);
    anyhow::ensure!(
        summary.records > 0,
        "consumers saw none of the {} records produced to {topic}",
        produce_summary.records
    );
    Ok(())
}
