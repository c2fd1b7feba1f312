//! `raftlog topic`: create, list, describe, alter (configs), delete.

use std::collections::HashMap;

use raftlog_client::v1;

/// Topic commands.
#[derive(clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name: letters, digits, '.', '_' and '-'.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Replicas per partition.
        #[arg(long, default_value_t = 3)]
        replicas: u32,
        /// A topic config, KEY=VALUE (repeatable), e.g. `--config retention.ms=86400000`.
        /// Keys: retention.ms, retention.bytes, segment.bytes, segment.ms, cleanup.policy,
        /// delete.retention.ms, min.compaction.lag.ms, max.message.bytes.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
    },
    /// Set or remove topic configs, all at once; prints the configs in effect after.
    Alter {
        /// Topic name.
        name: String,
        /// A config to set, KEY=VALUE (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
        /// A config to remove, so that it takes the cluster's default again (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// List topics.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::Format,
    },
    /// Show every partition's replicas, leader, term and high watermark, and the configs.
    Describe {
        /// Topic name.
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::Format,
    },
    /// Delete a partition's records below an offset on every replica (its log start moves
    /// there), as Kafka's kafka-delete-records does.
    DeleteRecords {
        /// Topic name.
        name: String,
        /// Partition number.
        #[arg(long)]
        partition: u32,
        /// Records below this offset are deleted; at most the high watermark.
        #[arg(long, value_name = "OFFSET")]
        before: u64,
    },
    /// Delete a topic and its records.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// Runs a topic command.
pub async fn run(command: TopicCommand, bootstrap: &[String]) -> anyhow::Result<()> {
    let client = crate::connect(bootstrap).await?;
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replicas,
            configs,
        } => {
            let configs = config_map(configs)?;
            let topic = client
                .create_topic_with_configs(&name, partitions, replicas, configs)
                .await?;
            println!(
                "created topic {} with {} partitions, {} replicas each",
                topic.name,
                topic.partitions.len(),
                topic.replicas
            );
        }
        TopicCommand::List {
            format: crate::Format::Json,
        } => {
            for topic in client.list_topics().await? {
                println!(
                    "{}",
                    serde_json::json!({"name": topic.name, "partitions": topic.partitions, "replicas": topic.replicas})
                );
            }
        }
        TopicCommand::Describe {
            name,
            format: crate::Format::Json,
        } => {
            let topic = client.describe_topic(&name).await?;
            let partitions: Vec<_> = topic
                .partitions
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "partition": p.partition, "group_id": p.group_id, "replicas": p.replicas, "leader_id": p.leader_id,
                        "leader_address": p.leader_address, "term": p.term, "high_watermark": p.high_watermark,
                        "log_start_offset": p.log_start_offset,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({"name": topic.name, "replicas": topic.replicas, "partitions": partitions,
                    "configs": configs_json(&topic.configs)})
            );
        }
        TopicCommand::List {
            format: crate::Format::Text,
        } => {
            let topics = client.list_topics().await?;
            println!("{:<40} {:>10} {:>8}", "TOPIC", "PARTITIONS", "REPLICAS");
            for topic in topics {
                println!(
                    "{:<40} {:>10} {:>8}",
                    topic.name, topic.partitions, topic.replicas
                );
            }
        }
        TopicCommand::Describe {
            name,
            format: crate::Format::Text,
        } => {
            let topic = client.describe_topic(&name).await?;
            println!(
                "topic {} ({} replicas per partition)",
                topic.name, topic.replicas
            );
            println!(
                "{:>9} {:>6} {:>8} {:>6} {:>14} {:>10}  REPLICAS",
                "PARTITION", "GROUP", "LEADER", "TERM", "HIGH-WATERMARK", "LOG-START"
            );
            for p in topic.partitions {
                let leader = p
                    .leader_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string());
                let replicas = p
                    .replicas
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                println!(
                    "{:>9} {:>6} {:>8} {:>6} {:>14} {:>10}  {replicas}",
                    p.partition, p.group_id, leader, p.term, p.high_watermark, p.log_start_offset
                );
            }
            println!();
            print_configs(&topic.configs);
        }
        TopicCommand::Alter {
            name,
            configs,
            delete_configs,
        } => {
            if configs.is_empty() && delete_configs.is_empty() {
                anyhow::bail!("nothing to alter: give --config KEY=VALUE or --delete-config KEY");
            }
            let configs = config_map(configs)?;
            let after = client
                .alter_topic_configs(&name, configs, delete_configs)
                .await?;
            println!("altered topic {name}");
            print_configs(&after);
        }
        TopicCommand::DeleteRecords {
            name,
            partition,
            before,
        } => {
            let response = client.delete_records(&name, partition, before).await?;
            println!(
                "{name}/{partition}: log start {}, high watermark {}",
                response.log_start_offset, response.high_watermark
            );
        }
        TopicCommand::Delete { name } => {
            client.delete_topic(&name).await?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

/// Parses `KEY=VALUE`.
pub(crate) fn parse_config(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// The configs as a map, refusing a key given twice (which one would win is not obvious).
pub(crate) fn config_map(
    configs: Vec<(String, String)>,
) -> anyhow::Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    for (key, value) in configs {
        if map.insert(key.clone(), value).is_some() {
            anyhow::bail!("--config {key} is given twice");
        }
    }
    Ok(map)
}

fn source_name(config: &v1::TopicConfig) -> &'static str {
    match v1::ConfigSource::try_from(config.source) {
        Ok(v1::ConfigSource::Topic) => "topic",
        Ok(v1::ConfigSource::ClusterDefault) => "cluster default",
        Ok(v1::ConfigSource::Default) => "default",
        _ => "unknown",
    }
}

fn print_configs(configs: &[v1::TopicConfig]) {
    println!("{:<24} {:<20} SOURCE", "CONFIG", "VALUE");
    for config in configs {
        println!(
            "{:<24} {:<20} {}",
            config.name,
            config.value,
            source_name(config)
        );
    }
}

fn configs_json(configs: &[v1::TopicConfig]) -> serde_json::Value {
    configs
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                serde_json::json!({"value": c.value, "source": source_name(c)}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
