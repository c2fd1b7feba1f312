//! `Record` and `Header` between `raftlog.v1` and `raftlog_types`. Payload bytes are shared,
//! not copied (`bytes::Bytes` on both sides).

use raftlog_types::Header;
use raftlog_types::Record;

use crate::v1;

impl From<v1::Header> for Header {
    fn from(header: v1::Header) -> Self {
        Header {
            key: header.key,
            value: header.value,
        }
    }
}

impl From<Header> for v1::Header {
    fn from(header: Header) -> Self {
        v1::Header {
            key: header.key,
            value: header.value,
        }
    }
}

impl From<v1::Record> for Record {
    fn from(record: v1::Record) -> Self {
        Record {
            key: record.key,
            value: record.value,
            headers: record.headers.into_iter().map(Header::from).collect(),
            timestamp_ms: record.timestamp_ms,
        }
    }
}

/// A stored record at `offset`, as a consumer receives it.
pub fn stored_record(offset: u64, record: Record) -> v1::StoredRecord {
    v1::StoredRecord {
        offset,
        key: record.key,
        value: record.value,
        headers: record.headers.into_iter().map(v1::Header::from).collect(),
        timestamp_ms: record.timestamp_ms,
    }
}
