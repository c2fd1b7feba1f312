//! Reading: long-poll fetch, the subscription stream, topic deletion, the standard health
//! service, the data dir identity check, and records read back from disk.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use raftlog_client::record;
use raftlog_client::Client;
use raftlog_client::ClientOptions;
use raftlog_client::ErrorReason;
use raftlog_client::Producer;
use raftlog_client::ProducerConfig;
use tokio_stream::StreamExt;

use crate::kit::assert_not_available_for;
use crate::kit::produce_numbers;
use crate::kit::RaftTimers;
use crate::kit::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_subscribe_delete_and_health() {
    let mut cluster = crate::kit::start(1).await;
    let client = crate::kit::client(&cluster).await;
    client.create_topic("stream", 1, 1).await.expect("create");
    cluster.wait_for_leaders("stream").await;
    let address = cluster.addr(1);

    // A long poll at the end returns as soon as a record is committed.
    let poll = {
        let address = address.clone();
        let client = crate::kit::client(&cluster).await;
        tokio::spawn(async move { client.fetch_from(&address, "stream", 0, 0, 0, 10_000).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .produce("stream", 0, vec![record(None, b"first".to_vec())])
        .await
        .expect("produce");
    let polled = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("long poll did not return")
        .expect("join")
        .expect("fetch");
    assert_eq!(polled.records.len(), 1);
    assert_eq!(polled.records[0].value.as_ref(), b"first");

    // A subscription delivers every record in order, including those committed after it began.
    let mut stream = client
        .subscribe(&address, "stream", 0, 0)
        .await
        .expect("subscribe");
    for batch in 0..10 {
        let records = (0..10)
            .map(|i| record(None, format!("{}", batch * 10 + i).into_bytes()))
            .collect();
        client.produce("stream", 0, records).await.expect("produce");
    }
    let mut received = Vec::new();
    while received.len() < 101 {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("stream stalled")
            .expect("stream ended")
            .expect("stream error");
        received.extend(
            message
                .records
                .into_iter()
                .map(|r| (r.offset, String::from_utf8_lossy(&r.value).into_owned())),
        );
    }
    let expected: Vec<(u64, String)> = std::iter::once((0, "first".to_owned()))
        .chain((0..100).map(|i| (i as u64 + 1, i.to_string())))
        .collect();
    assert_eq!(received, expected);

    // The consumer's streaming subscription yields the same records, one by one.
    let consumer = raftlog_client::Consumer::new(
        Arc::new(crate::kit::client(&cluster).await),
        raftlog_client::ConsumerConfig::default(),
    );
    let streamed: Vec<u64> = consumer
        .subscription("stream", 0, 95)
        .await
        .expect("subscription")
        .take(6)
        .map(|r| r.expect("record").offset)
        .collect()
        .await;
    assert_eq!(streamed, vec![95, 96, 97, 98, 99, 100]);

    // The standard health service answers for the whole server.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "raftlog.v1.Produce".into(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Deleting a topic removes it; the name can be used again and starts empty.
    client.delete_topic("stream").await.expect("delete");
    let error = client
        .describe_topic("stream")
        .await
        .expect_err("deleted topic still described");
    assert_eq!(error.reason(), Some(ErrorReason::TopicNotFound));
    let error = client
        .delete_topic("stream")
        .await
        .expect_err("deleted twice");
    assert_eq!(error.reason(), Some(ErrorReason::TopicNotFound));
    client
        .create_topic("stream", 1, 1)
        .await
        .expect("re-create");
    cluster.wait_for_leaders("stream").await;
    let fetched = client.fetch("stream", 0, 0, 0, 0).await.expect("fetch");
    assert_eq!(fetched.high_watermark, 0);

    // A data dir belongs to one cluster and node id: a node told otherwise refuses it.
    cluster.kill(1);
    let config = cluster.dir().join("cluster.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            &format!("cluster_id = \"{}\"", cluster.cluster_id()),
            "cluster_id = \"other\"",
        ),
    )
    .expect("rewrite config");
    let status = cluster
        .start_expecting_exit(1, Duration::from_secs(20))
        .expect("node accepted another cluster's data dir");
    assert!(!status.success());
    let log = std::fs::read_to_string(cluster.log_path(1)).expect("log");
    let id = &cluster.cluster_id();
    assert!(
        log.contains(&format!("belongs to cluster \\\"{id}\\\" node 1"))
            || log.contains(&format!("belongs to cluster \"{id}\" node 1")),
        "{log}"
    );
}

/// A leader holds back a commit index for up to 5 ms so that the next AppendEntries carries it
/// (openraft patch 3). When no write follows, it must still go out then, not wait for the next
/// heartbeat: a follower serves reads up to the commit index it knows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_learn_a_commit_without_waiting_for_a_heartbeat() {
    // Heartbeats every 600 ms: a commit index left for the heartbeat to carry would reach the
    // followers ~300 ms later on average. (Longer timers make the cluster slow to elect on a
    // loaded host.)
    let timers = RaftTimers {
        heartbeat_ms: 600,
        election_min_ms: 2_000,
        election_max_ms: 3_000,
    };
    let cluster = crate::kit::start_with(3, timers).await;
    let client = crate::kit::client(&cluster).await;
    client.create_topic("lag", 1, 3).await.expect("create");
    let description = cluster.wait_for_leaders("lag").await;
    let leader = description.partitions[0].leader_id.expect("leader");
    let followers: Vec<String> = (1..=3)
        .filter(|id| *id != leader)
        .map(|id| cluster.addr(id))
        .collect();

    // Every follower runs the partition before the first write is timed.
    let deadline = Instant::now() + Duration::from_secs(30);
    for address in &followers {
        while let Err(error) = client.fetch_from(address, "lag", 0, 0, 0, 0).await {
            assert!(Instant::now() < deadline, "follower {address}: {error}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let mut delays = Vec::new();
    for offset in 0..10u64 {
        client
            .produce(
                "lag",
                0,
                vec![record(None, offset.to_string().into_bytes())],
            )
            .await
            .expect("produce");
        let acknowledged = Instant::now();
        for address in &followers {
            // A long poll returns as soon as the follower's high watermark passes `offset`.
            let response = client
                .fetch_from(address, "lag", 0, offset, 0, 10_000)
                .await
                .expect("fetch from a follower");
            assert_eq!(
                response.records.len(),
                1,
                "follower {address}: {response:?}"
            );
            assert_eq!(
                response.records[0].value.as_ref(),
                offset.to_string().as_bytes()
            );
        }
        delays.push(acknowledged.elapsed());
        // Writes come one at a time, with idle time between them.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    delays.sort();
    let median = delays[delays.len() / 2];
    assert!(
        median < Duration::from_millis(150),
        "followers learned commits late: median {median:?}, all {delays:?}"
    );
}

/// A replica behind the leader answers an offset above its high watermark with the retryable
/// OFFSET_NOT_AVAILABLE and waits for itself to catch up in a long poll; only a leader that
/// has committed in its term answers OFFSET_OUT_OF_RANGE. (A consumer that read up to the old
/// leader's high watermark and turned to a follower or a new leader used to get the
/// non-retryable OFFSET_OUT_OF_RANGE, and its `poll` failed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_leader_answers_offset_not_available_and_catches_up() {
    let cluster = crate::kit::start(3).await;
    let producer = crate::kit::client(&cluster).await;
    let leader =
        crate::kit::create_one_partition_topic(&cluster, &producer, "behind", 3, b"0").await;
    // Fetches are asked once each, so the test sees every answer.
    let client = Arc::new(
        crate::kit::client_with(
            &cluster,
            raftlog_client::ClientOptions {
                request_timeout: Duration::from_secs(30),
                retry_deadline: Duration::from_millis(1),
            },
        )
        .await,
    );
    let behind = (1..=3).find(|id| *id != leader).expect("a follower");
    let other = (1..=3)
        .find(|id| *id != leader && *id != behind)
        .expect("another follower");
    let behind_address = cluster.addr(behind);
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(error) = client
        .fetch_from(&behind_address, "behind", 0, 0, 0, 0)
        .await
    {
        assert!(Instant::now() < deadline, "follower {behind}: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The leader and the other follower commit 20 records while `behind` is stopped; then they
    // stop, so `behind` runs alone and cannot catch up. Leadership may still move onto `behind`
    // just before it stops (a busy disk slows elections down by seconds), and a request to a
    // stopped node only times out: the producer is idempotent, so it retries those on the
    // new leader without writing a record twice.
    let retrying = Arc::new(
        crate::kit::client_with(
            &cluster,
            ClientOptions {
                request_timeout: Duration::from_secs(2),
                retry_deadline: Duration::from_secs(30),
            },
        )
        .await,
    );
    let idempotent = Producer::new(retrying, ProducerConfig::default());
    cluster.pause(behind);
    for value in 1..20u64 {
        let record = record(None, value.to_string().into_bytes());
        let delivery = idempotent
            .send_to("behind", 0, record)
            .await
            .expect("queue a record")
            .await
            .unwrap_or_else(|error| panic!("produce {value} to behind: {error}"));
        assert_eq!(delivery.offset, value, "{delivery:?}");
    }
    cluster.pause(leader);
    cluster.pause(other);
    cluster.resume(behind);

    let error = client
        .fetch_from(&behind_address, "behind", 0, 19, 0, 300)
        .await
        .expect_err("offset 19 is above the stale replica's high watermark");
    assert_eq!(
        error.reason(),
        Some(ErrorReason::OffsetNotAvailable),
        "{error}"
    );
    assert!(error.is_retryable(), "{error}");
    let mut stream = client
        .subscribe(&behind_address, "behind", 0, 19)
        .await
        .expect("a subscription may start above a stale replica's high watermark");

    // A long poll on the stale replica returns the record once the others are back.
    let waiting = {
        let client = Arc::clone(&client);
        let address = behind_address.clone();
        tokio::spawn(async move {
            client
                .fetch_from(&address, "behind", 0, 19, 0, 20_000)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.resume(leader);
    cluster.resume(other);
    let response = waiting
        .await
        .expect("join")
        .expect("the long poll returns once the replica caught up");
    assert_eq!(response.records.len(), 1, "{response:?}");
    assert_eq!(response.records[0].offset, 19);
    assert_eq!(response.records[0].value.as_ref(), b"19");
    let message = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("the subscription delivers once the replica caught up")
        .expect("a message")
        .expect("no error");
    assert_eq!(message.records[0].offset, 19, "{message:?}");

    // Where nothing is, a leader that has committed in its term still says OFFSET_OUT_OF_RANGE.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let description = cluster.wait_for_leaders("behind").await;
        let leader = description.partitions[0].leader_id.expect("leader");
        match client
            .fetch_from(&cluster.addr(leader), "behind", 0, 25, 0, 0)
            .await
        {
            Err(error) if error.reason() == Some(ErrorReason::OffsetOutOfRange) => {
                assert!(!error.is_retryable(), "{error}");
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "offset 25 on the leader: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A leader that was replaced while it was down restarts alone, behind the new leader. It does
/// not resume leading its old term (openraft would restore its committed vote for itself;
/// `RaftHost::start_group` starts it as a follower), it must not declare an offset the new
/// leader wrote out of range, and it serves that offset once it has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_leader_that_has_not_noticed_answers_offset_not_available() {
    let mut cluster = crate::kit::start(3).await;
    let client = crate::kit::client(&cluster).await;
    let old_leader =
        crate::kit::create_one_partition_topic(&cluster, &client, "deposed", 3, b"0").await;
    produce_numbers(&client, "deposed", 1..10).await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != old_leader).collect();

    // The others elect a new leader while the old one is down, and commit 10 more records.
    cluster.kill(old_leader);
    let survivors = Client::connect_with(
        &others
            .iter()
            .map(|id| cluster.addr(*id))
            .collect::<Vec<_>>(),
        ClientOptions::default(),
    )
    .await
    .expect("connect to the others");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let description = survivors.describe_topic("deposed").await;
        if let Ok(leader) = description.map(|d| d.partitions[0].leader_id) {
            if leader.is_some_and(|id| others.contains(&id)) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no new leader within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    produce_numbers(&survivors, "deposed", 10..20).await;

    // The old leader restarts alone, with a high watermark of 10.
    for id in &others {
        cluster.pause(*id);
    }
    cluster.restart(old_leader).expect("restart node");
    let old_address = cluster.addr(old_leader);
    let deadline = Instant::now() + Duration::from_secs(30);
    let direct = loop {
        // It may not listen yet.
        let options = ClientOptions {
            request_timeout: Duration::from_secs(30),
            retry_deadline: Duration::from_millis(1),
        };
        match Client::connect_with(std::slice::from_ref(&old_address), options).await {
            Ok(client) => break client,
            Err(error) => assert!(Instant::now() < deadline, "old leader: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = loop {
        // Until it listens and runs the partition again.
        match direct
            .fetch_from(&old_address, "deposed", 0, 15, 0, 0)
            .await
        {
            Err(error)
                if Instant::now() < deadline
                    && matches!(
                        error.reason(),
                        None | Some(
                            ErrorReason::NotAReplica
                                | ErrorReason::NotReady
                                | ErrorReason::PartitionNotFound
                                | ErrorReason::TopicNotFound
                        )
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            result => {
                break result.expect_err("offset 15 is above the old leader's high watermark")
            }
        }
    };
    assert_eq!(
        error.reason(),
        Some(ErrorReason::OffsetNotAvailable),
        "{error}"
    );
    // Also once it has applied what it had committed (its term's entries) again.
    assert_not_available_for(&direct, &old_address, "deposed", 15, Duration::from_secs(2)).await;
    let state = direct
        .describe_topic("deposed")
        .await
        .expect("the old leader describes the topic");
    assert_ne!(
        state.partitions[0].leader_id,
        Some(old_leader),
        "a restarted leader must not resume leading its old term: {state:?}"
    );

    // Once the others are back it learns of the new term, catches up and serves offset 15.
    let waiting = tokio::spawn(async move {
        direct
            .fetch_from(&old_address, "deposed", 0, 15, 0, 20_000)
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in &others {
        cluster.resume(*id);
    }
    let response = waiting
        .await
        .expect("join")
        .expect("the long poll returns once the old leader caught up");
    assert_eq!(response.records[0].offset, 15, "{response:?}");
    assert_eq!(response.records[0].value.as_ref(), b"15");
}

/// Every segment file under `dir`, at any depth.
fn segment_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read data dir") {
            let path = entry.expect("data dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "seg") {
                found.push(path);
            }
        }
    }
    found
}

/// Asks the kernel to drop the cached pages of `path`, and says whether its first page went.
fn drop_cached_pages(path: &Path) -> bool {
    let file = File::open(path).expect("open segment");
    // SAFETY: `posix_fadvise` only reads its integer arguments; `file` owns the descriptor.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise of {}", path.display());
    // SAFETY: a read-only shared mapping of the file's first page, only passed to `mincore`
    // (which reads no contents) and unmapped at once.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED, "mmap {}", path.display());
    let mut resident = [0u8; 1];
    // SAFETY: `map` is a live one-page mapping and `resident` has one byte for it.
    let rc = unsafe { libc::mincore(map, 4096, resident.as_mut_ptr()) };
    // SAFETY: exactly what `mmap` returned, with its length.
    unsafe { libc::munmap(map, 4096) };
    assert_eq!(rc, 0, "mincore {}", path.display());
    resident[0] & 1 == 0
}

/// Drops the pages of every segment of node `id` of more than 1 MiB (the partition's, not the
/// controller's small log), insisting that the kernel did, or the test would prove nothing.
fn drop_partition_pages(cluster: &TestCluster, id: u64) {
    let segments: Vec<PathBuf> = segment_files_under(&cluster.data_dir(id))
        .into_iter()
        .filter(|path| std::fs::metadata(path).is_ok_and(|m| m.len() > 1024 * 1024))
        .collect();
    assert!(!segments.is_empty(), "node {id} has no large segment");
    for path in &segments {
        assert!(
            drop_cached_pages(path),
            "the kernel kept the first page of {} cached",
            path.display()
        );
    }
}

/// A consumer replaying records that are no longer in the page cache. The node's runtime
/// threads only try reads that need no disk; this one is handed to the blocking pool, and every
/// record must still arrive, intact and in order, by fetch and by subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_dropped_from_the_page_cache_are_read_from_disk_intact() {
    const REQUESTS: u64 = 64;
    const PER_REQUEST: u64 = 64;
    let cluster = crate::kit::start_on_disk(1, RaftTimers::SHORT).await;
    let client = crate::kit::client(&cluster).await;
    client.create_topic("cold", 1, 1).await.expect("create");
    cluster.wait_for_leaders("cold").await;
    // 4 MiB: more than the newest ~1 MiB a log keeps decoded in memory, so the oldest records
    // can only come from the segment file.
    let value = |n: u64| format!("{n:08}").repeat(128).into_bytes();
    for request in 0..REQUESTS {
        let records = (request * PER_REQUEST..(request + 1) * PER_REQUEST)
            .map(|n| record(None, value(n)))
            .collect();
        client.produce("cold", 0, records).await.expect("produce");
    }
    let expected: Vec<(u64, Vec<u8>)> =
        (0..REQUESTS * PER_REQUEST).map(|n| (n, value(n))).collect();

    drop_partition_pages(&cluster, 1);
    let fetched = crate::kit::read_all_from(&cluster, &client, 1, "cold", 0).await;
    assert!(
        fetched == expected,
        "fetched {} records, not the {} produced",
        fetched.len(),
        expected.len()
    );

    drop_partition_pages(&cluster, 1);
    let mut stream = client
        .subscribe(&cluster.addr(1), "cold", 0, 0)
        .await
        .expect("subscribe");
    let mut streamed = Vec::new();
    while streamed.len() < expected.len() {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("stream stalled")
            .expect("stream ended")
            .expect("stream error");
        streamed.extend(
            message
                .records
                .into_iter()
                .map(|r| (r.offset, r.value.to_vec())),
        );
    }
    assert!(
        streamed == expected,
        "streamed {} records, not the {} produced",
        streamed.len(),
        expected.len()
    );
}
