//! Completeness: the history shows every replica's whole log. A final read that stopped short
//! of its replica's end (or a partition never read at the end) leaves records unchecked, so the
//! verdict is INCOMPLETE instead of VALID: never a silent pass. A replica its node refused as
//! corrupt or lost (out of service) has no log to read; it is listed by [`out_of_service`], and
//! its partition must then have a replica read to its end.

use std::collections::BTreeSet;

use super::Analysis;

/// What the history lacks, one line per replica or partition.
pub fn missing(analysis: &Analysis) -> Vec<String> {
    let mut missing = Vec::new();
    for ((node, partition), read) in &analysis.final_reads {
        if read.out_of_service {
            continue;
        }
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
    let read_at_end: BTreeSet<u32> = analysis
        .final_reads
        .iter()
        .filter(|(_, read)| !read.out_of_service)
        .map(|((_, p), _)| *p)
        .collect();
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

/// The replicas their nodes refused as corrupt or lost, one line each with the node's reason.
pub fn out_of_service(analysis: &Analysis) -> Vec<String> {
    analysis
        .final_reads
        .iter()
        .filter(|(_, read)| read.out_of_service)
        .map(|((node, partition), read)| {
            format!(
                "node {node} partition {partition}: {}",
                read.error.as_deref().unwrap_or("out of service")
            )
        })
        .collect()
}
