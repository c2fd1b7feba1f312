//! `raftlog consumer-group` (alias `group`): list, describe, reset-offsets of consumer groups.

use raftlog_client::v1;

/// Consumer group commands.
#[derive(clap::Subcommand)]
pub enum ConsumerGroupCommand {
    /// List groups with members or committed offsets.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::Format,
    },
    /// Members, their partitions, and every partition's committed offset and lag.
    Describe {
        /// Group name.
        group: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::Format,
    },
    /// Set the committed positions of a group that has no running members.
    ResetOffsets {
        /// Group name.
        group: String,
        /// Topic whose positions are reset.
        #[arg(long)]
        topic: String,
        /// Only this partition (default: all).
        #[arg(long)]
        partition: Option<u32>,
        /// `earliest`, `latest`, or an offset.
        #[arg(long)]
        to: String,
    },
}

/// Runs a group command.
pub async fn run(command: ConsumerGroupCommand, bootstrap: &[String]) -> anyhow::Result<()> {
    let client = crate::connect(bootstrap).await?;
    match command {
        ConsumerGroupCommand::List { format } => {
            let groups = client.list_groups().await?;
            match format {
                crate::Format::Json => {
                    for g in groups {
                        println!(
                            "{}",
                            serde_json::json!({"group": g.group, "members": g.members, "generation": g.generation})
                        );
                    }
                }
                crate::Format::Text => {
                    println!("{:<40} {:>8} {:>10}", "GROUP", "MEMBERS", "GENERATION");
                    for g in groups {
                        println!("{:<40} {:>8} {:>10}", g.group, g.members, g.generation);
                    }
                }
            }
        }
        ConsumerGroupCommand::Describe { group, format } => {
            let description = client.describe_group(&group).await?;
            match format {
                crate::Format::Json => {
                    let partitions: Vec<_> = description
                        .partitions
                        .iter()
                        .map(|p| {
                            serde_json::json!({
                                "topic": p.topic, "partition": p.partition, "committed_offset": p.committed_offset,
                                "high_watermark": p.high_watermark, "lag": p.lag, "member_id": p.member_id,
                            })
                        })
                        .collect();
                    let members: Vec<_> = description
                        .members
                        .iter()
                        .map(|m| {
                            let assignment: Vec<String> = m.assignment.iter().map(|a| format!("{}/{}", a.topic, a.partition)).collect();
                            serde_json::json!({"member_id": m.member_id, "client_id": m.client_id, "assignment": assignment,
                                "last_heartbeat_ms_ago": m.last_heartbeat_ms_ago})
                        })
                        .collect();
                    println!(
                        "{}",
                        serde_json::json!({"group": description.group, "generation": description.generation, "members": members, "partitions": partitions})
                    );
                }
                crate::Format::Text => {
                    println!(
                        "group {} (generation {}, {} members)",
                        description.group,
                        description.generation,
                        description.members.len()
                    );
                    for member in &description.members {
                        let assignment: Vec<String> = member
                            .assignment
                            .iter()
                            .map(|a| format!("{}/{}", a.topic, a.partition))
                            .collect();
                        println!(
                            "  member {} ({}): {}",
                            member.member_id,
                            member.client_id,
                            assignment.join(" ")
                        );
                    }
                    println!(
                        "{:<30} {:>9} {:>10} {:>14} {:>8}  MEMBER",
                        "TOPIC", "PARTITION", "COMMITTED", "HIGH-WATERMARK", "LAG"
                    );
                    for p in &description.partitions {
                        let committed = p
                            .committed_offset
                            .map_or_else(|| "-".to_owned(), |o| o.to_string());
                        println!(
                            "{:<30} {:>9} {:>10} {:>14} {:>8}  {}",
                            p.topic, p.partition, committed, p.high_watermark, p.lag, p.member_id
                        );
                    }
                }
            }
        }
        ConsumerGroupCommand::ResetOffsets {
            group,
            topic,
            partition,
            to,
        } => {
            let (to, offset) = match to.as_str() {
                "earliest" => (v1::ResetTo::Earliest, 0),
                "latest" => (v1::ResetTo::Latest, 0),
                other => (
                    v1::ResetTo::Offset,
                    other.parse::<u64>().map_err(|_| {
                        anyhow::anyhow!("--to must be earliest, latest or an offset, got {other:?}")
                    })?,
                ),
            };
            let offsets = client
                .reset_offsets(v1::ResetOffsetsRequest {
                    group: group.clone(),
                    topic,
                    partition,
                    to: to as i32,
                    offset,
                })
                .await?;
            for o in offsets {
                println!("{group}: {}/{} -> {}", o.topic, o.partition, o.offset);
            }
        }
    }
    Ok(())
}
