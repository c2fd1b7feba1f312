//! The nemesis: the faults a run may inject, the shapes of network partitions (both ways and
//! one way), and a seeded schedule that applies one fault at a time and heals it. The disk
//! faults are applied by [`crate::disk`].

use rand::seq::SliceRandom;
use rand::Rng;

/// How a network partition divides the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionShape {
    /// One random node cut off from all others.
    IsolateOne,
    /// The leader of a random partition cut off from all others.
    IsolateLeader,
    /// A random minority cut off from the majority.
    Halves,
    /// Every node sees a majority, but no two nodes see the same one (Jepsen's
    /// majorities-ring). With 3 nodes that is the bridge: two nodes cannot talk to each other,
    /// both can talk to the third.
    Ring,
}

/// A fault the nemesis may inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL a node, restart it later.
    Kill,
    /// SIGSTOP a node, SIGCONT it later.
    Pause,
    /// Cut links between nodes (iptables), restore them later.
    Partition(PartitionShape),
    /// Jump the wall clocks of some nodes by up to ±5 minutes (libfaketime), reset them later.
    Clock,
    /// Drop packets in one direction only (iptables), e.g. followers → leader.
    PartitionOneWay,
    /// One node loses power: SIGKILLed, its writes since their fsync lost, restarted later.
    PowerLoss,
    /// Every node loses power at once; all restart together later.
    PowerLossAll,
    /// Bit flips or a cut tail in segment and meta files of a node of a fixed minority, while
    /// it is stopped; restarted later.
    Corrupt,
    /// A node's writes and fsyncs stop completing for a while (reads go on).
    DiskStall,
    /// A node's writes and fsyncs fail with ENOSPC for a while.
    DiskFull,
}

impl Fault {
    /// Every fault a name stands for: `kill`, `pause`, `clock`, `partition` (all shapes) or one
    /// shape: `partition-one`, `partition-leader`, `partition-halves`, `partition-ring`;
    /// `partition-oneway`; the disk faults `power-loss`, `power-loss-all`, `corrupt`,
    /// `disk-stall`, `disk-full`.
    pub fn parse(name: &str) -> Result<Vec<Fault>, String> {
        use PartitionShape::*;
        Ok(match name {
            "kill" => vec![Fault::Kill],
            "pause" => vec![Fault::Pause],
            "clock" => vec![Fault::Clock],
            "partition" => [IsolateOne, IsolateLeader, Halves, Ring]
                .map(Fault::Partition)
                .to_vec(),
            "partition-one" => vec![Fault::Partition(IsolateOne)],
            "partition-leader" => vec![Fault::Partition(IsolateLeader)],
            "partition-halves" => vec![Fault::Partition(Halves)],
            "partition-ring" => vec![Fault::Partition(Ring)],
            "partition-oneway" => vec![Fault::PartitionOneWay],
            "power-loss" => vec![Fault::PowerLoss],
            "power-loss-all" => vec![Fault::PowerLossAll],
            "corrupt" => vec![Fault::Corrupt],
            "disk-stall" => vec![Fault::DiskStall],
            "disk-full" => vec![Fault::DiskFull],
            other => {
                return Err(format!(
                    "unknown nemesis {other:?}: use kill, pause, partition, partition-one, \
                     partition-leader, partition-halves, partition-ring, partition-oneway, \
                     clock, power-loss, power-loss-all, corrupt, disk-stall, disk-full or none"
                ))
            }
        })
    }

    /// Whether the fault needs iptables.
    pub fn is_partition(self) -> bool {
        matches!(self, Fault::Partition(_) | Fault::PartitionOneWay)
    }

    /// Whether the fault needs the nodes' data dirs on the fault file system.
    pub fn is_disk(self) -> bool {
        matches!(
            self,
            Fault::PowerLoss
                | Fault::PowerLossAll
                | Fault::Corrupt
                | Fault::DiskStall
                | Fault::DiskFull
        )
    }
}

