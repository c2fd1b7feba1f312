//! aborted-read (G1a).

use super::Analysis;
use crate::history::Kind;

/// One-line definition.
pub const DEFINITION: &str = "a value of a send that definitely failed was read (G1a)";

/// Finds reads of failed sends' values.
pub fn check(analysis: &Analysis) -> Vec<String> {
    let mut found: Vec<String> = analysis
        .read_at
        .iter()
        .filter(|(value, _)| {
            analysis
                .sent
                .get(value)
                .is_some_and(|i| analysis.sends[*i].outcome == Kind::Fail)
        })
        .map(|(value, places)| format!("value {value} of a failed send read at {places:?}"))
        .collect();
    found.sort();
    found
}
