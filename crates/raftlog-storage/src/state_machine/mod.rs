//! The partition state machine: assigns offsets to appended batches in apply order, enforces
//! idempotent producers' sequences, and keeps the offset index, the producer states, the
//! applied log id and the membership in the group's sled tree.
//!
//! Keys, all in the group's own tree (big-endian so that byte order is numeric order):
//! - `applied_state`: last applied log id, membership, next offset and the partition's leader
//!   time, as one JSON value, so that they always change together;
//! - `snapshot`: the current snapshot (its meta and data);
//! - `o` + base offset (u64 BE) → log index (u64 BE) + record count (u32 BE) + batch position
//!   in the entry (u32 BE): where the records starting at that offset are. Only accepted
//!   batches get an index entry, so the index, not the log, says which records have offsets;
//! - `q` + producer id (u64 BE) → the producer's sequence state (JSON);
//! - `c` + log index (u64 BE) → a checkpoint: the state after that entry, the last of a sealed
//!   segment (`checkpoint.rs`), from which a snapshot that lets the log be purged is made.
//!
//! The rooms:
//! - this file: the state machine and `apply`;
//! - `persist.rs`: how applied changes reach sled — held back and written in atomic batches of
//!   several applies, with the durability that allows;
//! - `producers.rs`: idempotent producers' sequence checks and their expiry;
//! - `offset_index.rs`: the offset index's encoding and [`PartitionView`], through which readers
//!   use it while openraft owns the state machine;
//! - `snapshot.rs`: building, storing and installing snapshots;
//! - `checkpoint.rs`: the state at each segment's end, where a purge for retention can stop;
//! - `openraft_adapter.rs`: `RaftStateMachine` for openraft;
//! - `tests.rs`: time in apply (leader stamps, client timestamps that must not matter).

mod checkpoint;
mod offset_index;
mod openraft_adapter;
mod persist;
mod producers;
mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use openraft::EntryPayload;
use openraft::StoredMembership;
use raftlog_types::type_config::Entry;
use raftlog_types::type_config::LogId;
use raftlog_types::BatchResult;
use raftlog_types::Command;
use raftlog_types::CommandResponse;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use raftlog_types::ProducerBatch;
use serde::Deserialize;
use serde::Serialize;

pub use self::checkpoint::CheckpointMark;
use self::offset_index::offset_key;
use self::offset_index::offset_value;
pub use self::offset_index::BatchLocation;
pub use self::offset_index::PartitionView;
use self::offset_index::RecentIndex;
use self::persist::PendingWrites;
use self::producers::check_sequence;
use self::producers::expire_producers;
use self::producers::producer_key;
use self::producers::unstamped_batch_time_ms;
pub use self::producers::ProducerState;
pub use self::producers::PRODUCERS_PER_PARTITION_MAX;
pub use self::producers::PRODUCER_RETENTION_MS;
pub use self::snapshot::PartitionSnapshotBuilder;
use crate::durability::Durability;
use crate::error::Result;
use crate::error::StorageError;
use crate::log_store::SegmentLog;
use crate::state_store::StateStore;

const APPLIED_STATE_KEY: &[u8] = b"applied_state";
const SNAPSHOT_KEY: &[u8] = b"snapshot";
const OFFSET_INDEX_PREFIX: u8 = b'o';
const PRODUCER_PREFIX: u8 = b'q';
const CHECKPOINT_PREFIX: u8 = b'c';

/// State that changes with every applied entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    /// The last entry applied.
    pub last_applied: Option<LogId>,
    /// The last membership applied.
    pub membership: StoredMembership<NodeId, NodeInfo>,
    /// Offset the next appended record receives: the partition's high watermark.
    pub next_offset: u64,
    /// The partition's clock: the largest leader timestamp (`StampedAppendBatches`) applied so
    /// far, in ms since the Unix epoch. It only moves forward, so a new leader whose clock is
    /// behind does not turn time back. States written before leader stamps lack it: 0.
    #[serde(default)]
    pub leader_time_ms: i64,
    /// The partition's first offset: records below it were deleted (`AdvanceLogStart`). At most
    /// `next_offset`. States written before retention lack it: 0.
    #[serde(default)]
    pub log_start_offset: u64,
}

