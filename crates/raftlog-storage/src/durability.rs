//! How far a group's log is durable, for the code that must not act on entries before they are.
//!
//! A leader replicates its entries while its own `fdatasync` of them is still running (see
//! `vendor/openraft/PATCHED.md`): Raft commits an entry once a majority has it durable, and that
//! majority may be the followers alone. Two things must still wait for the local sync:
//! - the state machine, so that the state derived from the log (offsets, the high watermark,
//!   what readers are shown) never runs ahead of this node's durable log;
//! - a follower's reply to AppendEntries, whose success counts this node towards a quorum. A
//!   node that has just stepped down as leader may still hold entries whose sync is running.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;
use std::time::Instant;

use raftlog_types::type_config::Entry;
use tokio::sync::watch;

use crate::error::Result;
use crate::error::StorageError;

/// Where the log's durable and written prefixes end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DurableMark {
    /// Bumped by every truncation: syncs requested before it report on entries that are gone.
    epoch: u64,
    /// Every entry below this index is durable.
    durable_next: u64,
    /// Every entry below this index has been written (possibly not yet synced).
    written_next: u64,
    /// While written entries wait for their sync: since when no sync has completed. `None`
    /// when everything written is durable. A disk that stops completing syncs shows here.
    waiting_since: Option<Instant>,
}

impl DurableMark {
    /// Whether the entry at `index` is durable, or was never written (nothing to wait for:
    /// openraft's storage suite applies entries it never appended).
    fn is_durable(&self, index: u64) -> bool {
        index < self.durable_next || index >= self.written_next
    }
}

/// The instant `WriteStart` counts from.
static WRITE_CLOCK_BASE: LazyLock<Instant> = LazyLock::new(Instant::now);

/// When the append under way began writing, in microseconds since [`WRITE_CLOCK_BASE`] plus
/// one; 0 while no append is writing. Apart from the watch channel, so marking a write costs
/// no wake-up of the state machine's waiters. A write(2) that never returns (a hung disk or
/// file system) shows here: the entries are not yet written, so `waiting_since` cannot.
#[derive(Default)]
struct WriteStart(AtomicU64);

impl WriteStart {
    fn encode(at: Instant) -> u64 {
        at.saturating_duration_since(*WRITE_CLOCK_BASE).as_micros() as u64 + 1
    }

    fn writing_for(&self, now: Instant) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            started => {
                let started = *WRITE_CLOCK_BASE + Duration::from_micros(started - 1);
                Some(now.saturating_duration_since(started))
            }
        }
    }
}

/// Marks an append as writing until dropped (also when the append fails).
pub(crate) struct Writing<'a>(&'a WriteStart);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0 .0.store(0, Ordering::Relaxed);
    }
}

/// The log's side: records writes, syncs and truncations.
pub(crate) struct DurabilityMark {
    sender: watch::Sender<DurableMark>,
    write_start: Arc<WriteStart>,
}

impl DurabilityMark {
    /// A log whose entries below `next_index` are all durable.
    pub(crate) fn new(next_index: u64) -> DurabilityMark {
        let (sender, _) = watch::channel(DurableMark {
            epoch: 0,
            durable_next: next_index,
            written_next: next_index,
            waiting_since: None,
        });
        DurabilityMark {
            sender,
            write_start: Arc::default(),
        }
    }

    /// An append begins writing (appends of one log are serialized by its state lock).
    pub(crate) fn writing(&self) -> Writing<'_> {
        self.write_start
            .0
            .store(WriteStart::encode(Instant::now()), Ordering::Relaxed);
        Writing(&self.write_start)
    }

    /// Entries up to `last_index` were written; returns the epoch their sync reports in.
    pub(crate) fn written(&self, last_index: u64) -> u64 {
        let mut epoch = 0;
        self.sender.send_if_modified(|mark| {
            epoch = mark.epoch;
            let next = last_index + 1;
            let grew = next > mark.written_next;
            mark.written_next = mark.written_next.max(next);
            if grew && mark.waiting_since.is_none() {
                mark.waiting_since = Some(Instant::now());
            }
            grew
        });
        epoch
    }

    /// Entries up to `last_index`, written in `epoch`, are durable.
    pub(crate) fn synced(&self, epoch: u64, last_index: u64) {
        self.sender.send_if_modified(|mark| {
            let next = last_index + 1;
            if mark.epoch != epoch || mark.durable_next >= next {
                return false;
            }
            mark.durable_next = next;
            // A sync completed: the wait (if entries are still outstanding) starts over.
            mark.waiting_since = (mark.durable_next < mark.written_next).then(Instant::now);
            true
        });
    }

    /// The log now ends before `next_index`, and everything left is durable (a truncation syncs
    /// what remains of the last segment; earlier segments were synced when sealed).
    pub(crate) fn truncated(&self, next_index: u64) {
        self.sender.send_modify(|mark| {
            mark.epoch += 1;
            mark.durable_next = next_index;
            mark.written_next = next_index;
            mark.waiting_since = None;
        });
    }

    /// Entries up to `last_index` are purged: committed, so durable on a majority, and gone here.
    pub(crate) fn purged(&self, last_index: u64) {
        self.sender.send_if_modified(|mark| {
            let next = last_index + 1;
            let moved = mark.durable_next < next || mark.written_next < next;
            mark.durable_next = mark.durable_next.max(next);
            mark.written_next = mark.written_next.max(next);
            if mark.durable_next >= mark.written_next {
                mark.waiting_since = None;
            }
            moved
        });
    }

    /// Every entry below this index is durable.
    pub(crate) fn durable_next(&self) -> u64 {
        self.sender.borrow().durable_next
    }

    pub(crate) fn subscribe(&self, group: raftlog_types::GroupId) -> Durability {
        Durability {
            group,
            receiver: self.sender.subscribe(),
            write_start: Arc::clone(&self.write_start),
        }
    }
}

