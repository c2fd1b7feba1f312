//! Topic configs: set at creation, described with their source, altered all at once, agreed on
//! by every node through the controller, refused precisely when a key or value is bad (with
//! nothing changed), and `max.message.bytes` enforced on produce.

use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;

use raftlog_proto::v1;
use raftlog_proto::v1::ErrorReason;
use raftlog_testkit::InProcessCluster;

use crate::common::clients;
use crate::common::expect_status;
use crate::common::produce_request;
use crate::common::produce_to_leader;
use crate::common::record;
use crate::common::segment_files;

fn configs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `(value, source)` of every key.
/// A record with an empty key, which counts no bytes against `max.message.bytes` and is a
/// key to a compacted topic.
fn empty_keyed(value: &[u8]) -> v1::Record {
    v1::Record {
        key: Some(Vec::new().into()),
        ..record(value)
    }
}

fn by_key(configs: &[v1::TopicConfig]) -> HashMap<String, (String, v1::ConfigSource)> {
    configs
        .iter()
        .map(|c| {
            let source = v1::ConfigSource::try_from(c.source).expect("a known source");
            (c.name.clone(), (c.value.clone(), source))
        })
        .collect()
}

fn topic(value: &str) -> (String, v1::ConfigSource) {
    (value.to_owned(), v1::ConfigSource::Topic)
}

fn default(value: &str) -> (String, v1::ConfigSource) {
    (value.to_owned(), v1::ConfigSource::Default)
}

async fn describe_configs(cluster: &InProcessCluster, id: u64, name: &str) -> Vec<v1::TopicConfig> {
    clients(cluster, id)
        .admin
        .describe_topic_configs(v1::DescribeTopicConfigsRequest { name: name.into() })
        .await
        .expect("describe configs")
        .into_inner()
        .configs
}

