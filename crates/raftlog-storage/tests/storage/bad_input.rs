//! Bad input: a data dir that is a file, a corrupt metadata file, a full disk and unreadable
//! files. Each must give an error that names the path, and lose nothing already stored.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use raftlog_storage::LogConfig;
use raftlog_storage::NodeStorage;
use tempfile::TempDir;

use crate::kit::*;

#[test]
fn data_dir_that_is_a_file_is_refused_by_name() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"hello")?;
    let err = NodeStorage::open(&file, LogConfig::default())
        .err()
        .expect("opened a file as data dir");
    let message = err.to_string();
    assert!(
        message.contains(&file.display().to_string()) && message.contains("must be a directory"),
        "{message}"
    );
    assert_eq!(std::fs::read(&file)?, b"hello");
    Ok(())
}

#[test]
fn corrupt_metadata_file_is_refused_by_name() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    {
        let (_storage, log, _) = open_log(dir.path(), LogConfig::default())?;
        log.store_vote(&openraft::Vote::new(3, 1))?;
    }
    let meta = dir
        .path()
        .join("groups")
        .join(GROUP.0.to_string())
        .join("meta.slots");
    let garbage = vec![0x5a_u8; 8192];
    std::fs::write(&meta, &garbage)?;
    let err = open_log(dir.path(), LogConfig::default())
        .err()
        .expect("opened with a corrupt meta file");
    let message = format!("{err:#}");
    assert!(
        message.contains(&meta.display().to_string()) && message.contains("invalid"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(&meta)?,
        garbage,
        "a refused file is left as it was"
    );
    Ok(())
}

#[test]
fn invalid_log_config_names_the_key_and_range() {
    let config = LogConfig {
        segment_bytes: 10,
        ..LogConfig::default()
    };
    let message = config
        .validate()
        .expect_err("accepted 10-byte segments")
        .to_string();
    assert!(
        message.contains("segment_bytes = 10") && message.contains("allowed"),
        "{message}"
    );
}

/// Unmounts the tmpfs when the test ends, pass or fail.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

const UNREADABLE_CHILD_ENV: &str = "RAFTLOG_UNREADABLE_CHILD_DIR";

#[test]
#[ignore = "child process of unreadable_segment_is_refused_by_name"]
fn child_opens_log() -> anyhow::Result<()> {
    let dir = std::env::var(UNREADABLE_CHILD_ENV)?;
    match open_log(Path::new(&dir), LogConfig::default()) {
        Ok(_) => println!("RESULT opened"),
        Err(e) => println!("RESULT error: {e:#}"),
    }
    Ok(())
}

#[test]
fn unreadable_segment_is_refused_by_name() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    {
        let (_storage, log, _) = open_log(dir.path(), LogConfig::default())?;
        append_durably(&log, (0..10).map(|i| entry(1, i)).collect())?;
    }
    let segment = segment_files(dir.path())?.remove(0);
    let message = if is_root() {
        // Root reads anything, so the open runs in a child process as `nobody`, from a copy of
        // this test binary that `nobody` may execute.
        for path in walk(dir.path())? {
            let mode = if path.is_dir() { 0o777 } else { 0o666 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        }
        std::fs::set_permissions(&segment, std::fs::Permissions::from_mode(0o000))?;
        let bin_dir = TempDir::new()?;
        std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let exe = bin_dir.path().join("storage-test");
        std::fs::copy(std::env::current_exe()?, &exe)?;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
        let output = std::process::Command::new(&exe)
            .args([
                "bad_input::child_opens_log",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(UNREADABLE_CHILD_ENV, dir.path())
            .env("HOME", "/")
            .uid(65534)
            .gid(65534)
            .output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout
            .lines()
            .find_map(|l| l.split_once("RESULT ").map(|(_, result)| result))
            .map(str::to_owned)
            .unwrap_or_else(|| {
                panic!(
                    "child gave no result: {stdout} {}",
                    String::from_utf8_lossy(&output.stderr)
                )
            })
    } else {
        std::fs::set_permissions(&segment, std::fs::Permissions::from_mode(0o000))?;
        match open_log(dir.path(), LogConfig::default()) {
            Ok(_) => "opened".to_owned(),
            Err(e) => format!("error: {e:#}"),
        }
    };
    assert!(
        message.contains("Permission denied") && message.contains(&segment.display().to_string()),
        "{message}"
    );
    std::fs::set_permissions(&segment, std::fs::Permissions::from_mode(0o644))?;
    let (_storage, log, _) = open_log(dir.path(), LogConfig::default())?;
    assert_log_holds(&log, 0, 9)?;
    Ok(())
}

fn walk(root: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut found = vec![root.to_path_buf()];
    let mut i = 0;
    while i < found.len() {
        if found[i].is_dir() {
            for entry in std::fs::read_dir(&found[i])? {
                found.push(entry?.path());
            }
        }
        i += 1;
    }
    Ok(found)
}

/// Tests that mount a file system: they need root, so they form nextest's `needs-root` group,
/// which a plain `cargo nextest run` leaves out and `scripts/test.sh` (and CI) runs.
mod needs_root {
    use super::*;

    #[test]
    fn full_disk_fails_appends_with_the_path_and_keeps_durable_entries() -> anyhow::Result<()> {
        anyhow::ensure!(
            is_root(),
            "mounting a tiny tmpfs needs root: run this group as root (scripts/test.sh does)"
        );
        let dir = TempDir::new()?;
        let mount_point = dir.path().join("tiny");
        std::fs::create_dir(&mount_point)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(&mount_point)
            .status()?;
        anyhow::ensure!(
            status.success(),
            "running as root but could not mount a tmpfs"
        );
        let _mount = Mount(mount_point.clone());

        let data = mount_point.join("data");
        // Preallocation is off so the disk fills during appends, not at segment creation.
        let config = LogConfig {
            segment_bytes: 256 * 1024,
            preallocate: false,
            ..LogConfig::default()
        };
        let (storage, log, _) = open_log(&data, config.clone())?;
        let mut durable_last = None;
        let mut failure = None;
        for first in (0..1_000_000u64).step_by(20) {
            match append_durably(&log, (first..first + 20).map(|i| entry(1, i)).collect()) {
                Ok(()) => durable_last = Some(first + 19),
                Err(err) => {
                    failure = Some(format!("{err:#}"));
                    break;
                }
            }
        }
        let message = failure.expect("8 MiB tmpfs never filled up");
        eprintln!("append on the full disk failed as expected: {message}");
        assert!(
            message.contains("No space left on device")
                && message.contains(&data.display().to_string()),
            "{message}"
        );
        drop((storage, log));

        let durable_last = durable_last.expect("nothing fit on the disk");
        // The operator makes room (here: grows the tmpfs) and restarts the node.
        let status = Command::new("mount")
            .args(["-o", "remount,size=64m"])
            .arg(&mount_point)
            .status()?;
        anyhow::ensure!(status.success(), "could not grow the tmpfs");
        let (_storage, log, _) = open_log(&data, config)?;
        assert!(log.last_log_id().map(|id| id.index) >= Some(durable_last));
        assert_log_holds(&log, 0, durable_last)?;
        Ok(())
    }
}
