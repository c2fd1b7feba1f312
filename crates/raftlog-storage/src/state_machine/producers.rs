//! Idempotent producers: the sequence check that accepts a batch, answers an exact retry with
//! its original offsets or refuses a gap, and the expiry that forgets idle producers. Both are
//! pure functions of the applied entries, so every replica decides the same: expiry goes by the
//! time the entries carry (the leader's stamp, see `entry_time_ms` in `mod.rs`), not by this
//! node's clock and not by the records' client timestamps. Time arithmetic saturates, so no
//! timestamp can make it overflow. The states are written with the rest of an apply
//! (`persist.rs`).

use std::collections::BTreeMap;
use std::collections::VecDeque;

use raftlog_types::BatchResult;
use raftlog_types::ProducerBatch;
use serde::Deserialize;
use serde::Serialize;

use super::PRODUCER_PREFIX;

/// Batches per producer remembered for answering exact retries (as Kafka does).
const PRODUCER_RECENT_BATCHES_MAX: usize = 5;
/// Producers remembered per partition; the longest idle is forgotten first.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;
/// A producer idle this long (by the entries' leader time) is forgotten.
pub const PRODUCER_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// What a partition remembers of one idempotent producer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    /// Sequence number of the last record accepted.
    pub last_sequence: u64,
    /// The last accepted batches: (base sequence, record count, base offset).
    pub recent: VecDeque<(u64, u32, u64)>,
    /// Time of the producer's last accepted batch (the entry's time, see `entry_time_ms`), for
    /// retention. The name is the stored one; states written before leader stamps hold the
    /// batch's largest record timestamp here.
    pub last_write_ms: i64,
}

pub(super) fn producer_key(producer_id: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = PRODUCER_PREFIX;
    key[1..].copy_from_slice(&producer_id.to_be_bytes());
    key
}

/// The time of a batch of an unstamped (`AppendBatches`) entry: its largest record
/// timestamp, as before entries carried the leader's time.
pub(super) fn unstamped_batch_time_ms(batch: &ProducerBatch) -> i64 {
    batch
        .records
        .iter()
        .map(|r| r.timestamp_ms)
        .max()
        .unwrap_or(0)
}

/// Decides one batch, written at `write_ms`, against the producer states; updates them if it
/// is accepted.
pub(super) fn check_sequence(
    producers: &mut BTreeMap<u64, ProducerState>,
    batch: &ProducerBatch,
    next_offset: u64,
    write_ms: i64,
) -> Option<BatchResult> {
    let producer = batch.producer?;
    let count = batch.records.len() as u64;
    match producers.get_mut(&producer.producer_id) {
        None if producer.base_sequence != 0 => Some(BatchResult::UnknownProducer {
            received: producer.base_sequence,
        }),
        None => {
            let mut state = ProducerState {
                last_sequence: count.saturating_sub(1),
                recent: VecDeque::new(),
                last_write_ms: write_ms,
            };
            state.recent.push_back((0, count as u32, next_offset));
            producers.insert(producer.producer_id, state);
            None
        }
        Some(state) => {
            if let Some((_, recorded_count, base_offset)) = state
                .recent
                .iter()
                .find(|(seq, _, _)| *seq == producer.base_sequence)
            {
                if u64::from(*recorded_count) == count {
                    return Some(BatchResult::Duplicate {
                        base_offset: *base_offset,
                        record_count: *recorded_count,
                    });
                }
            }
            // Sequences start at 0 and grow only by records written, so these cannot overflow
            // in practice; saturating keeps a hostile sequence from panicking anyway.
            let expected = state.last_sequence.saturating_add(1);
            if producer.base_sequence != expected {
                return Some(BatchResult::OutOfOrder {
                    expected,
                    received: producer.base_sequence,
                });
            }
            state.last_sequence = producer
                .base_sequence
                .saturating_add(count.saturating_sub(1));
            state.last_write_ms = state.last_write_ms.max(write_ms);
            state
                .recent
                .push_back((producer.base_sequence, count as u32, next_offset));
            while state.recent.len() > PRODUCER_RECENT_BATCHES_MAX {
                state.recent.pop_front();
            }
            None
        }
    }
}

/// Forgets producers idle for longer than the retention, and the longest idle ones beyond
/// the per-partition limit. Driven by the entries' time, so every replica forgets the same ones.
pub(super) fn expire_producers(
    producers: &mut BTreeMap<u64, ProducerState>,
    now_ms: i64,
) -> Vec<u64> {
    let mut forgotten: Vec<u64> = producers
        .iter()
        .filter(|(_, s)| now_ms.saturating_sub(s.last_write_ms) > PRODUCER_RETENTION_MS)
        .map(|(id, _)| *id)
        .collect();
    if producers.len() - forgotten.len() > PRODUCERS_PER_PARTITION_MAX {
        let mut by_age: Vec<(i64, u64)> = producers
            .iter()
            .filter(|(id, _)| !forgotten.contains(id))
            .map(|(id, s)| (s.last_write_ms, *id))
            .collect();
        by_age.sort_unstable();
        let excess = by_age.len() - PRODUCERS_PER_PARTITION_MAX;
        forgotten.extend(by_age.into_iter().take(excess).map(|(_, id)| id));
    }
    for id in &forgotten {
        producers.remove(id);
    }
    forgotten
}

#[cfg(test)]
mod tests {
    use raftlog_types::ProducerSequence;
    use raftlog_types::Record;

    use super::*;

    fn batch(producer_id: u64, base_sequence: u64, count: usize) -> ProducerBatch {
        let record = Record {
            key: None,
            value: bytes::Bytes::from_static(b"v"),
            headers: Vec::new(),
            timestamp_ms: 1,
        };
        ProducerBatch {
            producer: Some(ProducerSequence {
                producer_id,
                base_sequence,
            }),
            records: vec![record; count],
        }
    }

    #[test]
    fn sequences_accept_in_order_answer_retries_and_refuse_gaps() {
        let mut producers = BTreeMap::new();
        assert_eq!(
            check_sequence(&mut producers, &batch(7, 5, 1), 0, 1),
            Some(BatchResult::UnknownProducer { received: 5 })
        );
        assert_eq!(check_sequence(&mut producers, &batch(7, 0, 3), 0, 1), None);
        assert_eq!(check_sequence(&mut producers, &batch(7, 3, 2), 3, 1), None);
        assert_eq!(
            check_sequence(&mut producers, &batch(7, 0, 3), 5, 1),
            Some(BatchResult::Duplicate {
                base_offset: 0,
                record_count: 3
            })
        );
        assert_eq!(
            check_sequence(&mut producers, &batch(7, 9, 1), 5, 1),
            Some(BatchResult::OutOfOrder {
                expected: 5,
                received: 9
            })
        );
        assert_eq!(check_sequence(&mut producers, &batch(7, 5, 1), 5, 1), None);
    }

    #[test]
    fn idle_producers_are_forgotten_by_entry_time() {
        let mut producers = BTreeMap::new();
        check_sequence(&mut producers, &batch(1, 0, 1), 0, 1);
        assert!(expire_producers(&mut producers, 2).is_empty());
        assert_eq!(
            expire_producers(&mut producers, PRODUCER_RETENTION_MS + 10),
            vec![1]
        );
        assert!(producers.is_empty());
    }
}