/// What one entry's batches are timed by, for producer retention.
#[derive(Clone, Copy, Debug)]
enum EntryTime {
    /// A stamped entry: the partition's leader time after it (`AppliedState::leader_time_ms`).
    Leader(i64),
    /// An entry written before leaders stamped them (`AppendBatches`): each batch is timed by
    /// its largest record timestamp, as the code that wrote the entry did, so that replicas
    /// applying it with that code decide the same. It does not move the partition's clock, so
    /// one bad client timestamp in an old entry cannot push that clock forward for good.
    Unstamped,
}

impl EntryTime {
    fn of_batch(self, batch: &ProducerBatch) -> i64 {
        match self {
            EntryTime::Leader(ms) => ms,
            EntryTime::Unstamped => unstamped_batch_time_ms(batch),
        }
    }
}

/// What an apply changes beyond `AppliedState`, gathered for one write.
#[derive(Default)]
struct ApplyChanges {
    touched_producers: Vec<u64>,
    forgotten_producers: Vec<u64>,
    index: Vec<(u64, [u8; 16])>,
    /// Checkpoints (`checkpoint.rs`): log index → value.
    checkpoints: Vec<(u64, Vec<u8>)>,
}

/// The state machine of one partition group.
pub struct PartitionStateMachine {
    group: GroupId,
    store: StateStore,
    tree: sled::Tree,
    state: AppliedState,
    producers: BTreeMap<u64, ProducerState>,
    /// Published after every apply, for readers waiting on new records.
    high_watermark: tokio::sync::watch::Sender<u64>,
    /// How far the group's log is durable here: nothing is applied before it is.
    durability: Durability,
    /// Applied changes not yet written to sled.
    pending: PendingWrites,
    /// The offset-index entries among them, for readers.
    recent_index: RecentIndex,
    /// `state.log_start_offset`, for readers; set after the high watermark.
    log_start: Arc<AtomicU64>,
    /// `state.leader_time_ms`, for retention.
    leader_time_ms: Arc<AtomicI64>,
    /// The group's log, whose segment starts say where to checkpoint.
    log: SegmentLog,
}

impl Drop for PartitionStateMachine {
    fn drop(&mut self) {
        if let Err(error) = self.persist() {
            // Nothing is lost: the entries are re-applied from the log at the next start.
            tracing::warn!(group = self.group.0, %error, "could not write the applied state on close");
        }
    }
}

/// Reads `group`'s applied state from its tree (the default when nothing was applied yet).
fn read_applied_state(
    group: GroupId,
    store: &StateStore,
    tree: &sled::Tree,
) -> Result<AppliedState> {
    match tree.get(APPLIED_STATE_KEY).map_err(|e| store.error(e))? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StorageError::StateDecode {
            group,
            key: "applied_state".into(),
            reason: e.to_string(),
        }),
        None => Ok(AppliedState::default()),
    }
}

impl PartitionStateMachine {
    /// Opens the state of `group` in the node's state store; `log` is the group's log.
    pub fn open(
        group: GroupId,
        store: &StateStore,
        log: &SegmentLog,
    ) -> Result<PartitionStateMachine> {
        let durability: Durability = log.durability();
        let tree = store.group_tree(group)?;
        let decode_error = |key: &str, reason: String| StorageError::StateDecode {
            group,
            key: key.into(),
            reason,
        };
        let state = read_applied_state(group, store, &tree)?;
        let mut producers = BTreeMap::new();
        for item in tree.scan_prefix([PRODUCER_PREFIX]) {
            let (key, value) = item.map_err(|e| store.error(e))?;
            let id = <[u8; 8]>::try_from(&key[1..])
                .map(u64::from_be_bytes)
                .map_err(|_| decode_error("producer", "bad key".into()))?;
            let producer: ProducerState = serde_json::from_slice(&value)
                .map_err(|e| decode_error("producer", e.to_string()))?;
            producers.insert(id, producer);
        }
        let (high_watermark, _) = tokio::sync::watch::channel(state.next_offset);
        let log_start = Arc::new(AtomicU64::new(state.log_start_offset));
        Ok(PartitionStateMachine {
            leader_time_ms: Arc::new(AtomicI64::new(state.leader_time_ms)),
            log_start,
            log: log.clone(),
            group,
            store: store.clone(),
            tree,
            state,
            producers,
            high_watermark,
            durability,
            pending: PendingWrites::default(),
            recent_index: RecentIndex::default(),
        })
    }

