//! One `Replicate` stream per peer, carrying every group's AppendEntries to it: one HTTP/2
//! stream instead of two calls per record per follower, whose cost in h2's client connection
//! dominated a profile of one synchronous producer (docs/ARCHITECTURE.md, the produce path).
//! Requests go out in the order they are made, each reply finds its caller by call id, and a
//! stream that breaks or stalls is replaced by the next call.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Weak;
use std::task::Poll;
use std::time::Duration;
use std::time::Instant;

use parking_lot::Mutex;
use raftlog_proto::internal::raft_transport_client::RaftTransportClient;
use raftlog_proto::internal::replicate_reply;
use raftlog_proto::internal::RaftMessage;
use raftlog_proto::internal::ReplicateReply;
use raftlog_proto::internal::ReplicateRequest;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::Status;

/// One `Replicate` stream to a peer: requests go out in the order they are made, each reply
/// finds its caller by call id. When the stream breaks, every caller still waiting learns it at
/// once (and sends its message as a call instead), and the next call opens a new stream.
pub(crate) struct ReplicationStream {
    /// Call ids in the order their requests go out; the requests wait in `calls`, so that one
    /// whose caller gave up (openraft drops a call at its timeout) is dropped at once instead
    /// of being sent late. A stalled peer thus holds at most one request per waiting caller.
    queue: mpsc::UnboundedSender<u64>,
    calls: Mutex<StreamCalls>,
    /// The peer's address, for logs.
    peer_addr: String,
    /// The task that opens the stream and hands out its replies. It holds the stream weakly
    /// and is aborted when the stream is dropped, which ends the HTTP/2 stream.
    driver: Mutex<Option<tokio::task::AbortHandle>>,
}

#[derive(Default)]
struct StreamCalls {
    next_call_id: u64,
    /// Callers waiting, by call id, with their request until it is sent.
    waiting: HashMap<u64, WaitingCall>,
    /// No new request is taken: the stream broke or ended, or it was retired after a stall.
    closed: bool,
    /// Replies received so far, for any caller, including ones that had stopped waiting.
    replies: u64,
}

struct WaitingCall {
    request: Option<ReplicateRequest>,
    reply_to: oneshot::Sender<Delivery>,
}

/// What reaches a waiting caller.
enum Delivery {
    /// The peer's reply, or the status the call would have failed with there.
    Reply(Result<RaftMessage, Status>),
    /// The stream broke: the request may or may not have reached the peer.
    Broken,
}

/// How a call on a replication stream went.
pub(crate) enum StreamCall {
    /// The peer's reply, or the status the call would have failed with there.
    Answered(Result<RaftMessage, Status>),
    /// The stream had closed before the request was queued: it can go elsewhere.
    NotSent,
    /// The stream broke while the caller waited (the reason is logged): the request may or
    /// may not have reached the peer.
    Broken,
}

/// Removes a call from the stream's waiting calls when its caller stops waiting, whether the
/// reply came, the timeout passed, or the caller was dropped (openraft drops a call at its own
/// timeout, which starts first).
struct CallGuard<'a> {
    stream: &'a ReplicationStream,
    call_id: u64,
    asked_at: Instant,
    replies_before: u64,
    timeout: Duration,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        let mut calls = self.stream.calls.lock();
        if calls.waiting.remove(&self.call_id).is_none() {
            return;
        }
        // The caller gave up without a reply. If for most of its wait nothing at all came back
        // on the stream, the stream may be stuck: it is retired, and later messages go on a
        // new one. The callers still waiting on it are left alone, each with its own timeout,
        // as calls would be; failing them all at once would make openraft back off every
        // group whenever a slow disk delays a follower's answers.
        let stalled =
            calls.replies == self.replies_before && self.asked_at.elapsed() >= self.timeout / 2;
        if !stalled || calls.closed {
            return;
        }
        calls.closed = true;
        let still_waiting = calls.waiting.len();
        drop(calls);
        tracing::info!(
            peer = %self.stream.peer_addr,
            waited_ms = self.asked_at.elapsed().as_millis() as u64,
            still_waiting,
            "replication stream answered nothing: later messages go on a new one"
        );
    }
}

impl Drop for ReplicationStream {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.get_mut().take() {
            driver.abort();
        }
    }
}

