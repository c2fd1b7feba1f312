//! commit-past-end: a committed position points at most just past the last existing record.

use super::Analysis;
use crate::history::Kind;

/// One-line definition.
pub const DEFINITION: &str = "a group's committed position of a partition is beyond the end of its log (past every record acknowledged or read)";

/// Checks every successful commit and committed-offsets read against the partition's end.
pub fn check(analysis: &Analysis) -> Vec<String> {
    let mut found = Vec::new();
    for entry in analysis
        .group_offsets
        .iter()
        .filter(|e| e.outcome == Kind::Ok)
    {
        for (partition, position) in &entry.offsets {
            let end = analysis.known_end(*partition).unwrap_or(0);
            if *position > end {
                found.push(format!(
                    "group {} partition {partition}: {} {position} (process {}, member {:?}), but the log ends at {end}",
                    entry.group,
                    if entry.commit { "committed" } else { "read committed" },
                    entry.process,
                    entry.member
                ));
            }
        }
    }
    found
}
