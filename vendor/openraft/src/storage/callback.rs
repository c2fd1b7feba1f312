//! Callbacks used by Storage API

use std::io;

use tokio::sync::oneshot;

use crate::async_runtime::AsyncOneshotSendExt;
use crate::core::notify::Notify;
use crate::raft_state::io_state::log_io_id::LogIOId;
use crate::type_config::alias::OneshotSenderOf;
use crate::LogId;
use crate::RaftTypeConfig;
use crate::StorageIOError;
use crate::Vote;

/// A oneshot callback for completion of log io operation.
pub struct LogFlushed<C>
where C: RaftTypeConfig
{
    log_io_id: LogIOId<C::NodeId>,
    waiter: FlushWaiter<C>,
}

/// raftlog patch: who learns that the append is durable.
enum FlushWaiter<C>
where C: RaftTypeConfig
{
    /// `RaftCore`, blocked until it is (a follower's append, answered only once durable).
    Blocked(OneshotSenderOf<C, Result<LogIOId<C::NodeId>, io::Error>>),
    /// `RaftCore`, through its notification queue: the leader's own append, which replicates
    /// while it is being flushed and counts towards the quorum only once it is durable.
    Notified {
        vote: Vote<C::NodeId>,
        log_id: LogId<C::NodeId>,
        tx_notify: tokio::sync::mpsc::UnboundedSender<Notify<C>>,
    },
}

impl<C> LogFlushed<C>
where C: RaftTypeConfig
{
    pub(crate) fn new(
        log_io_id: LogIOId<C::NodeId>,
        tx: OneshotSenderOf<C, Result<LogIOId<C::NodeId>, io::Error>>,
    ) -> Self {
        Self {
            log_io_id,
            waiter: FlushWaiter::Blocked(tx),
        }
    }

    /// raftlog patch: a callback that reports to `RaftCore` with `Notify::LocalLogFlushed`.
    pub(crate) fn notifying(
        vote: Vote<C::NodeId>,
        log_id: LogId<C::NodeId>,
        tx_notify: tokio::sync::mpsc::UnboundedSender<Notify<C>>,
    ) -> Self {
        Self {
            log_io_id: LogIOId::new(vote.clone(), Some(log_id.clone())),
            waiter: FlushWaiter::Notified {
                vote,
                log_id,
                tx_notify,
            },
        }
    }

    /// Report log io completion event.
    ///
    /// It will be called when the log is successfully appended to the storage or an error occurs.
    pub fn log_io_completed(self, result: Result<(), io::Error>) {
        if let Err(e) = &result {
            tracing::error!("LogFlush error: {}, while flushing upto {}", e, self.log_io_id);
        }
        match self.waiter {
            FlushWaiter::Blocked(tx) => {
                if let Err(e) = tx.send(result.map(|_| self.log_io_id)) {
                    tracing::error!("failed to send log io completion event: {:?}", e);
                }
            }
            FlushWaiter::Notified {
                vote,
                log_id,
                tx_notify,
            } => {
                // RaftCore has stopped if the queue is closed; nothing waits any more.
                let _ = tx_notify.send(Notify::LocalLogFlushed { vote, log_id, result });
            }
        }
    }
}

/// A oneshot callback for completion of applying logs to state machine.
pub struct LogApplied<C>
where C: RaftTypeConfig
{
    last_log_id: LogId<C::NodeId>,
    tx: oneshot::Sender<Result<(LogId<C::NodeId>, Vec<C::R>), StorageIOError<C::NodeId>>>,
}

impl<C> LogApplied<C>
where C: RaftTypeConfig
{
    #[allow(dead_code)]
    pub(crate) fn new(
        last_log_id: LogId<C::NodeId>,
        tx: oneshot::Sender<Result<(LogId<C::NodeId>, Vec<C::R>), StorageIOError<C::NodeId>>>,
    ) -> Self {
        Self { last_log_id, tx }
    }

    /// Report apply io completion event.
    ///
    /// It will be called when the log is successfully applied to the state machine or an error
    /// occurs.
    pub fn completed(self, result: Result<Vec<C::R>, StorageIOError<C::NodeId>>) {
        let res = match result {
            Ok(x) => {
                tracing::debug!("LogApplied upto {}", self.last_log_id);
                let resp = (self.last_log_id.clone(), x);
                self.tx.send(Ok(resp))
            }
            Err(e) => {
                tracing::error!("LogApplied error: {}, while applying upto {}", e, self.last_log_id);
                self.tx.send(Err(e))
            }
        };

        if let Err(_e) = res {
            tracing::error!("failed to send apply complete event, last_log_id: {}", self.last_log_id);
        }
    }
}
