//! The free space of a node's data dir, checked before the node takes new records. Below the
//! configured minimum a produce is refused (DISK_FULL, retryable) rather than let the disk fill:
//! a write that fails with ENOSPC stops the node (fail-stop), while a refused produce leaves it
//! serving reads, replicating and catching up, and it takes writes again as soon as space is
//! freed (a deleted topic, later retention), as Redpanda's `storage_min_free_bytes` does.
//!
//! The reading is a `statvfs` of the data dir, cached for
//! [`DISK_SPACE_CHECK_INTERVAL_MS`](raftlog_types::limits::DISK_SPACE_CHECK_INTERVAL_MS) so a
//! busy node does not make one per request.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Instant;

use raftlog_types::limits::DISK_SPACE_CHECK_INTERVAL_MS;

/// A produce refused because the data dir's file system is below its minimum free space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the data dir's disk has {free_bytes} bytes free, below the {min_free_bytes} this node keeps free (storage.min_free_bytes)")]
pub struct LowDiskSpace {
    /// Bytes free for unprivileged writers at the last reading.
    pub free_bytes: u64,
    /// The configured minimum.
    pub min_free_bytes: u64,
}

/// The free space of one data dir, with its minimum.
#[derive(Debug)]
pub struct DiskSpace {
    dir: PathBuf,
    min_free_bytes: u64,
    origin: Instant,
    /// Milliseconds since `origin` of the last reading, plus one (0: never read).
    read_at_ms: AtomicU64,
    free_bytes: AtomicU64,
}

impl DiskSpace {
    /// Watches the file system holding `dir`; `min_free_bytes` 0 never refuses.
    pub fn new(dir: impl Into<PathBuf>, min_free_bytes: u64) -> DiskSpace {
        DiskSpace {
            dir: dir.into(),
            min_free_bytes,
            origin: Instant::now(),
            read_at_ms: AtomicU64::new(0),
            free_bytes: AtomicU64::new(u64::MAX),
        }
    }

    /// Whether there is room for new records: an error when the free space is below the
    /// minimum. A file system that cannot be read is given the benefit of the doubt (logged):
    /// a write that then fails still stops the node.
    pub fn check(&self) -> Result<(), LowDiskSpace> {
        if self.min_free_bytes == 0 {
            return Ok(());
        }
        let now_ms = self.origin.elapsed().as_millis() as u64 + 1;
        let read_at = self.read_at_ms.load(Ordering::Acquire);
        if read_at == 0 || now_ms.saturating_sub(read_at) >= DISK_SPACE_CHECK_INTERVAL_MS {
            // Racing readers may both read; either value is as fresh.
            self.read_at_ms.store(now_ms, Ordering::Release);
            self.free_bytes
                .store(self.read_free_bytes(), Ordering::Release);
        }
        let free_bytes = self.free_bytes.load(Ordering::Acquire);
        if free_bytes < self.min_free_bytes {
            return Err(LowDiskSpace {
                free_bytes,
                min_free_bytes: self.min_free_bytes,
            });
        }
        Ok(())
    }

    fn read_free_bytes(&self) -> u64 {
        match rustix::fs::statvfs(&self.dir) {
            Ok(stat) => stat.f_bavail.saturating_mul(stat.f_frsize),
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot read the data dir's free space");
                u64::MAX
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimum_above_the_free_space_refuses_and_zero_never_does() {
        let dir = std::env::temp_dir();
        assert_eq!(DiskSpace::new(&dir, 0).check(), Ok(()));
        assert_eq!(DiskSpace::new(&dir, 1).check(), Ok(()));
        let refused = DiskSpace::new(&dir, u64::MAX).check().expect_err("refused");
        assert!(
            refused.free_bytes < u64::MAX && refused.free_bytes > 0,
            "{refused:?}"
        );
        assert!(refused.to_string().contains("storage.min_free_bytes"));
    }
}
