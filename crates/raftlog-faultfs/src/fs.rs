//! The FUSE file system: every request passed through to the backing directory, with what
//! changes the tree handed to one writer thread, which records what was not fsynced
//! ([`crate::pending`]), waits while writes are stalled and fails them when told to. Reads,
//! lookups and directory listings are answered on the session thread, so they go on while the
//! writer waits.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use fuser::FileAttr;
use fuser::FileType;
use fuser::Filesystem;
use fuser::ReplyAttr;
use fuser::ReplyCreate;
use fuser::ReplyData;
use fuser::ReplyDirectory;
use fuser::ReplyEmpty;
use fuser::ReplyEntry;
use fuser::ReplyOpen;
use fuser::ReplyStatfs;
use fuser::ReplyWrite;
use fuser::Request;
use fuser::TimeOrNow;
use parking_lot::Condvar;
use parking_lot::Mutex;

use crate::pending::Pending;

/// Attributes and names are never cached by the kernel: the backing files change under it on a
/// power loss or a corruption, and every lookup must see that.
const TTL: Duration = Duration::ZERO;
/// Requests queued for the writer thread; the kernel keeps far fewer in flight.
pub const WRITER_QUEUE: usize = 1024;
/// Open files and directories.
const MAX_HANDLES: usize = 65_536;

/// A fault applied to every write and sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Writes and syncs wait until this is cleared.
    pub stall: bool,
    /// Writes and syncs fail with this errno.
    pub fail: Option<i32>,
}

/// State shared by the session thread, the writer thread and the control handle.
pub struct Shared {
    pub root: PathBuf,
    pub tree: Mutex<Tree>,
    pub faults: Mutex<Faults>,
    pub faults_changed: Condvar,
    /// Bumped by every power loss: writes queued before it are dropped, as they never reached
    /// the disk.
    pub generation: Mutex<u64>,
}

/// Inodes, open handles and what is pending.
#[derive(Default)]
pub struct Tree {
    /// FUSE inode → path relative to the root, and the kernel's lookup count.
    inodes: HashMap<u64, (PathBuf, u64)>,
    by_path: HashMap<PathBuf, u64>,
    next_ino: u64,
    /// Open handle → backing file and the backing inode number.
    handles: HashMap<u64, (Arc<File>, u64)>,
    next_fh: u64,
    pub pending: Pending,
}

impl Tree {
    pub fn new() -> Tree {
        let mut tree = Tree {
            next_ino: fuser::FUSE_ROOT_ID + 1,
            next_fh: 1,
            ..Tree::default()
        };
        tree.inodes.insert(fuser::FUSE_ROOT_ID, (PathBuf::new(), 1));
        tree.by_path.insert(PathBuf::new(), fuser::FUSE_ROOT_ID);
        tree
    }

    fn path(&self, ino: u64) -> Option<PathBuf> {
        self.inodes.get(&ino).map(|(p, _)| p.clone())
    }

    /// The inode of `path`, made known to the kernel once more.
    fn remember(&mut self, path: PathBuf) -> u64 {
        if let Some(&ino) = self.by_path.get(&path) {
            if let Some(entry) = self.inodes.get_mut(&ino) {
                entry.1 += 1;
            }
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.by_path.insert(path.clone(), ino);
        self.inodes.insert(ino, (path, 1));
        ino
    }

    fn forget(&mut self, ino: u64, count: u64) {
        if ino == fuser::FUSE_ROOT_ID {
            return;
        }
        let Some(entry) = self.inodes.get_mut(&ino) else {
            return;
        };
        entry.1 = entry.1.saturating_sub(count);
        if entry.1 == 0 {
            let path = entry.0.clone();
            self.inodes.remove(&ino);
            if self.by_path.get(&path) == Some(&ino) {
                self.by_path.remove(&path);
            }
        }
    }

    fn unlinked(&mut self, path: &Path) {
        self.by_path.remove(path);
        self.pending.removed(path);
    }

    fn renamed(&mut self, from: &Path, to: &Path) {
        self.by_path.remove(to);
        let moved: Vec<(u64, PathBuf)> = self
            .inodes
            .iter()
            .filter_map(|(ino, (p, _))| crate::pending::moved(p, from, to).map(|new| (*ino, new)))
            .collect();
        for (ino, new_path) in moved {
            if let Some(entry) = self.inodes.get_mut(&ino) {
                if self.by_path.get(&entry.0) == Some(&ino) {
                    self.by_path.remove(&entry.0);
                }
                entry.0 = new_path.clone();
            }
            self.by_path.insert(new_path, ino);
        }
        self.pending.renamed(from, to);
    }

    fn add_handle(&mut self, file: Arc<File>, backing_ino: u64) -> Result<u64, i32> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(libc::ENFILE);
        }
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, (file, backing_ino));
        Ok(fh)
    }

    fn handle(&self, fh: u64) -> Option<(Arc<File>, u64)> {
        self.handles.get(&fh).map(|(f, i)| (Arc::clone(f), *i))
    }
}

