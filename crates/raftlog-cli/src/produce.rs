//! `raftlog produce`: one record per stdin line.

use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncBufReadExt;

/// Lines sent in one produce request at most.
const BATCH_LINES_MAX: usize = 1000;
/// A partial batch is sent once stdin has been quiet this long, so typed lines go out at once.
const LINGER: Duration = Duration::from_millis(20);

/// Arguments of `raftlog produce`.
#[derive(clap::Args)]
pub struct ProduceArgs {
    /// Topic to append to.
    topic: String,
    /// Partition to append to; default: chosen by key hash, or round-robin without a key.
    #[arg(long)]
    partition: Option<u32>,
    /// Key of every record.
    #[arg(long)]
    key: Option<String>,
}

/// FNV-1a, so a key maps to the same partition from any client.
fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Reads stdin to its end, producing every line.
pub async fn run(args: ProduceArgs, bootstrap: &[String]) -> anyhow::Result<()> {
    let client = crate::connect(bootstrap).await?;
    let topic = client.describe_topic(&args.topic).await?;
    let partitions = topic.partitions.len() as u32;
    if let Some(p) = args.partition {
        anyhow::ensure!(
            p < partitions,
            "topic {} has partitions 0 ..= {}, not {p}",
            args.topic,
            partitions.saturating_sub(1)
        );
    }
    let key = args.key.map(String::into_bytes);
    let mut next_round_robin = 0u32;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut produced = 0u64;
    let mut at_end = false;
    while !at_end {
        let Some(first) = lines.next_line().await.context("read stdin")? else {
            break;
        };
        let mut batch = vec![first];
        // Gather what is already there; a quiet stdin sends the batch (`next_line` is cancel-safe).
        while batch.len() < BATCH_LINES_MAX {
            match tokio::time::timeout(LINGER, lines.next_line()).await {
                Ok(line) => match line.context("read stdin")? {
                    Some(line) => batch.push(line),
                    None => {
                        at_end = true;
                        break;
                    }
                },
                Err(_quiet) => break,
            }
        }
        let partition = match (args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => (key_hash(k) % u64::from(partitions)) as u32,
            (None, None) => {
                next_round_robin = (next_round_robin + 1) % partitions;
                next_round_robin
            }
        };
        let count = batch.len() as u64;
        let records = batch
            .into_iter()
            .map(|line| raftlog_client::record(key.clone(), line.into_bytes()))
            .collect();
        let ack = client.produce(&args.topic, partition, records).await?;
        produced += count;
        eprintln!(
            "partition {partition}: offsets {} ..= {}",
            ack.base_offset,
            ack.base_offset + count - 1
        );
    }
    eprintln!("produced {produced} records to {}", args.topic);
    Ok(())
}
