//! int-nonmonotonic-poll.

use std::collections::HashMap;

use super::Analysis;

/// One-line definition.
pub const DEFINITION: &str = "within one poll, a partition's offsets did not strictly increase";

/// Finds disorder inside single polls.
pub fn check(analysis: &Analysis) -> Vec<String> {
    let mut found = Vec::new();
    for poll in &analysis.polls {
        let mut last: HashMap<u32, u64> = HashMap::new();
        for (partition, offset, _) in &poll.reads {
            if let Some(previous) = last.insert(*partition, *offset) {
                if *offset <= previous {
                    found.push(format!("process {} read {partition}/{previous} then {partition}/{offset} in one poll", poll.process));
                }
            }
        }
    }
    found
}
