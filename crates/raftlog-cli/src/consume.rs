//! `raftlog consume`: print records of one or all partitions.

use std::time::Duration;

use std::io::Write;

use anyhow::Context;
use bytes::Bytes;
use raftlog_client::v1;

/// Arguments of `raftlog consume`.
#[derive(clap::Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Partition to read; default: every partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Where to start: `beginning`, `end`, or an offset.
    #[arg(long, default_value = "beginning")]
    from: String,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long)]
    follow: bool,
    /// Stop after this many records.
    #[arg(long)]
    count: Option<u64>,
    /// Output format: `text` (the value per line) or `json` (partition, offset, key, value,
    /// timestamp_ms, headers per line).
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Consume as a member of this consumer group: partitions are shared with the group's other
    /// members and positions are committed after every printed batch (at-least-once).
    #[arg(long)]
    group: Option<String>,
    /// With --group: leave the group after this long without a heartbeat.
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: u64,
}

use crate::Format;

fn text(bytes: &Bytes) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn print_record(
    out: &mut impl Write,
    format: Format,
    partition: u32,
    record: &v1::StoredRecord,
) -> std::io::Result<()> {
    match format {
        Format::Text => writeln!(out, "{}", text(&record.value)),
        Format::Json => {
            let headers: serde_json::Map<String, serde_json::Value> = record
                .headers
                .iter()
                .map(|h| (h.key.clone(), serde_json::Value::String(text(&h.value))))
                .collect();
            let line = serde_json::json!({
                "partition": partition,
                "offset": record.offset,
                "key": record.key.as_ref().map(text),
                "value": text(&record.value),
                "timestamp_ms": record.timestamp_ms,
                "headers": headers,
            });
            writeln!(out, "{line}")
        }
    }
}

/// Reads and prints until the end (or forever with `--follow`, or until `--count`).
pub async fn run(args: ConsumeArgs, bootstrap: &[String]) -> anyhow::Result<()> {
    if let Some(group) = args.group.clone() {
        return run_in_group(args, group, bootstrap).await;
    }
    let client = crate::connect(bootstrap).await?;
    let topic = client.describe_topic(&args.topic).await?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) => {
            anyhow::ensure!(
                (p as usize) < topic.partitions.len(),
                "topic {} has no partition {p}",
                args.topic
            );
            vec![p]
        }
        None => (0..topic.partitions.len() as u32).collect(),
    };
    let mut positions = Vec::new();
    for partition in &partitions {
        let description = &topic.partitions[*partition as usize];
        let offset = match args.from.as_str() {
            "beginning" => description.log_start_offset,
            "end" => description.high_watermark,
            other => {
                let offset = other.parse::<u64>().with_context(|| {
                    format!("--from must be beginning, end or an offset, got {other:?}")
                })?;
                // The server checks the range and names the valid one.
                client.fetch(&args.topic, *partition, offset, 1, 0).await?;
                offset
            }
        };
        // Without --follow, stop at the end as it was when we started.
        positions.push((*partition, offset, description.high_watermark));
    }
    let single = partitions.len() == 1;
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    loop {
        let mut progressed = false;
        let mut all_done = true;
        for (partition, offset, end) in positions.iter_mut() {
            if !args.follow && *offset >= *end {
                continue;
            }
            all_done = false;
            // One followed partition long-polls; several are polled in turn.
            let wait_ms = if args.follow && single { 1000 } else { 0 };
            let response = match client
                .fetch(&args.topic, *partition, *offset, 0, wait_ms)
                .await
            {
                Ok(response) => response,
                Err(error) if error.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = client.describe_topic(&args.topic).await;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            for record in &response.records {
                match print_record(&mut out, args.format, *partition, record) {
                    Ok(()) => {}
                    // The reader went away (e.g. `| head`): that is the end, not an error.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e).context("write to stdout"),
                }
                *offset = record.offset + 1;
                printed += 1;
                progressed = true;
                if args.count.is_some_and(|count| printed >= count) {
                    return Ok(());
                }
            }
        }
        if all_done {
            return Ok(());
        }
        if !progressed && args.follow && !single {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn to_stored(record: &raftlog_client::ConsumerRecord) -> v1::StoredRecord {
    v1::StoredRecord {
        offset: record.offset,
        key: record.key.clone(),
        value: record.value.clone(),
        headers: record
            .headers
            .iter()
            .map(|(key, value)| v1::Header {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        timestamp_ms: record.timestamp_ms,
    }
}

/// `consume --group`: poll, print, commit; leave the group on exit.
async fn run_in_group(
    args: ConsumeArgs,
    group: String,
    bootstrap: &[String],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.partition.is_none(),
        "--partition cannot be combined with --group: the group assigns partitions"
    );
    let offset_reset = match args.from.as_str() {
        "beginning" => raftlog_client::OffsetReset::Earliest,
        "end" => raftlog_client::OffsetReset::Latest,
        other => anyhow::bail!("with --group, --from must be beginning or end (where partitions without a committed position start), got {other:?}"),
    };
    let client = std::sync::Arc::new(crate::connect(bootstrap).await?);
    let config = raftlog_client::ConsumerConfig {
        group: Some(group),
        client_id: format!("raftlog-cli-{}", std::process::id()),
        session_timeout: Duration::from_millis(args.session_timeout_ms),
        offset_reset,
        ..raftlog_client::ConsumerConfig::default()
    };
    let mut consumer = raftlog_client::Consumer::new(client, config);
    consumer.subscribe(&[args.topic.as_str()]).await?;
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    let stop = crate::stop_requested();
    tokio::pin!(stop);
    'polling: loop {
        let records = tokio::select! {
            _ = &mut stop => break,
            records = consumer.poll() => records?,
        };
        let idle = records.is_empty();
        for (index, record) in records.iter().enumerate() {
            match print_record(&mut out, args.format, record.partition, &to_stored(record)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break 'polling,
                Err(e) => return Err(e).context("write to stdout"),
            }
            printed += 1;
            if args.count.is_some_and(|count| printed >= count) {
                // Commit exactly what was printed: rewind each partition to its first record
                // not printed (records of one partition come in offset order).
                let mut rewind: std::collections::BTreeMap<(&str, u32), u64> =
                    std::collections::BTreeMap::new();
                for unprinted in &records[index + 1..] {
                    rewind
                        .entry((unprinted.topic.as_str(), unprinted.partition))
                        .or_insert(unprinted.offset);
                }
                for ((topic, partition), offset) in rewind {
                    consumer.seek(topic, partition, offset)?;
                }
                break 'polling;
            }
        }
        out.flush().context("write to stdout")?;
        if let Err(error) = consumer.commit().await {
            tracing::warn!(%error, "commit failed; the records will be delivered again");
        }
        if idle && !args.follow {
            break;
        }
    }
    consumer.close().await?;
    Ok(())
}
