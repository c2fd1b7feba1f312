//! Topic configuration: the keys a topic may set, with Kafka's names, meanings and defaults,
//! their validation, and how a topic's own values, the cluster's defaults and the built-in
//! defaults resolve into the values in effect.
//!
//! Values travel and are stored as strings (as in Kafka's `CreateTopics` and `AlterConfigs`),
//! always in the canonical form [`validate_topic_config`] returns, so that every node renders
//! and compares them alike.

use std::collections::BTreeMap;

use crate::limits::RECORD_BYTES_MAX;
use crate::limits::SEGMENT_BYTES_DEFAULT;
use crate::limits::SEGMENT_BYTES_MAX;
use crate::limits::SEGMENT_BYTES_MIN;

/// Characters of a refused value echoed in the error; the rest is cut.
const ECHOED_VALUE_CHARS_MAX: usize = 64;

/// `retention.ms`: how long a record is kept (ms); -1 keeps records for ever.
pub const RETENTION_MS: &str = "retention.ms";
/// `retention.bytes`: the most a partition keeps (bytes); -1 has no limit.
pub const RETENTION_BYTES: &str = "retention.bytes";
/// `segment.bytes`: the size at which a partition's segment file is sealed.
pub const SEGMENT_BYTES: &str = "segment.bytes";
/// `segment.ms`: the age at which a partition's active segment is sealed.
pub const SEGMENT_MS: &str = "segment.ms";
/// `cleanup.policy`: `delete`, `compact` or `compact,delete`.
pub const CLEANUP_POLICY: &str = "cleanup.policy";
/// `delete.retention.ms`: how long a compacted topic keeps a tombstone.
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";
/// `min.compaction.lag.ms`: how old a record must be before compaction may remove it.
pub const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
/// `max.message.bytes`: the largest record (key, value and headers) the topic accepts.
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";

/// What a key's value must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// An integer in `min ..= max`.
    Integer { min: i64, max: i64 },
    /// One of the cleanup policies.
    CleanupPolicy,
}

/// One key of the registry.
#[derive(Clone, Copy, Debug)]
struct Key {
    name: &'static str,
    kind: Kind,
    default: &'static str,
}

const SEVEN_DAYS_MS: &str = "604800000";

/// Every key a topic may set, in the order they are listed. Defaults are Kafka's, except
/// `segment.bytes` (raftlog's segment size) and `max.message.bytes` (raftlog's record limit).
const KEYS: [Key; 8] = [
    Key {
        name: RETENTION_MS,
        kind: Kind::Integer {
            min: -1,
            max: i64::MAX,
        },
        default: SEVEN_DAYS_MS,
    },
    Key {
        name: RETENTION_BYTES,
        kind: Kind::Integer {
            min: -1,
            max: i64::MAX,
        },
        default: "-1",
    },
    Key {
        name: SEGMENT_BYTES,
        kind: Kind::Integer {
            min: SEGMENT_BYTES_MIN as i64,
            max: SEGMENT_BYTES_MAX as i64,
        },
        default: const_str_u64(SEGMENT_BYTES_DEFAULT),
    },
    Key {
        name: SEGMENT_MS,
        kind: Kind::Integer {
            min: 1,
            max: i64::MAX,
        },
        default: SEVEN_DAYS_MS,
    },
    Key {
        name: CLEANUP_POLICY,
        kind: Kind::CleanupPolicy,
        default: "delete",
    },
    Key {
        name: DELETE_RETENTION_MS,
        kind: Kind::Integer {
            min: 0,
            max: i64::MAX,
        },
        default: "86400000",
    },
    Key {
        name: MIN_COMPACTION_LAG_MS,
        kind: Kind::Integer {
            min: 0,
            max: i64::MAX,
        },
        default: "0",
    },
    Key {
        name: MAX_MESSAGE_BYTES,
        kind: Kind::Integer {
            min: 1,
            max: RECORD_BYTES_MAX as i64,
        },
        default: const_str_u64(RECORD_BYTES_MAX),
    },
];

/// The decimal text of the two limits used as defaults; checked by a test against `format!`.
const fn const_str_u64(value: u64) -> &'static str {
    match value {
        SEGMENT_BYTES_DEFAULT => "67108864",
        RECORD_BYTES_MAX => "1048576",
        _ => panic!("no text for this default"),
    }
}

