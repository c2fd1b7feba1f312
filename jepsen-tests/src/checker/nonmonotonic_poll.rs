//! nonmonotonic-poll.

use std::collections::HashMap;

use super::Analysis;

/// One-line definition.
pub const DEFINITION: &str =
    "a consumer's next poll of a partition went back to an offset it had already passed";

/// Finds backward steps between consecutive polls of one process (reset polls start over).
pub fn check(analysis: &Analysis) -> Vec<String> {
    let mut found = Vec::new();
    let mut last: HashMap<(u64, u32), u64> = HashMap::new();
    for poll in &analysis.polls {
        if poll.reset {
            last.retain(|(process, _), _| *process != poll.process);
        }
        let mut first_in_poll: HashMap<u32, u64> = HashMap::new();
        for (partition, offset, _) in &poll.reads {
            first_in_poll.entry(*partition).or_insert(*offset);
        }
        for (partition, first) in &first_in_poll {
            if let Some(previous) = last.get(&(poll.process, *partition)) {
                if first <= previous {
                    found.push(format!(
                        "process {} polled {partition}/{previous} then {partition}/{first}",
                        poll.process
                    ));
                }
            }
        }
        for (partition, offset, _) in &poll.reads {
            last.insert((poll.process, *partition), *offset);
        }
    }
    found
}
