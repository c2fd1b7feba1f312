//! int-poll-skip.

use super::Analysis;

/// One-line definition.
pub const DEFINITION: &str = "within one poll, a partition's records skipped offsets that exist";

/// Finds gaps inside single polls.
pub fn check(analysis: &Analysis) -> Vec<String> {
    analysis
        .steps_within_polls()
        .into_iter()
        .filter_map(|(process, partition, previous, next)| {
            let skipped = analysis.existing_between(partition, previous, next);
            (!skipped.is_empty()).then(|| {
                format!("process {process} read {partition}/{previous} then {partition}/{next} in one poll, skipping {skipped:?}")
            })
        })
        .collect()
}
