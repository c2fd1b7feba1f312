//! `raftlog.v1.Fetch` and health: a long poll at the end returns as soon as a record is
//! committed; a subscription delivers every record in order, those committed after it began
//! too; the standard health service answers for the node.

use std::time::Duration;

use raftlog_proto::v1;
use raftlog_testkit::InProcessCluster;
use tokio_stream::StreamExt;

use crate::common::clients;
use crate::common::create_topic;
use crate::common::produce_request;
use crate::common::CALL_TIMEOUT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_returns_when_a_record_commits_and_a_subscription_sees_every_record() {
    let cluster = InProcessCluster::start_nodes(1).await;
    create_topic(&cluster, "stream", 1, 1).await;
    let mut node = clients(&cluster, 1);

    let poll = {
        let mut fetch = clients(&cluster, 1).fetch;
        tokio::spawn(async move {
            let request = v1::FetchRequest {
                topic: "stream".into(),
                partition: 0,
                offset: 0,
                max_bytes: 0,
                max_wait_ms: 10_000,
            };
            fetch.fetch(request).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "the long poll returned with nothing to read"
    );
    node.produce
        .produce(produce_request("stream", 0, &[b"first"]))
        .await
        .expect("produce");
    let polled = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the long poll did not return once a record committed")
        .expect("join")
        .expect("fetch")
        .into_inner();
    assert_eq!(polled.records.len(), 1);
    assert_eq!(polled.records[0].value.as_ref(), b"first");

    let mut stream = node
        .fetch
        .subscribe(v1::SubscribeRequest {
            topic: "stream".into(),
            partition: 0,
            offset: 0,
            max_bytes: 0,
        })
        .await
        .expect("subscribe")
        .into_inner();
    for batch in 0..10 {
        let values: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("{}", batch * 10 + i).into_bytes())
            .collect();
        let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        node.produce
            .produce(produce_request("stream", 0, &values))
            .await
            .expect("produce");
    }
    let mut received = Vec::new();
    while received.len() < 101 {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("stream stalled")
            .expect("stream ended")
            .expect("stream error");
        assert!(message.high_watermark >= message.records.last().map_or(0, |r| r.offset + 1));
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_service_answers_serving() {
    let cluster = InProcessCluster::start_nodes(1).await;
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(cluster.channel(1, CALL_TIMEOUT));
    for service in ["", "raftlog.v1.Produce"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(
            status.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
}
