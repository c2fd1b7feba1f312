//! Cluster configuration: one TOML file that every node of a cluster reads; a node is told apart
//! only by its id. Load order: file, then `RAFTLOG_*` environment overrides, then `validate()`.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;

use raftlog_raft::RaftTiming;
use raftlog_storage::LogConfig;
use raftlog_types::limits::CLUSTER_ID_LEN_MAX;
use raftlog_types::limits::CLUSTER_NODES_MAX;
use raftlog_types::limits::MIN_FREE_BYTES_DEFAULT;

/// Default of `storage.retention_check_interval_ms`.
pub const RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 5_000;
/// Bounds of `storage.retention_check_interval_ms`: 50 ms to an hour.
pub const RETENTION_CHECK_INTERVAL_MS_MIN: u64 = 50;
/// See `RETENTION_CHECK_INTERVAL_MS_MIN`.
pub const RETENTION_CHECK_INTERVAL_MS_MAX: u64 = 3_600_000;
use raftlog_types::limits::CONTROLLER_SNAPSHOT_ENTRIES_MAX;
use raftlog_types::limits::CONTROLLER_SNAPSHOT_ENTRIES_MIN;
use raftlog_types::limits::RAFT_ELECTION_TIMEOUT_MAX_MS_MAX;
use raftlog_types::limits::RAFT_ELECTION_TIMEOUT_MIN_MS_MAX;
use raftlog_types::limits::RAFT_HEARTBEAT_INTERVAL_MS_MAX;
use raftlog_types::limits::RAFT_HEARTBEAT_INTERVAL_MS_MIN;
use raftlog_types::limits::REQUEST_TIMEOUT_MS_DEFAULT;
use raftlog_types::limits::REQUEST_TIMEOUT_MS_MAX;
use raftlog_types::limits::REQUEST_TIMEOUT_MS_MIN;
use raftlog_types::limits::SEGMENT_BYTES_DEFAULT;
use raftlog_types::limits::SEGMENT_BYTES_MAX;
use raftlog_types::limits::SEGMENT_BYTES_MIN;
use raftlog_types::limits::TIMESTAMP_AFTER_MAX_MS_DEFAULT;
use raftlog_types::limits::TIMESTAMP_AFTER_MAX_MS_MAX;
use raftlog_types::limits::TIMESTAMP_SKEW_MS_MIN;
use raftlog_types::topic_config::validate_topic_config;
use raftlog_types::topic_config::SEGMENT_BYTES;
use raftlog_types::NodeId;
use serde::Deserialize;
use serde::Serialize;

/// A configuration problem, naming the file or key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, on one line, with the offending key.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// The key, e.g. `raft.heartbeat_interval_ms`.
        key: String,
        /// The problem, with the allowed range and the value given.
        message: String,
    },
}

/// The whole cluster's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Identifies the cluster; a node refuses a data dir created for another cluster.
    pub cluster_id: String,
    /// Parent of every node's data dir (`<data_dir>/node-<id>`). Relative paths are relative
    /// to the working directory of the node process.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `[raft]`: timers shared by every group.
    #[serde(default)]
    pub raft: RaftTiming,
    /// Request handling limits.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Log storage settings.
    #[serde(default)]
    pub storage: StorageSection,
    /// `[topic_defaults]`: the cluster's default for each topic config key (the keys of
    /// `raftlog_types::topic_config`, quoted: `"retention.ms" = 86400000`); a topic's own
    /// value wins, a key set nowhere takes the built-in default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topic_defaults: BTreeMap<String, TopicConfigValue>,
    /// Every node of the cluster.
    pub nodes: Vec<NodeEntry>,
}

/// A topic config value in the config file: a number or a string (`cleanup.policy`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TopicConfigValue {
    /// `"retention.ms" = 86400000`
    Integer(i64),
    /// `"cleanup.policy" = "compact"`
    Text(String),
}

impl TopicConfigValue {
    fn text(&self) -> String {
        match self {
            TopicConfigValue::Integer(value) => value.to_string(),
            TopicConfigValue::Text(value) => value.clone(),
        }
    }
}

