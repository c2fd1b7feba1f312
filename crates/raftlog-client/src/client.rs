//! The client: connections, metadata cache, leader routing and retries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use raftlog_proto::v1;
use raftlog_proto::v1::admin_client::AdminClient;
use raftlog_proto::v1::fetch_client::FetchClient;
use raftlog_proto::v1::groups_client::GroupsClient;
use raftlog_proto::v1::produce_client::ProduceClient;
use raftlog_types::limits::CLIENT_CONNECT_TIMEOUT_MS;
use raftlog_types::limits::GRPC_MESSAGE_BYTES_MAX;
use raftlog_types::limits::HTTP2_FRAME_BYTES_MAX;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

use crate::error::ClientError;

/// Tunables of a client.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long one call may take.
    pub request_timeout: Duration,
    /// How long a call is retried (re-routed, backed off) before giving up.
    pub retry_deadline: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(10),
            retry_deadline: Duration::from_secs(20),
        }
    }
}

/// A record to produce.
pub fn record(key: Option<Vec<u8>>, value: Vec<u8>) -> v1::Record {
    v1::Record {
        key: key.map(Bytes::from),
        value: Bytes::from(value),
        headers: Vec::new(),
        timestamp_ms: 0,
    }
}

/// A raftlog client. Cheap to share behind an `Arc`; calls may run concurrently.
pub struct Client {
    bootstrap: Vec<String>,
    options: ClientOptions,
    channels: Mutex<HashMap<String, Channel>>,
    /// Leader client address per (topic, partition), as last learned.
    leaders: Mutex<HashMap<(String, u32), String>>,
    /// Client address of the controller leader (group coordinator), as last learned.
    controller: Mutex<Option<String>>,
}

impl Client {
    /// Creates a client and checks that one of the `bootstrap` nodes answers.
    pub async fn connect(bootstrap: &[String]) -> Result<Client, ClientError> {
        Self::connect_with(bootstrap, ClientOptions::default()).await
    }

