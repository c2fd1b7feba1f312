//! unexpected.

use super::Analysis;

/// One-line definition.
pub const DEFINITION: &str = "a value was read that no client ever sent";

/// Finds values out of nowhere.
pub fn check(analysis: &Analysis) -> Vec<String> {
    let mut found: Vec<String> = analysis
        .read_at
        .iter()
        .filter(|(value, _)| !analysis.sent.contains_key(value))
        .map(|(value, places)| format!("value {value} read at {places:?} was never sent"))
        .collect();
    found.sort();
    found
}
