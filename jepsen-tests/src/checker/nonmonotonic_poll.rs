//! nonmonotonic-poll.

use super::Analysis;

/// One-line definition.
pub const DEFINITION: &str =
    "a consumer's next poll of a partition went back to an offset it had already passed";

/// Finds backward steps between consecutive polls of one process (reset polls start over).
pub fn check(analysis: &Analysis) -> Vec<String> {
    analysis
        .poll_steps()
        .into_iter()
        .filter(|(_, _, previous, next)| next <= previous)
        .map(|(process, partition, previous, next)| {
            format!("process {process} polled {partition}/{previous} then {partition}/{next}")
        })
        .collect()
}