    /// The last entry applied as stored for `group`, without opening its state machine: the log
    /// must still hold it (see `SegmentLog::open`).
    pub(crate) fn stored_last_applied(group: GroupId, store: &StateStore) -> Result<Option<LogId>> {
        let tree = store.group_tree(group)?;
        Ok(read_applied_state(group, store, &tree)?.last_applied)
    }

    /// A view for readers.
    pub fn view(&self) -> PartitionView {
        PartitionView {
            group: self.group,
            store: self.store.clone(),
            tree: self.tree.clone(),
            high_watermark: self.high_watermark.subscribe(),
            recent_index: Arc::clone(&self.recent_index),
            log_start: Arc::clone(&self.log_start),
            leader_time_ms: Arc::clone(&self.leader_time_ms),
        }
    }

    /// The applied state as of the last `apply`.
    pub fn applied(&self) -> &AppliedState {
        &self.state
    }

    /// The state of a producer, if remembered.
    pub fn producer(&self, producer_id: u64) -> Option<&ProducerState> {
        self.producers.get(&producer_id)
    }

    fn decode_error(&self, key: &str, reason: String) -> StorageError {
        StorageError::StateDecode {
            group: self.group,
            key: key.into(),
            reason,
        }
    }

    fn encode_state(&self, state: &AppliedState) -> Result<Vec<u8>> {
        serde_json::to_vec(state).map_err(|e| self.decode_error("applied_state", e.to_string()))
    }

    /// Gives the next `record_count` offsets to the batch at `position` of entry `log_index`,
    /// indexing them in `index`; returns the first offset and the count.
    fn assign_offsets(
        &self,
        index: &mut Vec<(u64, [u8; 16])>,
        next: &mut AppliedState,
        log_index: u64,
        position: u32,
        record_count: usize,
    ) -> Result<(u64, u32)> {
        let record_count = u32::try_from(record_count).map_err(|_| {
            self.decode_error(
                "offset index",
                format!("entry {log_index} holds too many records"),
            )
        })?;
        let base_offset = next.next_offset;
        if record_count > 0 {
            index.push((base_offset, offset_value(log_index, record_count, position)));
        }
        next.next_offset += u64::from(record_count);
        Ok((base_offset, record_count))
    }

    /// Applies one entry's batches: each is checked against its producer's sequence, and the
    /// accepted ones get the next offsets.
    fn apply_batches(
        &self,
        batches: &[ProducerBatch],
        time: EntryTime,
        log_index: u64,
        next: &mut AppliedState,
        producers: &mut BTreeMap<u64, ProducerState>,
        changes: &mut ApplyChanges,
    ) -> Result<CommandResponse> {
        let mut results = Vec::with_capacity(batches.len());
        for (position, producer_batch) in batches.iter().enumerate() {
            let now_ms = time.of_batch(producer_batch);
            if let Some(result) =
                check_sequence(producers, producer_batch, next.next_offset, now_ms)
            {
                results.push(result);
                continue;
            }
            if let Some(producer) = producer_batch.producer {
                changes.touched_producers.push(producer.producer_id);
                changes
                    .forgotten_producers
                    .extend(expire_producers(producers, now_ms));
            }
            let (base_offset, record_count) = self.assign_offsets(
                &mut changes.index,
                next,
                log_index,
                position as u32,
                producer_batch.records.len(),
            )?;
            results.push(BatchResult::Appended {
                base_offset,
                record_count,
            });
        }
        Ok(CommandResponse::Batches(results))
    }

