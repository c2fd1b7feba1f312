//! `raftlog-jepsen check RESULTS_DIR`: re-checks a stored history (`history.jsonl`), prints the
//! anomaly table, writes `report.json` beside it, and exits non-zero on any anomaly.

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
    /// Check the history stored in a results directory.
    Check {
        /// Directory holding `history.jsonl`.
        results: PathBuf,
    },
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Check { results } => {
            let history = raftlog_jepsen::History::load(&results.join("history.jsonl"))?;
            let report = raftlog_jepsen::check(&history);
            print!("{}", report.table());
            let path = results.join("report.json");
            std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                .map_err(|e| anyhow::anyhow!("write {}: {e}", path.display()))?;
            Ok(report.valid)
        }
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
