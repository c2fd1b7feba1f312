//! Quickstart: create a topic, produce a record and read the topic as a consumer group.
//!
//! Start the local 3-node cluster first (`cargo run --release -p raftlog-cli -- cluster up`),
//! then run `cargo run -p raftlog-client --example quickstart`. A second run reads only the
//! record it wrote itself: the group `quickstart` committed its positions the first time.
//! The README shows the body of `main` as its Rust client example.

use std::sync::Arc;

use raftlog_client::record;
use raftlog_client::Client;
use raftlog_client::Consumer;
use raftlog_client::ConsumerConfig;
use raftlog_client::Producer;
use raftlog_client::ProducerConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"].map(String::from);
    let client = Arc::new(Client::connect(&bootstrap).await?);
    let topics = client.list_topics().await?;
    if !topics.iter().any(|t| t.name == "quickstart") {
        client.create_topic("quickstart", 3, 3).await?; // 3 partitions, 3 replicas each
    }
    let producer = Producer::new(Arc::clone(&client), ProducerConfig::default()); // idempotent
    let event = record(Some(b"user-1".to_vec()), b"signed up".to_vec());
    let d = producer.send("quickstart", event).await?.await?; // fsynced on a majority
    println!("wrote {}/{}@{}", d.topic, d.partition, d.offset);
    let config = ConsumerConfig {
        group: Some("quickstart".into()), // a consumer group: positions are committed
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client, config);
    consumer.subscribe(&["quickstart"]).await?;
    for r in consumer.poll().await? {
        println!("read {}@{}: {:?}", r.partition, r.offset, r.value);
    }
    consumer.commit().await?;
    consumer.close().await?;
    Ok(())
}
