//! Where a new topic's partitions go: replicas and preferred leaders rotate over the roster.

use raftlog_types::NodeId;

/// Spreads `partitions` × `replicas` over `nodes`: partition `p` starts at node `p + offset`
/// and takes the following nodes in roster order, so replicas and preferred leaders rotate.
pub fn assign_replicas(
    nodes: &[NodeId],
    partitions: u32,
    replicas: u32,
    offset: usize,
) -> Vec<Vec<NodeId>> {
    (0..partitions as usize)
        .map(|p| {
            (0..replicas as usize)
                .map(|r| nodes[(offset + p + r) % nodes.len()])
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_rotates_leaders_and_never_repeats_a_node() {
        let assignment = assign_replicas(&[1, 2, 3], 3, 3, 0);
        assert_eq!(
            assignment,
            vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]
        );
        for replicas in assign_replicas(&[1, 2, 3, 4, 5], 10, 3, 7) {
            let mut unique = replicas.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), 3);
        }
    }
}