/// A reader's view of how far one group's log is durable.
#[derive(Clone)]
pub struct Durability {
    group: raftlog_types::GroupId,
    receiver: watch::Receiver<DurableMark>,
    write_start: Arc<WriteStart>,
}

impl Durability {
    /// Whether the entry at `index` is durable here, or was never written here (there is nothing
    /// to wait for: openraft's storage suite applies entries it never appended).
    pub fn is_durable(&self, index: u64) -> bool {
        self.receiver.borrow().is_durable(index)
    }

    /// How long, by `now`, this log's disk has kept it waiting: an append's write that has not
    /// returned, or written entries whose sync has not completed (measured from the last sync
    /// that did). `None` if nothing is waiting.
    pub fn stalled_for(&self, now: Instant) -> Option<Duration> {
        let sync = self
            .receiver
            .borrow()
            .waiting_since
            .map(|since| now.saturating_duration_since(since));
        let write = self.write_start.writing_for(now);
        sync.max(write)
    }

    /// Waits until `is_durable(index)`.
    pub async fn wait(&mut self, index: u64) -> Result<()> {
        self.receiver
            .wait_for(|mark| mark.is_durable(index))
            .await
            .map(|_| ())
            .map_err(|_| StorageError::LogClosed { group: self.group })
    }

    /// Collects the entries a state machine is given, once the last of them is durable here.
    pub async fn wait_for_entries(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Vec<Entry>> {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let Some(last) = entries.last() {
            self.wait(last.log_id.index).await?;
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use raftlog_types::GroupId;

    use super::*;

    #[test]
    fn written_entries_are_durable_only_once_synced() {
        let mark = DurabilityMark::new(1);
        let durability = mark.subscribe(GroupId(1));
        assert!(durability.is_durable(0));
        let epoch = mark.written(5);
        assert!(!durability.is_durable(1) && !durability.is_durable(5));
        assert!(
            durability.is_durable(6),
            "never written: nothing to wait for"
        );
        mark.synced(epoch, 3);
        assert!(durability.is_durable(3) && !durability.is_durable(4));
        mark.synced(epoch, 5);
        assert!(durability.is_durable(5));
    }

    #[test]
    fn a_sync_requested_before_a_truncation_counts_for_nothing() {
        let mark = DurabilityMark::new(1);
        let durability = mark.subscribe(GroupId(1));
        let old_epoch = mark.written(10);
        // The truncation syncs what remains: entries 1..=4.
        mark.truncated(5);
        assert!(durability.is_durable(4));
        let epoch = mark.written(8);
        assert!(!durability.is_durable(5));
        // Entries 5..=10 of the old epoch are gone; their sync must not vouch for the new ones.
        mark.synced(old_epoch, 10);
        assert!(!durability.is_durable(5));
        mark.synced(epoch, 8);
        assert!(durability.is_durable(8));
    }

    /// The watchdog's view of a stalled disk: written entries wait, and the wait is measured
    /// from the last sync that completed, not from the first write.
    #[test]
    fn the_sync_wait_starts_at_a_write_and_over_at_each_completed_sync() {
        let mark = DurabilityMark::new(1);
        let durability = mark.subscribe(GroupId(1));
        assert_eq!(durability.stalled_for(Instant::now()), None);
        let epoch = mark.written(5);
        let later = Instant::now() + Duration::from_secs(3);
        assert!(durability.stalled_for(later) >= Some(Duration::from_secs(3)));
        mark.synced(epoch, 3);
        let waited = durability.stalled_for(Instant::now());
        assert!(
            waited.is_some_and(|w| w < Duration::from_secs(1)),
            "{waited:?}"
        );
        mark.synced(epoch, 5);
        assert_eq!(durability.stalled_for(later), None);
        mark.written(6);
        mark.truncated(6);
        assert_eq!(durability.stalled_for(later), None);
    }

    /// A write that has not returned counts as a stall too, from when it began.
    #[test]
    fn a_write_under_way_counts_from_when_it_began() {
        let mark = DurabilityMark::new(1);
        let durability = mark.subscribe(GroupId(1));
        let writing = mark.writing();
        let later = Instant::now() + Duration::from_secs(2);
        assert!(durability.stalled_for(later) >= Some(Duration::from_secs(2)));
        drop(writing);
        assert_eq!(durability.stalled_for(later), None);
    }

    #[test]
    fn purged_entries_count_as_durable() {
        let mark = DurabilityMark::new(1);
        let durability = mark.subscribe(GroupId(1));
        mark.written(3);
        mark.purged(20);
        assert!(durability.is_durable(3) && durability.is_durable(20));
        assert_eq!(mark.durable_next(), 21);
    }

    #[tokio::test]
    async fn waiting_ends_when_the_sync_lands_or_the_log_closes() {
        let mark = DurabilityMark::new(1);
        let mut durability = mark.subscribe(GroupId(1));
        let epoch = mark.written(2);
        let waiter = tokio::spawn(async move { durability.wait(2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "entry 2 is not synced yet");
        mark.synced(epoch, 2);
        assert!(matches!(waiter.await, Ok(Ok(()))));

        let mut durability = mark.subscribe(GroupId(1));
        mark.written(3);
        let waiter = tokio::spawn(async move { durability.wait(3).await });
        drop(mark);
        assert!(matches!(
            waiter.await,
            Ok(Err(StorageError::LogClosed { .. }))
        ));
    }
}
