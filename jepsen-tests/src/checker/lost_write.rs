//! lost-write.

use super::Analysis;

/// One-line definition.
pub const DEFINITION: &str =
    "an acknowledged value was never read, although reads went past its offset";

/// Finds acknowledged values that were never read, though reads went past them.
pub fn check(analysis: &Analysis) -> Vec<String> {
    analysis
        .unread_acknowledged()
        .into_iter()
        .filter(|(_, _, _, read_past)| *read_past)
        .map(|(value, partition, offset, _)| {
            format!("value {value} acknowledged at {partition}/{offset}, never read")
        })
        .collect()
}
