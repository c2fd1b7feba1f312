//! group-exclusive: a partition is owned by at most one live member at a time.

use std::collections::BTreeMap;

use super::membership;
use super::membership::Tenure;
use super::Analysis;

/// One-line definition.
pub const DEFINITION: &str = "two members of a consumer group each delivered records of one partition while both owned it and were live, at overlapping times";

fn describe(tenure: &Tenure) -> String {
    let first = tenure.deliveries.iter().map(|d| d.1).min().unwrap_or(0);
    let last = tenure.deliveries.iter().map(|d| d.2).max().unwrap_or(0);
    format!(
        "member {} (process {}, generation {}) owned it {:.3}..{:.3} s and delivered offsets {first}..={last}",
        tenure.member,
        tenure.process,
        tenure.generation,
        tenure.start_ns as f64 / 1e9,
        tenure.end_ns as f64 / 1e9,
    )
}

/// Compares the tenures of different members in which records were delivered.
pub fn check(analysis: &Analysis) -> Vec<String> {
    let mut by_partition: BTreeMap<u32, Vec<Tenure>> = BTreeMap::new();
    for tenure in membership::tenures(analysis) {
        if !tenure.deliveries.is_empty() {
            by_partition
                .entry(tenure.partition)
                .or_default()
                .push(tenure);
        }
    }
    let mut found = Vec::new();
    for (partition, mut tenures) in by_partition {
        tenures.sort_by_key(|t| t.start_ns);
        for (i, a) in tenures.iter().enumerate() {
            // Sorted by start: later tenures that start before `a` ends overlap it.
            for b in tenures[i + 1..]
                .iter()
                .take_while(|b| b.start_ns < a.end_ns)
            {
                if a.process != b.process {
                    found.push(format!(
                        "partition {partition}: {} while {}",
                        describe(a),
                        describe(b)
                    ));
                }
            }
        }
    }
    found
}
