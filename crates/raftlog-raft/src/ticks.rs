//! The tick loop every node-wide timer runs: a fixed period, stopped by the host's token.

use std::sync::Arc;
use std::sync::Weak;
use std::time::Duration;

use tokio::time::Interval;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::registry::RaftHost;

/// The ticks of one timer: each yields the host, until the timer is stopped or the host gone.
pub(crate) struct Ticks {
    interval: Interval,
    stop: CancellationToken,
}

impl Ticks {
    /// Ticks every `period` (a late round delays the next rather than bunching them) until
    /// `stop` is cancelled.
    pub(crate) fn new(period: Duration, stop: CancellationToken) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ticks { interval, stop }
    }

    /// Waits for the next tick; `None` once the timer is stopped or the host is gone.
    pub(crate) async fn next(&mut self, host: &Weak<RaftHost>) -> Option<Arc<RaftHost>> {
        tokio::select! {
            () = self.stop.cancelled() => None,
            _ = self.interval.tick() => host.upgrade(),
        }
    }
}
