//! lost-write.

use super::Analysis;
use crate::history::Kind;

/// One-line definition.
pub const DEFINITION: &str =
    "an acknowledged value was never read, although reads went past its offset";

/// Finds lost writes.
pub fn check(analysis: &Analysis) -> Vec<String> {
    let mut found = Vec::new();
    for send in analysis.sends.iter().filter(|s| s.outcome == Kind::Ok) {
        for (value, offset) in send.values.iter().zip(&send.offsets) {
            let read_past = analysis
                .highest_read
                .get(&send.partition)
                .is_some_and(|h| h > offset);
            if read_past && !analysis.read_at.contains_key(value) {
                found.push(format!(
                    "value {value} acknowledged at {}/{offset}, never read",
                    send.partition
                ));
            }
        }
    }
    found
}