fn errno(error: &std::io::Error) -> i32 {
    error.raw_os_error().unwrap_or(libc::EIO)
}

fn system_time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn attr(ino: u64, meta: &std::fs::Metadata) -> FileAttr {
    let kind = file_type(meta.file_type());
    FileAttr {
        ino,
        size: meta.size(),
        blocks: meta.blocks(),
        atime: system_time(meta.atime(), meta.atime_nsec()),
        mtime: system_time(meta.mtime(), meta.mtime_nsec()),
        ctime: system_time(meta.ctime(), meta.ctime_nsec()),
        crtime: system_time(meta.ctime(), meta.ctime_nsec()),
        kind,
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: meta.blksize() as u32,
        flags: 0,
    }
}

fn file_type(t: std::fs::FileType) -> FileType {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_fifo() {
        FileType::NamedPipe
    } else if t.is_socket() {
        FileType::Socket
    } else if t.is_block_device() {
        FileType::BlockDevice
    } else if t.is_char_device() {
        FileType::CharDevice
    } else {
        FileType::RegularFile
    }
}

/// Opens the backing file read-write whatever the caller asked (the writer needs to put it back
/// on a power loss), without the flags that would change what a positioned write does.
fn open_backing(path: &Path, flags: i32, create_mode: Option<u32>) -> std::io::Result<File> {
    let keep = flags
        & !(libc::O_ACCMODE
            | libc::O_APPEND
            | libc::O_TRUNC
            | libc::O_CREAT
            | libc::O_EXCL
            | libc::O_DIRECT
            | libc::O_NOCTTY);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).custom_flags(keep);
    if let Some(mode) = create_mode {
        options.create_new(true).mode(mode);
    }
    match options.open(path) {
        // A read-only backing file system or file: reads still work.
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EROFS) =>
        {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(keep)
                .open(path)
        }
        other => other,
    }
}

/// The file system the session thread runs.
pub struct FaultFs {
    pub shared: Arc<Shared>,
    /// Work for the writer thread, in the order the kernel sent it.
    pub writer: SyncSender<Box<dyn FnOnce() + Send>>,
}

impl FaultFs {
    fn full(&self, path: &Path) -> PathBuf {
        self.shared.root.join(path)
    }

    /// Runs `work` on the writer thread once writes are not stalled; with a fault set, or once
    /// a power loss came after it was asked, it is failed with `fail(errno)` instead.
    fn write_op(
        &self,
        work: impl FnOnce(&Shared) -> Result<(), i32> + Send + 'static,
        fail: impl FnOnce(i32) + Send + 'static,
    ) {
        self.write_op_freeing(false, work, fail);
    }

    /// [`FaultFs::write_op`] for an operation that frees space (`frees_space`): a full disk
    /// does not refuse it, a failing one does.
    fn write_op_freeing(
        &self,
        frees_space: bool,
        work: impl FnOnce(&Shared) -> Result<(), i32> + Send + 'static,
        fail: impl FnOnce(i32) + Send + 'static,
    ) {
        let shared = Arc::clone(&self.shared);
        let asked_in = *shared.generation.lock();
        let job = Box::new(move || {
            let fault = {
                let mut faults = shared.faults.lock();
                while faults.stall {
                    shared.faults_changed.wait(&mut faults);
                }
                faults.fail
            };
            if *shared.generation.lock() != asked_in {
                return fail(libc::EIO);
            }
            match fault {
                Some(libc::ENOSPC) if frees_space => {}
                Some(code) => return fail(code),
                None => {}
            }
            if let Err(code) = work(&shared) {
                fail(code);
            }
        });
        if let Err(job) = self.writer.send(job) {
            // The writer is gone only while the file system is being unmounted.
            drop(job);
        }
    }
}

