//! The consumer: reads partitions by offset at its own pace, either assigned by hand
//! (`assign` / `seek`) or as a member of a consumer group (`subscribe`), and commits its
//! positions so that it — or another member — resumes where it left off.
//!
//! Group members send heartbeats from a background task; the coordinator moves partitions when
//! members join, leave or stop heartbeating, and `poll` picks up the new assignment, starting
//! each new partition at the group's committed position. Delivery is at-least-once: records
//! returned by `poll` are committed by the next `commit` (or `close`), so records processed
//! after the last commit of a member that crashed are delivered again to its successor.
//!
//! A member fences itself: once its session timeout has passed since it *sent* its last
//! heartbeat that was answered, it owns nothing (`poll` returns no records, `commit` commits
//! nothing) until it has joined again. The coordinator moves its partitions only after a session
//! timeout without *receiving* a heartbeat, which ends later, so a member cut off from the
//! coordinator has stopped before its partitions have a new owner.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use raftlog_proto::v1;
use raftlog_proto::v1::ErrorReason;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::ClientError;

/// Where a partition without a committed position starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetReset {
    /// At the log start: read everything.
    Earliest,
    /// At the high watermark: only new records.
    Latest,
}

/// Tunables of a [`Consumer`].
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// The consumer group, for `subscribe` and `commit`.
    pub group: Option<String>,
    /// Name shown by `group describe`.
    pub client_id: String,
    /// Assignment strategy requested when joining.
    pub strategy: v1::AssignmentStrategy,
    /// Removed from the group after this long without a heartbeat.
    pub session_timeout: Duration,
    /// Start of partitions without a committed position.
    pub offset_reset: OffsetReset,
    /// How long `poll` waits for records when none is available.
    pub poll_wait: Duration,
    /// Upper bound on record bytes fetched per partition per poll.
    pub fetch_bytes_max: u32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group: None,
            client_id: "raftlog-consumer".into(),
            strategy: v1::AssignmentStrategy::Range,
            session_timeout: Duration::from_secs(10),
            offset_reset: OffsetReset::Earliest,
            poll_wait: Duration::from_millis(500),
            fetch_bytes_max: 1024 * 1024,
        }
    }
}

/// A record as the consumer returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offset in the partition.
    pub offset: u64,
    /// Key, if any.
    pub key: Option<Bytes>,
    /// Payload.
    pub value: Bytes,
    /// Headers.
    pub headers: Vec<(String, Bytes)>,
    /// Producer (or leader) time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

#[derive(Debug)]
struct MemberState {
    member_id: String,
    generation: u64,
    assignment: Vec<(String, u32)>,
    /// When the last Join or Heartbeat that was answered was sent: the session runs from there.
    answered_sent_at: Instant,
    session_timeout: Duration,
}

impl MemberState {
    /// Whether the session may have ended at the coordinator, so the partitions may have
    /// another owner.
    fn fenced(&self) -> bool {
        self.answered_sent_at.elapsed() >= self.session_timeout
    }

    /// The partitions this member owns now: none once fenced.
    fn owned(&self) -> &[(String, u32)] {
        if self.fenced() {
            &[]
        } else {
            &self.assignment
        }
    }
}

struct Membership {
    group: String,
    state: Arc<Mutex<MemberState>>,
    heartbeat: JoinHandle<()>,
}

