//! `raftlog`: run nodes and local clusters, manage topics, produce and consume.
//!
//! `main` only parses arguments, sets up tracing and calls into a module per noun.

mod bench;
mod cluster;
mod consume;
mod consumer_group;
mod node;
mod produce;
mod topic;

use std::process::ExitCode;

use clap::Parser;
use clap::Subcommand;

/// The local 3-node cluster's client addresses (`cluster-config/local-3.toml`).
const LOCAL_BOOTSTRAP: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

/// raftlog: a Raft-replicated commit log.
#[derive(Parser)]
#[command(name = "raftlog", version, about)]
struct Cli {
    /// Client addresses of one or more nodes, comma-separated.
    #[arg(long, global = true, env = "RAFTLOG_BOOTSTRAP", default_value = LOCAL_BOOTSTRAP, value_delimiter = ',')]
    bootstrap: Vec<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node of a cluster.
    Node(node::NodeArgs),
    /// Start, stop and inspect clusters.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Append records read from stdin (one per line) to a topic.
    Produce(produce::ProduceArgs),
    /// Print records of a topic.
    Consume(consume::ConsumeArgs),
    /// Inspect consumer groups and reset their positions (alias: `group`).
    #[command(subcommand, name = "consumer-group", visible_alias = "group")]
    ConsumerGroup(consumer_group::ConsumerGroupCommand),
    /// Measure throughput and latency.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Output format of listing commands.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// Aligned columns for people.
    Text,
    /// One JSON object per line for programs.
    Json,
}

fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTLOG_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default_level},openraft=warn"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(if matches!(cli.command, Command::Node(_)) {
        "info"
    } else {
        "warn"
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let bootstrap = cli.bootstrap;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Node(args) => node::run(args).await,
            Command::Cluster(command) => cluster::run(command, &bootstrap).await,
            Command::Topic(command) => topic::run(command, &bootstrap).await,
            Command::Produce(args) => produce::run(args, &bootstrap).await,
            Command::Consume(args) => consume::run(args, &bootstrap).await,
            Command::ConsumerGroup(command) => consumer_group::run(command, &bootstrap).await,
            Command::Bench(command) => bench::run(command, &bootstrap).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let message = format!("{error:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
async fn stop_requested() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Connects a client to the bootstrap nodes.
async fn connect(bootstrap: &[String]) -> anyhow::Result<raftlog_client::Client> {
    raftlog_client::Client::connect(bootstrap)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the cluster at {}: {e}", bootstrap.join(",")))
}
