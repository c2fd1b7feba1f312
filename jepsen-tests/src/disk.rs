//! The disk faults of a run: each node's data dir is a fault file system (raftlog-faultfs, run
//! in this process) over a backing dir in the results, so the nemesis can cut a node's power
//! (its writes since their fsync are lost), corrupt its files while it is stopped, stall its
//! disk or fill it. Healing releases stalls and failures and restarts every node that is down,
//! including one that exited on its own after a failed write.
//!
//! A node refusing to start on the damage `corrupt` did is the safe outcome (it serves nothing
//! corrupt, and a majority holds every acknowledged write), but it would stay down for good, so
//! after the heal [`Disks::settle`] waits a moment: a node that exits is noted as having
//! detected the damage, gets its files back as they were before it (a repaired disk) and is
//! started again. A node that starts on the damage has to prove itself in the final reads.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use raftlog_faultfs::corrupt::SplitMix;
use raftlog_faultfs::Failure;
use raftlog_faultfs::FaultFs;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::ProcessCluster;

/// Files damaged per corruption.
const FILES_PER_CORRUPTION: usize = 2;
/// Bits flipped in one file.
const MAX_FLIPS: u64 = 3;
/// The most a truncation cuts off a file's written tail.
const MAX_CUT_BYTES: u64 = 4096;
/// How long a node restarted on damaged files is watched for refusing to start.
const SETTLE_WAIT: Duration = Duration::from_secs(3);

/// Files damaged on one node, each with its contents before the damage.
type Originals = Vec<(PathBuf, Vec<u8>)>;

/// The fault file systems of a run's nodes.
pub struct Disks {
    mounts: BTreeMap<u64, FaultFs>,
    /// The nodes `corrupt` may damage: a fixed minority, so that whatever was acknowledged
    /// stays intact on a majority however many corruptions a run has.
    corruptible: Vec<u64>,
    /// Files `corrupt` damaged, with their contents before, per node, until the node has
    /// started on them or refused to.
    damaged: Mutex<BTreeMap<u64, Originals>>,
}

/// The data dir a node of a cluster in `results` uses (the test kit's layout).
fn data_dir(results: &Path, id: u64) -> PathBuf {
    results.join("data").join(format!("node-{id}"))
}

impl Disks {
    /// Mounts a fault file system over each of `count` nodes' data dirs in `results`, before
    /// the nodes start, with backing dirs in `results/disks`.
    pub fn mount(results: &Path, count: u64, rng: &mut impl Rng) -> anyhow::Result<Disks> {
        let mut mounts = BTreeMap::new();
        for id in 1..=count {
            let backing = results.join("disks").join(format!("node-{id}"));
            let fs = FaultFs::mount(&backing, &data_dir(results, id))?;
            mounts.insert(id, fs);
        }
        let mut ids: Vec<u64> = (1..=count).collect();
        ids.shuffle(rng);
        ids.truncate(((count as usize).saturating_sub(1)) / 2);
        ids.sort_unstable();
        Ok(Disks {
            mounts,
            corruptible: ids,
            damaged: Mutex::default(),
        })
    }

    /// Fails unless every node's data dir is the mount made for it.
    pub fn check_layout(&self, cluster: &ProcessCluster) -> anyhow::Result<()> {
        for (id, fs) in &self.mounts {
            anyhow::ensure!(
                cluster.data_dir(*id) == fs.mountpoint(),
                "node {id} keeps its data in {}, not on its fault file system at {}",
                cluster.data_dir(*id).display(),
                fs.mountpoint().display()
            );
        }
        Ok(())
    }

    fn fs(&self, id: u64) -> anyhow::Result<&FaultFs> {
        self.mounts
            .get(&id)
            .ok_or_else(|| anyhow::anyhow!("node {id} has no fault file system"))
    }

    /// Cuts the power of `nodes`: each is SIGKILLed and loses what it had not fsynced. They
    /// stay down until the heal.
    pub fn power_loss(
        &self,
        cluster: &mut ProcessCluster,
        nodes: &[u64],
    ) -> anyhow::Result<String> {
        let mut label = String::new();
        for &id in nodes {
            cluster.kill(id);
        }
        for &id in nodes {
            let lost = self.fs(id)?.lose_unsynced()?;
            if !lost.removed.is_empty() {
                let removed: Vec<String> = lost
                    .removed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                eprintln!(
                    "power loss: node {id} lost entries never made durable: {}",
                    removed.join(" ")
                );
            }
            label.push_str(&format!(
                " node {id} lost {}f/{}e",
                lost.files_reverted, lost.entries_removed
            ));
        }
        Ok(label)
    }