/// The directed links (`from`, `to`: packets from `from` to `to` dropped) of a one-way
/// partition, and its name: the followers' packets to the leader of a chosen partition, the
/// leader's to its followers, everything one node sends, or one direction of one link.
/// `leader` is that partition's leader, if known (else a random node stands in).
pub fn oneway_links(
    nodes: &[u64],
    leader: Option<u64>,
    rng: &mut impl Rng,
) -> (&'static str, Vec<(u64, u64)>) {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let Some(&first) = shuffled.first() else {
        return ("none", Vec::new());
    };
    let hub = leader.filter(|l| nodes.contains(l)).unwrap_or(first);
    let others: Vec<u64> = nodes.iter().copied().filter(|&n| n != hub).collect();
    match rng.random_range(0..4) {
        0 => (
            "FollowersToLeader",
            others.iter().map(|&n| (n, hub)).collect(),
        ),
        1 => (
            "LeaderToFollowers",
            others.iter().map(|&n| (hub, n)).collect(),
        ),
        2 => (
            "OneNodeOutbound",
            others
                .iter()
                .map(|&n| (first, n))
                .filter(|(a, b)| a != b)
                .collect(),
        ),
        _ => (
            "OneLink",
            shuffled
                .get(1)
                .map(|&second| vec![(first, second)])
                .unwrap_or_default(),
        ),
    }
}

/// The links (node pairs, cut in both directions) that make `shape` over `nodes`.
/// `leader` is the node to isolate for [`PartitionShape::IsolateLeader`].
pub fn partition_links(
    shape: PartitionShape,
    nodes: &[u64],
    leader: Option<u64>,
    rng: &mut impl Rng,
) -> Vec<(u64, u64)> {
    let isolate = |node: u64| -> Vec<(u64, u64)> {
        nodes
            .iter()
            .filter(|&&n| n != node)
            .map(|&n| (node, n))
            .collect()
    };
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    match shape {
        PartitionShape::IsolateOne => shuffled.first().map(|&n| isolate(n)).unwrap_or_default(),
        PartitionShape::IsolateLeader => match leader.or(shuffled.first().copied()) {
            Some(node) => isolate(node),
            None => Vec::new(),
        },
        PartitionShape::Halves => {
            let (minority, majority) = shuffled.split_at(nodes.len() / 2);
            minority
                .iter()
                .flat_map(|&a| majority.iter().map(move |&b| (a, b)))
                .collect()
        }
        PartitionShape::Ring => {
            let n = shuffled.len();
            if n < 3 {
                return Vec::new();
            }
            if n == 3 {
                return vec![(shuffled[0], shuffled[1])];
            }
            // Each node keeps the neighbours within `reach` ring steps: itself plus 2·reach
            // nodes, a majority, different for every node.
            let reach = (n / 2).div_ceil(2);
            let mut links = Vec::new();
            for i in 0..n {
                for j in i + 1..n {
                    let distance = (j - i).min(n - (j - i));
                    if distance > reach {
                        links.push((shuffled[i], shuffled[j]));
                    }
                }
            }
            links
        }
    }
}

