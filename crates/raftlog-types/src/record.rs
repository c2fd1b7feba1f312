//! Records: what producers send and consumers read.

use bytes::Bytes;
use serde::Deserialize;
use serde::Serialize;

/// One header of a record: an application-defined key and value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Header name; need not be unique within a record.
    pub key: String,
    /// Header value.
    #[serde(deserialize_with = "crate::shared_bytes::deserialize")]
    pub value: Bytes,
}

/// One record of a partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Optional key; the client's partitioner hashes it, the log itself does not interpret it.
    #[serde(default, deserialize_with = "crate::shared_bytes::deserialize_option")]
    pub key: Option<Bytes>,
    /// The payload.
    #[serde(deserialize_with = "crate::shared_bytes::deserialize")]
    pub value: Bytes,
    /// Application headers, in the order the producer gave them.
    pub headers: Vec<Header>,
    /// Producer-assigned time in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Record {
    /// Bytes this record counts against `RECORD_BYTES_MAX`: key, value and header contents.
    pub fn payload_bytes(&self) -> u64 {
        let key = self.key.as_ref().map_or(0, |k| k.len());
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.len())
            .sum();
        (key + self.value.len() + headers) as u64
    }

    /// An upper estimate of the record's encoded size in a log entry: payload plus length
    /// prefixes, tags and the timestamp. Limits on entries are enforced on this, so that many
    /// tiny records cannot make an entry far larger than its payload.
    pub fn encoded_bytes_estimate(&self) -> u64 {
        const RECORD_OVERHEAD_BYTES: u64 = 32;
        const HEADER_OVERHEAD_BYTES: u64 = 8;
        self.payload_bytes()
            + RECORD_OVERHEAD_BYTES
            + HEADER_OVERHEAD_BYTES * self.headers.len() as u64
    }
}