/// `[limits]`: request handling.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// How long a produce may wait for a majority before failing with UNAVAILABLE
    /// (`REQUEST_TIMEOUT_MS_MIN ..= _MAX`).
    pub request_timeout_ms: u64,
    /// How far ahead of the leader's clock a record's `timestamp_ms` may be; a produce with a
    /// record further ahead is refused with INVALID_TIMESTAMP (`TIMESTAMP_SKEW_MS_MIN ..=
    /// TIMESTAMP_AFTER_MAX_MS_MAX`).
    pub timestamp_after_max_ms: u64,
    /// How far behind the leader's clock a record's `timestamp_ms` may be. Unset (the
    /// default), any time from the Unix epoch on is accepted, as Kafka's
    /// `log.message.timestamp.before.max.ms` default does; a timestamp before the epoch is
    /// always refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_before_max_ms: Option<u64>,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            timestamp_after_max_ms: TIMESTAMP_AFTER_MAX_MS_DEFAULT,
            timestamp_before_max_ms: None,
        }
    }
}

/// `[storage]`: the segment log.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Size at which a log segment is sealed and the next one started.
    pub segment_bytes: u64,
    /// Segment bytes the node leaves in the page cache after writing or reading them; beyond
    /// this, it asks the kernel to drop the oldest, so their pages are reused rather than
    /// fresh memory taken. Unset (the default), the kernel alone decides, as for Kafka.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_cache_bytes: Option<u64>,
    /// Free bytes the node keeps on its data dir's file system: below this, produces are
    /// refused with DISK_FULL (retryable) until space is freed; 0 turns the check off.
    pub min_free_bytes: u64,
    /// How often each node checks its partition replicas against their topics' retention
    /// (`retention.bytes`, `retention.ms`) and deletes what is past it (Kafka's
    /// `log.retention.check.interval.ms`, 5 minutes there; shorter here because a check that
    /// finds nothing to delete costs a few reads of memory).
    pub retention_check_interval_ms: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            page_cache_bytes: None,
            min_free_bytes: MIN_FREE_BYTES_DEFAULT,
            retention_check_interval_ms: RETENTION_CHECK_INTERVAL_MS_DEFAULT,
        }
    }
}

/// `[[nodes]]`: one node of the roster.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// Node id, unique and at least 1.
    pub id: NodeId,
    /// `host:port` where clients reach the public API.
    pub client_addr: String,
    /// `host:port` where peers reach the Raft transport.
    pub peer_addr: String,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn check_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be in {min} ..= {max}, got {value}"),
        ))
    }
}