impl ReplicationStream {
    /// Opens the stream and starts the task that hands out its replies. The task holds the
    /// stream weakly: once the pool and every caller have let go of it, it is dropped, and the
    /// task with it.
    pub(crate) fn open(mut client: RaftTransportClient<Channel>, peer_addr: String) -> Arc<Self> {
        let (queue, mut queued) = mpsc::unbounded_channel::<u64>();
        let stream = Arc::new(ReplicationStream {
            queue,
            calls: Mutex::default(),
            peer_addr: peer_addr.clone(),
            driver: Mutex::default(),
        });
        let requests_of = Arc::downgrade(&stream);
        let replies_to = Arc::downgrade(&stream);
        let driver = tokio::spawn(async move {
            let outgoing = futures::stream::poll_fn(move |cx| loop {
                let Some(call_id) = std::task::ready!(queued.poll_recv(cx)) else {
                    return Poll::Ready(None);
                };
                let Some(stream) = requests_of.upgrade() else {
                    return Poll::Ready(None);
                };
                let request = stream
                    .calls
                    .lock()
                    .waiting
                    .get_mut(&call_id)
                    .and_then(|call| call.request.take());
                if let Some(request) = request {
                    return Poll::Ready(Some(request));
                }
            });
            let ended = match client.replicate(outgoing).await {
                Ok(replies) => Self::hand_out(&replies_to, replies.into_inner()).await,
                Err(status) => status,
            };
            if let Some(stream) = replies_to.upgrade() {
                tracing::info!(
                    peer = %peer_addr,
                    code = ?ended.code(),
                    reason = ended.message(),
                    "replication stream closed"
                );
                stream.close();
            }
        });
        *stream.driver.lock() = Some(driver.abort_handle());
        stream
    }

    /// Gives each reply to its caller until the stream ends; returns why it ended.
    async fn hand_out(
        stream: &Weak<ReplicationStream>,
        mut replies: tonic::Streaming<ReplicateReply>,
    ) -> Status {
        loop {
            let reply = match replies.message().await {
                Ok(Some(reply)) => reply,
                Ok(None) => return Status::unavailable("the peer ended the replication stream"),
                Err(status) => return status,
            };
            let Some(stream) = stream.upgrade() else {
                return Status::cancelled("nobody uses the replication stream any more");
            };
            stream.deliver(reply);
        }
    }

    fn deliver(&self, reply: ReplicateReply) {
        // A caller that stopped waiting is gone from the map; its late reply is dropped.
        let caller = {
            let mut calls = self.calls.lock();
            calls.replies += 1;
            calls.waiting.remove(&reply.call_id)
        };
        let Some(caller) = caller else {
            return;
        };
        let outcome = match reply.outcome {
            Some(replicate_reply::Outcome::Reply(message)) => Ok(message),
            Some(replicate_reply::Outcome::Failure(failure)) => Err(Status::new(
                tonic::Code::from(failure.code),
                failure.message,
            )),
            None => Err(Status::internal(format!(
                "reply {} on the replication stream carries no outcome",
                reply.call_id
            ))),
        };
        let _ = caller.reply_to.send(Delivery::Reply(outcome));
    }

    /// Tells every waiting caller that the stream ended (the driver logs why).
    fn close(&self) {
        let waiting = {
            let mut calls = self.calls.lock();
            calls.closed = true;
            std::mem::take(&mut calls.waiting)
        };
        for (_, caller) in waiting {
            let _ = caller.reply_to.send(Delivery::Broken);
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        !self.calls.lock().closed
    }

    pub(crate) async fn call(&self, message: RaftMessage, timeout: Duration) -> StreamCall {
        let (reply_to, reply) = oneshot::channel();
        let asked_at = Instant::now();
        let (call_id, replies_before) = {
            let mut calls = self.calls.lock();
            // Checked under the lock `close` takes: a caller is either told by `close` or
            // sees the stream closed, never left waiting on a dead stream.
            if calls.closed {
                return StreamCall::NotSent;
            }
            calls.next_call_id += 1;
            let call_id = calls.next_call_id;
            let request = ReplicateRequest {
                call_id,
                message: Some(message),
                timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            };
            calls.waiting.insert(
                call_id,
                WaitingCall {
                    request: Some(request),
                    reply_to,
                },
            );
            (call_id, calls.replies)
        };
        let _guard = CallGuard {
            stream: self,
            call_id,
            asked_at,
            replies_before,
            timeout,
        };
        if self.queue.send(call_id).is_err() {
            // The driver is gone, so the request was never sent, and none will be.
            self.calls.lock().closed = true;
            return StreamCall::NotSent;
        }
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(Delivery::Reply(outcome))) => StreamCall::Answered(outcome),
            Ok(Ok(Delivery::Broken) | Err(_)) => StreamCall::Broken,
            Err(_) => StreamCall::Answered(Err(Status::deadline_exceeded(format!(
                "no reply within {} ms",
                timeout.as_millis()
            )))),
        }
    }
}
