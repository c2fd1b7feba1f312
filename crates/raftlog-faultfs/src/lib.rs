//! raftlog-faultfs: a FUSE passthrough file system for fault injection, in the spirit of
//! Jepsen's lazyfs. Mounted over a node's data dir (its files live in a backing dir elsewhere),
//! it passes every read and write through, but remembers what was not yet fsynced, so that on
//! command it can:
//!
//! - [`FaultFs::lose_unsynced`]: lose power. Every file gets back its length and bytes as of
//!   its last fsync (or fdatasync, or write through `O_SYNC`/`O_DSYNC`), and every file or
//!   directory created since its directory's last fsync is removed. Renames and removals are
//!   durable at once, and with them every creation before them, as in a file system that
//!   journals metadata in order (so after a write-temp-then-rename the old or the new file is
//!   there, never neither, and a power loss never keeps a later change of the tree while
//!   dropping an earlier one). Call it with the files' users stopped: writes still queued then
//!   are failed with EIO.
//! - [`FaultFs::set_stall`]: writes and syncs wait until released; reads go on.
//! - [`FaultFs::set_failure`]: writes and syncs fail with ENOSPC or EIO (a full disk still
//!   lets files be removed).
//!
//! [`corrupt`] flips bits in and truncates backing files while their node is stopped (no FUSE
//! involved). Mounting needs root (the mount syscall; no fusermount, no libfuse). The binary
//! `raftlog-faultfs` mounts one file system and takes these commands on its standard input.

pub mod corrupt;
mod fs;
mod pending;

use std::path::Path;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::Instant;

use parking_lot::Condvar;
use parking_lot::Mutex;

pub use pending::Lost;

/// How long dropping a file system waits for its threads after unmounting it. A node process
/// still holding a file open keeps a lazily unmounted file system alive; its threads are then
/// left to end on their own rather than hang the caller.
const JOIN_WAIT: Duration = Duration::from_secs(5);

