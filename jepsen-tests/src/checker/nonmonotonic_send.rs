//! nonmonotonic-send.

use std::collections::HashMap;

use super::Analysis;
use crate::history::Kind;

/// One-line definition.
pub const DEFINITION: &str =
    "a process's later acknowledged send to a partition got a lower offset than its earlier one";

/// Finds offsets going backwards across one process's sends.
pub fn check(analysis: &Analysis) -> Vec<String> {
    let mut found = Vec::new();
    let mut last: HashMap<(u64, u32), u64> = HashMap::new();
    let mut sends: Vec<_> = analysis
        .sends
        .iter()
        .filter(|s| s.outcome == Kind::Ok)
        .collect();
    sends.sort_by_key(|s| s.completed_ns);
    for send in sends {
        let (Some(first), Some(highest)) = (send.offsets.first(), send.offsets.iter().max()) else {
            continue;
        };
        if let Some(previous) = last.get(&(send.process, send.partition)) {
            if first <= previous {
                found.push(format!(
                    "process {} sent to {}/{previous} then {}/{first}",
                    send.process, send.partition, send.partition
                ));
            }
        }
        last.insert((send.process, send.partition), *highest);
    }
    found
}
