//! `raftlog node`: run one node.

use std::path::PathBuf;

use anyhow::Context;
use raftlog_server::ClusterConfig;

/// Arguments of `raftlog node`.
#[derive(clap::Args)]
pub struct NodeArgs {
    /// The cluster's configuration file (every node reads the same one).
    #[arg(long)]
    config: PathBuf,
    /// This node's id in the config's [[nodes]].
    #[arg(long)]
    id: u64,
}

/// Runs the node until Ctrl-C or SIGTERM.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let config = ClusterConfig::load(&args.config)?;
    raftlog_server::run(config, args.id, crate::stop_requested())
        .await
        .with_context(|| format!("node {}", args.id))
}