/// Why a topic configuration was refused. Each names the key, and for a bad value, what is
/// allowed and what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    /// Not a key topics have.
    #[error("unknown topic config `{key}`; the keys are {}", known_keys().join(", "))]
    UnknownKey {
        /// The key given.
        key: String,
    },
    /// The value is not one the key allows.
    #[error("topic config `{key}` must be {expected}, got {value:?}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What is allowed, e.g. `an integer in -1 ..= 9223372036854775807`.
        expected: String,
    },
}

impl TopicConfigError {
    /// The key at fault.
    pub fn key(&self) -> &str {
        match self {
            TopicConfigError::UnknownKey { key } | TopicConfigError::InvalidValue { key, .. } => {
                key
            }
        }
    }
}

/// The keys topics have, in listing order.
pub fn known_keys() -> Vec<&'static str> {
    KEYS.iter().map(|key| key.name).collect()
}

fn key(name: &str) -> Result<&'static Key, TopicConfigError> {
    KEYS.iter()
        .find(|key| key.name == name)
        .ok_or_else(|| TopicConfigError::UnknownKey { key: name.into() })
}

/// Checks that `name` is a topic config key, without a value (for deleting one).
pub fn validate_topic_config_key(name: &str) -> Result<(), TopicConfigError> {
    key(name).map(|_| ())
}

/// Checks one `key = value` and returns the value in canonical form (an integer without sign
/// or leading zeros beyond its own, a policy as `delete`, `compact` or `compact,delete`).
pub fn validate_topic_config(name: &str, value: &str) -> Result<String, TopicConfigError> {
    let key = key(name)?;
    let invalid = |expected: String| TopicConfigError::InvalidValue {
        key: name.into(),
        value: value.chars().take(ECHOED_VALUE_CHARS_MAX).collect(),
        expected,
    };
    let trimmed = value.trim();
    match key.kind {
        Kind::Integer { min, max } => {
            let expected = || format!("an integer in {min} ..= {max}");
            let parsed: i64 = trimmed.parse().map_err(|_| invalid(expected()))?;
            if parsed < min || parsed > max {
                return Err(invalid(expected()));
            }
            Ok(parsed.to_string())
        }
        Kind::CleanupPolicy => {
            let mut policies: Vec<&str> = trimmed.split(',').map(str::trim).collect();
            policies.sort_unstable();
            policies.dedup();
            match policies.as_slice() {
                ["delete"] => Ok("delete".into()),
                ["compact"] => Ok("compact".into()),
                ["compact", "delete"] => Ok("compact,delete".into()),
                _ => Err(invalid("one of delete, compact, compact,delete".into())),
            }
        }
    }
}

/// Checks every entry of `configs` and returns them in canonical form.
pub fn validate_topic_configs<'a>(
    configs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<BTreeMap<String, String>, TopicConfigError> {
    let mut valid = BTreeMap::new();
    for (name, value) in configs {
        valid.insert(name.to_string(), validate_topic_config(name, value)?);
    }
    Ok(valid)
}

/// Where a value in effect comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    Topic,
    /// The cluster's `[topic_defaults]`.
    ClusterDefault,
    /// Built in.
    Default,
}

/// One key's value in effect for a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The key.
    pub name: &'static str,
    /// The value in effect, canonical.
    pub value: String,
    /// Where it comes from.
    pub source: ConfigSource,
}

/// Every key's value in effect, in listing order: the topic's own (`topic`), else the cluster's
/// default (`cluster`), else the built-in one. Both maps hold validated, canonical values.
pub fn effective_configs(
    topic: &BTreeMap<String, String>,
    cluster: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    KEYS.iter()
        .map(|key| {
            let (value, source) = match (topic.get(key.name), cluster.get(key.name)) {
                (Some(value), _) => (value.clone(), ConfigSource::Topic),
                (None, Some(value)) => (value.clone(), ConfigSource::ClusterDefault),
                (None, None) => (key.default.to_string(), ConfigSource::Default),
            };
            ConfigEntry {
                name: key.name,
                value,
                source,
            }
        })
        .collect()
}

