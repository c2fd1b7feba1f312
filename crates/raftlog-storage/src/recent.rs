//! The last entries appended to a log, kept decoded in memory.
//!
//! Right after an append the same entries are read again: by the leader's replication tasks,
//! once per follower, and by every replica when it applies them. Read from the segments, each
//! of those reads is a `pread` out of the page cache, a CRC check and a decode into fresh
//! buffers, which profiles of pipelined produce showed as a large share of all CPU (the
//! measurement is in `benchmarks/HISTORY.md`). Served from here, a read is a clone: record
//! payloads are `Bytes`, so only reference counts move. (Redpanda keeps a batch cache for the
//! same reason.)
//!
//! The entries are always a suffix of the log, with consecutive indexes; the log keeps them in
//! step under its own lock: appends push, truncations cut the back, purges cut the front. The
//! disk stays the source of truth, so anything not here is read from the segments.
//!
//! Each log holds at most `RECENT_ENTRIES_BYTES_MAX`, and all logs of a node together at most
//! the node's [`RecentBudget`]: without it, 1,000 partitions that were each busy once would
//! keep 1 GiB of entries nobody reads again. When a node is over its budget, the log appending
//! drops the entries of the log that appended least recently (`log_store/recent_pool.rs`).

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use raftlog_types::limits::RECENT_ENTRIES_BYTES_MAX;
use raftlog_types::type_config::Entry;

/// Bytes of recent entries held by all logs of a node, against the node's limit.
#[derive(Debug)]
pub(crate) struct RecentBudget {
    limit: u64,
    held: AtomicU64,
}

impl RecentBudget {
    pub(crate) fn new(limit: u64) -> RecentBudget {
        RecentBudget {
            limit,
            held: AtomicU64::new(0),
        }
    }

    /// Bytes held now, by every log of the node.
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Whether the logs hold more than the limit.
    pub(crate) fn is_exceeded(&self) -> bool {
        self.held() > self.limit
    }
}

/// The most recent entries of one log, at most `RECENT_ENTRIES_BYTES_MAX` of them by encoded
/// size, counted against the node's budget.
pub(crate) struct RecentEntries {
    /// Each entry with its encoded size.
    entries: VecDeque<(Entry, u64)>,
    /// Sum of the encoded sizes.
    bytes: u64,
    budget: Arc<RecentBudget>,
}

impl Drop for RecentEntries {
    fn drop(&mut self) {
        self.clear();
    }
}

impl RecentEntries {
    /// No entries yet; what it holds counts against `budget`.
    pub(crate) fn new(budget: Arc<RecentBudget>) -> RecentEntries {
        RecentEntries {
            entries: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    /// Encoded bytes of the entries held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Index of the oldest entry held.
    pub(crate) fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(entry, _)| entry.log_id.index)
    }

    fn next_index(&self) -> Option<u64> {
        self.entries.back().map(|(entry, _)| entry.log_id.index + 1)
    }

    /// Adds `entry`, just appended to the log, evicting the oldest entries to stay within the
    /// limit. An entry that does not follow the last one held starts over, so the held entries
    /// never have a gap; one larger than the whole limit is not kept.
    pub(crate) fn push(&mut self, entry: Entry, encoded_bytes: u64) {
        if self
            .next_index()
            .is_some_and(|next| next != entry.log_id.index)
        {
            self.clear();
        }
        if encoded_bytes > RECENT_ENTRIES_BYTES_MAX {
            self.clear();
            return;
        }
        while self.bytes + encoded_bytes > RECENT_ENTRIES_BYTES_MAX {
            self.pop_front();
        }
        self.bytes += encoded_bytes;
        self.budget.held.fetch_add(encoded_bytes, Ordering::Relaxed);
        self.entries.push_back((entry, encoded_bytes));
    }

    /// Drops the oldest entry held, if any; false if there was none.
    pub(crate) fn evict_oldest(&mut self) -> bool {
        let any = !self.entries.is_empty();
        self.pop_front();
        any
    }

    /// Forgets entries from `index` on (the log was truncated there).
    pub(crate) fn truncate_from(&mut self, index: u64) {
        while self
            .entries
            .back()
            .is_some_and(|(entry, _)| entry.log_id.index >= index)
        {
            self.pop_back();
        }
    }

