//! duplicate.

use super::Analysis;

/// One-line definition.
pub const DEFINITION: &str = "a value was read at more than one offset";

/// Finds values stored more than once.
pub fn check(analysis: &Analysis) -> Vec<String> {
    let mut found: Vec<String> = analysis
        .read_at
        .iter()
        .filter(|(_, places)| places.len() > 1)
        .map(|(value, places)| format!("value {value} at {places:?}"))
        .collect();
    found.sort();
    found
}