    /// Applies entries in order; returns one response per entry.
    pub fn apply_entries(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Vec<CommandResponse>> {
        let mut next = self.state.clone();
        let mut producers = self.producers.clone();
        let mut changes = ApplyChanges::default();
        let mut responses = Vec::new();
        // Segments that start among these entries: the state before each is checkpointed.
        let mut segment_starts: Option<Vec<u64>> = None;
        for entry in entries {
            let log_index = entry.log_id.index;
            let starts = segment_starts
                .get_or_insert_with(|| self.log.segment_starts_within(log_index, u64::MAX));
            if starts.contains(&log_index) {
                if let Some(checkpoint) = self.encode_checkpoint(&next, &producers, log_index)? {
                    changes.checkpoints.push(checkpoint);
                }
            }
            next.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::None,
                EntryPayload::Membership(membership) => {
                    next.membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResponse::None
                }
                EntryPayload::Normal(Command::Controller(_)) => CommandResponse::Rejected {
                    reason: "NOT_A_CONTROLLER".into(),
                    message: format!("group {} is a partition, not the controller", self.group),
                },
                EntryPayload::Normal(Command::AdvanceLogStart { log_start_offset }) => {
                    next.log_start_offset = next
                        .log_start_offset
                        .max(log_start_offset.min(next.next_offset));
                    tracing::info!(
                        group = self.group.0,
                        index = log_index,
                        log_start_offset = next.log_start_offset,
                        "log start advanced"
                    );
                    CommandResponse::LogStartAdvanced {
                        log_start_offset: next.log_start_offset,
                    }
                }
                EntryPayload::Normal(Command::AppendBatches(batches)) => self.apply_batches(
                    &batches,
                    EntryTime::Unstamped,
                    log_index,
                    &mut next,
                    &mut producers,
                    &mut changes,
                )?,
                EntryPayload::Normal(Command::StampedAppendBatches {
                    leader_time_ms,
                    batches,
                }) => {
                    next.leader_time_ms = next.leader_time_ms.max(leader_time_ms);
                    let time = EntryTime::Leader(next.leader_time_ms);
                    self.apply_batches(
                        &batches,
                        time,
                        log_index,
                        &mut next,
                        &mut producers,
                        &mut changes,
                    )?
                }
            };
            responses.push(response);
        }
        let ApplyChanges {
            touched_producers,
            forgotten_producers,
            index,
            checkpoints,
        } = changes;
        let mut producer_values = Vec::with_capacity(touched_producers.len());
        for id in &touched_producers {
            if let Some(state) = producers.get(id) {
                let value = serde_json::to_vec(state)
                    .map_err(|e| self.decode_error("producer", e.to_string()))?;
                producer_values.push((*id, value));
            }
        }
        let applied_state = self.encode_state(&next)?;

        for id in &forgotten_producers {
            self.pending.remove(&producer_key(*id));
        }
        for (id, value) in producer_values {
            self.pending.insert(&producer_key(id), value);
        }
        for (base_offset, value) in &index {
            self.pending.insert(&offset_key(*base_offset), *value);
        }
        for (log_index, value) in checkpoints {
            self.pending
                .insert(&self::checkpoint::checkpoint_key(log_index), value);
        }
        self.pending.insert(APPLIED_STATE_KEY, applied_state);
        self.pending.count_apply();
        if !index.is_empty() {
            self.recent_index.write().extend(index);
        }
        self.high_watermark.send_replace(next.next_offset);
        // After the high watermark: a reader that sees the new start sees a high watermark at
        // least as far (`Partition::check_offset` reads the start first).
        self.log_start
            .store(next.log_start_offset, Ordering::Release);
        self.leader_time_ms
            .store(next.leader_time_ms, Ordering::Release);
        self.state = next;
        self.producers = producers;
        if self.pending.is_due() {
            self.persist()?;
        }
        Ok(responses)
    }
}
