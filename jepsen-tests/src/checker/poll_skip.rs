//! poll-skip.

use std::collections::HashMap;

use super::Analysis;

/// One-line definition.
pub const DEFINITION: &str =
    "a consumer's next poll of a partition started past offsets that exist, skipping them";

/// Finds skips between consecutive polls of one process (reset polls start over).
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
                let skipped = analysis.existing_between(*partition, *previous, *first);
                if !skipped.is_empty() && first > previous {
                    found.push(format!("process {} polled {partition}/{previous} then {partition}/{first}, skipping {skipped:?}", poll.process));
                }
            }
        }
        for (partition, offset, _) in &poll.reads {
            last.insert((poll.process, *partition), *offset);
        }
    }
    found
}