/// A consumer. See the module documentation.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # // A one-node cluster in this process, so the example runs as a test.
/// # let dir = tempfile::tempdir()?;
/// # let port = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
/// # let (client_port, peer_port) = (port()?, port()?);
/// # let config = raftlog_server::ClusterConfig::parse(&format!(
/// #     "cluster_id = \"doc\"\ndata_dir = {:?}\n[[nodes]]\nid = 1\nclient_addr = \"127.0.0.1:{client_port}\"\npeer_addr = \"127.0.0.1:{peer_port}\"\n",
/// #     dir.path()), std::path::Path::new("doc.toml"))?;
/// # let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// # let node = tokio::spawn(raftlog_server::run(config, 1, async { let _ = stopped.await; }));
/// # let bootstrap = vec![format!("127.0.0.1:{client_port}")];
/// use std::sync::Arc;
/// use raftlog_client::{record, Client, Consumer, ConsumerConfig};
///
/// let client = Arc::new(Client::connect(&bootstrap).await?);
/// client.create_topic("events", 1, 1).await?;
/// client.produce("events", 0, vec![record(None, b"a".to_vec()), record(None, b"b".to_vec())]).await?;
///
/// // Assign a partition by hand and read it from the start.
/// let mut consumer = Consumer::new(Arc::clone(&client), ConsumerConfig::default());
/// consumer.assign(&[("events".to_owned(), 0)]);
/// consumer.seek("events", 0, 0)?;
/// let records = consumer.poll().await?;
/// assert_eq!(records.iter().map(|r| r.value.as_ref()).collect::<Vec<_>>(), vec![&b"a"[..], &b"b"[..]]);
/// assert_eq!(consumer.position("events", 0), Some(2));
/// # let _ = stop.send(());
/// # node.await??;
/// # Ok(())
/// # }
/// ```
pub struct Consumer {
    client: Arc<Client>,
    config: ConsumerConfig,
    /// Assigned partitions and the offset of the next record to return (`None` = not yet
    /// known: the committed position or the reset policy decides at the next poll).
    positions: BTreeMap<(String, u32), Option<u64>>,
    membership: Option<Membership>,
    /// Member id and generation the positions belong to. Both count: after a coordinator
    /// change the consumer re-joins under a new id, and generations start over.
    generation: (String, u64),
    /// Records deleted (retention, `DeleteRecords`) before this consumer read them: its
    /// position, or its group's committed one, was below the partition's log start.
    skipped_deleted: u64,
}

fn to_record(topic: &str, partition: u32, record: v1::StoredRecord) -> ConsumerRecord {
    ConsumerRecord {
        topic: topic.to_owned(),
        partition,
        offset: record.offset,
        key: record.key,
        value: record.value,
        headers: record
            .headers
            .into_iter()
            .map(|h| (h.key, h.value))
            .collect(),
        timestamp_ms: record.timestamp_ms,
    }
}

impl Consumer {
    /// A consumer with no partitions yet.
    pub fn new(client: Arc<Client>, config: ConsumerConfig) -> Consumer {
        Consumer {
            client,
            config,
            positions: BTreeMap::new(),
            skipped_deleted: 0,
            membership: None,
            generation: (String::new(), 0),
        }
    }

    /// Consumes exactly these partitions (no group membership). Their start comes from the
    /// group's committed positions if a group is configured, else from the reset policy.
    pub fn assign(&mut self, partitions: &[(String, u32)]) {
        self.positions = partitions.iter().map(|p| (p.clone(), None)).collect();
    }

    /// Moves an assigned partition's position.
    pub fn seek(&mut self, topic: &str, partition: u32, offset: u64) -> Result<(), ClientError> {
        match self.positions.get_mut(&(topic.to_owned(), partition)) {
            Some(position) => {
                *position = Some(offset);
                Ok(())
            }
            None => Err(ClientError::InvalidArgument(format!(
                "{topic}/{partition} is not assigned to this consumer"
            ))),
        }
    }