    /// Like [`Client::connect`], with options.
    pub async fn connect_with(
        bootstrap: &[String],
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        if bootstrap.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no bootstrap address given".into(),
            ));
        }
        let client = Client {
            bootstrap: bootstrap.to_vec(),
            options,
            channels: Mutex::default(),
            leaders: Mutex::default(),
            controller: Mutex::default(),
        };
        client.describe_cluster().await?;
        Ok(client)
    }

    fn channel(&self, address: &str) -> Result<Channel, ClientError> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| ClientError::InvalidArgument("client state poisoned".into()))?;
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| ClientError::InvalidArgument(format!("invalid address {address:?}: {e}")))?
            .connect_timeout(Duration::from_millis(CLIENT_CONNECT_TIMEOUT_MS))
            .timeout(self.options.request_timeout)
            .tcp_nodelay(true)
            .max_frame_size(HTTP2_FRAME_BYTES_MAX);
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    fn admin_client(&self, address: &str) -> Result<AdminClient<Channel>, ClientError> {
        Ok(AdminClient::new(self.channel(address)?)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX))
    }

    fn fetch_client(&self, address: &str) -> Result<FetchClient<Channel>, ClientError> {
        Ok(FetchClient::new(self.channel(address)?)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX))
    }

    /// Runs an admin call against the bootstrap nodes in turn until one answers, retrying
    /// retryable errors until the deadline.
    async fn with_admin<T, F, Fut>(&self, kind: AdminCall, call: F) -> Result<T, ClientError>
    where
        F: Fn(AdminClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.with_admin_avoiding(None, kind, call).await
    }

    /// Like `with_admin`, but asks `avoid` last: a leader cut off from its peers still believes
    /// it leads, and asked first it would send the client straight back to itself.
    async fn with_admin_avoiding<T, F, Fut>(
        &self,
        avoid: Option<&str>,
        kind: AdminCall,
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(AdminClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut order: Vec<&String> = self.bootstrap.iter().collect();
        if let Some(avoid) = avoid {
            order.sort_by_key(|address| address.as_str() == avoid);
        }
        let deadline = Instant::now() + self.options.retry_deadline;
        let mut attempts = 0u32;
        loop {
            let mut last = None;
            for address in order.iter().copied() {
                attempts += 1;
                match call(self.admin_client(address)?).await {
                    Ok(response) => return Ok(response.into_inner()),
                    Err(status) => {
                        let error = transport_aware(address, &status);
                        // A read that timed out on one node (it hangs, or is stopped) is asked
                        // of the next; a write that timed out may have been done.
                        if !(error.is_retryable() || (kind == AdminCall::Read && error.timed_out()))
                        {
                            return Err(error);
                        }
                        last = Some(error);
                    }
                }
            }
            let last =
                last.unwrap_or_else(|| ClientError::InvalidArgument("no bootstrap address".into()));
            if Instant::now() >= deadline {
                return Err(ClientError::RetriesExhausted {
                    attempts,
                    last: Box::new(last),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Describes the cluster.
    pub async fn describe_cluster(&self) -> Result<v1::DescribeClusterResponse, ClientError> {
        self.with_admin(AdminCall::Read, |mut c| async move {
            c.describe_cluster(v1::DescribeClusterRequest {}).await
        })
        .await
    }

    /// Creates a topic with the cluster's default configs.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replicas: u32,
    ) -> Result<v1::TopicDescription, ClientError> {
        self.create_topic_with_configs(name, partitions, replicas, HashMap::new())
            .await
    }

    /// Creates a topic with `configs` set on it (keys and values as in
    /// `v1::CreateTopicRequest::configs`, e.g. `retention.ms` → `86400000`).
    pub async fn create_topic_with_configs(
        &self,
        name: &str,
        partitions: u32,
        replicas: u32,
        configs: HashMap<String, String>,
    ) -> Result<v1::TopicDescription, ClientError> {
        let request = v1::CreateTopicRequest {
            name: name.to_owned(),
            partitions,
            replicas,
            configs,
        };
        let response = self.with_admin(AdminCall::Write, |mut c| {
            let request = request.clone();
            async move { c.create_topic(request).await }
        });
        response
            .await?
            .topic
            .ok_or_else(|| ClientError::InvalidArgument("server sent no topic".into()))
    }

    /// Every config key of a topic with its value in effect and where it comes from.
    pub async fn describe_topic_configs(
        &self,
        name: &str,
    ) -> Result<Vec<v1::TopicConfig>, ClientError> {
        let request = v1::DescribeTopicConfigsRequest {
            name: name.to_owned(),
        };
        Ok(self
            .with_admin(AdminCall::Read, |mut c| {
                let request = request.clone();
                async move { c.describe_topic_configs(request).await }
            })
            .await?
            .configs)
    }

    /// Sets `set` and removes `delete` from a topic's configs, all at once; returns every
    /// config in effect after the change.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        set: HashMap<String, String>,
        delete: Vec<String>,
    ) -> Result<Vec<v1::TopicConfig>, ClientError> {
        let request = v1::AlterTopicConfigsRequest {
            name: name.to_owned(),
            set,
            delete,
        };
        Ok(self
            .with_admin(AdminCall::Write, |mut c| {
                let request = request.clone();
                async move { c.alter_topic_configs(request).await }
            })
            .await?
            .configs)
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let request = v1::DeleteTopicRequest {
            name: name.to_owned(),
        };
        self.with_admin(AdminCall::Write, |mut c| {
            let request = request.clone();
            async move { c.delete_topic(request).await }
        })
        .await?;
        Ok(())
    }

    /// Lists topics.
    pub async fn list_topics(&self) -> Result<Vec<v1::TopicSummary>, ClientError> {
        Ok(self
            .with_admin(AdminCall::Read, |mut c| async move {
                c.list_topics(v1::ListTopicsRequest {}).await
            })
            .await?
            .topics)
    }

    /// Describes a topic, and refreshes the cached leaders of its partitions.
    pub async fn describe_topic(&self, name: &str) -> Result<v1::TopicDescription, ClientError> {
        self.describe_topic_avoiding(name, None).await
    }

    /// Describes a topic asking `avoid` last (see `with_admin_avoiding`).
    async fn describe_topic_avoiding(
        &self,
        name: &str,
        avoid: Option<&str>,
    ) -> Result<v1::TopicDescription, ClientError> {
        let request = v1::DescribeTopicRequest {
            name: name.to_owned(),
        };
        let topic = self
            .with_admin_avoiding(avoid, AdminCall::Read, |mut c| {
                let request = request.clone();
                async move { c.describe_topic(request).await }
            })
            .await?
            .topic
            .ok_or_else(|| ClientError::InvalidArgument("server sent no topic".into()))?;
        if let Ok(mut leaders) = self.leaders.lock() {
            for partition in &topic.partitions {
                let key = (topic.name.clone(), partition.partition);
                if partition.leader_address.is_empty() {
                    leaders.remove(&key);
                } else {
                    leaders.insert(key, partition.leader_address.clone());
                }
            }
        }
        Ok(topic)
    }

    fn cached_leader(&self, topic: &str, partition: u32) -> Option<String> {
        self.leaders
            .lock()
            .ok()?
            .get(&(topic.to_owned(), partition))
            .cloned()
    }

    fn set_leader(&self, topic: &str, partition: u32, address: Option<String>) {
        if let Ok(mut leaders) = self.leaders.lock() {
            match address {
                Some(address) => leaders.insert((topic.to_owned(), partition), address),
                None => leaders.remove(&(topic.to_owned(), partition)),
            };
        }
    }

    /// Appends records to a partition with `acks=ALL`, routed to its leader. Retries only what
    /// the server refused before writing (not a timeout, whose outcome is unknown).
    pub async fn produce(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<v1::Record>,
    ) -> Result<v1::ProduceResponse, ClientError> {
        self.send_produce(v1::ProduceRequest {
            topic: topic.to_owned(),
            partition,
            records,
            acks: v1::Acks::All as i32,
            timeout_ms: 0,
            producer: None,
        })
        .await
    }

    /// Sends a produce request to the partition's leader, re-routing and retrying until the
    /// deadline. Without `request.producer`, only errors raised before anything was written are
    /// retried; with it (idempotent), every retryable or transport error is, since the partition
    /// answers an exact retry with the original offsets.
    pub async fn send_produce(
        &self,
        request: v1::ProduceRequest,
    ) -> Result<v1::ProduceResponse, ClientError> {
        let (topic, partition) = (request.topic.clone(), request.partition);
        // A lost answer may mean written: only an idempotent produce may go again after one.
        let retry_unknown = request.producer.is_some();
        self.with_partition_leader(&topic, partition, retry_unknown, |channel| {
            let request = request.clone();
            async move {
                ProduceClient::new(channel)
                    .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                    .produce(request)
                    .await
            }
        })
        .await
    }

    /// Deletes a partition's records below `before_offset` (Kafka's DeleteRecords), routed to
    /// its leader; returns the partition's log start and high watermark afterwards. Moving the
    /// log start is idempotent, so every retryable error and lost answer is retried until the
    /// deadline.
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: u32,
        before_offset: u64,
    ) -> Result<v1::DeleteRecordsResponse, ClientError> {
        let request = v1::DeleteRecordsRequest {
            topic: topic.to_owned(),
            partition,
            before_offset,
        };
        self.with_partition_leader(topic, partition, true, |channel| {
            let request = request.clone();
            async move {
                AdminClient::new(channel)
                    .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                    .delete_records(request)
                    .await
            }
        })
        .await
    }

    /// Runs a call against the leader of `topic`/`partition`, as the client last learned it
    /// (asking for the topic's placement when it knows none, avoiding the node that last
    /// refused): a refusal that names the leader goes there at once; any other refusal before
    /// a write, and with `retry_unknown` a lost answer too, is retried with backoff until the
    /// deadline.
    async fn with_partition_leader<T, F, Fut>(
        &self,
        topic: &str,
        partition: u32,
        retry_unknown: bool,
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.options.retry_deadline;
        let mut attempts = 0u32;
        let mut backoff = Duration::from_millis(50);
        let mut refused_by: Option<String> = None;
        loop {
            attempts += 1;
            let address = match self.cached_leader(topic, partition) {
                Some(address) => address,
                None => {
                    self.describe_topic_avoiding(topic, refused_by.as_deref())
                        .await?;
                    self.cached_leader(topic, partition)
                        .unwrap_or_else(|| self.bootstrap[0].clone())
                }
            };
            let error = match call(self.channel(&address)?).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => transport_aware(&address, &status),
            };
            if !(error.refused_before_write() || (retry_unknown && error.outcome_unknown())) {
                return Err(error);
            }
            let hinted = error.metadata("leader_address").map(str::to_owned);
            let immediate = hinted.is_some() && hinted.as_deref() != Some(address.as_str());
            self.set_leader(topic, partition, hinted);
            refused_by = Some(address);
            if Instant::now() >= deadline {
                return Err(ClientError::RetriesExhausted {
                    attempts,
                    last: Box::new(error),
                });
            }
            if !immediate {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }

    /// Asks the cluster for a new producer id (for idempotent produce).
    pub async fn init_producer(&self) -> Result<u64, ClientError> {
        let response = self
            .with_controller(|channel| async move {
                ProduceClient::new(channel)
                    .init_producer(v1::InitProducerRequest {})
                    .await
            })
            .await?;
        Ok(response.producer_id)
    }

    /// Runs a call against the controller leader (group coordinator, producer ids), following
    /// NOT_LEADER hints and retrying retryable errors and timeouts until the deadline.
    pub(crate) async fn with_controller<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.options.retry_deadline;
        let mut attempts = 0u32;
        let mut next_bootstrap = 0usize;
        loop {
            attempts += 1;
            let cached = self.controller.lock().ok().and_then(|c| c.clone());
            let address = match cached {
                Some(address) => address,
                None => {
                    next_bootstrap += 1;
                    self.bootstrap[(next_bootstrap - 1) % self.bootstrap.len()].clone()
                }
            };
            let error = match call(self.channel(&address)?).await {
                Ok(response) => {
                    if let Ok(mut controller) = self.controller.lock() {
                        *controller = Some(address);
                    }
                    return Ok(response.into_inner());
                }
                Err(status) => transport_aware(&address, &status),
            };
            // A controller that does not answer in time may hang or be stopped: the call goes
            // to the next node, which knows the controller leader. Every controller call may be
            // repeated (at worst a producer id or a group member goes unused and expires).
            let timed_out = error.timed_out();
            if !(error.is_retryable() || timed_out) {
                return Err(error);
            }
            let hinted = error.metadata("leader_address").map(str::to_owned);
            let immediate =
                timed_out || (hinted.is_some() && hinted.as_deref() != Some(address.as_str()));
            if let Ok(mut controller) = self.controller.lock() {
                *controller = hinted;
            }
            if Instant::now() >= deadline {
                return Err(ClientError::RetriesExhausted {
                    attempts,
                    last: Box::new(error),
                });
            }
            if !immediate {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Fetches committed records from `offset`, from the given node or else the leader (any
    /// replica answers). `max_bytes` 0 = server default; `max_wait_ms` > 0 long-polls.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Result<v1::FetchResponse, ClientError> {
        let address = match self.cached_leader(topic, partition) {
            Some(address) => address,
            None => {
                self.describe_topic(topic).await?;
                self.cached_leader(topic, partition)
                    .unwrap_or_else(|| self.bootstrap[0].clone())
            }
        };
        self.fetch_from(&address, topic, partition, offset, max_bytes, max_wait_ms)
            .await
    }

    /// Fetches from one specific node.
    pub async fn fetch_from(
        &self,
        address: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Result<v1::FetchResponse, ClientError> {
        let request = v1::FetchRequest {
            topic: topic.to_owned(),
            partition,
            offset,
            max_bytes,
            max_wait_ms,
        };
        let mut client = self.fetch_client(address)?;
        match client.fetch(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => {
                let error = transport_aware(address, &status);
                if matches!(error, ClientError::Unreachable { .. }) {
                    self.set_leader(topic, partition, None);
                }
                Err(error)
            }
        }
    }

    /// Streams committed records from `offset` as they are committed, from `address` (a node
    /// holding a replica).
    pub async fn subscribe(
        &self,
        address: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<tonic::Streaming<v1::SubscribeResponse>, ClientError> {
        let request = v1::SubscribeRequest {
            topic: topic.to_owned(),
            partition,
            offset,
            max_bytes: 0,
        };
        let mut client = self.fetch_client(address)?;
        client
            .subscribe(request)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| transport_aware(address, &s))
    }
}

/// A status produced by the transport itself (no ErrorInfo, UNAVAILABLE) means the node could
/// not be reached.
/// Whether an admin call only reads (it may be asked again of another node after a timeout).
#[derive(Clone, Copy, PartialEq, Eq)]
enum AdminCall {
    Read,
    Write,
}

fn transport_aware(address: &str, status: &tonic::Status) -> ClientError {
    let error = ClientError::from_status(status);
    if status.code() == tonic::Code::Unavailable && error.reason_name().is_none() {
        return ClientError::Unreachable {
            address: address.to_owned(),
            message: status.message().to_owned(),
        };
    }
    error
}

/// Consumer group calls, all answered by the group coordinator (the controller leader).
impl Client {
    /// Joins (or re-joins) a group.
    pub async fn join_group(
        &self,
        request: v1::JoinGroupRequest,
    ) -> Result<v1::JoinGroupResponse, ClientError> {
        self.with_controller(|channel| {
            let request = request.clone();
            async move { GroupsClient::new(channel).join_group(request).await }
        })
        .await
    }

    /// Sends a heartbeat of a member that has adopted `generation`'s assignment.
    pub async fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        generation: u64,
    ) -> Result<v1::HeartbeatResponse, ClientError> {
        let request = v1::HeartbeatRequest {
            group: group.to_owned(),
            member_id: member_id.to_owned(),
            generation,
        };
        self.with_controller(|channel| {
            let request = request.clone();
            async move { GroupsClient::new(channel).heartbeat(request).await }
        })
        .await
    }

    /// Leaves a group.
    pub async fn leave_group(&self, group: &str, member_id: &str) -> Result<(), ClientError> {
        let request = v1::LeaveGroupRequest {
            group: group.to_owned(),
            member_id: member_id.to_owned(),
        };
        self.with_controller(|channel| {
            let request = request.clone();
            async move { GroupsClient::new(channel).leave_group(request).await }
        })
        .await
        .map(|_| ())
    }

    /// Commits positions.
    pub async fn commit_offsets(
        &self,
        request: v1::CommitOffsetsRequest,
    ) -> Result<(), ClientError> {
        self.with_controller(|channel| {
            let request = request.clone();
            async move { GroupsClient::new(channel).commit_offsets(request).await }
        })
        .await
        .map(|_| ())
    }

    /// Reads committed positions (all of the group's when `partitions` is empty).
    pub async fn fetch_offsets(
        &self,
        group: &str,
        partitions: Vec<v1::TopicPartition>,
    ) -> Result<Vec<v1::PartitionOffset>, ClientError> {
        let request = v1::FetchOffsetsRequest {
            group: group.to_owned(),
            partitions,
        };
        self.with_controller(|channel| {
            let request = request.clone();
            async move { GroupsClient::new(channel).fetch_offsets(request).await }
        })
        .await
        .map(|r| r.offsets)
    }

    /// Lists groups.
    pub async fn list_groups(&self) -> Result<Vec<v1::GroupSummary>, ClientError> {
        self.with_controller(|channel| async move {
            GroupsClient::new(channel)
                .list_groups(v1::ListGroupsRequest {})
                .await
        })
        .await
        .map(|r| r.groups)
    }

    /// Describes a group: members, assignments, committed offsets and lag.
    pub async fn describe_group(
        &self,
        group: &str,
    ) -> Result<v1::DescribeGroupResponse, ClientError> {
        let request = v1::DescribeGroupRequest {
            group: group.to_owned(),
        };
        self.with_controller(|channel| {
            let request = request.clone();
            async move { GroupsClient::new(channel).describe_group(request).await }
        })
        .await
    }

    /// Sets a group's committed positions (the group must have no active members).
    pub async fn reset_offsets(
        &self,
        request: v1::ResetOffsetsRequest,
    ) -> Result<Vec<v1::PartitionOffset>, ClientError> {
        self.with_controller(|channel| {
            let request = request.clone();
            async move { GroupsClient::new(channel).reset_offsets(request).await }
        })
        .await
        .map(|r| r.offsets)
    }
}