/// Random wall-clock offsets (ms) for a random non-empty subset of `nodes`: Jepsen's clock
/// bump, up to ±5 minutes.
pub fn clock_offsets(nodes: &[u64], rng: &mut impl Rng) -> Vec<(u64, i64)> {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let count = rng.random_range(1..=shuffled.len().max(1));
    shuffled
        .into_iter()
        .take(count)
        .map(|node| {
            let magnitude = rng.random_range(100..=300_000i64);
            let offset = if rng.random_bool(0.5) {
                magnitude
            } else {
                -magnitude
            };
            (node, offset)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::SeedableRng;

    use super::*;

    /// Who each node can still reach (itself included) once `links` are cut.
    fn reachable(nodes: &[u64], links: &[(u64, u64)]) -> Vec<BTreeSet<u64>> {
        nodes
            .iter()
            .map(|&a| {
                nodes
                    .iter()
                    .copied()
                    .filter(|&b| !links.contains(&(a, b)) && !links.contains(&(b, a)))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn ring_gives_every_node_a_different_majority() {
        for n in [3u64, 5, 7] {
            let nodes: Vec<u64> = (1..=n).collect();
            let mut rng = rand::rngs::StdRng::seed_from_u64(n);
            let links = partition_links(PartitionShape::Ring, &nodes, None, &mut rng);
            assert!(!links.is_empty(), "n = {n}: nothing cut");
            let seen = reachable(&nodes, &links);
            let majority = n as usize / 2 + 1;
            for view in &seen {
                assert!(
                    view.len() >= majority,
                    "n = {n}: {view:?} is not a majority"
                );
            }
            if n >= 5 {
                let distinct: BTreeSet<_> = seen.iter().collect();
                assert_eq!(
                    distinct.len(),
                    n as usize,
                    "n = {n}: views repeat: {seen:?}"
                );
            }
        }
    }

    #[test]
    fn halves_split_a_minority_from_a_majority() {
        let nodes = [1, 2, 3, 4, 5];
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let links = partition_links(PartitionShape::Halves, &nodes, None, &mut rng);
        assert_eq!(links.len(), 6, "2 × 3 links between the sides");
        let sizes: BTreeSet<usize> = reachable(&nodes, &links).iter().map(|v| v.len()).collect();
        assert_eq!(sizes, BTreeSet::from([2, 3]));
    }

    #[test]
    fn isolating_the_leader_cuts_exactly_its_links() {
        let nodes = [1, 2, 3];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let links = partition_links(PartitionShape::IsolateLeader, &nodes, Some(2), &mut rng);
        assert_eq!(links, vec![(2, 1), (2, 3)]);
    }

    #[test]
    fn fault_names_parse_and_unknown_names_are_refused() {
        assert_eq!(Fault::parse("partition").map(|f| f.len()), Ok(4));
        assert_eq!(Fault::parse("clock"), Ok(vec![Fault::Clock]));
        assert!(Fault::parse("partitoin")
            .unwrap_err()
            .contains("unknown nemesis \"partitoin\""));
    }

    #[test]
    fn oneway_links_cut_one_direction_only() {
        let nodes = [1, 2, 3];
        let mut shapes = BTreeSet::new();
        for seed in 0..64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let (shape, links) = oneway_links(&nodes, Some(2), &mut rng);
            assert!(!links.is_empty(), "{shape}: nothing cut");
            for (a, b) in &links {
                assert_ne!(a, b);
                assert!(
                    !links.contains(&(*b, *a)),
                    "{shape}: {links:?} cuts both ways"
                );
            }
            if shape == "FollowersToLeader" {
                assert_eq!(links, vec![(1, 2), (3, 2)]);
            }
            shapes.insert(shape);
        }
        assert_eq!(shapes.len(), 4, "{shapes:?}");
    }

    #[test]
    fn disk_fault_names_parse() {
        for (name, fault) in [
            ("power-loss", Fault::PowerLoss),
            ("power-loss-all", Fault::PowerLossAll),
            ("corrupt", Fault::Corrupt),
            ("disk-stall", Fault::DiskStall),
            ("disk-full", Fault::DiskFull),
            ("partition-oneway", Fault::PartitionOneWay),
        ] {
            assert_eq!(Fault::parse(name), Ok(vec![fault]));
        }
        assert!(Fault::PowerLoss.is_disk() && !Fault::PartitionOneWay.is_disk());
        assert!(Fault::PartitionOneWay.is_partition());
    }

    #[test]
    fn clock_offsets_stay_within_five_minutes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..100 {
            let offsets = clock_offsets(&[1, 2, 3], &mut rng);
            assert!(!offsets.is_empty() && offsets.len() <= 3);
            for (_, offset) in offsets {
                assert!((100..=300_000).contains(&offset.abs()));
            }
        }
    }
}
