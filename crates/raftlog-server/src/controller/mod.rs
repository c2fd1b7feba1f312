//! The controller: Raft group 0, replicated on the first nodes of the roster, holding the
//! cluster metadata (topics and the replica assignment of every partition, producer ids,
//! consumer groups' committed offsets).
//!
//! - `state`: the metadata and how each controller command changes it;
//! - `state_machine`: its openraft state machine over sled, and the watch of new versions;
//! - `offsets`: consumer groups' committed offsets, a sled key each;
//! - `placement`: where a new topic's replicas go;
//! - `proposal`: proposing a command and learning whether it was applied here;
//! - `learners`: on the controller leader, every other roster node joins as a learner.

mod learners;
mod offsets;
mod placement;
mod proposal;
mod state;
mod state_machine;

pub(crate) use learners::run_learners;
pub(crate) use offsets::GroupOffsets;
pub(crate) use placement::assign_replicas;
pub(crate) use proposal::propose;
pub(crate) use proposal::ControllerOutcome;
pub(crate) use state::ControllerState;
pub(crate) use state::PartitionMeta;
pub(crate) use state::TopicMeta;
pub use state_machine::ControllerStateMachine;
