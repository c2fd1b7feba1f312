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
    List,
    /// Show every partition's replicas, leader, term and high watermark.
    Describe {
        /// Topic name.
        name: String,
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
        TopicCommand::List => {
            let topics = client.list_topics().await?;
            println!("{:<40} {:>10} {:>8}", "TOPIC", "PARTITIONS", "REPLICAS");
            for topic in topics {
                println!(
                    "{:<40} {:>10} {:>8}",
                    topic.name, topic.partitions, topic.replicas
                );
            }
        }
        TopicCommand::Describe { name } => {
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
