//! Consumer groups' committed offsets, kept apart from the rest of the metadata so that a
//! commit costs what it commits: one sled key per (group, topic, partition), written in the
//! same atomic batch as the applied log id, and one in-memory map shared with the coordinator.
//! The rest of the metadata is small and rewritten whole when it changes; the offsets of
//! thousands of groups are not (the lifecycle issue: 1,000 groups × 100 partitions made every
//! commit rewrite and clone ~100k offsets).
//!
//! Key: `b'o'`, then the group and the topic each as a big-endian `u16` length and their bytes,
//! then the partition as a big-endian `u32`; value: the offset as a big-endian `u64`.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

const KEY_PREFIX: u8 = b'o';

/// Committed positions: group → (topic, partition) → next offset to read.
pub(crate) type OffsetsByGroup = BTreeMap<String, BTreeMap<(String, u32), u64>>;

/// The committed offsets, shared by the controller's state machine (which writes them as it
/// applies) and the consumer-group coordinator (which reads them).
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupOffsets {
    inner: Arc<RwLock<OffsetsByGroup>>,
}

/// The sled writes one apply makes to the offsets.
#[derive(Debug, Default)]
pub(super) struct OffsetWrites {
    /// Keys set, with their values.
    pub set: Vec<(Vec<u8>, u64)>,
    /// Keys removed.
    pub removed: Vec<Vec<u8>>,
}

impl GroupOffsets {
    /// A store holding `offsets`.
    pub(super) fn new(offsets: OffsetsByGroup) -> GroupOffsets {
        GroupOffsets {
            inner: Arc::new(RwLock::new(offsets)),
        }
    }

    /// `group`'s committed offsets.
    pub fn of_group(&self, group: &str) -> BTreeMap<(String, u32), u64> {
        self.inner.read().get(group).cloned().unwrap_or_default()
    }

    /// Every group with a committed offset.
    pub fn groups(&self) -> Vec<String> {
        self.inner.read().keys().cloned().collect()
    }

    /// A copy of everything (for a snapshot).
    pub(super) fn all(&self) -> OffsetsByGroup {
        self.inner.read().clone()
    }

    /// Replaces everything (an installed snapshot).
    pub(super) fn replace(&self, offsets: OffsetsByGroup) {
        *self.inner.write() = offsets;
    }

    /// Sets `group`'s offsets, noting the keys to write.
    pub(super) fn commit(
        &self,
        group: &str,
        offsets: Vec<(String, u32, u64)>,
        writes: &mut OffsetWrites,
    ) {
        let mut all = self.inner.write();
        let committed = all.entry(group.to_owned()).or_default();
        for (topic, partition, offset) in offsets {
            writes.set.push((key(group, &topic, partition), offset));
            committed.insert((topic, partition), offset);
        }
    }

    /// Forgets every group's offsets in `topic` (deleted: a re-created topic starts empty),
    /// noting the keys to remove.
    pub(super) fn forget_topic(&self, topic: &str, writes: &mut OffsetWrites) {
        let mut all = self.inner.write();
        for (group, committed) in all.iter_mut() {
            committed.retain(|(t, partition), _| {
                let keep = t != topic;
                if !keep {
                    writes.removed.push(key(group, t, *partition));
                }
                keep
            });
        }
        all.retain(|_, committed| !committed.is_empty());
    }
}

/// The sled key of one committed offset.
pub(super) fn key(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + 2 + group.len() + 2 + topic.len() + 4);
    key.push(KEY_PREFIX);
    for part in [group, topic] {
        // Group and topic names are far shorter than 64 KiB (both are validated).
        key.extend_from_slice(&(part.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// The key prefix of every committed offset.
pub(super) fn prefix() -> [u8; 1] {
    [KEY_PREFIX]
}

/// Decodes a key and value written by [`key`]; `None` for anything else.
pub(super) fn decode(key: &[u8], value: &[u8]) -> Option<(String, String, u32, u64)> {
    let mut rest = key.strip_prefix(&[KEY_PREFIX])?;
    let mut text = || -> Option<String> {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        let (bytes, tail) = (tail.get(..len)?, tail.get(len..)?);
        rest = tail;
        String::from_utf8(bytes.to_vec()).ok()
    };
    let group = text()?;
    let topic = text()?;
    let partition = u32::from_be_bytes(rest.try_into().ok()?);
    let offset = u64::from_be_bytes(value.try_into().ok()?);
    Some((group, topic, partition, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_back_and_tell_names_apart() {
        let k = key("billing", "orders", 7);
        assert_eq!(
            decode(&k, &42u64.to_be_bytes()),
            Some(("billing".into(), "orders".into(), 7, 42))
        );
        // No name can run into the next: "a" + "bc" is not "ab" + "c".
        assert_ne!(key("a", "bc", 0), key("ab", "c", 0));
        assert_eq!(decode(b"controller_state", b"{}"), None);
        assert_eq!(decode(&k[..k.len() - 1], &42u64.to_be_bytes()), None);
    }

    #[test]
    fn commits_and_topic_deletion_note_exactly_their_keys() {
        let offsets = GroupOffsets::default();
        let mut writes = OffsetWrites::default();
        offsets.commit(
            "g",
            vec![("a".into(), 0, 5), ("b".into(), 1, 9)],
            &mut writes,
        );
        offsets.commit("h", vec![("a".into(), 0, 3)], &mut writes);
        assert_eq!(writes.set.len(), 3);
        let mut writes = OffsetWrites::default();
        offsets.forget_topic("a", &mut writes);
        assert_eq!(writes.removed, vec![key("g", "a", 0), key("h", "a", 0)]);
        assert_eq!(offsets.groups(), vec!["g".to_owned()]);
        assert_eq!(
            offsets.of_group("g"),
            BTreeMap::from([(("b".to_owned(), 1), 9)])
        );
    }
}
