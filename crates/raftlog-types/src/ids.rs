//! Identifiers. Newtypes keep a group id from being passed where an offset is expected.

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

/// A node's id in the cluster. openraft requires a plain integer type here, so it is an alias.
pub type NodeId = u64;

/// A Raft group: group 0 is the controller, every partition replica set is one more group.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct GroupId(pub u64);

impl GroupId {
    /// The controller group, which holds cluster metadata.
    pub const CONTROLLER: GroupId = GroupId(0);
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The position of a record in its partition: dense, starting at 0, never reused.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Offset(pub u64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
