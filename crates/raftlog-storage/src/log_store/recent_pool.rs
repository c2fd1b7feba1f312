//! `RecentPool`: every log of a node, and the one budget their decoded recent entries share
//! (`LogConfig::recent_entries_node_bytes`; the entries themselves are in `recent.rs`).
//!
//! When an append takes the node over its budget, the logs that appended least recently give
//! their entries up first. Memory only: nothing here is durable, and the segments stay the
//! source of truth, so a log that gave its entries up reads them from disk instead.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Weak;

use parking_lot::Mutex;

use super::Shared;
use crate::recent::RecentBudget;
use crate::recent::RecentEntries;

/// `Shared::last_append` of a log whose recent entries were dropped for another log's.
pub(super) const HOLDS_NO_RECENT: u64 = u64::MAX;

/// Every log of a node, and the budget their recent entries share.
pub(crate) struct RecentPool {
    pub(super) budget: Arc<RecentBudget>,
    logs: Mutex<Vec<Weak<Shared>>>,
    /// Counts appends, so that logs can be ordered by when they last appended.
    pub(super) clock: AtomicU64,
}

impl RecentPool {
    /// A pool whose logs may keep `limit` bytes of recent entries together.
    pub(crate) fn new(limit: u64) -> Arc<RecentPool> {
        Arc::new(RecentPool {
            budget: Arc::new(RecentBudget::new(limit)),
            logs: Mutex::new(Vec::new()),
            clock: AtomicU64::new(0),
        })
    }

    /// Bytes of recent entries the node's logs hold now.
    pub(crate) fn held(&self) -> u64 {
        self.budget.held()
    }

    /// Adds a newly opened log; logs that were dropped meanwhile are forgotten.
    pub(super) fn register(&self, log: &Arc<Shared>) {
        let mut logs = self.logs.lock();
        logs.retain(|log| log.strong_count() > 0);
        logs.push(Arc::downgrade(log));
    }

    /// Brings the node back within its budget after `appender` (whose state is locked, its
    /// recent entries `own`) appended: the recent entries of the logs that appended least
    /// recently go first, since the busy logs' entries are the ones about to be read. A log that
    /// is being read right now is passed over rather than waited for (its reader may be waiting
    /// for ours), and if no other log can give anything up, the appender drops its own oldest.
    pub(super) fn make_room(&self, appender: &Arc<Shared>, own: &mut RecentEntries) {
        let mut passed_over: Vec<*const Shared> = Vec::new();
        while self.budget.is_exceeded() {
            let victim = {
                let logs = self.logs.lock();
                logs.iter()
                    .filter_map(Weak::upgrade)
                    .filter(|log| {
                        !Arc::ptr_eq(log, appender)
                            && log.last_append.load(Ordering::Relaxed) != HOLDS_NO_RECENT
                            && !passed_over.contains(&Arc::as_ptr(log))
                    })
                    .min_by_key(|log| log.last_append.load(Ordering::Relaxed))
            };
            let Some(victim) = victim else {
                while self.budget.is_exceeded() && own.evict_oldest() {}
                return;
            };
            let locked = victim.state.try_write();
            if let Some(mut files) = locked {
                files.recent.clear();
                victim.last_append.store(HOLDS_NO_RECENT, Ordering::Relaxed);
            } else {
                passed_over.push(Arc::as_ptr(&victim));
            }
        }
    }
}