/// Waits until node `id` describes `name`'s configs as `expected` says for the keys it names.
async fn assert_node_sees(
    cluster: &InProcessCluster,
    id: u64,
    name: &str,
    expected: &[(&str, (String, v1::ConfigSource))],
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = by_key(&describe_configs(cluster, id, name).await);
        let matches = expected
            .iter()
            .all(|(key, value)| seen.get(*key) == Some(value));
        if matches {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} describes {name} as {seen:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_are_set_described_altered_and_agreed_on_by_every_node() {
    let cluster = InProcessCluster::start_nodes(3).await;
    let created = clients(&cluster, 2)
        .admin
        .create_topic(v1::CreateTopicRequest {
            name: "events".into(),
            partitions: 1,
            replicas: 3,
            configs: configs(&[
                ("retention.ms", " 0086400000"),
                ("cleanup.policy", "delete, compact"),
                ("max.message.bytes", "1000"),
            ]),
        })
        .await
        .expect("create")
        .into_inner()
        .topic
        .expect("a topic");
    let described = by_key(&created.configs);
    assert_eq!(described.len(), 8, "{described:?}");
    // Values are stored canonical, so every node renders them alike.
    assert_eq!(described["retention.ms"], topic("86400000"));
    assert_eq!(described["cleanup.policy"], topic("compact,delete"));
    assert_eq!(described["max.message.bytes"], topic("1000"));
    assert_eq!(described["retention.bytes"], default("-1"));
    assert_eq!(described["segment.bytes"], default("67108864"));
    for id in 1..=3 {
        assert_node_sees(
            &cluster,
            id,
            "events",
            &[
                ("retention.ms", topic("86400000")),
                ("max.message.bytes", topic("1000")),
            ],
        )
        .await;
    }

    // max.message.bytes is in effect: 1000 bytes pass, 1001 are refused naming the config.
    produce_to_leader(
        &cluster,
        v1::ProduceRequest {
            topic: "events".into(),
            partition: 0,
            records: vec![empty_keyed(&[7; 1000])],
            ..Default::default()
        },
        Duration::from_secs(10),
    )
    .await;
    let leader = cluster.wait_for_leaders("events").await.partitions[0]
        .leader_id
        .expect("a leader");
    let refused = expect_status(
        clients(&cluster, leader)
            .produce
            .produce(v1::ProduceRequest {
                topic: "events".into(),
                partition: 0,
                records: vec![empty_keyed(&[7; 1001])],
                ..Default::default()
            })
            .await,
        tonic::Code::InvalidArgument,
        ErrorReason::RecordTooLarge,
    );
    assert!(
        refused
            .message()
            .contains("record is 1001 bytes, the topic's max.message.bytes is 1000"),
        "{refused:?}"
    );

    // Alter sets and removes at once; removed keys go back to their default.
    let after = clients(&cluster, 3)
        .admin
        .alter_topic_configs(v1::AlterTopicConfigsRequest {
            name: "events".into(),
            set: configs(&[("retention.bytes", "4096"), ("max.message.bytes", "2000")]),
            delete: vec!["cleanup.policy".into()],
        })
        .await
        .expect("alter")
        .into_inner()
        .configs;
    let after = by_key(&after);
    assert_eq!(after["retention.bytes"], topic("4096"));
    assert_eq!(after["cleanup.policy"], default("delete"));
    assert_eq!(after["retention.ms"], topic("86400000"));
    for id in 1..=3 {
        assert_node_sees(
            &cluster,
            id,
            "events",
            &[
                ("retention.bytes", topic("4096")),
                ("cleanup.policy", default("delete")),
                ("max.message.bytes", topic("2000")),
            ],
        )
        .await;
    }
    // The new limit holds on the leader at once (it applied the change before answering).
    produce_to_leader(
        &cluster,
        v1::ProduceRequest {
            topic: "events".into(),
            partition: 0,
            records: vec![empty_keyed(&[7; 1500])],
            ..Default::default()
        },
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_are_refused_precisely_and_change_nothing() {
    let cluster = InProcessCluster::start_nodes(3).await;
    let admin = || clients(&cluster, 1).admin;
    let create = |pairs: &[(&str, &str)]| v1::CreateTopicRequest {
        name: "bad".into(),
        partitions: 1,
        replicas: 3,
        configs: configs(pairs),
    };
    for (pairs, field, says) in [
        (
            vec![("retention.hours", "1")],
            "configs[retention.hours]",
            "unknown topic config `retention.hours`; the keys are retention.ms,",
        ),
        (
            vec![("retention.ms", "-2")],
            "configs[retention.ms]",
            "must be an integer in -1 ..= 9223372036854775807, got \"-2\"",
        ),
        (
            vec![("segment.bytes", "1024")],
            "configs[segment.bytes]",
            "must be an integer in 65536 ..= 1073741824, got \"1024\"",
        ),
        (
            vec![("cleanup.policy", "forever")],
            "configs[cleanup.policy]",
            "must be one of delete, compact, compact,delete, got \"forever\"",
        ),
        (
            vec![("max.message.bytes", "2097152")],
            "configs[max.message.bytes]",
            "must be an integer in 1 ..= 1048576",
        ),
    ] {
        let status = expect_status(
            admin().create_topic(create(&pairs)).await,
            tonic::Code::InvalidArgument,
            ErrorReason::InvalidConfig,
        );
        assert!(
            status.message().contains(field) && status.message().contains(says),
            "{pairs:?}: {status:?}"
        );
    }
    let listed = admin()
        .list_topics(v1::ListTopicsRequest {})
        .await
        .expect("list")
        .into_inner()
        .topics;
    assert!(listed.is_empty(), "a refused create made {listed:?}");

    admin()
        .create_topic(create(&[("retention.ms", "1000")]))
        .await
        .expect("create");
    let before = describe_configs(&cluster, 1, "bad").await;
    let alter = |set: &[(&str, &str)], delete: &[&str]| v1::AlterTopicConfigsRequest {
        name: "bad".into(),
        set: configs(set),
        delete: delete.iter().map(|k| k.to_string()).collect(),
    };
    for (request, field) in [
        // One bad value refuses the whole change, good values included.
        (
            alter(&[("retention.bytes", "4096"), ("segment.ms", "0")], &[]),
            "configs[segment.ms]",
        ),
        (alter(&[], &["retention.minutes"]), "delete[0]"),
        (
            alter(&[("retention.ms", "5")], &["retention.ms"]),
            "delete[0]",
        ),
    ] {
        let status = expect_status(
            admin().alter_topic_configs(request).await,
            tonic::Code::InvalidArgument,
            ErrorReason::InvalidConfig,
        );
        assert!(status.message().contains(field), "{status:?}");
    }
    expect_status(
        admin()
            .alter_topic_configs(v1::AlterTopicConfigsRequest {
                name: "missing".into(),
                set: configs(&[("retention.ms", "5")]),
                delete: Vec::new(),
            })
            .await,
        tonic::Code::NotFound,
        ErrorReason::TopicNotFound,
    );
    assert_eq!(
        describe_configs(&cluster, 1, "bad").await,
        before,
        "a refused alter changed the configs"
    );
}

/// A compacted topic keeps the latest record of each key, so it takes no record without one:
/// a keyless record (first or among keyed ones) refuses the whole request with
/// RECORD_KEY_REQUIRED naming it, and nothing is written; an empty key is a key. A topic that
/// only deletes takes keyless records, and altering it to `compact` makes them refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_refuses_records_without_a_key_and_writes_nothing() {
    let cluster = InProcessCluster::start_nodes(3).await;
    let admin = || clients(&cluster, 1).admin;
    for (name, policy) in [("compacted", "compact"), ("both", "delete,compact")] {
        admin()
            .create_topic(v1::CreateTopicRequest {
                name: name.into(),
                partitions: 1,
                replicas: 3,
                configs: configs(&[("cleanup.policy", policy)]),
            })
            .await
            .expect("create");
    }
    admin()
        .create_topic(v1::CreateTopicRequest {
            name: "deleted".into(),
            partitions: 1,
            replicas: 3,
            configs: configs(&[]),
        })
        .await
        .expect("create");
    cluster.wait_for_leaders("compacted").await;
    cluster.wait_for_leaders("both").await;
    cluster.wait_for_leaders("deleted").await;

    let keyed = |key: &[u8], value: &[u8]| v1::Record {
        key: Some(key.to_vec().into()),
        ..record(value)
    };
    let produce = |topic: &str, records: Vec<v1::Record>| v1::ProduceRequest {
        records,
        ..produce_request(topic, 0, &[])
    };
    let within = Duration::from_secs(20);
    for topic in ["compacted", "both"] {
        let written = produce_to_leader(
            &cluster,
            produce(topic, vec![keyed(b"k", b"v1"), keyed(b"", b"empty key")]),
            within,
        )
        .await;
        assert_eq!(written.base_offset, 0);
        let leader = cluster.wait_for_leaders(topic).await.partitions[0]
            .leader_id
            .expect("leader");
        let status = expect_status(
            clients(&cluster, leader)
                .produce
                .produce(produce(
                    topic,
                    vec![keyed(b"k", b"v2"), record(b"no key"), keyed(b"j", b"v")],
                ))
                .await,
            tonic::Code::InvalidArgument,
            ErrorReason::RecordKeyRequired,
        );
        assert!(
            status.message().contains("records[1].key")
                && status.message().contains("cleanup.policy")
                && status.message().contains("needs a key"),
            "{status:?}"
        );
        let fetched = clients(&cluster, leader)
            .fetch
            .fetch(v1::FetchRequest {
                topic: topic.into(),
                partition: 0,
                offset: 0,
                max_bytes: 0,
                max_wait_ms: 0,
            })
            .await
            .expect("fetch")
            .into_inner();
        assert_eq!(
            fetched.high_watermark, 2,
            "{topic}: a refused produce wrote records"
        );
    }

    produce_to_leader(
        &cluster,
        produce("deleted", vec![record(b"no key")]),
        within,
    )
    .await;
    admin()
        .alter_topic_configs(v1::AlterTopicConfigsRequest {
            name: "deleted".into(),
            set: configs(&[("cleanup.policy", "compact")]),
            delete: Vec::new(),
        })
        .await
        .expect("alter");
    // Every node applies the alter through the controller log: wait for the leader's view.
    let deadline = Instant::now() + within;
    loop {
        let leader = cluster.wait_for_leaders("deleted").await.partitions[0]
            .leader_id
            .expect("leader");
        let result = clients(&cluster, leader)
            .produce
            .produce(produce("deleted", vec![record(b"no key")]))
            .await;
        match result {
            Err(status)
                if crate::common::reason(&status) == Some(ErrorReason::RecordKeyRequired) =>
            {
                break
            }
            other => {
                assert!(Instant::now() < deadline, "after the alter: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Segment files of node `id`'s replica of `group`.
fn segment_count(cluster: &InProcessCluster, id: u64, group: u64) -> usize {
    segment_files(cluster, id, group).len()
}

async fn produce_kib(cluster: &InProcessCluster, topic: &str, kib: usize) {
    for _ in 0..kib / 16 {
        produce_to_leader(
            cluster,
            v1::ProduceRequest {
                topic: topic.into(),
                partition: 0,
                records: vec![record(&[3; 16 * 1024])],
                ..Default::default()
            },
            Duration::from_secs(10),
        )
        .await;
    }
}

/// Waits until every replica of `group` holds at least `count` segments.
async fn wait_for_segments(cluster: &InProcessCluster, group: u64, at_least: usize) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counts: Vec<usize> = (1..=3)
            .map(|id| segment_count(cluster, id, group))
            .collect();
        if counts.iter().all(|c| *c >= at_least) {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "segments per replica: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_bytes_is_where_every_replica_seals_its_segments_and_alter_changes_it() {
    let cluster = InProcessCluster::start_nodes(3).await;
    let created = clients(&cluster, 1)
        .admin
        .create_topic(v1::CreateTopicRequest {
            name: "segmented".into(),
            partitions: 1,
            replicas: 3,
            configs: configs(&[("segment.bytes", "65536")]),
        })
        .await
        .expect("create")
        .into_inner()
        .topic
        .expect("a topic");
    let group = created.partitions[0].group_id;
    cluster.wait_for_leaders("segmented").await;
    // 384 KiB in 64 KiB segments: at least 5 sealed and one being written, on every replica.
    produce_kib(&cluster, "segmented", 384).await;
    let small = wait_for_segments(&cluster, group, 6).await;

    clients(&cluster, 1)
        .admin
        .alter_topic_configs(v1::AlterTopicConfigsRequest {
            name: "segmented".into(),
            set: configs(&[("segment.bytes", "1048576")]),
            delete: Vec::new(),
        })
        .await
        .expect("alter");
    for id in 1..=3 {
        assert_node_sees(
            &cluster,
            id,
            "segmented",
            &[("segment.bytes", topic("1048576"))],
        )
        .await;
    }
    // Another 384 KiB fits in the active segment and at most one more of 1 MiB.
    produce_kib(&cluster, "segmented", 384).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, before) in small.iter().enumerate() {
        let after = segment_count(&cluster, i as u64 + 1, group);
        assert!(
            after <= before + 1,
            "node {}: {before} segments before the alter, {after} after 384 KiB more",
            i + 1
        );
    }
}
