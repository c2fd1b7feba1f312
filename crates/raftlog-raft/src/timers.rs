//! The node-wide timers that drive every group: light heartbeats (`heartbeat.rs`), the
//! election timer (`election.rs`) and the leader watchdog (`watchdog.rs`). [`RaftHost::start_timers`] starts them;
//! [`RaftHost::shutdown`] cancels them and waits for them to end.

use std::sync::Arc;

use crate::election;
use crate::heartbeat;
use crate::registry::RaftHost;
use crate::watchdog;

impl RaftHost {
    /// Starts the light heartbeats of the groups led here and the election timer of the
    /// others. They run until [`RaftHost::shutdown`], which waits for them.
    pub fn start_timers(self: &Arc<Self>) {
        self.spawn_timer(heartbeat::run);
        self.spawn_timer(election::run);
        self.spawn_timer(watchdog::run);
    }
}
