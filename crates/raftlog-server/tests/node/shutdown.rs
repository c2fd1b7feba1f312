//! Shutdown is joined: when a node's shutdown future completes, `run` returns within seconds
//! and only once every task the node started has stopped, although a client holds a
//! subscription open and a long poll in flight (both end with it), and the node starts again at
//! once over the same data dir and ports.
//!
//! The node runs on a runtime of its own and the clients on another, so that "every task has
//! stopped" can be checked as the node's runtime having no task left the moment `run` returns.

use std::time::Duration;
use std::time::Instant;

use raftlog_proto::v1;
use raftlog_testkit::InProcessCluster;
use tokio::runtime::Runtime;
use tokio_stream::StreamExt;

use crate::common::clients;
use crate::common::create_topic;
use crate::common::produce_request;

/// How long the node may take to stop with a subscription and a long poll open.
const STOP_WITHIN: Duration = Duration::from_secs(5);

fn runtime(threads: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Tasks alive on `runtime`, once the count stops falling (a finished task leaves the count a
/// moment after its JoinHandle is told).
fn alive_tasks(runtime: &Runtime) -> usize {
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        let alive = runtime.metrics().num_alive_tasks();
        if alive == 0 || Instant::now() > deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn shutdown_ends_subscriptions_and_long_polls_and_waits_for_every_task() {
    let nodes = runtime(2);
    let clients_runtime = runtime(1);
    let mut cluster = nodes.block_on(InProcessCluster::start_nodes(1));
    let (mut fetch, mut stream, poll) = clients_runtime.block_on(async {
        create_topic(&cluster, "open", 1, 1).await;
        let mut node = clients(&cluster, 1);
        node.produce
            .produce(produce_request("open", 0, &[b"zero"]))
            .await
            .expect("produce");
        let mut stream = node
            .fetch
            .subscribe(v1::SubscribeRequest {
                topic: "open".into(),
                partition: 0,
                offset: 0,
                max_bytes: 0,
            })
            .await
            .expect("subscribe")
            .into_inner();
        let first = stream.next().await.expect("a message").expect("records");
        assert_eq!(first.records.len(), 1);
        // A long poll at the end, as long as a fetch may wait.
        let poll = {
            let mut fetch = node.fetch.clone();
            tokio::spawn(async move {
                let request = v1::FetchRequest {
                    topic: "open".into(),
                    partition: 0,
                    offset: 1,
                    max_bytes: 0,
                    max_wait_ms: 30_000,
                };
                fetch.fetch(request).await
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !poll.is_finished(),
            "the long poll returned with nothing to read"
        );
        (node.fetch, stream, poll)
    });

    let stopped = nodes.block_on(cluster.stop_within(1, STOP_WITHIN));
    let took = stopped.unwrap_or_else(|failure| {
        panic!("node 1 with a subscription and a long poll open: {failure}")
    });
    assert_eq!(
        alive_tasks(&nodes),
        0,
        "run returned {took:?} after shutdown while tasks it started were still alive"
    );

    clients_runtime.block_on(async {
        // What the node answered before it stopped is all there is: no waiting here.
        let end = tokio::time::timeout(Duration::from_millis(500), stream.next())
            .await
            .expect("the subscription was still open after the node stopped");
        assert!(
            !matches!(end, Some(Ok(_))),
            "the subscription sent records after the node stopped: {end:?}"
        );
        let polled = tokio::time::timeout(Duration::from_millis(500), poll)
            .await
            .expect("the long poll was still unanswered after the node stopped")
            .expect("join");
        eprintln!("stopped in {took:?}; the subscription ended with {end:?}, the long poll with {polled:?}");
    });

    // Nothing of the stopped node holds its ports or data dir: it starts again at once.
    nodes.block_on(async {
        cluster.start(1);
        cluster.wait_for_controller().await;
        assert!(
            cluster.exited(1).await.is_none(),
            "the restarted node exited"
        );
    });
    clients_runtime.block_on(async {
        let request = v1::FetchRequest {
            topic: "open".into(),
            partition: 0,
            offset: 0,
            max_bytes: 0,
            max_wait_ms: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let fetched = loop {
            match fetch.fetch(request.clone()).await {
                Ok(response) => break response.into_inner(),
                Err(status) => assert!(Instant::now() < deadline, "after the restart: {status:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(fetched.records[0].value.as_ref(), b"zero");
    });
    nodes.block_on(async {
        cluster.stop(1).await;
    });
}