fn entry_attr(shared: &Shared, path: &Path) -> Result<(u64, FileAttr), i32> {
    let meta = std::fs::symlink_metadata(shared.root.join(path)).map_err(|e| errno(&e))?;
    let ino = shared.tree.lock().remember(path.to_path_buf());
    Ok((ino, attr(ino, &meta)))
}

impl Filesystem for FaultFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let Some(dir) = self.shared.tree.lock().path(parent) else {
            return reply.error(libc::ENOENT);
        };
        match entry_attr(&self.shared, &dir.join(name)) {
            Ok((_, attr)) => reply.entry(&TTL, &attr, 0),
            Err(code) => reply.error(code),
        }
    }

    fn forget(&mut self, _req: &Request<'_>, ino: u64, nlookup: u64) {
        self.shared.tree.lock().forget(ino, nlookup);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, fh: Option<u64>, reply: ReplyAttr) {
        let (path, handle) = {
            let tree = self.shared.tree.lock();
            (tree.path(ino), fh.and_then(|fh| tree.handle(fh)))
        };
        let meta = match (handle, path) {
            (Some((file, _)), _) => file.metadata(),
            (None, Some(path)) => std::fs::symlink_metadata(self.full(&path)),
            (None, None) => return reply.error(libc::ENOENT),
        };
        match meta {
            Ok(meta) => reply.attr(&TTL, &attr(ino, &meta)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let reply = Arc::new(Mutex::new(Some(reply)));
        let failed = Arc::clone(&reply);
        self.write_op(
            move |shared| {
                let (path, handle) = {
                    let tree = shared.tree.lock();
                    (
                        tree.path(ino).ok_or(libc::ENOENT)?,
                        fh.and_then(|fh| tree.handle(fh)),
                    )
                };
                let full = shared.root.join(&path);
                if let Some(size) = size {
                    let (file, backing_ino) = match handle {
                        Some(handle) => handle,
                        None => {
                            let file = open_backing(&full, 0, None).map_err(|e| errno(&e))?;
                            let backing_ino = file.metadata().map_err(|e| errno(&e))?.ino();
                            (Arc::new(file), backing_ino)
                        }
                    };
                    let current = file.metadata().map_err(|e| errno(&e))?.len();
                    shared
                        .tree
                        .lock()
                        .pending
                        .before_set_len(backing_ino, &file, current, size)
                        .map_err(|_| libc::EIO)?;
                    file.set_len(size).map_err(|e| errno(&e))?;
                }
                if let Some(mode) = mode {
                    std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode & 0o7777))
                        .map_err(|e| errno(&e))?;
                }
                if uid.is_some() || gid.is_some() {
                    std::os::unix::fs::lchown(&full, uid, gid).map_err(|e| errno(&e))?;
                }
                if atime.is_some() || mtime.is_some() {
                    let time = |t: Option<TimeOrNow>| match t {
                        None => libc::timespec {
                            tv_sec: 0,
                            tv_nsec: libc::UTIME_OMIT,
                        },
                        Some(TimeOrNow::Now) => libc::timespec {
                            tv_sec: 0,
                            tv_nsec: libc::UTIME_NOW,
                        },
                        Some(TimeOrNow::SpecificTime(t)) => {
                            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                            libc::timespec {
                                tv_sec: d.as_secs() as libc::time_t,
                                tv_nsec: d.subsec_nanos() as libc::c_long,
                            }
                        }
                    };
                    let times = [time(atime), time(mtime)];
                    let c_path = std::ffi::CString::new(full.as_os_str().as_bytes())
                        .map_err(|_| libc::EINVAL)?;
                    // SAFETY: `c_path` is a NUL-terminated path and `times` two timespecs, both
                    // alive for the call.
                    let rc = unsafe {
                        libc::utimensat(
                            libc::AT_FDCWD,
                            c_path.as_ptr(),
                            times.as_ptr(),
                            libc::AT_SYMLINK_NOFOLLOW,
                        )
                    };
                    if rc != 0 {
                        return Err(errno(&std::io::Error::last_os_error()));
                    }
                }
                let meta = std::fs::symlink_metadata(&full).map_err(|e| errno(&e))?;
                if let Some(reply) = reply.lock().take() {
                    reply.attr(&TTL, &attr(ino, &meta));
                }
                Ok(())
            },
            move |code| {
                if let Some(reply) = failed.lock().take() {
                    reply.error(code);
                }
            },
        );
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let Some(path) = self.shared.tree.lock().path(ino) else {
            return reply.error(libc::ENOENT);
        };
        match std::fs::read_link(self.full(&path)) {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(libc::EPERM);
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let name = name.to_os_string();
        let reply = Arc::new(Mutex::new(Some(reply)));
        let failed = Arc::clone(&reply);
        self.write_op(
            move |shared| {
                let dir = shared.tree.lock().path(parent).ok_or(libc::ENOENT)?;
                let path = dir.join(&name);
                std::fs::DirBuilder::new()
                    .mode(mode & !umask & 0o7777)
                    .create(shared.root.join(&path))
                    .map_err(|e| errno(&e))?;
                let meta = std::fs::symlink_metadata(shared.root.join(&path)).map_err(|e| errno(&e))?;
                let ino = {
                    let mut tree = shared.tree.lock();
                    if tree.pending.created(meta.ino(), path.clone()).is_err() {
                        tracing::warn!(path = %path.display(), "faultfs: too many created entries pending; this one is durable at once");
                    }
                    tree.remember(path)
                };
                if let Some(reply) = reply.lock().take() {
                    reply.entry(&TTL, &attr(ino, &meta), 0);
                }
                Ok(())
            },
            move |code| {
                if let Some(reply) = failed.lock().take() {
                    reply.error(code);
                }
            },
        );
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, reply, false);
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, reply, true);
    }

    fn symlink(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let name = link_name.to_os_string();
        let target = target.to_path_buf();
        let reply = Arc::new(Mutex::new(Some(reply)));
        let failed = Arc::clone(&reply);
        self.write_op(
            move |shared| {
                let dir = shared.tree.lock().path(parent).ok_or(libc::ENOENT)?;
                let path = dir.join(&name);
                std::os::unix::fs::symlink(&target, shared.root.join(&path))
                    .map_err(|e| errno(&e))?;
                let meta =
                    std::fs::symlink_metadata(shared.root.join(&path)).map_err(|e| errno(&e))?;
                let ino = {
                    let mut tree = shared.tree.lock();
                    let _ = tree.pending.created(meta.ino(), path.clone());
                    tree.remember(path)
                };
                if let Some(reply) = reply.lock().take() {
                    reply.entry(&TTL, &attr(ino, &meta), 0);
                }
                Ok(())
            },
            move |code| {
                if let Some(reply) = failed.lock().take() {
                    reply.error(code);
                }
            },
        );
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        if flags != 0 {
            // RENAME_EXCHANGE / RENAME_NOREPLACE: not needed by raftlog.
            return reply.error(libc::EINVAL);
        }
        let name = name.to_os_string();
        let newname = newname.to_os_string();
        let reply = Arc::new(Mutex::new(Some(reply)));
        let failed = Arc::clone(&reply);
        self.write_op(
            move |shared| {
                let (from, to) = {
                    let tree = shared.tree.lock();
                    (
                        tree.path(parent).ok_or(libc::ENOENT)?.join(&name),
                        tree.path(newparent).ok_or(libc::ENOENT)?.join(&newname),
                    )
                };
                std::fs::rename(shared.root.join(&from), shared.root.join(&to))
                    .map_err(|e| errno(&e))?;
                shared.tree.lock().renamed(&from, &to);
                if let Some(reply) = reply.lock().take() {
                    reply.ok();
                }
                Ok(())
            },
            move |code| {
                if let Some(reply) = failed.lock().take() {
                    reply.error(code);
                }
            },
        );
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let Some(path) = self.shared.tree.lock().path(ino) else {
            return reply.error(libc::ENOENT);
        };
        let opened = open_backing(&self.full(&path), flags, None).and_then(|file| {
            let backing_ino = file.metadata()?.ino();
            Ok((file, backing_ino))
        });
        match opened {
            Ok((file, backing_ino)) => match self
                .shared
                .tree
                .lock()
                .add_handle(Arc::new(file), backing_ino)
            {
                Ok(fh) => reply.opened(fh, 0),
                Err(code) => reply.error(code),
            },
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Some((file, _)) = self.shared.tree.lock().handle(fh) else {
            return reply.error(libc::EBADF);
        };
        let mut buf = vec![0u8; size as usize];
        let mut read = 0;
        while read < buf.len() {
            match file.read_at(&mut buf[read..], offset.max(0) as u64 + read as u64) {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(errno(&e)),
            }
        }
        reply.data(&buf[..read]);
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        let reply = Arc::new(Mutex::new(Some(reply)));
        let failed = Arc::clone(&reply);
        let sync = flags & (libc::O_SYNC | libc::O_DSYNC) != 0;
        self.write_op(
            move |shared| {
                let (file, backing_ino) = shared.tree.lock().handle(fh).ok_or(libc::EBADF)?;
                let offset = u64::try_from(offset).map_err(|_| libc::EINVAL)?;
                if shared
                    .tree
                    .lock()
                    .pending
                    .before_write(backing_ino, &file, offset, data.len() as u64)
                    .is_err()
                {
                    tracing::warn!(
                        fh,
                        "faultfs: the pending-write bound is reached; failing the write with EIO"
                    );
                    return Err(libc::EIO);
                }
                file.write_all_at(&data, offset).map_err(|e| errno(&e))?;
                if sync {
                    file.sync_data().map_err(|e| errno(&e))?;
                    shared.tree.lock().pending.synced(backing_ino);
                }
                if let Some(reply) = reply.lock().take() {
                    reply.written(data.len() as u32);
                }
                Ok(())
            },
            move |code| {
                if let Some(reply) = failed.lock().take() {
                    reply.error(code);
                }
            },
        );
    }

    fn flush(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _lock_owner: u64,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Queued writes hold their own reference to the file.
        self.shared.tree.lock().handles.remove(&fh);
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, datasync: bool, reply: ReplyEmpty) {
        let reply = Arc::new(Mutex::new(Some(reply)));
        let failed = Arc::clone(&reply);
        self.write_op(
            move |shared| {
                let (file, backing_ino) = shared.tree.lock().handle(fh).ok_or(libc::EBADF)?;
                let synced = if datasync {
                    file.sync_data()
                } else {
                    file.sync_all()
                };
                synced.map_err(|e| errno(&e))?;
                shared.tree.lock().pending.synced(backing_ino);
                if let Some(reply) = reply.lock().take() {
                    reply.ok();
                }
                Ok(())
            },
            move |code| {
                if let Some(reply) = failed.lock().take() {
                    reply.error(code);
                }
            },
        );
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let Some(path) = self.shared.tree.lock().path(ino) else {
            return reply.error(libc::ENOENT);
        };
        match File::open(self.full(&path)) {
            Ok(file) => match self.shared.tree.lock().add_handle(Arc::new(file), 0) {
                Ok(fh) => reply.opened(fh, 0),
                Err(code) => reply.error(code),
            },
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let Some(path) = self.shared.tree.lock().path(ino) else {
            return reply.error(libc::ENOENT);
        };
        let entries = match std::fs::read_dir(self.full(&path)) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(&e)),
        };
        let mut all: Vec<(u64, FileType, std::ffi::OsString)> = vec![
            (ino, FileType::Directory, ".".into()),
            (ino, FileType::Directory, "..".into()),
        ];
        for entry in entries.flatten() {
            let kind = entry
                .file_type()
                .map(file_type)
                .unwrap_or(FileType::RegularFile);
            // Readdir does not make an entry known to the kernel (no lookup count): any
            // number will do, the kernel looks the name up before using it.
            all.push((u64::MAX, kind, entry.file_name()));
        }
        for (i, (entry_ino, kind, name)) in all.into_iter().enumerate().skip(offset.max(0) as usize)
        {
            if reply.add(entry_ino, (i + 1) as i64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        reply: ReplyEmpty,
    ) {
        self.shared.tree.lock().handles.remove(&fh);
        reply.ok();
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let reply = Arc::new(Mutex::new(Some(reply)));
        let failed = Arc::clone(&reply);
        self.write_op(
            move |shared| {
                let (path, handle) = {
                    let tree = shared.tree.lock();
                    (tree.path(ino).ok_or(libc::ENOENT)?, tree.handle(fh))
                };
                match handle {
                    Some((file, _)) => file.sync_all(),
                    None => File::open(shared.root.join(&path)).and_then(|f| f.sync_all()),
                }
                .map_err(|e| errno(&e))?;
                shared.tree.lock().pending.dir_synced(&path);
                if let Some(reply) = reply.lock().take() {
                    reply.ok();
                }
                Ok(())
            },
            move |code| {
                if let Some(reply) = failed.lock().take() {
                    reply.error(code);
                }
            },
        );
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let Ok(c_path) = std::ffi::CString::new(self.shared.root.as_os_str().as_bytes()) else {
            return reply.error(libc::EINVAL);
        };
        // SAFETY: an all-zero statvfs is a valid value for the kernel to fill in.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c_path` is NUL-terminated and `stat` is a valid, writable statvfs.
        if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
            return reply.error(errno(&std::io::Error::last_os_error()));
        }
        reply.statfs(
            stat.f_blocks,
            stat.f_bfree,
            stat.f_bavail,
            stat.f_files,
            stat.f_ffree,
            stat.f_bsize as u32,
            stat.f_namemax as u32,
            stat.f_frsize as u32,
        );
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = name.to_os_string();
        let reply = Arc::new(Mutex::new(Some(reply)));
        let failed = Arc::clone(&reply);
        self.write_op(
            move |shared| {
                let dir = shared.tree.lock().path(parent).ok_or(libc::ENOENT)?;
                let path = dir.join(&name);
                let full = shared.root.join(&path);
                let (file, existed) = match open_backing(&full, flags, Some(mode & !umask & 0o7777)) {
                    Ok(file) => (file, false),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && flags & libc::O_EXCL == 0 => {
                        (open_backing(&full, flags, None).map_err(|e| errno(&e))?, true)
                    }
                    Err(e) => return Err(errno(&e)),
                };
                let file = Arc::new(file);
                let meta = file.metadata().map_err(|e| errno(&e))?;
                let (ino, fh) = {
                    let mut tree = shared.tree.lock();
                    if existed && flags & libc::O_TRUNC != 0 {
                        tree.pending.before_set_len(meta.ino(), &file, meta.len(), 0).map_err(|_| libc::EIO)?;
                        file.set_len(0).map_err(|e| errno(&e))?;
                    }
                    if !existed && tree.pending.created(meta.ino(), path.clone()).is_err() {
                        tracing::warn!(path = %path.display(), "faultfs: too many created entries pending; this one is durable at once");
                    }
                    let fh = tree.add_handle(Arc::clone(&file), meta.ino())?;
                    (tree.remember(path), fh)
                };
                let meta = file.metadata().map_err(|e| errno(&e))?;
                if let Some(reply) = reply.lock().take() {
                    reply.created(&TTL, &attr(ino, &meta), 0, fh, 0);
                }
                Ok(())
            },
            move |code| {
                if let Some(reply) = failed.lock().take() {
                    reply.error(code);
                }
            },
        );
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let reply = Arc::new(Mutex::new(Some(reply)));
        let failed = Arc::clone(&reply);
        self.write_op(
            move |shared| {
                if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
                    // Punching or zeroing holes changes bytes: not needed by raftlog.
                    return Err(libc::EOPNOTSUPP);
                }
                let (file, backing_ino) = shared.tree.lock().handle(fh).ok_or(libc::EBADF)?;
                // Only the length can change (zeros past the end): recorded like an extension.
                let current = file.metadata().map_err(|e| errno(&e))?.len();
                shared
                    .tree
                    .lock()
                    .pending
                    .before_set_len(backing_ino, &file, current, current)
                    .map_err(|_| libc::EIO)?;
                // SAFETY: fallocate reads only its integer arguments; `file` owns the descriptor.
                let rc = unsafe {
                    libc::fallocate(
                        std::os::fd::AsRawFd::as_raw_fd(&*file),
                        mode,
                        offset,
                        length,
                    )
                };
                if rc != 0 {
                    return Err(errno(&std::io::Error::last_os_error()));
                }
                if let Some(reply) = reply.lock().take() {
                    reply.ok();
                }
                Ok(())
            },
            move |code| {
                if let Some(reply) = failed.lock().take() {
                    reply.error(code);
                }
            },
        );
    }
}

impl FaultFs {
    fn remove(&mut self, parent: u64, name: &OsStr, reply: ReplyEmpty, dir: bool) {
        let name = name.to_os_string();
        let reply = Arc::new(Mutex::new(Some(reply)));
        let failed = Arc::clone(&reply);
        self.write_op_freeing(
            true,
            move |shared| {
                let path = shared
                    .tree
                    .lock()
                    .path(parent)
                    .ok_or(libc::ENOENT)?
                    .join(&name);
                let full = shared.root.join(&path);
                if dir {
                    std::fs::remove_dir(&full)
                } else {
                    std::fs::remove_file(&full)
                }
                .map_err(|e| errno(&e))?;
                shared.tree.lock().unlinked(&path);
                if let Some(reply) = reply.lock().take() {
                    reply.ok();
                }
                Ok(())
            },
            move |code| {
                if let Some(reply) = failed.lock().take() {
                    reply.error(code);
                }
            },
        );
    }
}
