//! Clock skew through libfaketime (Debian package `faketime`).
//!
//! Each node runs with libfaketime preloaded and its own offset file; the nemesis rewrites the
//! file and the node's wall clock jumps within a second (libfaketime re-reads it that often).
//! Only the wall clock is skewed, as a misbehaving NTP or a VM restored from a snapshot would
//! do: monotonic clocks never jump on a real machine, and Raft's timers run on them.

use std::path::Path;
use std::path::PathBuf;

/// Where distributions install the thread-safe libfaketime.
const LIBRARY_CANDIDATES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
];

/// Why clock faults cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    /// libfaketime is not installed.
    #[error("clock faults need libfaketime (apt-get install -y faketime); looked in {0}")]
    Missing(String),
    /// The offset file could not be written.
    #[error("write clock offset {path}: {source}")]
    Write {
        /// The offset file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The preloaded library and the per-node offset files of one run.
#[derive(Clone, Debug)]
pub struct Clocks {
    library: PathBuf,
    dir: PathBuf,
}

impl Clocks {
    /// Finds libfaketime; offset files go to `dir`.
    pub fn find(dir: &Path) -> Result<Clocks, ClockError> {
        let library = std::env::var_os("RAFTLOG_LIBFAKETIME")
            .map(PathBuf::from)
            .into_iter()
            .chain(LIBRARY_CANDIDATES.iter().map(PathBuf::from))
            .find(|p| p.exists())
            .ok_or_else(|| ClockError::Missing(LIBRARY_CANDIDATES.join(", ")))?;
        Ok(Clocks {
            library,
            dir: dir.to_path_buf(),
        })
    }

    fn offset_file(&self, node: u64) -> PathBuf {
        self.dir.join(format!("node-{node}.faketime"))
    }

    /// Environment for node `node`'s process; its clock starts unskewed.
    pub fn environment(&self, node: u64) -> Result<Vec<(String, String)>, ClockError> {
        if !self.offset_file(node).exists() {
            self.set_offset(node, 0)?;
        }
        Ok(vec![
            ("LD_PRELOAD".into(), self.library.display().to_string()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.offset_file(node).display().to_string(),
            ),
            ("FAKETIME_CACHE_DURATION".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ])
    }

    /// Sets node `node`'s wall clock to real time plus `offset_ms` (negative: behind).
    pub fn set_offset(&self, node: u64, offset_ms: i64) -> Result<(), ClockError> {
        let path = self.offset_file(node);
        let sign = if offset_ms < 0 { '-' } else { '+' };
        let text = format!(
            "{sign}{}.{:03}s\n",
            offset_ms.unsigned_abs() / 1000,
            offset_ms.unsigned_abs() % 1000
        );
        // Written whole and renamed: libfaketime must never read a half-written offset.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| ClockError::Write { path, source })
    }
}
