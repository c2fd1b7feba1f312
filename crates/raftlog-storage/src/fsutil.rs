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

/// Whether a read may wait for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskRead {
    /// Bytes the page cache lacks are read from the disk.
    Wait,
    /// Only what memory and the page cache hold; anything else is `StorageError::NotCached`,
    /// at once. For callers that must not block, such as async tasks.
    CachedOnly,
}

/// Reads up to `len` bytes at `offset` into a new buffer, fewer only at the end of the file.
/// The buffer is not zeroed first: at the sizes segments are read in, that memset showed up in
/// the profile of a consumer-bound node (benchmarks/HISTORY.md, 2026-11-29). With `DiskRead::CachedOnly` the read is `RWF_NOWAIT`, and
/// `Ok(None)` says some of the bytes would have to come from the disk (kernels and file systems
/// that cannot tell answer the same, so the caller then waits for them on a thread of its own).
pub fn read_at(
    file: &File,
    path: &Path,
    offset: u64,
    len: usize,
    disk: DiskRead,
) -> Result<Option<Vec<u8>>> {
    let io_error = |source| StorageError::Io {
        op: "read segment",
        path: path.to_path_buf(),
        source,
    };
    let flags = match disk {
        DiskRead::Wait => 0,
        DiskRead::CachedOnly => libc::RWF_NOWAIT,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let position = libc::off_t::try_from(offset + buf.len() as u64).map_err(|_| {
            io_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "position exceeds off_t",
            ))
        })?;
        let wanted = len - buf.len();
        let spare = &mut buf.spare_capacity_mut()[..wanted];
        let iov = libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: spare.len(),
        };
        // SAFETY: `iov` describes the vector's spare capacity, which is valid for writes of
        // `iov_len` bytes and is not otherwise borrowed during the call; `file` owns the
        // descriptor for the duration of the call.
        let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, position, flags) };
        let Ok(read) = usize::try_from(read) else {
            let error = std::io::Error::last_os_error();
            match (error.raw_os_error(), disk) {
                (Some(libc::EINTR), _) => continue,
                (Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL), DiskRead::CachedOnly) => {
                    return Ok(None)
                }
                _ => return Err(io_error(error)),
            }
        };
        if read == 0 {
            break;
        }
        // SAFETY: the kernel initialised `read` bytes of the spare capacity, and `read` is at
        // most `iov_len`, so the new length stays within the capacity.
        unsafe { buf.set_len(buf.len() + read) };
    }
    Ok(Some(buf))
}