    /// Stops one node of the corruptible minority and damages up to [`FILES_PER_CORRUPTION`]
    /// of its segment and meta files: a few bit flips in the written part, or a cut tail. It
    /// stays down until the heal. `None` when no node may be corrupted (fewer than 3 nodes).
    pub fn corrupt(
        &self,
        cluster: &mut ProcessCluster,
        rng: &mut impl Rng,
    ) -> anyhow::Result<Option<String>> {
        let Some(&id) = self
            .corruptible
            .get(rng.random_range(0..self.corruptible.len().max(1)))
        else {
            return Ok(None);
        };
        cluster.kill(id);
        let fs = self.fs(id)?;
        let mut files = Vec::new();
        collect_damageable(&fs.backing().join("groups"), &mut files);
        files.sort();
        files.shuffle(rng);
        let mut label = format!("node {id}");
        let mut split = SplitMix::new(rng.random());
        let mut originals = Vec::new();
        for path in files.iter().take(FILES_PER_CORRUPTION) {
            originals.push((path.clone(), std::fs::read(path)?));
            let name = path
                .strip_prefix(fs.backing())
                .unwrap_or(path)
                .display()
                .to_string();
            if rng.random_bool(0.5) {
                let written = raftlog_faultfs::corrupt::written_len(path)?;
                let flips = 1 + rng.random_range(0..MAX_FLIPS) as usize;
                let offsets =
                    raftlog_faultfs::corrupt::flip_bits(path, flips, Some(written), &mut split)?;
                let offsets: Vec<String> = offsets.iter().map(u64::to_string).collect();
                label.push_str(&format!(" {name} flip@{}", offsets.join(",")));
            } else {
                let new_len =
                    raftlog_faultfs::corrupt::truncate_tail(path, MAX_CUT_BYTES, &mut split)?;
                label.push_str(&format!(" {name} cut@{new_len}"));
            }
        }
        if let Ok(mut damaged) = self.damaged.lock() {
            damaged.entry(id).or_default().extend(originals);
        }
        Ok(Some(label))
    }

    /// After a heal: watches every node restarted on damaged files for [`SETTLE_WAIT`]; one
    /// that exits (it detected the damage) gets its files back and is started again. Returns
    /// a note per damaged node for the nemesis log.
    pub async fn settle(&self, cluster: &mut ProcessCluster) -> anyhow::Result<String> {
        let damaged: BTreeMap<u64, Originals> = match self.damaged.lock() {
            Ok(mut damaged) => std::mem::take(&mut *damaged),
            Err(_) => return Ok(String::new()),
        };
        let mut notes = String::new();
        for (id, originals) in damaged {
            let until = Instant::now() + SETTLE_WAIT;
            let mut exit = None;
            while exit.is_none() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(100)).await;
                exit = cluster.unexpected_exit(id);
            }
            match exit {
                Some(exit) => {
                    let reason = exit
                        .lines()
                        .rev()
                        .find(|line| line.contains("corrupt") || line.contains("error"))
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    eprintln!("corrupt: node {id} refused its damaged files: {reason}");
                    cluster.kill(id);
                    for (path, bytes) in &originals {
                        std::fs::write(path, bytes)?;
                    }
                    cluster.restart(id)?;
                    let why = if reason.contains("corrupt") {
                        "detected the damage"
                    } else {
                        "exited, not naming the damage"
                    };
                    notes.push_str(&format!(" (node {id} {why}; disk repaired)"));
                }
                None => notes.push_str(&format!(" (node {id} started on the damage)")),
            }
        }
        Ok(notes)
    }

    /// Stalls node `id`'s writes and fsyncs until the heal.
    pub fn stall(&self, id: u64) -> anyhow::Result<()> {
        self.fs(id)?.set_stall(true);
        Ok(())
    }

    /// Fails node `id`'s writes and fsyncs with ENOSPC until the heal.
    pub fn fill(&self, id: u64) -> anyhow::Result<()> {
        self.fs(id)?.set_failure(Some(Failure::Enospc));
        Ok(())
    }

    /// Releases every stall and failure.
    pub fn heal(&self) {
        for fs in self.mounts.values() {
            fs.set_stall(false);
            fs.set_failure(None);
        }
    }
}

/// Segment and meta files under `dir` (a node's `groups` dir), recursively.
fn collect_damageable(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_damageable(&path, files);
        } else if path.extension().is_some_and(|e| e == "seg" || e == "slots") {
            files.push(path);
        }
    }
}

/// Reaps every node that exited on its own (e.g. a fail-stop on a failed write), so that the
/// heal restarts it; returns their ids.
pub fn reap_exited(cluster: &mut ProcessCluster) -> Vec<u64> {
    let mut exited = Vec::new();
    for id in cluster.ids() {
        if let Some(exit) = cluster.unexpected_exit(id) {
            eprintln!("{exit}");
            cluster.kill(id);
            exited.push(id);
        }
    }
    exited
}

impl Disks {
    /// Injects the disk fault `fault` (see [`crate::nemesis::Fault::is_disk`]) on nodes chosen
    /// with `rng`, and returns its nemesis log label.
    pub fn inject(
        &self,
        fault: crate::nemesis::Fault,
        cluster: &mut ProcessCluster,
        rng: &mut impl Rng,
    ) -> anyhow::Result<String> {
        use crate::nemesis::Fault;
        let ids = cluster.ids();
        let node = ids[rng.random_range(0..ids.len())];
        Ok(match fault {
            Fault::PowerLoss => format!("PowerLoss{}", self.power_loss(cluster, &[node])?),
            Fault::PowerLossAll => format!("PowerLossAll{}", self.power_loss(cluster, &ids)?),
            Fault::Corrupt => match self.corrupt(cluster, rng)? {
                Some(label) => format!("Corrupt {label}"),
                None => "Corrupt none (no minority to corrupt)".to_string(),
            },
            Fault::DiskStall => {
                self.stall(node)?;
                format!("DiskStall node {node}")
            }
            Fault::DiskFull => {
                self.fill(node)?;
                format!("DiskFull node {node}")
            }
            other => anyhow::bail!("{other:?} is not a disk fault"),
        })
    }
}