impl ClusterConfig {
    /// Reads, overrides from the environment, and validates.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        config.apply_env_overrides(|key| std::env::var(key).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ClusterConfig, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    /// Applies `RAFTLOG_DATA_DIR`, `RAFTLOG_CLUSTER_ID`, `RAFTLOG_REQUEST_TIMEOUT_MS`,
    /// `RAFTLOG_HEARTBEAT_INTERVAL_MS`, `RAFTLOG_ELECTION_TIMEOUT_MIN_MS`, `RAFTLOG_ELECTION_TIMEOUT_MAX_MS`,
    /// `RAFTLOG_PAGE_CACHE_BYTES`, `RAFTLOG_MIN_FREE_BYTES`.
    pub fn apply_env_overrides(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(dir) = env("RAFTLOG_DATA_DIR") {
            self.data_dir = PathBuf::from(dir);
        }
        if let Some(id) = env("RAFTLOG_CLUSTER_ID") {
            self.cluster_id = id;
        }
        let number = |key: &str| -> Result<Option<u64>, ConfigError> {
            env(key)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|e| invalid(key, format!("{v:?} is not a number: {e}")))
                })
                .transpose()
        };
        if let Some(v) = number("RAFTLOG_REQUEST_TIMEOUT_MS")? {
            self.limits.request_timeout_ms = v;
        }
        if let Some(v) = number("RAFTLOG_HEARTBEAT_INTERVAL_MS")? {
            self.raft.heartbeat_interval_ms = v;
        }
        if let Some(v) = number("RAFTLOG_ELECTION_TIMEOUT_MIN_MS")? {
            self.raft.election_timeout_min_ms = v;
        }
        if let Some(v) = number("RAFTLOG_ELECTION_TIMEOUT_MAX_MS")? {
            self.raft.election_timeout_max_ms = v;
        }
        if let Some(v) = number("RAFTLOG_PAGE_CACHE_BYTES")? {
            self.storage.page_cache_bytes = Some(v);
        }
        if let Some(v) = number("RAFTLOG_MIN_FREE_BYTES")? {
            self.storage.min_free_bytes = v;
        }
        if let Some(v) = number("RAFTLOG_RETENTION_CHECK_INTERVAL_MS")? {
            self.storage.retention_check_interval_ms = v;
        }
        Ok(())
    }

    /// The cluster's topic config defaults, validated and canonical (`validate` has checked
    /// them; one that is not valid is left out). Without a `segment.bytes` there, the
    /// cluster's `storage.segment_bytes` is its default.
    pub fn topic_default_configs(&self) -> BTreeMap<String, String> {
        let mut defaults: BTreeMap<String, String> = self
            .topic_defaults
            .iter()
            .filter_map(|(key, value)| {
                validate_topic_config(key, &value.text())
                    .ok()
                    .map(|value| (key.clone(), value))
            })
            .collect();
        if self.storage.segment_bytes != SEGMENT_BYTES_DEFAULT {
            defaults
                .entry(SEGMENT_BYTES.to_owned())
                .or_insert_with(|| self.storage.segment_bytes.to_string());
        }
        defaults
    }

    /// Checks every value; the error names the key, the allowed range and the value given.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in &self.topic_defaults {
            validate_topic_config(key, &value.text())
                .map_err(|e| invalid(format!("topic_defaults.\"{key}\""), e.to_string()))?;
        }
        if self.cluster_id.is_empty() || self.cluster_id.len() > CLUSTER_ID_LEN_MAX {
            return Err(invalid(
                "cluster_id",
                format!(
                    "must be 1 ..= {CLUSTER_ID_LEN_MAX} characters, got {:?}",
                    self.cluster_id
                ),
            ));
        }
        if self.nodes.is_empty() {
            return Err(invalid("nodes", "at least one [[nodes]] entry is required"));
        }
        if self.nodes.len() > CLUSTER_NODES_MAX {
            return Err(invalid(
                "nodes",
                format!(
                    "at most {CLUSTER_NODES_MAX} nodes, got {}",
                    self.nodes.len()
                ),
            ));
        }
        let mut ids = HashSet::new();
        let mut addrs = HashSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.id == 0 {
                return Err(invalid(
                    format!("nodes[{i}].id"),
                    "must be at least 1, got 0",
                ));
            }
            if !ids.insert(node.id) {
                return Err(invalid(
                    format!("nodes[{i}].id"),
                    format!("node id {} appears twice", node.id),
                ));
            }
            for (field, addr) in [
                ("client_addr", &node.client_addr),
                ("peer_addr", &node.peer_addr),
            ] {
                if addr.parse::<SocketAddr>().is_err() {
                    return Err(invalid(
                        format!("nodes[{i}].{field}"),
                        format!("must be an ip:port address, got {addr:?}"),
                    ));
                }
                if !addrs.insert(addr.clone()) {
                    return Err(invalid(
                        format!("nodes[{i}].{field}"),
                        format!("address {addr} is used twice"),
                    ));
                }
            }
        }
        let raft = &self.raft;
        check_range(
            "raft.heartbeat_interval_ms",
            raft.heartbeat_interval_ms,
            RAFT_HEARTBEAT_INTERVAL_MS_MIN,
            RAFT_HEARTBEAT_INTERVAL_MS_MAX,
        )?;
        check_range(
            "raft.election_timeout_min_ms",
            raft.election_timeout_min_ms,
            3 * raft.heartbeat_interval_ms + 1,
            RAFT_ELECTION_TIMEOUT_MIN_MS_MAX,
        )?;
        check_range(
            "raft.election_timeout_max_ms",
            raft.election_timeout_max_ms,
            raft.election_timeout_min_ms + 1,
            RAFT_ELECTION_TIMEOUT_MAX_MS_MAX,
        )?;
        check_range(
            "raft.controller_snapshot_entries",
            raft.controller_snapshot_entries,
            CONTROLLER_SNAPSHOT_ENTRIES_MIN,
            CONTROLLER_SNAPSHOT_ENTRIES_MAX,
        )?;
        check_range(
            "limits.request_timeout_ms",
            self.limits.request_timeout_ms,
            REQUEST_TIMEOUT_MS_MIN,
            REQUEST_TIMEOUT_MS_MAX,
        )?;
        check_range(
            "limits.timestamp_after_max_ms",
            self.limits.timestamp_after_max_ms,
            TIMESTAMP_SKEW_MS_MIN,
            TIMESTAMP_AFTER_MAX_MS_MAX,
        )?;
        if let Some(before_max_ms) = self.limits.timestamp_before_max_ms {
            // At most i64::MAX: it is compared with i64 times.
            check_range(
                "limits.timestamp_before_max_ms",
                before_max_ms,
                TIMESTAMP_SKEW_MS_MIN,
                i64::MAX as u64,
            )?;
        }
        check_range(
            "storage.segment_bytes",
            self.storage.segment_bytes,
            SEGMENT_BYTES_MIN,
            SEGMENT_BYTES_MAX,
        )?;
        check_range(
            "storage.retention_check_interval_ms",
            self.storage.retention_check_interval_ms,
            RETENTION_CHECK_INTERVAL_MS_MIN,
            RETENTION_CHECK_INTERVAL_MS_MAX,
        )?;
        Ok(())
    }

    /// The roster entry of `id`.
    pub fn node(&self, id: NodeId) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Where node `id` keeps its data.
    pub fn node_data_dir(&self, id: NodeId) -> PathBuf {
        self.data_dir.join(format!("node-{id}"))
    }

    /// Voters of the controller group: the first 5 nodes of a roster of 5 or more, else the
    /// first 3 (or all of a smaller roster). The other nodes follow it as learners.
    pub fn controller_voters(&self) -> Vec<NodeId> {
        let count = if self.nodes.len() >= 5 {
            5
        } else {
            self.nodes.len().min(3)
        };
        self.nodes.iter().take(count).map(|n| n.id).collect()
    }

    /// The storage settings for segment logs.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.storage.segment_bytes,
            page_cache_node_bytes: self.storage.page_cache_bytes,
            ..LogConfig::default()
        }
    }

    /// Raft timers.
    pub fn raft_timing(&self) -> RaftTiming {
        self.raft
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
cluster_id = "test"
[[nodes]]
id = 1
client_addr = "127.0.0.1:7001"
peer_addr = "127.0.0.1:7101"
"#;

    #[test]
    fn good_config_parses_with_defaults() {
        let config = ClusterConfig::parse(GOOD, Path::new("x.toml")).expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.raft.heartbeat_interval_ms, 250);
        assert_eq!(config.controller_voters(), vec![1]);
    }

    #[test]
    fn topic_defaults_are_validated_and_canonical() {
        let text = format!(
            "{GOOD}\n[topic_defaults]\n\"retention.ms\" = 86400000\n\"cleanup.policy\" = \"delete,compact\"\n"
        );
        let config = ClusterConfig::parse(&text, Path::new("x.toml")).expect("parses");
        config.validate().expect("valid");
        let defaults = config.topic_default_configs();
        assert_eq!(defaults["retention.ms"], "86400000");
        assert_eq!(defaults["cleanup.policy"], "compact,delete");

        let text = format!("{GOOD}\n[topic_defaults]\n\"retention.ms\" = -5\n");
        let config = ClusterConfig::parse(&text, Path::new("x.toml")).expect("parses");
        let err = config.validate().expect_err("out of range");
        assert_eq!(
            err.to_string(),
            "config key `topic_defaults.\"retention.ms\"`: topic config `retention.ms` must be an integer in -1 ..= 9223372036854775807, got \"-5\""
        );
        let text = format!("{GOOD}\n[topic_defaults]\nretention = 5\n");
        let config = ClusterConfig::parse(&text, Path::new("x.toml")).expect("parses");
        assert!(config
            .validate()
            .expect_err("unknown key")
            .to_string()
            .contains("unknown topic config `retention`"));
    }

    #[test]
    fn unknown_key_is_named() {
        let text = format!("{GOOD}\nbogus = 1\n");
        let err = ClusterConfig::parse(&text, Path::new("x.toml"))
            .expect_err("accepted unknown key")
            .to_string();
        assert!(err.contains("bogus") && err.contains("x.toml"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn out_of_range_value_names_key_range_and_value() {
        let mut config = ClusterConfig::parse(GOOD, Path::new("x.toml")).expect("parses");
        config.raft.heartbeat_interval_ms = 10;
        let err = config.validate().expect_err("accepted 10 ms").to_string();
        assert!(
            err.contains("raft.heartbeat_interval_ms")
                && err.contains("50 ..= 5000")
                && err.contains("10"),
            "{err}"
        );
    }

    #[test]
    fn env_overrides_apply_and_bad_numbers_are_named() {
        let mut config = ClusterConfig::parse(GOOD, Path::new("x.toml")).expect("parses");
        config
            .apply_env_overrides(|k| (k == "RAFTLOG_REQUEST_TIMEOUT_MS").then(|| "777".to_owned()))
            .expect("applies");
        assert_eq!(config.limits.request_timeout_ms, 777);
        let err = config
            .apply_env_overrides(|k| {
                (k == "RAFTLOG_HEARTBEAT_INTERVAL_MS").then(|| "fast".to_owned())
            })
            .expect_err("accepted a word");
        assert!(err.to_string().contains("RAFTLOG_HEARTBEAT_INTERVAL_MS"));
    }

    #[test]
    fn timestamp_bounds_default_to_an_hour_ahead_and_no_past_bound_and_are_checked() {
        let config = ClusterConfig::parse(GOOD, Path::new("x.toml")).expect("parses");
        assert_eq!(config.limits.timestamp_after_max_ms, 3_600_000);
        assert_eq!(config.limits.timestamp_before_max_ms, None);
        let text = GOOD.replace(
            "[[nodes]]",
            "[limits]\ntimestamp_after_max_ms = 60000\ntimestamp_before_max_ms = 86400000\n[[nodes]]",
        );
        let mut config = ClusterConfig::parse(&text, Path::new("x.toml")).expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.limits.timestamp_before_max_ms, Some(86_400_000));
        config.limits.timestamp_after_max_ms = 10;
        let err = config.validate().expect_err("accepted 10 ms").to_string();
        assert!(
            err.contains("limits.timestamp_after_max_ms") && err.contains("1000 ..="),
            "{err}"
        );
    }

    #[test]
    fn the_page_cache_budget_is_unset_by_default_and_reaches_the_log_config() {
        let config = ClusterConfig::parse(GOOD, Path::new("x.toml")).expect("parses");
        assert_eq!(config.log_config().page_cache_node_bytes, None);
        let text = GOOD.replace(
            "[[nodes]]",
            "[storage]\npage_cache_bytes = 1073741824\n[[nodes]]",
        );
        let config = ClusterConfig::parse(&text, Path::new("x.toml")).expect("parses");
        assert_eq!(config.log_config().page_cache_node_bytes, Some(1 << 30));
        let mut config = ClusterConfig::parse(GOOD, Path::new("x.toml")).expect("parses");
        config
            .apply_env_overrides(|k| (k == "RAFTLOG_PAGE_CACHE_BYTES").then(|| "4096".to_owned()))
            .expect("applies");
        assert_eq!(config.log_config().page_cache_node_bytes, Some(4096));
        let err = ClusterConfig::parse(
            &GOOD.replace("[[nodes]]", "[storage]\npage_cache_bytes = -1\n[[nodes]]"),
            Path::new("x.toml"),
        )
        .expect_err("accepted a negative budget")
        .to_string();
        assert!(
            err.contains("page_cache_bytes") && !err.contains('\n'),
            "{err}"
        );
    }
}
