//! The fault file system mounted for real (root and /dev/fuse, so in module `needs_root`): what
//! was not fsynced is gone after a power loss and what was is intact, a stall holds fsync until
//! released, and a full disk fails writes with ENOSPC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod needs_root {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::time::Duration;

    use raftlog_faultfs::Failure;
    use raftlog_faultfs::FaultFs;

    fn mounted() -> (tempfile::TempDir, FaultFs) {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let fs = FaultFs::mount(&dir.path().join("backing"), &dir.path().join("mnt"))
            .expect("mount (needs root and /dev/fuse)");
        (dir, fs)
    }

    fn sync_dir(path: &Path) {
        std::fs::File::open(path)
            .expect("open dir")
            .sync_all()
            .expect("fsync dir");
    }

    #[test]
    fn a_power_loss_takes_what_was_not_fsynced_and_keeps_what_was() {
        let (dir, fs) = mounted();
        let mnt = fs.mountpoint().to_path_buf();
        std::fs::create_dir(mnt.join("log")).expect("mkdir");
        sync_dir(&mnt);
        let mut synced = std::fs::File::create(mnt.join("log/synced")).expect("create");
        synced.write_all(b"durable").expect("write");
        synced.sync_all().expect("fsync");
        sync_dir(&mnt.join("log"));
        // After the syncs: an append, an overwrite of synced bytes, a new file.
        synced.write_all(b" and lost").expect("write");
        synced.write_all_at(b"DUR", 0).expect("overwrite");
        std::fs::write(mnt.join("log/unsynced"), b"never synced").expect("write");
        drop(synced);
        assert_eq!(
            std::fs::read(mnt.join("log/synced")).expect("read"),
            b"DURable and lost",
            "reads see unsynced writes"
        );

        let lost = fs.lose_unsynced().expect("lose");
        assert_eq!(
            std::fs::read(mnt.join("log/synced")).expect("read"),
            b"durable"
        );
        assert!(
            !mnt.join("log/unsynced").exists(),
            "a file created since its dir's fsync is gone"
        );
        assert_eq!(
            std::fs::read(dir.path().join("backing/log/synced")).expect("read backing"),
            b"durable"
        );
        assert_eq!(
            (lost.files_reverted, lost.entries_removed),
            (2, 1),
            "{lost:?}"
        );
    }

    #[test]
    fn a_file_fsynced_but_not_its_directory_disappears() {
        let (_dir, fs) = mounted();
        let mnt = fs.mountpoint().to_path_buf();
        let mut file = std::fs::File::create(mnt.join("seg")).expect("create");
        file.write_all(b"data").expect("write");
        file.sync_all().expect("fsync");
        drop(file);
        fs.lose_unsynced().expect("lose");
        assert!(!mnt.join("seg").exists());
    }

    /// The write-temp-then-rename of a meta file: the file is then reachable under its new
    /// name (and only there), and is kept by a power loss once its directory is synced.
    #[test]
    fn a_file_renamed_into_place_opens_under_its_new_name_and_survives_a_power_loss() {
        let (_dir, fs) = mounted();
        let mnt = fs.mountpoint().to_path_buf();
        std::fs::create_dir(mnt.join("g")).expect("mkdir");
        let mut temp = std::fs::File::create(mnt.join("g/meta.tmp")).expect("create");
        temp.write_all(b"slot").expect("write");
        temp.sync_all().expect("fsync");
        drop(temp);
        std::fs::rename(mnt.join("g/meta.tmp"), mnt.join("g/meta")).expect("rename");
        sync_dir(&mnt.join("g"));
        sync_dir(&mnt);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(mnt.join("g/meta"))
            .expect("open the renamed file");
        file.write_all_at(b"SLOT", 0).expect("overwrite");
        drop(file);
        assert!(!mnt.join("g/meta.tmp").exists());
        fs.lose_unsynced().expect("lose");
        assert_eq!(std::fs::read(mnt.join("g/meta")).expect("read"), b"slot");
    }

    #[test]
    fn a_stall_holds_fsync_until_released() {
        let (_dir, fs) = mounted();
        let path = fs.mountpoint().join("f");
        let mut file = std::fs::File::create(&path).expect("create");
        file.write_all(b"x").expect("write");
        fs.set_stall(true);
        let (done, finished) = std::sync::mpsc::channel();
        let syncer = std::thread::spawn(move || {
            let result = file.sync_all();
            let _ = done.send(());
            result
        });
        assert!(
            finished.recv_timeout(Duration::from_millis(700)).is_err(),
            "fsync returned during the stall"
        );
        // Reads go on during a stall.
        assert_eq!(std::fs::read(&path).expect("read during the stall"), b"x");
        fs.set_stall(false);
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("fsync returns once released");
        syncer.join().expect("join").expect("fsync succeeds");
    }

    #[test]
    fn a_full_disk_fails_writes_with_enospc_until_it_is_cleared() {
        let (_dir, fs) = mounted();
        let path = fs.mountpoint().join("f");
        let mut file = std::fs::File::create(&path).expect("create");
        fs.set_failure(Some(Failure::Enospc));
        let error = file
            .write_all(b"no room")
            .expect_err("write on a full disk");
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
        assert_eq!(
            file.sync_all()
                .expect_err("fsync on a full disk")
                .raw_os_error(),
            Some(libc::ENOSPC)
        );
        fs.set_failure(Some(Failure::Eio));
        assert_eq!(
            file.write_all(b"bad disk")
                .expect_err("write")
                .raw_os_error(),
            Some(libc::EIO)
        );
        fs.set_failure(None);
        file.write_all(b"room").expect("write after");
        assert_eq!(std::fs::read(&path).expect("read"), b"room");
    }

    #[test]
    fn dropping_a_stalled_file_system_releases_it_and_unmounts() {
        let (dir, fs) = mounted();
        let mut file = std::fs::File::create(fs.mountpoint().join("f")).expect("create");
        fs.set_stall(true);
        let writer =
            std::thread::spawn(move || file.write_all(b"x").and_then(|()| file.sync_all()));
        std::thread::sleep(Duration::from_millis(200));
        drop(fs);
        let _ = writer.join();
        let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
        assert!(
            !mounts.contains(&dir.path().join("mnt").display().to_string()),
            "still mounted"
        );
    }
}
