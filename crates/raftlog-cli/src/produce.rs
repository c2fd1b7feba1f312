//! `raftlog produce`: one record per line of stdin or a file, through the batching producer.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use raftlog_client::v1;
use raftlog_client::Producer;
use raftlog_client::ProducerConfig;
use tokio::io::AsyncBufReadExt;

/// Arguments of `raftlog produce`.
#[derive(clap::Args)]
pub struct ProduceArgs {
    /// Topic to append to.
    topic: String,
    /// Partition to append to; default: by key hash, or round-robin without a key.
    #[arg(long)]
    partition: Option<u32>,
    /// Key of every record.
    #[arg(long, conflicts_with = "key_separator")]
    key: Option<String>,
    /// Split each line at the first SEP into key and value (like `kcat -K`).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Durability to wait for: `all` (fsynced on a majority) or `leader`.
    #[arg(long, value_enum, default_value = "all")]
    acks: Acks,
    /// Number records so that retries never write one twice (`--idempotent false` to disable).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    idempotent: bool,
    /// Read lines from this file instead of stdin.
    #[arg(long)]
    file: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Acks {
    All,
    Leader,
}

/// Reads every line and waits until every record is acknowledged.
pub async fn run(args: ProduceArgs, bootstrap: &[String]) -> anyhow::Result<()> {
    let client = Arc::new(crate::connect(bootstrap).await?);
    let topic = client.describe_topic(&args.topic).await?;
    if let Some(p) = args.partition {
        let count = topic.partitions.len() as u32;
        anyhow::ensure!(
            p < count,
            "topic {} has partitions 0 ..= {}, not {p}",
            args.topic,
            count.saturating_sub(1)
        );
    }
    let config = ProducerConfig {
        idempotent: args.idempotent,
        acks: match args.acks {
            Acks::All => v1::Acks::All,
            Acks::Leader => v1::Acks::Leader,
        },
        ..ProducerConfig::default()
    };
    let producer = Producer::new(Arc::clone(&client), config);
    let input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match &args.file {
        Some(path) => Box::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("open {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdin()),
    };
    let mut lines = tokio::io::BufReader::new(input).lines();

    let acknowledged = Arc::new(AtomicU64::new(0));
    let progress = (args.file.is_some() && std::io::stderr().is_terminal()).then(|| {
        let acknowledged = Arc::clone(&acknowledged);
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let n = acknowledged.load(Ordering::Relaxed);
                eprint!(
                    "\r{n} records acknowledged ({:.0}/s)   ",
                    n as f64 / started.elapsed().as_secs_f64().max(0.001)
                );
            }
        })
    });

    let (failures_tx, mut failures) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut sent = 0u64;
    let mut deliveries = tokio::task::JoinSet::new();
    while let Some(line) = lines.next_line().await.context("read input")? {
        let (key, value) = match (&args.key_separator, &args.key) {
            (Some(separator), _) => match line.split_once(separator.as_str()) {
                Some((key, value)) => (
                    Some(Bytes::from(key.to_owned())),
                    Bytes::from(value.to_owned()),
                ),
                None => (None, Bytes::from(line)),
            },
            (None, Some(key)) => (Some(Bytes::from(key.clone())), Bytes::from(line)),
            (None, None) => (None, Bytes::from(line)),
        };
        let record = v1::Record {
            key,
            value,
            headers: Vec::new(),
            timestamp_ms: 0,
        };
        let delivery = match args.partition {
            Some(partition) => producer.send_to(&args.topic, partition, record).await?,
            None => producer.send(&args.topic, record).await?,
        };
        sent += 1;
        let acknowledged = Arc::clone(&acknowledged);
        let failures_tx = failures_tx.clone();
        deliveries.spawn(async move {
            match delivery.await {
                Ok(_) => {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    let _ = failures_tx.send(error.to_string());
                }
            }
        });
        // Reap finished deliveries so the set stays small on long inputs.
        while deliveries.try_join_next().is_some() {}
    }
    while deliveries.join_next().await.is_some() {}
    if let Some(progress) = progress {
        progress.abort();
        eprintln!();
    }
    drop(failures_tx);
    let mut failed = 0u64;
    let mut first_error = None;
    while let Some(error) = failures.recv().await {
        failed += 1;
        first_error.get_or_insert(error);
    }
    let ok = acknowledged.load(Ordering::Relaxed);
    eprintln!("produced {ok} of {sent} records to {}", args.topic);
    match first_error {
        Some(error) => {
            anyhow::bail!("{failed} records were not acknowledged; first error: {error}")
        }
        None => Ok(()),
    }
}
