//! divergence.

use std::collections::BTreeMap;

use super::Analysis;

/// One node's final read of a partition: (node, records).
type NodeRead<'a> = (u64, &'a Vec<(u64, u64)>);

/// One-line definition.
pub const DEFINITION: &str =
    "the final reads of one partition from two nodes disagree (neither is a prefix of the other)";

/// Compares every node's final read of each partition with the others'.
pub fn check(analysis: &Analysis) -> Vec<String> {
    let mut by_partition: BTreeMap<u32, Vec<NodeRead>> = BTreeMap::new();
    for ((node, partition), records) in &analysis.final_reads {
        by_partition
            .entry(*partition)
            .or_default()
            .push((*node, records));
    }
    let mut found = Vec::new();
    for (partition, reads) in by_partition {
        for (i, (node_a, a)) in reads.iter().enumerate() {
            for (node_b, b) in &reads[i + 1..] {
                let common = a.len().min(b.len());
                if let Some(at) = (0..common).find(|k| a[*k] != b[*k]) {
                    found.push(format!(
                        "partition {partition}: node {node_a} has {:?} where node {node_b} has {:?}",
                        a[at], b[at]
                    ));
                }
            }
        }
    }
    found
}
