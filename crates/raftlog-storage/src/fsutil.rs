//! Small file-system operations with the durability each caller needs spelled out.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::Result;
use crate::error::StorageError;

/// Makes creations, renames and deletions inside `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let handle = File::open(dir).map_err(StorageError::io("open directory", dir))?;
    handle
        .sync_all()
        .map_err(StorageError::io("fsync directory", dir))
}

/// Reserves `len_bytes` from `offset` so that later writes in the range change no file size and
/// need no block allocation, which is what lets `fdatasync` skip most metadata work. File systems
/// without `fallocate` still work, just with slower syncs.
pub fn preallocate(file: &File, path: &Path, offset: u64, len_bytes: u64) -> Result<()> {
    if len_bytes == 0 {
        return Ok(());
    }
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len_bytes)) else {
        return Err(StorageError::Io {
            op: "fallocate",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "range exceeds i64"),
        });
    };
    // SAFETY: `fallocate` only reads its integer arguments; the descriptor is owned by `file`,
    // which outlives the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(()),
        _ => Err(StorageError::Io {
            op: "fallocate",
            path: path.to_path_buf(),
            source: err,
        }),
    }
}

/// Creates `dir` (and parents) if missing, and fails with a precise error if it exists as
/// something other than a directory.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(StorageError::NotADirectory {
            path: dir.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(StorageError::io("create directory", dir))
        }
        Err(e) => Err(StorageError::Io {
            op: "stat",
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}
