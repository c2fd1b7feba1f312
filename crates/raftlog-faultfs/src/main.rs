//! `raftlog-faultfs BACKING MOUNTPOINT`: mounts the fault file system and takes one command a
//! line on standard input, answering `ok ...` or `error ...` on standard output:
//! `lose-unsynced`, `stall on|off`, `fail-enospc on|off`, `fail-eio on|off`, `quit`. End of
//! input or `quit` unmounts (stalls and failures released first).

use std::io::BufRead;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use raftlog_faultfs::Failure;
use raftlog_faultfs::FaultFs;

fn on_off(word: Option<&str>) -> Result<bool, String> {
    match word {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        other => Err(format!("expected on or off, got {other:?}")),
    }
}

fn command(fs: &FaultFs, line: &str) -> Result<String, String> {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("lose-unsynced") => fs
            .lose_unsynced()
            .map(|lost| format!("files-reverted {} entries-removed {}", lost.files_reverted, lost.entries_removed))
            .map_err(|e| e.to_string()),
        Some("stall") => on_off(words.next()).map(|on| {
            fs.set_stall(on);
            String::new()
        }),
        Some(word @ ("fail-enospc" | "fail-eio")) => on_off(words.next()).map(|on| {
            let failure = if word == "fail-enospc" { Failure::Enospc } else { Failure::Eio };
            fs.set_failure(on.then_some(failure));
            String::new()
        }),
        other => Err(format!("unknown command {other:?}: use lose-unsynced, stall on|off, fail-enospc on|off, fail-eio on|off or quit")),
    }
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [backing, mountpoint] = args.as_slice() else {
        eprintln!("usage: raftlog-faultfs BACKING MOUNTPOINT (commands on standard input)");
        return ExitCode::from(2);
    };
    let fs = match FaultFs::mount(backing, mountpoint) {
        Ok(fs) => fs,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
    };
    println!("ok mounted");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "quit" {
            break;
        }
        let answer = match command(&fs, line) {
            Ok(detail) => format!("ok {detail}"),
            Err(detail) => format!("error {detail}"),
        };
        println!("{}", answer.trim_end());
        let _ = std::io::stdout().flush();
    }
    drop(fs);
    ExitCode::SUCCESS
}
