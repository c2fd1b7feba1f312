//! A node whose data dir runs low on space refuses produces with DISK_FULL (retryable) instead
//! of filling its disk, where a failed write would stop it; it keeps serving reads and metadata,
//! and takes writes again by itself once a deleted topic frees space. On a small tmpfs, so the
//! test needs root and lives in `needs_root`.

mod needs_root {
    use std::process::Command;
    use std::time::Duration;
    use std::time::Instant;

    use raftlog_proto::v1;
    use raftlog_proto::v1::ErrorReason;
    use raftlog_server::ClusterConfig;
    use raftlog_testkit::config::write_config;
    use raftlog_testkit::ClusterSpec;

    use crate::common::metadata;
    use crate::common::reason;
    use crate::common::record;

    const TMPFS_BYTES: u64 = 40 * 1024 * 1024;
    const MIN_FREE_BYTES: u64 = 16 * 1024 * 1024;

    /// Unmounts on drop, so a failing test leaves no mount behind.
    struct Mount(std::path::PathBuf);

    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }

    fn produce_request(topic: &str) -> v1::ProduceRequest {
        v1::ProduceRequest {
            topic: topic.into(),
            partition: 0,
            // 512 KiB a request.
            records: (0..8).map(|_| record(&[b'x'; 64 * 1024])).collect(),
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_low_on_disk_refuses_produces_serves_reads_and_recovers_when_space_is_freed() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let disk = dir.path().join("disk");
        std::fs::create_dir(&disk).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_BYTES}"), "tmpfs"])
            .arg(&disk)
            .status()
            .expect("run mount");
        assert!(
            mounted.success(),
            "mounting a tmpfs needs root (scripts/test.sh runs this group as root)"
        );
        let _mount = Mount(disk.clone());

        let generated = write_config(dir.path(), &ClusterSpec::new(1)).expect("config");
        let text = generated
            .text
            .lines()
            .map(|line| {
                if line.starts_with("data_dir = ") {
                    format!("data_dir = {:?}", disk.display().to_string())
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            .replacen(
                "[storage]\n",
                &format!("[storage]\nsegment_bytes = 1048576\nmin_free_bytes = {MIN_FREE_BYTES}\n"),
                1,
            );
        let config = ClusterConfig::parse(&text, &generated.path).expect("parse");
        config.validate().expect("valid");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let node = tokio::spawn(raftlog_server::run(config, 1, async move {
            let _ = stopped.await;
        }));
        let channel = tonic::transport::Endpoint::from_shared(format!(
            "http://{}",
            generated.nodes[0].client_addr
        ))
        .expect("endpoint")
        .timeout(Duration::from_secs(10))
        .connect_lazy();
        let mut admin = v1::admin_client::AdminClient::new(channel.clone());
        let mut produce = v1::produce_client::ProduceClient::new(channel.clone());
        let mut fetch =
            v1::fetch_client::FetchClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);

        let create = |name: &str| v1::CreateTopicRequest {
            name: name.into(),
            partitions: 1,
            replicas: 1,
            configs: Default::default(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(status) = admin.create_topic(create("filler")).await {
            assert!(Instant::now() < deadline, "create: {status:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Fill the disk until the node refuses: before it is full, so no write fails.
        let mut accepted = 0u64;
        let refused = loop {
            match produce.produce(produce_request("filler")).await {
                Ok(_) => accepted += 1,
                Err(status) if reason(&status) == Some(ErrorReason::DiskFull) => break status,
                Err(status) if reason(&status).is_some_and(ErrorReason::is_retryable) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => panic!("after {accepted} produces: {status:?}"),
            }
            assert!(
                accepted < 2 * TMPFS_BYTES / (512 * 1024),
                "{accepted} produces of 512 KiB fit on a {TMPFS_BYTES}-byte disk"
            );
        };
        assert!(accepted > 0, "nothing fit");
        assert_eq!(
            refused.code(),
            tonic::Code::ResourceExhausted,
            "{refused:?}"
        );
        assert_eq!(
            metadata(&refused, "min_free_bytes"),
            Some(MIN_FREE_BYTES.to_string())
        );
        assert_eq!(metadata(&refused, "retryable").as_deref(), Some("true"));
        assert!(
            refused.message().contains("storage.min_free_bytes"),
            "{refused:?}"
        );
        assert!(!node.is_finished(), "the node stopped on the low disk");

        // Reads and metadata are still served.
        let read = fetch
            .fetch(v1::FetchRequest {
                topic: "filler".into(),
                partition: 0,
                offset: 0,
                max_bytes: 0,
                max_wait_ms: 0,
            })
            .await
            .expect("fetch on a low disk")
            .into_inner();
        assert!(!read.records.is_empty());
        admin
            .create_topic(create("after"))
            .await
            .expect("a metadata change on a low disk");

        // Deleting the filler frees its segments; produces are taken again by themselves.
        admin
            .delete_topic(v1::DeleteTopicRequest {
                name: "filler".into(),
            })
            .await
            .expect("delete");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match produce.produce(produce_request("after")).await {
                Ok(_) => break,
                Err(status) => assert!(
                    Instant::now() < deadline
                        && reason(&status).is_some_and(ErrorReason::is_retryable),
                    "no produce taken after the delete: {status:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(20), node)
            .await
            .expect("the node stops")
            .expect("join")
            .expect("a clean stop");
    }
}
