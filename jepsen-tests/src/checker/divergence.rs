//! divergence: the replicas of a partition hold the same log.

use std::collections::BTreeMap;

use super::Analysis;
use super::FinalRead;

/// One-line definition.
pub const DEFINITION: &str = "the final reads of one partition disagree: two nodes hold different values at one offset, a node lacks an offset inside its read that another holds, or a node read to its end stops below the partition's acknowledged end";

/// Compares whole logs: every offset two nodes both hold, every offset one node holds inside
/// the range the other read, and each complete read's end against what was acknowledged.
/// A read that stopped short is compared only as far as it got (completeness reports it); a
/// replica out of service has nothing to compare.
pub fn check(analysis: &Analysis) -> Vec<String> {
    let mut by_partition: BTreeMap<u32, Vec<(u64, &FinalRead)>> = BTreeMap::new();
    for ((node, partition), read) in &analysis.final_reads {
        if read.out_of_service {
            continue;
        }
        by_partition
            .entry(*partition)
            .or_default()
            .push((*node, read));
    }
    let acknowledged_end = analysis.acknowledged_end();
    let mut found = Vec::new();
    for (partition, reads) in by_partition {
        let logs: Vec<(u64, BTreeMap<u64, u64>)> = reads
            .iter()
            .map(|(node, read)| (*node, read.records.iter().copied().collect()))
            .collect();
        for (i, (node_a, a)) in logs.iter().enumerate() {
            for (node_b, b) in &logs[i + 1..] {
                let conflicts: Vec<(u64, u64, u64)> = a
                    .iter()
                    .filter_map(|(offset, va)| {
                        b.get(offset)
                            .filter(|vb| *vb != va)
                            .map(|vb| (*offset, *va, *vb))
                    })
                    .collect();
                if let Some((offset, va, vb)) = conflicts.first() {
                    found.push(format!(
                        "partition {partition}: node {node_a} has value {va} at offset {offset} where node {node_b} has {vb} ({} offsets differ)",
                        conflicts.len()
                    ));
                }
            }
        }
        for ((node_x, read_x), (_, x)) in reads.iter().zip(&logs) {
            for ((node_y, _), (_, y)) in reads.iter().zip(&logs) {
                if node_x != node_y {
                    found.extend(hole(partition, (*node_x, read_x, x), (*node_y, y)));
                }
            }
            let end = acknowledged_end.get(&partition).copied().unwrap_or(0);
            if read_x.complete() && read_x.reached < end {
                found.push(format!(
                    "partition {partition}: node {node_x} was read to its end at offset {}, below the acknowledged end {end}",
                    read_x.reached
                ));
            }
        }
    }
    found
}

/// Offsets node y holds inside the range node x read (from x's first record, or its final log
/// start if that is later, to where its read got) that x lacks. Below x's final log start
/// retention deleted them: a replica that catches up by snapshot during its final read has its
/// log start move past records not yet read, and the read steps over them.
fn hole(
    partition: u32,
    (node_x, read_x, x): (u64, &FinalRead, &BTreeMap<u64, u64>),
    (node_y, y): (u64, &BTreeMap<u64, u64>),
) -> Option<String> {
    let start = x
        .keys()
        .next()
        .copied()
        .unwrap_or(read_x.reached)
        .max(read_x.log_start);
    let lacking: Vec<u64> = y
        .range(start..read_x.reached)
        .map(|(offset, _)| *offset)
        .filter(|offset| !x.contains_key(offset))
        .collect();
    let first = lacking.first()?;
    Some(format!(
        "partition {partition}: node {node_x} lacks offset {first} (and {} more) that node {node_y} holds, inside its read {start}..{}",
        lacking.len() - 1,
        read_x.reached
    ))
}
