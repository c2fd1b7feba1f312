//! `raftlog topic`: create, list, describe, delete.

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
    },
    /// List topics.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::Format,
    },
    /// Show every partition's replicas, leader, term and high watermark.
    Describe {
        /// Topic name.
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::Format,
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
        } => {
            let topic = client.create_topic(&name, partitions, replicas).await?;
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
                serde_json::json!({"name": topic.name, "replicas": topic.replicas, "partitions": partitions})
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
        }
        TopicCommand::Delete { name } => {
            client.delete_topic(&name).await?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}
