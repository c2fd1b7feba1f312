//! nonmonotonic-commit: a group's committed positions only move forward.

use std::collections::BTreeMap;

use super::Analysis;
use crate::history::Kind;

/// One-line definition.
pub const DEFINITION: &str = "a group's committed position of a partition went back (a commit or a read of it below a position committed or read before it began), with no explicit reset in between";

/// Per (group, partition): the highest position known committed, the operation that showed it,
/// and a count of reset events (invocations and completions), so that an operation overlapping
/// a reset is not held to what came before it.
#[derive(Clone, Copy, Default)]
struct Floor {
    position: Option<(u64, usize)>,
    resets: u64,
    resets_open: u64,
}

/// Sweeps commits and reads in time order; each successful one must be at or above the floor
/// of its invocation.
pub fn check(analysis: &Analysis) -> Vec<String> {
    let mut events: Vec<(u64, u8, usize)> = Vec::new();
    for (i, entry) in analysis.group_offsets.iter().enumerate() {
        // At one instant completions come first: they happened before the invocation.
        events.push((entry.invoked_ns, 1, i));
        if entry.completed_ns != u64::MAX {
            events.push((entry.completed_ns, 0, i));
        }
    }
    events.sort();
    let mut floors: BTreeMap<(String, u32), Floor> = BTreeMap::new();
    let mut at_invoke: BTreeMap<usize, BTreeMap<u32, Floor>> = BTreeMap::new();
    let mut found = Vec::new();
    for (_, order, i) in events {
        let entry = &analysis.group_offsets[i];
        if order == 1 {
            let partitions = partitions_of(analysis, i);
            let mut snapshot = BTreeMap::new();
            for partition in partitions {
                let floor = floors.entry((entry.group.clone(), partition)).or_default();
                snapshot.insert(partition, *floor);
                if entry.reset {
                    floor.resets += 1;
                    floor.resets_open += 1;
                }
            }
            at_invoke.insert(i, snapshot);
            continue;
        }
        let snapshot = at_invoke.remove(&i).unwrap_or_default();
        if entry.outcome != Kind::Ok {
            // A refused reset did nothing; one of unknown outcome may still act, so it stays open.
            if entry.reset && entry.outcome == Kind::Fail {
                for partition in snapshot.keys() {
                    let floor = floors.entry((entry.group.clone(), *partition)).or_default();
                    floor.resets += 1;
                    floor.resets_open = floor.resets_open.saturating_sub(1);
                }
            }
            continue;
        }
        for (partition, position) in &entry.offsets {
            let floor = floors.entry((entry.group.clone(), *partition)).or_default();
            if entry.reset {
                floor.resets += 1;
                floor.resets_open = floor.resets_open.saturating_sub(1);
                floor.position = Some((*position, i));
                continue;
            }
            let before = snapshot.get(partition).copied().unwrap_or_default();
            let undisturbed = before.resets_open == 0 && before.resets == floor.resets;
            if let Some((highest, by)) = before.position.filter(|_| undisturbed) {
                if *position < highest {
                    found.push(format!(
                        "group {} partition {partition}: {} {position} after {} {highest}",
                        entry.group,
                        what(analysis, i),
                        what(analysis, by)
                    ));
                }
            }
            if floor.position.is_none_or(|(p, _)| *position > p) {
                floor.position = Some((*position, i));
            }
        }
    }
    found
}

/// The partitions an operation concerns at its invocation: a commit's; for a read, every
/// partition of its group seen so far (its answer is not known yet).
fn partitions_of(analysis: &Analysis, i: usize) -> Vec<u32> {
    let entry = &analysis.group_offsets[i];
    if entry.commit {
        return entry.offsets.iter().map(|(p, _)| *p).collect();
    }
    let mut partitions: Vec<u32> = analysis
        .group_offsets
        .iter()
        .filter(|e| e.group == entry.group)
        .flat_map(|e| e.offsets.iter().map(|(p, _)| *p))
        .collect();
    partitions.sort_unstable();
    partitions.dedup();
    partitions
}

fn what(analysis: &Analysis, i: usize) -> String {
    let entry = &analysis.group_offsets[i];
    let kind = match (entry.commit, entry.reset) {
        (true, true) => "reset to",
        (true, false) => "commit of",
        (false, _) => "read of",
    };
    format!(
        "{kind} (process {}, member {:?}, generation {}, {:.3}..{:.3} s)",
        entry.process,
        entry.member,
        entry.generation,
        entry.invoked_ns as f64 / 1e9,
        entry.completed_ns as f64 / 1e9
    )
}