/// The integer in effect for the integer key `name`.
pub fn effective_integer(
    name: &str,
    topic: &BTreeMap<String, String>,
    cluster: &BTreeMap<String, String>,
) -> Option<i64> {
    let key = key(name).ok()?;
    topic
        .get(name)
        .or_else(|| cluster.get(name))
        .map_or(key.default, String::as_str)
        .parse()
        .ok()
}

/// The `cleanup.policy` in effect for a topic: its own, else the cluster default, else `delete`
/// (canonical form, as `validate_topic_configs` stores it).
pub fn effective_cleanup_policy<'a>(
    topic: &'a BTreeMap<String, String>,
    cluster: &'a BTreeMap<String, String>,
) -> &'a str {
    topic
        .get(CLEANUP_POLICY)
        .or_else(|| cluster.get(CLEANUP_POLICY))
        .map_or("delete", String::as_str)
}

/// Whether the policy in effect includes `policy` (`delete` or `compact`).
pub fn cleanup_policy_includes(
    policy: &str,
    topic: &BTreeMap<String, String>,
    cluster: &BTreeMap<String, String>,
) -> bool {
    effective_cleanup_policy(topic, cluster)
        .split(',')
        .any(|p| p.trim() == policy)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn defaults_are_valid_and_canonical() {
        for key in KEYS {
            assert_eq!(
                validate_topic_config(key.name, key.default).as_deref(),
                Ok(key.default),
                "{}",
                key.name
            );
        }
        assert_eq!(
            const_str_u64(SEGMENT_BYTES_DEFAULT),
            SEGMENT_BYTES_DEFAULT.to_string()
        );
        assert_eq!(
            const_str_u64(RECORD_BYTES_MAX),
            RECORD_BYTES_MAX.to_string()
        );
    }

    #[test]
    fn values_are_canonical_and_bad_ones_named() {
        assert_eq!(validate_topic_config(RETENTION_MS, " 007 ").unwrap(), "7");
        assert_eq!(validate_topic_config(RETENTION_BYTES, "-1").unwrap(), "-1");
        assert_eq!(
            validate_topic_config(CLEANUP_POLICY, "delete, compact").unwrap(),
            "compact,delete"
        );
        assert_eq!(
            validate_topic_config(RETENTION_MS, "-2").unwrap_err().to_string(),
            "topic config `retention.ms` must be an integer in -1 ..= 9223372036854775807, got \"-2\""
        );
        assert_eq!(
            validate_topic_config(MAX_MESSAGE_BYTES, "2000000")
                .unwrap_err()
                .to_string(),
            "topic config `max.message.bytes` must be an integer in 1 ..= 1048576, got \"2000000\""
        );
        assert!(validate_topic_config(SEGMENT_BYTES, "1k").is_err());
        assert!(validate_topic_config(CLEANUP_POLICY, "compact,").is_err());
        let unknown = validate_topic_config("retention.hours", "1").unwrap_err();
        assert_eq!(unknown.key(), "retention.hours");
        assert!(
            unknown
                .to_string()
                .contains("retention.ms, retention.bytes"),
            "{unknown}"
        );
    }

    #[test]
    fn the_topic_wins_over_the_cluster_over_the_built_in_default() {
        let topic = BTreeMap::from([(RETENTION_MS.to_string(), "1000".to_string())]);
        let cluster = BTreeMap::from([
            (RETENTION_MS.to_string(), "2000".to_string()),
            (RETENTION_BYTES.to_string(), "4096".to_string()),
        ]);
        let entries = effective_configs(&topic, &cluster);
        assert_eq!(entries.len(), KEYS.len());
        let find = |name: &str| entries.iter().find(|e| e.name == name).unwrap().clone();
        assert_eq!(find(RETENTION_MS).value, "1000");
        assert_eq!(find(RETENTION_MS).source, ConfigSource::Topic);
        assert_eq!(find(RETENTION_BYTES).source, ConfigSource::ClusterDefault);
        assert_eq!(find(CLEANUP_POLICY).value, "delete");
        assert_eq!(find(CLEANUP_POLICY).source, ConfigSource::Default);
        assert_eq!(
            effective_integer(MAX_MESSAGE_BYTES, &topic, &cluster),
            Some(1_048_576)
        );
        assert_eq!(
            effective_integer(RETENTION_MS, &topic, &cluster),
            Some(1000)
        );
    }
}