    /// The partitions assigned now.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        self.positions.keys().cloned().collect()
    }

    /// Offset of the next record `poll` returns for a partition, once known.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.positions
            .get(&(topic.to_owned(), partition))
            .copied()
            .flatten()
    }

    /// Joins the configured group for `topics`; partitions are then assigned by the group.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # // A one-node cluster in this process, so the example runs as a test.
    /// # let dir = tempfile::tempdir()?;
    /// # let port = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
    /// # let (client_port, peer_port) = (port()?, port()?);
    /// # let config = raftlog_server::ClusterConfig::parse(&format!(
    /// #     "cluster_id = \"doc\"\ndata_dir = {:?}\n[[nodes]]\nid = 1\nclient_addr = \"127.0.0.1:{client_port}\"\npeer_addr = \"127.0.0.1:{peer_port}\"\n",
    /// #     dir.path()), std::path::Path::new("doc.toml"))?;
    /// # let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// # let node = tokio::spawn(raftlog_server::run(config, 1, async { let _ = stopped.await; }));
    /// # let bootstrap = vec![format!("127.0.0.1:{client_port}")];
    /// use std::sync::Arc;
    /// use raftlog_client::{record, Client, Consumer, ConsumerConfig};
    ///
    /// let client = Arc::new(Client::connect(&bootstrap).await?);
    /// client.create_topic("jobs", 2, 1).await?;
    /// for partition in 0..2 {
    ///     client.produce("jobs", partition, vec![record(None, b"job".to_vec())]).await?;
    /// }
    /// // Members of one group share the partitions; positions are committed in the cluster.
    /// let config = ConsumerConfig { group: Some("workers".into()), ..ConsumerConfig::default() };
    /// let mut worker = Consumer::new(Arc::clone(&client), config.clone());
    /// worker.subscribe(&["jobs"]).await?;
    /// let mut done = 0;
    /// while done < 2 {
    ///     done += worker.poll().await?.len();
    /// }
    /// worker.commit().await?;
    /// worker.close().await?; // leaves the group at once
    ///
    /// // A later member resumes at the committed positions: nothing is left to read.
    /// let mut next = Consumer::new(Arc::clone(&client), config);
    /// next.subscribe(&["jobs"]).await?;
    /// assert!(next.poll().await?.is_empty());
    /// next.close().await?;
    /// # let _ = stop.send(());
    /// # node.await??;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subscribe(&mut self, topics: &[&str]) -> Result<(), ClientError> {
        let Some(group) = self.config.group.clone() else {
            return Err(ClientError::InvalidArgument(
                "subscribe needs a consumer group (ConsumerConfig::group)".into(),
            ));
        };
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        let join = v1::JoinGroupRequest {
            group: group.clone(),
            member_id: String::new(),
            topics,
            strategy: self.config.strategy as i32,
            session_timeout_ms: self.config.session_timeout.as_millis() as u32,
            client_id: self.config.client_id.clone(),
            owned: Vec::new(),
        };
        let sent_at = Instant::now();
        let joined = self.client.join_group(join.clone()).await?;
        let state = Arc::new(Mutex::new(MemberState {
            member_id: joined.member_id.clone(),
            generation: joined.generation,
            assignment: joined
                .assignment
                .into_iter()
                .map(|p| (p.topic, p.partition))
                .collect(),
            answered_sent_at: sent_at,
            session_timeout: self.config.session_timeout,
        }));
        let interval = Duration::from_millis(u64::from(joined.heartbeat_interval_ms.max(50)));
        let heartbeat = tokio::spawn(heartbeat_loop(
            Arc::clone(&self.client),
            join,
            Arc::clone(&state),
            interval,
        ));
        self.membership = Some(Membership {
            group,
            state,
            heartbeat,
        });
        self.generation = (String::new(), 0);
        Ok(())
    }

    /// Adopts the group's current assignment: revoked partitions are dropped, new ones start
    /// at the committed position.
    fn sync_assignment(&mut self) {
        let Some(membership) = &self.membership else {
            return;
        };
        let Ok(state) = membership.state.lock() else {
            return;
        };
        let owned = state.owned();
        let same_assignment = owned.len() == self.positions.len()
            && owned.iter().all(|p| self.positions.contains_key(p));
        if same_assignment
            && (state.member_id.as_str(), state.generation)
                == (self.generation.0.as_str(), self.generation.1)
        {
            return;
        }
        let assigned: BTreeSet<(String, u32)> = owned.iter().cloned().collect();
        self.positions.retain(|key, _| assigned.contains(key));
        for key in assigned {
            self.positions.entry(key).or_insert(None);
        }
        self.generation = (state.member_id.clone(), state.generation);
    }

    /// The partitions this member owns now (none once fenced), `None` without a group.
    fn current_assignment(&self) -> Option<BTreeSet<(String, u32)>> {
        let membership = self.membership.as_ref()?;
        let Ok(state) = membership.state.lock() else {
            return Some(BTreeSet::new());
        };
        Some(state.owned().iter().cloned().collect())
    }

    async fn resolve_positions(&mut self) -> Result<(), ClientError> {
        let unknown: Vec<(String, u32)> = self
            .positions
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let mut committed: BTreeMap<(String, u32), u64> = BTreeMap::new();
        if let Some(group) = &self.config.group {
            let wanted = unknown
                .iter()
                .map(|(topic, partition)| v1::TopicPartition {
                    topic: topic.clone(),
                    partition: *partition,
                })
                .collect();
            for offset in self.client.fetch_offsets(group, wanted).await? {
                committed.insert((offset.topic, offset.partition), offset.offset);
            }
        }
        let mut descriptions: BTreeMap<String, v1::TopicDescription> = BTreeMap::new();
        for key in unknown {
            let start = match committed.get(&key) {
                Some(offset) => *offset,
                None => {
                    if !descriptions.contains_key(&key.0) {
                        descriptions
                            .insert(key.0.clone(), self.client.describe_topic(&key.0).await?);
                    }
                    let partition = descriptions
                        .get(&key.0)
                        .and_then(|d| d.partitions.get(key.1 as usize));
                    match (self.config.offset_reset, partition) {
                        (OffsetReset::Earliest, Some(p)) => p.log_start_offset,
                        (OffsetReset::Latest, Some(p)) => p.high_watermark,
                        (_, None) => {
                            return Err(ClientError::InvalidArgument(format!(
                                "{}/{} does not exist",
                                key.0, key.1
                            )))
                        }
                    }
                }
            };
            self.positions.insert(key, Some(start));
        }
        Ok(())
    }

    /// Returns the next records of the assigned partitions, waiting up to `poll_wait` when none
    /// is available. Partitions whose replica cannot be reached are skipped this time. A fenced
    /// group member (no answered heartbeat sent within its session timeout) gets no records
    /// until it has joined the group again.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, ClientError> {
        self.sync_assignment();
        self.resolve_positions().await?;
        let wait_ms = self.config.poll_wait.as_millis() as u32;
        let fetches = self
            .positions
            .iter()
            .filter_map(|((topic, partition), position)| {
                let offset = (*position)?;
                let client = Arc::clone(&self.client);
                let topic = topic.clone();
                let partition = *partition;
                let bytes = self.config.fetch_bytes_max;
                Some(async move {
                    let result = client
                        .fetch(&topic, partition, offset, bytes, wait_ms)
                        .await;
                    (topic, partition, result)
                })
            });
        let results = futures::future::join_all(fetches).await;
        // Partitions revoked while fetching are dropped with their records: their new owner
        // starts from the committed position, so keeping them would only duplicate work.
        let still_assigned = self.current_assignment();
        let mut records = Vec::new();
        for (topic, partition, result) in results {
            if still_assigned
                .as_ref()
                .is_some_and(|assigned| !assigned.contains(&(topic.clone(), partition)))
            {
                continue;
            }
            match result {
                Ok(response) => {
                    if let Some(last) = response.records.last() {
                        self.positions
                            .insert((topic.clone(), partition), Some(last.offset + 1));
                    }
                    records.extend(
                        response
                            .records
                            .into_iter()
                            .map(|r| to_record(&topic, partition, r)),
                    );
                }
                Err(error)
                    if error.reason() == Some(v1::ErrorReason::OffsetOutOfRange)
                        && self.moved_past_deleted(&topic, partition, &error) => {}
                Err(error) if error.is_retryable() => {
                    tracing::debug!(topic = %topic, partition, %error, "fetch failed; will retry");
                    // Force a metadata refresh at the next fetch of this partition.
                    let _ = self.client.describe_topic(&topic).await;
                }
                Err(error) => return Err(error),
            }
        }
        if records.is_empty() && self.positions.is_empty() {
            tokio::time::sleep(self.config.poll_wait).await;
        }
        Ok(records)
    }

    /// How many records were deleted (by retention or `DeleteRecords`) before this consumer
    /// read them: each time its position (or its group's committed offset) was found below the
    /// partition's log start, it moved on to the log start, counted here and logged as a
    /// warning, as Kafka's consumer resets an out-of-range position to the earliest offset.
    pub fn skipped_deleted_records(&self) -> u64 {
        self.skipped_deleted
    }

    /// After an out-of-range fetch: if the position is below the log start the error names,
    /// moves it there (counted, and logged). Returns whether it did.
    fn moved_past_deleted(&mut self, topic: &str, partition: u32, error: &ClientError) -> bool {
        let key = (topic.to_owned(), partition);
        let Some(Some(position)) = self.positions.get(&key).copied() else {
            return false;
        };
        let Some(log_start) = error
            .metadata("log_start_offset")
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return false;
        };
        if position >= log_start {
            return false;
        }
        tracing::warn!(topic = %topic, partition, position, log_start, group = ?self.config.group, skipped = log_start - position, "records were deleted before this consumer read them; resuming at the log start");
        self.skipped_deleted += log_start - position;
        self.positions.insert(key, Some(log_start));
        true
    }

    /// Streams one partition's committed records from `offset` as they are committed, over a
    /// server stream with flow control (the server sends no faster than this stream is read).
    /// Independent of `poll` and of group membership.
    pub async fn subscription(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<impl futures::Stream<Item = Result<ConsumerRecord, ClientError>> + use<>, ClientError>
    {
        let description = self.client.describe_topic(topic).await?;
        let Some(address) = description
            .partitions
            .get(partition as usize)
            .map(|p| p.leader_address.clone())
            .filter(|a| !a.is_empty())
        else {
            return Err(ClientError::InvalidArgument(format!(
                "{topic}/{partition} has no leader to stream from"
            )));
        };
        let stream = self
            .client
            .subscribe(&address, topic, partition, offset)
            .await?;
        let topic = topic.to_owned();
        Ok(futures::StreamExt::flat_map(stream, move |message| {
            let items: Vec<Result<ConsumerRecord, ClientError>> = match message {
                Ok(message) => message
                    .records
                    .into_iter()
                    .map(|r| Ok(to_record(&topic, partition, r)))
                    .collect(),
                Err(status) => vec![Err(ClientError::from_status(&status))],
            };
            futures::stream::iter(items)
        }))
    }

    /// Commits the positions of the assigned partitions (the records returned so far). Commits
    /// nothing, and says Ok, when the positions belong to an assignment the group has since
    /// changed or once this member is fenced (its session may have ended, so another member may
    /// own the partitions): the records since the last commit are then delivered again, to
    /// whichever member owns them next.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let Some(group) = self.config.group.clone() else {
            return Err(ClientError::InvalidArgument(
                "commit needs a consumer group (ConsumerConfig::group)".into(),
            ));
        };
        let (member_id, generation) = match &self.membership {
            // A fenced member owns nothing: another member may be reading its partitions.
            Some(membership) => match membership.state.lock() {
                Ok(state) if state.fenced() => return Ok(()),
                Ok(state) => (state.member_id.clone(), state.generation),
                Err(_) => {
                    return Err(ClientError::InvalidArgument(
                        "consumer state poisoned".into(),
                    ))
                }
            },
            None => (String::new(), 0),
        };
        if self.membership.is_some()
            && (member_id.as_str(), generation) != (self.generation.0.as_str(), self.generation.1)
        {
            // The assignment changed since these positions were read; the next poll adopts it.
            return Ok(());
        }
        let offsets: Vec<v1::PartitionOffset> = self
            .positions
            .iter()
            .filter_map(|((topic, partition), position)| {
                position.map(|offset| v1::PartitionOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    offset,
                })
            })
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        self.client
            .commit_offsets(v1::CommitOffsetsRequest {
                group,
                member_id,
                generation,
                offsets,
            })
            .await
    }

    /// Commits, leaves the group (so its partitions move at once) and stops heartbeating.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let committed = self.commit().await;
        if let Some(membership) = self.membership.take() {
            membership.heartbeat.abort();
            let member_id = membership
                .state
                .lock()
                .map(|s| s.member_id.clone())
                .unwrap_or_default();
            self.client
                .leave_group(&membership.group, &member_id)
                .await?;
        }
        committed
    }
}

