//! Completeness: the history shows every replica's whole log. A final read that stopped short
//! of its replica's end (or a partition never read at the end) leaves records unchecked, so the
//! verdict is INCOMPLETE instead of VALID: never a silent pass.

use std::collections::BTreeSet;

use super::Analysis;

/// What the history lacks, one line per replica or partition.
pub fn missing(analysis: &Analysis) -> Vec<String> {
    let mut missing = Vec::new();
    for ((node, partition), read) in &analysis.final_reads {
        if !read.complete() {
            missing.push(format!(
                "node {node} partition {partition}: the final read reached offset {} of {}{}",
                read.reached,
                read.target,
                read.error
                    .as_deref()
                    .map_or_else(String::new, |e| format!(" ({e})"))
            ));
        }
    }
    let read_at_end: BTreeSet<u32> = analysis.final_reads.keys().map(|(_, p)| *p).collect();
    let mut used: BTreeSet<u32> = analysis.sends.iter().map(|s| s.partition).collect();
    used.extend(
        analysis
            .polls
            .iter()
            .flat_map(|p| p.reads.iter().map(|(partition, _, _)| *partition)),
    );
    for partition in used.difference(&read_at_end) {
        missing.push(format!("partition {partition}: no final read"));
    }
    missing
}
