//! Producer ids: the controller leader takes them a block at a time (one Raft write per
//! block) and hands them out one by one; every id is issued once, across concurrent callers
//! and across a change of controller leader.

use std::collections::BTreeSet;
use std::time::Duration;
use std::time::Instant;

use raftlog_proto::v1;
use raftlog_proto::v1::ErrorReason;
use raftlog_testkit::InProcessCluster;
use raftlog_types::limits::PRODUCER_ID_BLOCK;

use crate::common::clients;
use crate::common::reason;

/// The node that issues producer ids now (the controller leader, or one with ids left), and
/// one id from it.
async fn issuer(cluster: &InProcessCluster) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for id in cluster.running_ids() {
            match clients(cluster, id)
                .produce
                .init_producer(v1::InitProducerRequest {})
                .await
            {
                Ok(response) => return (id, response.into_inner().producer_id),
                Err(status) if reason(&status).is_some_and(ErrorReason::is_retryable) => {}
                Err(status) => panic!("init producer at node {id}: {status:?}"),
            }
        }
        assert!(Instant::now() < deadline, "no node issued a producer id");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `count` ids from node `id`, from `callers` concurrent callers.
async fn ids_from(cluster: &InProcessCluster, id: u64, callers: usize, count: usize) -> Vec<u64> {
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let mut produce = clients(cluster, id).produce;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..count / callers {
                let response = produce
                    .init_producer(v1::InitProducerRequest {})
                    .await
                    .expect("init producer");
                ids.push(response.into_inner().producer_id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.expect("join"));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_producer_id_is_issued_once_across_blocks_callers_and_leaders() {
    let mut cluster = InProcessCluster::start_nodes(3).await;
    let (leader, first) = issuer(&cluster).await;
    // More than two blocks' worth, from four concurrent callers.
    let count = 2 * PRODUCER_ID_BLOCK as usize + 400;
    let mut issued = ids_from(&cluster, leader, 4, count).await;
    issued.push(first);
    let distinct: BTreeSet<u64> = issued.iter().copied().collect();
    assert_eq!(distinct.len(), issued.len(), "an id was issued twice");
    // Blocks are handed out in order: the ids are exactly the first ones.
    assert_eq!(
        distinct.iter().copied().collect::<Vec<_>>(),
        (first..first + issued.len() as u64).collect::<Vec<_>>()
    );

    // A new controller leader takes a new block, after every id the old one held.
    cluster.stop(leader).await;
    let (new_leader, after) = issuer(&cluster).await;
    assert_ne!(new_leader, leader);
    let old_block_end = (first - 1) / PRODUCER_ID_BLOCK * PRODUCER_ID_BLOCK
        + (issued.len() as u64).div_ceil(PRODUCER_ID_BLOCK) * PRODUCER_ID_BLOCK;
    // Exactly the next block: the old leader's unused ids are skipped, never reissued. (With
    // a Raft write per id, the new leader would go on at the next id instead.)
    assert_eq!(
        after,
        old_block_end + 1,
        "the new leader's first id is not the start of the block after the old leader's"
    );
    let more = ids_from(&cluster, new_leader, 2, 200).await;
    assert!(more.iter().all(|id| !distinct.contains(id) && *id != after));
}
