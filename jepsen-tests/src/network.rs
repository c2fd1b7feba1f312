//! Network partitions between node processes, made with iptables on the loopback interface.
//!
//! Every node of a run listens on its own loopback address (`127.a.b.<id>`, `a.b` random per
//! run) and opens its peer connections from it, so a DROP rule matching source and destination
//! cuts exactly one direction of one link — traffic really stops, as a pulled cable would, and
//! connections hang rather than being refused. Clients connect from 127.0.0.1 and are never cut.
//! Rules carry a comment naming the run, so a crashed harness leaves rules that only ever match
//! its own (random) addresses, and `heal` removes what this run added.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

/// Why the network could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// `iptables` is missing or not permitted.
    #[error("partitions need root and iptables (apt-get install -y iptables): `iptables {args}` failed: {detail}")]
    Iptables {
        /// The arguments that failed.
        args: String,
        /// What iptables or the OS said.
        detail: String,
    },
}

/// The set of cut links of one run, applied with iptables.
pub struct Network {
    tag: String,
    addresses: Vec<(u64, Ipv4Addr)>,
    cut: BTreeSet<(u64, u64)>,
}

fn iptables(args: &[String]) -> Result<(), NetworkError> {
    let fail = |detail: String| NetworkError::Iptables {
        args: args.join(" "),
        detail,
    };
    // `-w`: wait for the xtables lock instead of failing when another run holds it.
    let output = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(fail(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}

impl Network {
    /// Control over the links between `addresses` (node id → its loopback address).
    pub fn new(tag: impl Into<String>, addresses: Vec<(u64, Ipv4Addr)>) -> Network {
        Network {
            tag: tag.into(),
            addresses,
            cut: BTreeSet::new(),
        }
    }

    /// Fails early, with the reason, when this process cannot change iptables.
    pub fn check_available() -> Result<(), NetworkError> {
        iptables(&["-L".into(), "INPUT".into(), "-n".into()])
    }

    fn address(&self, node: u64) -> Option<Ipv4Addr> {
        self.addresses
            .iter()
            .find(|(id, _)| *id == node)
            .map(|(_, ip)| *ip)
    }

    fn rule(&self, action: &str, from: Ipv4Addr, to: Ipv4Addr) -> Vec<String> {
        [
            action,
            "INPUT",
            "-s",
            &from.to_string(),
            "-d",
            &to.to_string(),
            "-m",
            "comment",
            "--comment",
            &self.tag,
            "-j",
            "DROP",
        ]
        .map(String::from)
        .to_vec()
    }

    /// Drops every packet from `from` to `to` (one direction).
    pub fn cut_one_way(&mut self, from: u64, to: u64) -> Result<(), NetworkError> {
        let (Some(source), Some(destination)) = (self.address(from), self.address(to)) else {
            return Ok(());
        };
        if from == to || self.cut.contains(&(from, to)) {
            return Ok(());
        }
        iptables(&self.rule("-I", source, destination))?;
        self.cut.insert((from, to));
        Ok(())
    }

    /// Cuts the link between `a` and `b` in both directions.
    pub fn cut(&mut self, a: u64, b: u64) -> Result<(), NetworkError> {
        self.cut_one_way(a, b)?;
        self.cut_one_way(b, a)
    }

    /// Restores every link this run cut.
    pub fn heal(&mut self) -> Result<(), NetworkError> {
        let cut: Vec<(u64, u64)> = self.cut.iter().copied().collect();
        for (from, to) in cut {
            if let (Some(source), Some(destination)) = (self.address(from), self.address(to)) {
                iptables(&self.rule("-D", source, destination))?;
            }
            self.cut.remove(&(from, to));
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Err(error) = self.heal() {
            eprintln!("warning: could not remove partition rules: {error}");
        }
    }
}
