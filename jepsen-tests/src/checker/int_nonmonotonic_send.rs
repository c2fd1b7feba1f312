//! int-nonmonotonic-send.

use super::Analysis;
use crate::history::Kind;

/// One-line definition.
pub const DEFINITION: &str =
    "the values of one acknowledged send did not get strictly increasing offsets";

/// Finds disorder inside single sends.
pub fn check(analysis: &Analysis) -> Vec<String> {
    analysis
        .sends
        .iter()
        .filter(|s| s.outcome == Kind::Ok && s.offsets.windows(2).any(|w| w[1] <= w[0]))
        .map(|s| {
            format!(
                "process {} send to partition {} got offsets {:?}",
                s.process, s.partition, s.offsets
            )
        })
        .collect()
}
