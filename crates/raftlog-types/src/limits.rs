//! Limits on everything that can grow. Every limit is enforced in code where the data enters.
//! Units come last in names: `_bytes_max`, `_count_max`.

/// Largest encoded log entry the storage accepts. An entry holds one batch of records; the
/// produce batcher caps batches well below this, so hitting it means a bug or hostile input.
pub const ENTRY_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Largest single record (key + value + headers), as in Kafka's `message.max.bytes` default.
pub const RECORD_BYTES_MAX: u64 = 1024 * 1024;

/// Largest number of records in one batch.
pub const BATCH_RECORDS_MAX: u32 = 1 << 20;

/// Default size at which a log segment is sealed and a new one started.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Smallest segment size the configuration accepts: smaller segments only add file churn.
pub const SEGMENT_BYTES_MIN: u64 = 64 * 1024;

/// Largest segment size the configuration accepts.
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Bytes of log between two entries of a segment's sparse position index (Kafka's
/// `index.interval.bytes`): a read scans at most this much before reaching its entry.
pub const SEGMENT_INDEX_INTERVAL_BYTES: u64 = 4096;

/// Encoded bytes of the most recent entries each log keeps decoded in memory, so that the
/// replication and apply reads right after an append skip the disk. Per group; an entry larger
/// than this is not kept.
pub const RECENT_ENTRIES_BYTES_MAX: u64 = 1024 * 1024;

/// What all logs of a node keep in memory that way together, by default: the entries in flight
/// of a few hundred busy partitions. Without a node-wide bound, 1,000 partitions that were
/// each busy once would keep 1 GiB.
pub const RECENT_ENTRIES_NODE_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// Sync requests that may wait for the group-commit flusher before appenders block.
pub const GROUP_COMMIT_QUEUE_MAX: usize = 16 * 1024;

/// Largest number of partitions of one topic.
pub const TOPIC_PARTITIONS_MAX: u32 = 1024;

/// Longest topic name, as in Kafka.
pub const TOPIC_NAME_LEN_MAX: usize = 249;

/// Largest produce request (record payload bytes) the server accepts. No larger than
/// `PRODUCE_BATCH_BYTES_MAX`, so that no Raft entry exceeds it.
pub const PRODUCE_REQUEST_BYTES_MAX: usize = PRODUCE_BATCH_BYTES_MAX;

/// Largest Raft entry the produce batcher builds by merging queued requests.
pub const PRODUCE_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Produce requests queued per partition before callers are told to back off.
pub const PRODUCE_QUEUE_MAX: usize = 1024;

/// Raft entries of one partition in flight (submitted, not yet committed) at a time.
pub const PRODUCE_IN_FLIGHT_MAX: usize = 8;

/// Default and largest `max_bytes` of a fetch.
pub const FETCH_BYTES_DEFAULT: u32 = 1024 * 1024;
/// Largest `max_bytes` of a fetch.
pub const FETCH_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// Messages a subscription may have built ahead of the client: with HTTP/2 flow control this is
/// all the memory a slow consumer can cost.
pub const SUBSCRIBE_BUFFERED_MESSAGES_MAX: usize = 4;

/// Longest long-poll of a fetch.
pub const FETCH_WAIT_MS_MAX: u32 = 30_000;

/// gRPC message size limit for node-to-node and client traffic.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 80 * 1024 * 1024;

/// Largest HTTP/2 frame a raftlog server or client accepts (SETTINGS_MAX_FRAME_SIZE). h2's
/// default, 16 KiB, cuts a 256-record produce request into 17 frames and each AppendEntries and
/// fetch response likewise, and every frame is a pass through h2 and tonic; 1 MiB frames raised
/// both pipelined produce and consume throughput (benchmarks/HISTORY.md, 2026-11-28).
pub const HTTP2_FRAME_BYTES_MAX: u32 = 1024 * 1024;

/// AppendEntries messages up to this size travel on the peer's replication stream; larger ones
/// (a lagging follower's catch-up) get a call of their own, which HTTP/2 interleaves with the
/// stream. On the stream a message holds up every later one until it is sent, and a peer's
/// HTTP/2 stream window (1 MiB by default) is shared by all of them, so a quarter of it at most.
pub const REPLICATE_STREAMED_MESSAGE_BYTES_MAX: usize = 256 * 1024;

/// Messages of one replication stream a node handles at once at most: well over one per group
/// the sender leads (openraft has one AppendEntries in flight per group and follower). Beyond
/// it the node stops reading the stream, and HTTP/2 flow control holds the sender back.
pub const REPLICATE_IN_FLIGHT_MAX: usize = 16 * 1024;

/// Longest a node works on a replication stream message, whatever its sender's timeout says.
pub const REPLICATE_DEADLINE_MS_MAX: u32 = 60_000;

/// Longest cluster id of the configuration.
pub const CLUSTER_ID_LEN_MAX: usize = 64;

/// Most nodes the configuration lists.
pub const CLUSTER_NODES_MAX: usize = 64;