impl Drop for Consumer {
    /// Stops heartbeating without leaving: the group notices at the session timeout, as it
    /// would for a crashed process. Call `close` to leave cleanly.
    fn drop(&mut self) {
        if let Some(membership) = &self.membership {
            membership.heartbeat.abort();
        }
    }
}

async fn heartbeat_loop(
    client: Arc<Client>,
    join: v1::JoinGroupRequest,
    state: Arc<Mutex<MemberState>>,
    interval: Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        let (member_id, generation, fenced, owned) = match state.lock() {
            Ok(state) => (
                state.member_id.clone(),
                state.generation,
                state.fenced(),
                state.owned().to_vec(),
            ),
            Err(_) => return,
        };
        let sent_at = Instant::now();
        let update = if fenced {
            // The session may be over at the coordinator: join again, holding nothing.
            rejoin(&client, &join, &member_id, Vec::new()).await
        } else {
            match client.heartbeat(&join.group, &member_id, generation).await {
                Ok(response) => Some((member_id, response.generation, response.assignment)),
                Err(error) if error.reason() == Some(ErrorReason::UnknownMember) => {
                    // Expired, or the coordinator moved: join again as a new member, keeping
                    // what is still ours (a new coordinator lets us keep it while it waits out
                    // the old sessions).
                    rejoin(&client, &join, &member_id, owned).await
                }
                Err(error) => {
                    tracing::debug!(group = %join.group, %error, "heartbeat failed");
                    None
                }
            }
        };
        if let Some((member_id, generation, assignment)) = update {
            if let Ok(mut state) = state.lock() {
                // Within a generation the assignment can still grow (partitions handed over once
                // their previous owners let go), so take it every time.
                state.member_id = member_id;
                state.generation = generation;
                state.assignment = assignment
                    .into_iter()
                    .map(|p| (p.topic, p.partition))
                    .collect();
                state.answered_sent_at = sent_at;
            }
        }
    }
}

/// Joins again under `member_id` (the coordinator gives a new id if it does not know it),
/// giving up every partition but `owned`.
async fn rejoin(
    client: &Client,
    join: &v1::JoinGroupRequest,
    member_id: &str,
    owned: Vec<(String, u32)>,
) -> Option<(String, u64, Vec<v1::TopicPartition>)> {
    let request = v1::JoinGroupRequest {
        member_id: member_id.to_owned(),
        owned: owned
            .into_iter()
            .map(|(topic, partition)| v1::TopicPartition { topic, partition })
            .collect(),
        ..join.clone()
    };
    match client.join_group(request).await {
        Ok(joined) => Some((joined.member_id, joined.generation, joined.assignment)),
        Err(error) => {
            tracing::warn!(group = %join.group, member = member_id, %error, "could not re-join the group");
            None
        }
    }
}
