//! int-poll-skip.

use std::collections::HashMap;

use super::Analysis;

/// One-line definition.
pub const DEFINITION: &str = "within one poll, a partition's records skipped offsets that exist";

/// Finds gaps inside single polls.
pub fn check(analysis: &Analysis) -> Vec<String> {
    let mut found = Vec::new();
    for poll in &analysis.polls {
        let mut last: HashMap<u32, u64> = HashMap::new();
        for (partition, offset, _) in &poll.reads {
            if let Some(previous) = last.insert(*partition, *offset) {
                let skipped = analysis.existing_between(*partition, previous, *offset);
                if !skipped.is_empty() && *offset > previous {
                    found.push(format!("process {} read {partition}/{previous} then {partition}/{offset} in one poll, skipping {skipped:?}", poll.process));
                }
            }
        }
    }
    found
}