/// Shortest leader heartbeat period the configuration accepts (`raft.heartbeat_interval_ms`).
pub const RAFT_HEARTBEAT_INTERVAL_MS_MIN: u64 = 50;

/// Longest leader heartbeat period the configuration accepts.
pub const RAFT_HEARTBEAT_INTERVAL_MS_MAX: u64 = 5_000;

/// Largest `raft.election_timeout_min_ms` the configuration accepts (its least is three
/// heartbeat intervals and a millisecond).
pub const RAFT_ELECTION_TIMEOUT_MIN_MS_MAX: u64 = 60_000;

/// Largest `raft.election_timeout_max_ms` the configuration accepts.
pub const RAFT_ELECTION_TIMEOUT_MAX_MS_MAX: u64 = 120_000;

/// How long a produce waits for a majority by default before failing
/// (`limits.request_timeout_ms`).
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Shortest `limits.request_timeout_ms` the configuration accepts.
pub const REQUEST_TIMEOUT_MS_MIN: u64 = 100;

/// Longest `limits.request_timeout_ms` the configuration accepts.
pub const REQUEST_TIMEOUT_MS_MAX: u64 = 120_000;

/// How far ahead of the leader's clock a record's `timestamp_ms` may be, by default
/// (`limits.timestamp_after_max_ms`): Kafka's `log.message.timestamp.after.max.ms` default
/// since Kafka 4.0.
pub const TIMESTAMP_AFTER_MAX_MS_DEFAULT: u64 = 3_600_000;

/// Smallest `limits.timestamp_after_max_ms` and `limits.timestamp_before_max_ms` the
/// configuration accepts: a tighter bound refuses clients for ordinary clock skew.
pub const TIMESTAMP_SKEW_MS_MIN: u64 = 1_000;

/// Largest `limits.timestamp_after_max_ms` the configuration accepts: one year.
pub const TIMESTAMP_AFTER_MAX_MS_MAX: u64 = 365 * 24 * 3_600_000;

/// Pending connections each listener of a node queues; the default of `TcpListener::bind`.
pub const LISTEN_BACKLOG_CONNECTIONS_MAX: u32 = 1024;

/// How many requests a peer may cancel before the peer server has taken them up, before h2
/// closes the connection. h2's default of 20 guards public servers against "rapid reset"
/// floods. Between peers a cancelled request is ordinary: a vote or append times out on its
/// sender while this node is busy. When a node died, the survivors' hundreds of elections
/// tripped that limit, h2 dropped the connection with every request on it, and a second round
/// of elections pushed failover past its goal. Peers are members of the cluster, so the bound is only
/// there to stay finite: several RPCs for each of many thousands of groups.
pub const PEER_PENDING_RESET_STREAMS_MAX: usize = 65_536;

/// How long a client's connection attempt to a node may take before it tries the next one.
pub const CLIENT_CONNECT_TIMEOUT_MS: u64 = 2_000;

/// How long a connection attempt to a peer may take before the RPC fails as unreachable.
pub const PEER_CONNECT_TIMEOUT_MS: u64 = 500;

/// How often an idle connection to a peer is probed with an HTTP/2 PING.
pub const PEER_KEEP_ALIVE_INTERVAL_MS: u64 = 5_000;

/// How long a PING to a peer may go unanswered before its connection is dropped.
pub const PEER_KEEP_ALIVE_TIMEOUT_MS: u64 = 5_000;

/// How often the election timer looks for groups whose election timeout has passed: the
/// granularity of every election timeout.
pub const ELECTION_CHECK_PERIOD_MS: u64 = 50;

/// Entries sent in one AppendEntries at most: entries hold at most `PRODUCE_BATCH_BYTES_MAX` of
/// records, so this many stay under `GRPC_MESSAGE_BYTES_MAX` (checked below).
pub const APPEND_ENTRIES_ENTRIES_MAX: u64 = 8;

const _: () = assert!(
    (APPEND_ENTRIES_ENTRIES_MAX as usize) * (PRODUCE_BATCH_BYTES_MAX + 64 * 1024)
        < GRPC_MESSAGE_BYTES_MAX,
    "AppendEntries could exceed the gRPC message limit"
);

/// Producer ids the controller leader takes at once (one Raft write) and hands out one by one.
pub const PRODUCER_ID_BLOCK: u64 = 1000;

/// Free bytes a node keeps on its data dir's file system by default (`storage.min_free_bytes`):
/// below it, produces are refused with DISK_FULL rather than let the disk fill, where a failed
/// write stops the node.
pub const MIN_FREE_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// How long a node trusts one reading of its data dir's free space before it asks again.
pub const DISK_SPACE_CHECK_INTERVAL_MS: u64 = 100;

/// Fewest entries between two controller snapshots (`raft.controller_snapshot_entries`):
/// below it the controller would spend its time snapshotting.
pub const CONTROLLER_SNAPSHOT_ENTRIES_MIN: u64 = 16;
/// Most entries between two controller snapshots: the log kept until a snapshot is replayed
/// at every start.
pub const CONTROLLER_SNAPSHOT_ENTRIES_MAX: u64 = 10_000_000;
