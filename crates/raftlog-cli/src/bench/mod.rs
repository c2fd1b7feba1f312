//! `raftlog bench`: load generators in the spirit of `kafka-producer-perf-test`,
//! `kafka-consumer-perf-test`, `rpk` and `nats bench`.
//!
//! - `produce`: producers append as fast as the settings allow (or at `--rate`); latency is
//!   per request, from send to acknowledgement (acks=ALL).
//! - `consume`: consumers read a topic's partitions from the beginning (or only new records);
//!   latency is per fetch.
//! - `e2e`: both at once; latency is per record, from produce send to the consumer seeing it.
//! - `disk`: synced-append latency and bandwidth of the disk under a data directory, the
//!   physical bounds of the other modes' results when every node shares that disk.
//! - `plot`: draws the reports of a `benchmarks/run.sh` run (or of one `--json` run) as an SVG.
//!
//! Every mode prints a progress line per second on stderr (unless `--quiet`) and a summary on
//! stdout, as text or with `--json` as one object with the same top-level shape
//! (`records_per_sec`, `mb_per_sec`, `latency_ms` {p50, p90, p99, p999, max}).

mod consume;
mod disk;
mod e2e;
mod plot;
mod produce;
mod report;

use std::time::Duration;
use std::time::Instant;

use raftlog_client::v1;
use raftlog_client::Client;
use raftlog_client::ErrorReason;
use tokio::sync::watch;

/// Benchmarks.
#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Produce as fast as the settings allow (or at `--rate`) and report throughput and latency.
    Produce(produce::ProduceBench),
    /// Read a topic as fast as possible and report throughput and fetch latency.
    Consume(consume::ConsumeBench),
    /// Produce and consume at once and report end-to-end latency (send to seen by a consumer).
    E2e(e2e::E2eBench),
    /// Measure what the disk under a directory allows: synced-append latency (one writer, and
    /// one per replica at once) and synced-write bandwidth, with the records/s it caps.
    Disk(disk::DiskBench),
    /// Draw benchmark reports (a `benchmarks/run.sh` results file, or one `--json` report) as an
    /// SVG: latency by percentile and throughput per scenario.
    Plot(plot::PlotArgs),
}

/// Runs a benchmark.
pub async fn run(command: BenchCommand, bootstrap: &[String]) -> anyhow::Result<()> {
    match command {
        BenchCommand::Produce(args) => produce::run(args, bootstrap).await,
        BenchCommand::Consume(args) => consume::run(args, bootstrap).await,
        BenchCommand::E2e(args) => e2e::run(args, bootstrap).await,
        BenchCommand::Disk(args) => disk::run(args).await,
        BenchCommand::Plot(args) => plot::run(args),
    }
}

/// The topic a benchmark uses, and its shape if the benchmark has to create it.
#[derive(clap::Args, Clone)]
struct TopicArgs {
    /// Topic to use.
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// Replicas per partition when the topic is created.
    #[arg(long, default_value_t = 3)]
    replicas: u32,
    /// A topic config to create the topic with, KEY=VALUE (repeatable), e.g.
    /// `--config retention.bytes=268435456` to measure with retention deleting segments.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = crate::topic::parse_config)]
    configs: Vec<(String, String)>,
}

/// Output options every mode shares.
#[derive(clap::Args, Clone)]
struct OutputArgs {
    /// Print the summary as one JSON object on stdout instead of a line of text.
    #[arg(long)]
    json: bool,
    /// No per-second progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 20s, 500ms, 2m"))?;
    let seconds = |factor: u64| {
        n.checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration {text:?} is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!(
            "invalid duration unit in {text:?}: use ms, s, m or h"
        )),
    }
}

/// A stop signal shared by the tasks of a benchmark: cheap to check in a loop, and awaitable so
/// that a task blocked on the network notices it at once.
#[derive(Clone)]
struct Stop {
    sender: std::sync::Arc<watch::Sender<bool>>,
}

impl Stop {
    fn new() -> Stop {
        Stop {
            sender: std::sync::Arc::new(watch::channel(false).0),
        }
    }

    fn fire(&self) {
        self.sender.send_replace(true);
    }

    fn is_set(&self) -> bool {
        *self.sender.borrow()
    }

    async fn wait(&self) {
        let mut receiver = self.sender.subscribe();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        let _ = receiver.wait_for(|stopped| *stopped).await;
    }
}

/// Waits `duration`, or less if `stop` fires or the user presses Ctrl-C; either way the
/// benchmark then stops and still prints what it measured.
async fn run_for(duration: Duration, stop: &Stop) {
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = stop.wait() => {}
        _ = crate::stop_requested() => {}
    }
}

/// Describes `topic`, creating it with the given shape if it does not exist, and waits until
/// every partition has a leader so that measurement does not include elections.
async fn ensure_topic(client: &Client, topic: &TopicArgs) -> anyhow::Result<v1::TopicDescription> {
    match client.describe_topic(&topic.topic).await {
        Ok(_) => {}
        Err(error) if error.reason() == Some(ErrorReason::TopicNotFound) => {
            let configs = crate::topic::config_map(topic.configs.clone())?;
            match client
                .create_topic_with_configs(&topic.topic, topic.partitions, topic.replicas, configs)
                .await
            {
                Ok(_) => {}
                // Another benchmark process created it meanwhile: fine, use it.
                Err(error) if error.reason() == Some(ErrorReason::TopicExists) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(error) => return Err(error.into()),
    }
    wait_for_leaders(client, &topic.topic).await
}

/// Describes an existing topic; a missing one is an error that says how to get one.
async fn existing_topic(client: &Client, topic: &str) -> anyhow::Result<v1::TopicDescription> {
    match client.describe_topic(topic).await {
        Ok(_) => wait_for_leaders(client, topic).await,
        Err(error) if error.reason() == Some(ErrorReason::TopicNotFound) => anyhow::bail!(
            "topic {topic} does not exist: write to it first (raftlog bench produce --topic {topic}) or pass --prefill N"
        ),
        Err(error) => Err(error.into()),
    }
}

/// Waits (up to 30 s) until every partition of `topic` has a leader.
async fn wait_for_leaders(client: &Client, topic: &str) -> anyhow::Result<v1::TopicDescription> {
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        let description = client.describe_topic(topic).await?;
        let leaderless = description
            .partitions
            .iter()
            .filter(|p| p.leader_id.is_none())
            .count();
        if leaderless == 0 {
            return Ok(description);
        }
        anyhow::ensure!(
            Instant::now() < ready_by,
            "{leaderless} of {} partitions of {topic} have no leader after 30 s",
            description.partitions.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Log start and high watermark of every partition as its leader sees them. A topic
/// description may come from a follower whose watermark lags, which would make a consumer
/// stop early (or an end-to-end run start on old records).
async fn leader_watermarks(
    client: &Client,
    description: &v1::TopicDescription,
) -> anyhow::Result<Vec<(u64, u64)>> {
    let fetches = description.partitions.iter().map(|p| async move {
        // max_bytes 1 returns at most one record: only the watermarks are wanted.
        let response = client
            .fetch(&description.name, p.partition, p.log_start_offset, 1, 0)
            .await?;
        anyhow::Ok((response.log_start_offset, response.high_watermark))
    });
    futures::future::try_join_all(fetches).await
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("9999999999999999999h").is_err());
    }
}