    /// Forgets entries up to and including `index` (the log was purged there).
    pub(crate) fn purge_upto(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            self.pop_front();
        }
    }

    /// Drops every entry held.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
    }

    fn pop_front(&mut self) {
        if let Some((_, bytes)) = self.entries.pop_front() {
            self.release(bytes);
        }
    }

    fn pop_back(&mut self) {
        if let Some((_, bytes)) = self.entries.pop_back() {
            self.release(bytes);
        }
    }

    fn release(&mut self, bytes: u64) {
        self.bytes -= bytes;
        self.budget.held.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Appends clones of the held entries with indexes in `start..end` to `out`.
    pub(crate) fn read(&self, start: u64, end: u64, out: &mut Vec<Entry>) {
        let Some(first) = self.first_index() else {
            return;
        };
        let skip = usize::try_from(start.saturating_sub(first)).unwrap_or(usize::MAX);
        out.extend(
            self.entries
                .iter()
                .skip(skip)
                .map(|(entry, _)| entry)
                .take_while(|entry| entry.log_id.index < end)
                .cloned(),
        );
    }
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;
    use raftlog_types::type_config::LogId;

    use super::*;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn unbounded() -> RecentEntries {
        RecentEntries::new(Arc::new(RecentBudget::new(u64::MAX)))
    }

    fn indexes(recent: &RecentEntries, start: u64, end: u64) -> Vec<u64> {
        let mut out = Vec::new();
        recent.read(start, end, &mut out);
        out.iter().map(|e| e.log_id.index).collect()
    }

    #[test]
    fn holds_a_gapless_suffix_within_the_limit() {
        let mut recent = unbounded();
        let quarter = RECENT_ENTRIES_BYTES_MAX / 4;
        for index in 10..16 {
            recent.push(entry(index), quarter);
        }
        assert_eq!(recent.first_index(), Some(12));
        assert_eq!(recent.bytes, RECENT_ENTRIES_BYTES_MAX);
        assert_eq!(indexes(&recent, 0, 100), vec![12, 13, 14, 15]);
        assert_eq!(indexes(&recent, 13, 15), vec![13, 14]);
        assert_eq!(indexes(&recent, 16, 20), Vec::<u64>::new());

        // An append that does not follow starts over: no gap is ever held.
        recent.push(entry(30), 1);
        assert_eq!(indexes(&recent, 0, 100), vec![30]);
        assert_eq!(recent.bytes, 1);

        // Too large to keep: nothing older is kept either, since it would no longer be a suffix.
        recent.push(entry(31), RECENT_ENTRIES_BYTES_MAX + 1);
        assert_eq!(recent.first_index(), None);
        assert_eq!(recent.bytes, 0);
    }

    #[test]
    fn truncation_and_purge_cut_the_held_entries() {
        let mut recent = unbounded();
        for index in 0..10 {
            recent.push(entry(index), 10);
        }
        recent.truncate_from(7);
        assert_eq!(indexes(&recent, 0, 100), (0..7).collect::<Vec<_>>());
        recent.purge_upto(2);
        assert_eq!(indexes(&recent, 0, 100), (3..7).collect::<Vec<_>>());
        assert_eq!(recent.bytes, 40);
        // After a truncation the next append continues where the log now ends.
        recent.push(entry(7), 10);
        assert_eq!(indexes(&recent, 0, 100), (3..8).collect::<Vec<_>>());
        recent.purge_upto(100);
        recent.truncate_from(0);
        assert_eq!(recent.bytes, 0);
    }

    #[test]
    fn the_node_budget_counts_what_every_log_holds() {
        let budget = Arc::new(RecentBudget::new(100));
        let mut first = RecentEntries::new(Arc::clone(&budget));
        let mut second = RecentEntries::new(Arc::clone(&budget));
        for index in 0..6 {
            first.push(entry(index), 10);
            second.push(entry(index), 7);
        }
        assert_eq!(budget.held(), 60 + 42);
        assert!(budget.is_exceeded());
        assert!(first.evict_oldest());
        first.truncate_from(4);
        second.purge_upto(1);
        assert_eq!(budget.held(), first.bytes() + second.bytes());
        assert_eq!(budget.held(), 30 + 28);
        assert!(!budget.is_exceeded());
        first.push(entry(9), 5); // not consecutive: starts over
        assert_eq!(budget.held(), 5 + 28);
        second.clear();
        assert!(!second.evict_oldest());
        drop(first);
        assert_eq!(budget.held(), 0);
    }
}