/// Why a file system could not be mounted or changed.
#[derive(Debug, thiserror::Error)]
pub enum FaultFsError {
    /// The backing dir or mountpoint could not be prepared.
    #[error("faultfs: {what} {}: {source}", path.display())]
    Path {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The mount syscall failed (it needs root and /dev/fuse).
    #[error("faultfs: mount {} over {}: {source} (mounting needs root and /dev/fuse)", mountpoint.display(), backing.display())]
    Mount {
        /// The backing dir.
        backing: PathBuf,
        /// The mountpoint.
        mountpoint: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Putting the backing files back failed.
    #[error("faultfs: losing unsynced writes under {}: {source}", backing.display())]
    Revert {
        /// The backing dir.
        backing: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Which errno writes and syncs fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No space left on the device.
    Enospc,
    /// An I/O error.
    Eio,
}

impl Failure {
    fn errno(self) -> i32 {
        match self {
            Failure::Enospc => libc::ENOSPC,
            Failure::Eio => libc::EIO,
        }
    }
}

/// A mounted fault file system; dropping it releases every stall and failure and unmounts it.
pub struct FaultFs {
    shared: Arc<fs::Shared>,
    mountpoint: PathBuf,
    unmounter: Option<fuser::SessionUnmounter>,
    session: Option<JoinHandle<std::io::Result<()>>>,
    writer: Option<JoinHandle<()>>,
}

impl FaultFs {
    /// Mounts `backing` (created if missing) at `mountpoint` (created if missing; it should be
    /// empty).
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<FaultFs, FaultFsError> {
        for (what, path) in [
            ("create backing dir", backing),
            ("create mountpoint", mountpoint),
        ] {
            std::fs::create_dir_all(path).map_err(|source| FaultFsError::Path {
                what,
                path: path.to_path_buf(),
                source,
            })?;
        }
        let root = backing
            .canonicalize()
            .map_err(|source| FaultFsError::Path {
                what: "resolve backing dir",
                path: backing.to_path_buf(),
                source,
            })?;
        let shared = Arc::new(fs::Shared {
            root,
            tree: Mutex::new(fs::Tree::new()),
            faults: Mutex::new(fs::Faults {
                stall: false,
                fail: None,
            }),
            faults_changed: Condvar::new(),
            generation: Mutex::new(0),
        });
        let (sender, receiver) = mpsc::sync_channel::<Box<dyn FnOnce() + Send>>(fs::WRITER_QUEUE);
        let writer = std::thread::Builder::new()
            .name("faultfs-writer".into())
            .spawn(move || {
                // Ends when the session (holding the sender) ends.
                while let Ok(job) = receiver.recv() {
                    job();
                }
            })
            .map_err(|source| FaultFsError::Path {
                what: "spawn writer for",
                path: mountpoint.to_path_buf(),
                source,
            })?;
        let filesystem = fs::FaultFs {
            shared: Arc::clone(&shared),
            writer: sender,
        };
        let options = [
            fuser::MountOption::FSName("raftlog-faultfs".into()),
            fuser::MountOption::Subtype("faultfs".into()),
        ];
        let mut session =
            fuser::Session::new(filesystem, mountpoint, &options).map_err(|source| {
                FaultFsError::Mount {
                    backing: backing.to_path_buf(),
                    mountpoint: mountpoint.to_path_buf(),
                    source,
                }
            })?;
        let unmounter = session.unmount_callable();
        let thread = std::thread::Builder::new()
            .name("faultfs-session".into())
            .spawn(move || session.run())
            .map_err(|source| FaultFsError::Path {
                what: "spawn session for",
                path: mountpoint.to_path_buf(),
                source,
            })?;
        tracing::info!(backing = %backing.display(), mountpoint = %mountpoint.display(), "faultfs mounted");
        Ok(FaultFs {
            shared,
            mountpoint: mountpoint.to_path_buf(),
            unmounter: Some(unmounter),
            session: Some(thread),
            writer: Some(writer),
        })
    }

    /// The mountpoint.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The backing dir (resolved).
    pub fn backing(&self) -> &Path {
        &self.shared.root
    }

    /// Loses power: the backing files become what they were at their last fsync (see the crate
    /// docs), and writes still queued are failed. Call it with the file system's users stopped.
    pub fn lose_unsynced(&self) -> Result<Lost, FaultFsError> {
        // Queued writes check the generation after any stall: bump it first so that none of
        // them lands after the loss, then take the tree so that no write is half done.
        *self.shared.generation.lock() += 1;
        let mut tree = self.shared.tree.lock();
        let lost =
            tree.pending
                .revert(&self.shared.root)
                .map_err(|source| FaultFsError::Revert {
                    backing: self.shared.root.clone(),
                    source,
                })?;
        tracing::info!(mountpoint = %self.mountpoint.display(), files = lost.files_reverted, entries = lost.entries_removed, "faultfs lost unsynced writes");
        Ok(lost)
    }

    /// Stalls (`true`) or releases (`false`) every write and sync.
    pub fn set_stall(&self, stall: bool) {
        self.shared.faults.lock().stall = stall;
        self.shared.faults_changed.notify_all();
    }

    /// Makes writes and syncs fail with `failure`, or succeed again (`None`).
    pub fn set_failure(&self, failure: Option<Failure>) {
        self.shared.faults.lock().fail = failure.map(Failure::errno);
        self.shared.faults_changed.notify_all();
    }

    /// Unmounts now (what dropping does).
    pub fn unmount(self) {}
}

fn join_within(handle: JoinHandle<impl Sized>, until: Instant, what: &str, mountpoint: &Path) {
    while !handle.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    if handle.is_finished() {
        let _ = handle.join();
    } else {
        tracing::warn!(mountpoint = %mountpoint.display(), "faultfs {what} thread still busy after unmount (a file is still open); leaving it");
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        // A stalled request would keep the unmount (and the writer) waiting forever.
        self.set_stall(false);
        self.set_failure(None);
        if let Ok(c_path) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
            self.mountpoint.as_os_str(),
        )) {
            // Lazy: a process that still has a file open keeps it, nobody new sees it.
            // SAFETY: `c_path` is a NUL-terminated path alive for the call.
            let rc = unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
            if rc != 0 {
                tracing::warn!(mountpoint = %self.mountpoint.display(), error = %std::io::Error::last_os_error(), "faultfs unmount failed");
            }
        }
        if let Some(mut unmounter) = self.unmounter.take() {
            let _ = unmounter.unmount();
        }
        let until = Instant::now() + JOIN_WAIT;
        if let Some(session) = self.session.take() {
            join_within(session, until, "session", &self.mountpoint);
        }
        if let Some(writer) = self.writer.take() {
            join_within(writer, until, "writer", &self.mountpoint);
        }
    }
}
