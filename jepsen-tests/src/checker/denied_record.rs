//! denied-record: the cluster said a record that exists is not there.

use std::collections::BTreeMap;

use raftlog_client::ErrorReason;

use super::Analysis;
use crate::history::Kind;

/// One-line definition.
pub const DEFINITION: &str = "a read was refused as out of range or not found at an offset up to the end of the records acknowledged or read before it was asked (the cluster denied records that exist)";

/// Reasons that say the record is not there, as opposed to "not here" or "not now" (NOT_LEADER,
/// NO_LEADER, OFFSET_NOT_AVAILABLE, a timeout...), which only send the consumer elsewhere or
/// back later.
fn denies_existence(reason: &str) -> bool {
    matches!(
        ErrorReason::from_str_name(reason),
        Some(
            ErrorReason::OffsetOutOfRange
                | ErrorReason::TopicNotFound
                | ErrorReason::PartitionNotFound
        )
    )
}

/// Compares each refused read with what was known to exist when it was asked: an offset below
/// the end of the log, or at the end (reading there is valid and answered empty), must be
/// served, unless retention deleted it: a refusal below the partition's final log start (the
/// records there were deleted, `Analysis::deleted_below`) is not counted; one above still is.
pub fn check(analysis: &Analysis) -> Vec<String> {
    // Per partition: (time, end) each time a record became known to exist.
    let mut known: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for send in analysis.sends.iter().filter(|s| s.outcome == Kind::Ok) {
        if let Some(highest) = send.offsets.iter().max() {
            known
                .entry(send.partition)
                .or_default()
                .push((send.completed_ns, highest + 1));
        }
    }
    for poll in &analysis.polls {
        for (partition, offset, _) in &poll.reads {
            known
                .entry(*partition)
                .or_default()
                .push((poll.completed_ns, offset + 1));
        }
    }
    // Sorted by time, each end raised to the highest so far: the end known at an instant is the
    // last entry before it.
    for events in known.values_mut() {
        events.sort_unstable();
        let mut highest = 0;
        for (_, end) in events.iter_mut() {
            highest = highest.max(*end);
            *end = highest;
        }
    }
    let mut found = Vec::new();
    for error in &analysis.consume_errors {
        let (Some(partition), Some(offset), Some(reason)) =
            (error.partition, error.offset, error.reason.as_deref())
        else {
            continue;
        };
        if !denies_existence(reason) || offset < analysis.deleted_below(partition) {
            continue;
        }
        let end = known.get(&partition).and_then(|events| {
            let before = events.partition_point(|(at, _)| *at < error.invoked_ns);
            before.checked_sub(1).map(|last| events[last].1)
        });
        if let Some(end) = end.filter(|end| offset <= *end) {
            found.push(format!(
                "process {} was refused {partition}/{offset} with {reason} although offsets below {end} were known to exist: {}",
                error.process, error.message
            ));
        }
    }
    found
}
