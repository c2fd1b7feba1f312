//! int-nonmonotonic-poll.

use super::Analysis;

/// One-line definition.
pub const DEFINITION: &str = "within one poll, a partition's offsets did not strictly increase";

/// Finds disorder inside single polls.
pub fn check(analysis: &Analysis) -> Vec<String> {
    analysis
        .steps_within_polls()
        .into_iter()
        .filter(|(_, _, previous, next)| next <= previous)
        .map(|(process, partition, previous, next)| {
            format!(
                "process {process} read {partition}/{previous} then {partition}/{next} in one poll"
            )
        })
        .collect()
}
