//! poll-skip.

use super::Analysis;

/// One-line definition.
pub const DEFINITION: &str =
    "a consumer's next poll of a partition started past offsets that exist, skipping them";

/// Finds skips between consecutive polls of one process (reset polls start over).
pub fn check(analysis: &Analysis) -> Vec<String> {
    analysis
        .poll_steps()
        .into_iter()
        .filter_map(|(process, partition, previous, next)| {
            let skipped = analysis.existing_between(partition, previous, next);
            (!skipped.is_empty())
                .then(|| format!("process {process} polled {partition}/{previous} then {partition}/{next}, skipping {skipped:?}"))
        })
        .collect()
}
