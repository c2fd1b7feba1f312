//! inconsistent-offsets.

use super::Analysis;

/// One-line definition.
pub const DEFINITION: &str =
    "one offset of a partition held different values for different readers or acknowledgements";

/// Finds offsets with more than one value.
pub fn check(analysis: &Analysis) -> Vec<String> {
    analysis
        .claims
        .iter()
        .filter(|(_, values)| values.len() > 1)
        .map(|((partition, offset), values)| format!("{partition}/{offset} holds {values:?}"))
        .collect()
}
