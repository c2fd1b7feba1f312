//! `raftlog-jepsen check RESULTS_DIR`: re-checks a stored history (`history.jsonl`), prints the
//! anomaly table, writes `report.json` and the latency/throughput timeline (`timeline.svg`)
//! beside it, and exits non-zero on any anomaly.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use clap::Subcommand;

/// raftlog's fault-injection harness.
#[derive(Parser)]
#[command(name = "raftlog-jepsen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a test: a cluster of real nodes, producers and consumers, and a nemesis.
    Test {
        /// Nodes in the cluster.
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Seconds of workload under faults.
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
        /// Faults to mix, comma-separated: kill, pause, partition (every shape) or one of
        /// partition-one, partition-leader, partition-halves, partition-ring; partition-oneway,
        /// clock, power-loss, power-loss-all, corrupt, disk-stall, disk-full; none for none.
        /// The disk faults put each node's data dir on a fault file system (needs root).
        #[arg(long, value_delimiter = ',', default_value = "kill,pause")]
        nemesis: Vec<String>,
        /// Seed of the fault schedule (default: from the clock; printed), to replay a run.
        #[arg(long, env = "RAFTLOG_JEPSEN_SEED")]
        seed: Option<u64>,
        /// Consumer-group members in the workload: they share the topic through the group API
        /// (join, heartbeat, fetch, commit) under the nemesis; the checker's group-exclusive,
        /// nonmonotonic-commit and commit-past-end read what they record. 0 for none.
        #[arg(long, default_value_t = 3)]
        group_members: u64,
        /// The test topic's retention.bytes per partition (64 KiB segments), so that retention
        /// deletes records mid-run; the checker excuses only what is below each partition's
        /// final log start. Default: keep everything.
        #[arg(long)]
        retention_bytes: Option<u64>,
        /// Where to write the history, node logs and reports.
        #[arg(long)]
        results: Option<PathBuf>,
        /// The raftlog binary (default: next to this one).
        #[arg(long)]
        raftlog: Option<PathBuf>,
    },
    /// Check the history stored in a results directory.
    Check {
        /// Directory holding `history.jsonl`.
        results: PathBuf,
    },
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Test {
            nodes,
            time_limit,
            nemesis,
            seed,
            group_members,
            retention_bytes,
            results,
            raftlog,
        } => {
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
            });
            let mut faults = Vec::new();
            for name in nemesis
                .iter()
                .filter(|n| !n.is_empty() && n.as_str() != "none")
            {
                for fault in raftlog_jepsen::run::Fault::parse(name).map_err(anyhow::Error::msg)? {
                    if !faults.contains(&fault) {
                        faults.push(fault);
                    }
                }
            }
            let results =
                results.unwrap_or_else(|| PathBuf::from(format!("jepsen-results/{seed}")));
            let raftlog = match raftlog {
                Some(path) => path,
                None => std::env::current_exe()?.with_file_name("raftlog"),
            };
            anyhow::ensure!(raftlog.exists(), "raftlog binary {} not found; build it (cargo build -p raftlog-cli) or pass --raftlog", raftlog.display());
            eprintln!("seed {seed}; results in {}", results.display());
            let config = raftlog_jepsen::run::RunConfig {
                nodes,
                time_limit: std::time::Duration::from_secs(time_limit),
                faults,
                seed,
                partitions: 3,
                producers: 4,
                consumers: 2,
                retention_bytes,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let history = runtime.block_on(raftlog_jepsen::run::run_with_group(
                &config,
                &raftlog_jepsen::run::GroupWorkload {
                    members: group_members,
                },
                &raftlog,
                &results,
            ))?;
            std::fs::write(results.join("history.jsonl"), history.to_json_lines())?;
            std::fs::write(results.join("seed"), seed.to_string())?;
            let report = raftlog_jepsen::check(&history);
            print!("{}", report.table());
            std::fs::write(
                results.join("report.json"),
                serde_json::to_vec_pretty(&report)?,
            )?;
            timeline(&results, &history);
            Ok(report.valid)
        }
        Command::Check { results } => {
            let history = raftlog_jepsen::History::load(&results.join("history.jsonl"))?;
            let report = raftlog_jepsen::check(&history);
            print!("{}", report.table());
            let path = results.join("report.json");
            std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                .map_err(|e| anyhow::anyhow!("write {}: {e}", path.display()))?;
            timeline(&results, &history);
            Ok(report.valid)
        }
    }
}

/// Draws the latency/throughput timeline. A picture that cannot be drawn only warns: the
/// verdict and its exit code stand on the history alone.
fn timeline(results: &std::path::Path, history: &raftlog_jepsen::History) {
    match raftlog_jepsen::plot::write_timeline(results, history) {
        Ok(path) => println!("timeline: {}", path.display()),
        Err(error) => eprintln!("warning: no timeline: {error}"),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!(
                "error: {}",
                format!("{error:#}")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            ExitCode::from(2)
        }
    }
}
