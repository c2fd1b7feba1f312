//! raftlog patch: `Engine::step_down`.

use std::sync::Arc;

use maplit::btreeset;
use pretty_assertions::assert_eq;

use crate::core::ServerState;
use crate::engine::testing::UTConfig;
use crate::engine::Command;
use crate::engine::Engine;
use crate::engine::LogIdList;
use crate::testing::log_id;
use crate::utime::UTime;
use crate::EffectiveMembership;
use crate::Membership;
use crate::TokioInstant;
use crate::Vote;

fn leader_of_term_2() -> Engine<UTConfig> {
    let mut eng = Engine::default();
    eng.state.enable_validation(false); // Disable validation for incomplete state
    eng.config.id = 1;
    eng.state.log_ids = LogIdList::new(vec![log_id(2, 1, 3)]);
    eng.state.membership_state.set_effective(Arc::new(EffectiveMembership::new(
        Some(log_id(1, 1, 1)),
        Membership::<u64, ()>::new(vec![btreeset! {1,2,3}], None),
    )));
    eng.state.vote = UTime::new(TokioInstant::now(), Vote::new_committed(2, 1));
    eng.testing_new_leader();
    eng.state.server_state = ServerState::Leader;
    eng.output.take_commands();
    eng
}

#[test]
fn test_step_down_keeps_the_term_and_quits_leading() -> anyhow::Result<()> {
    let mut eng = leader_of_term_2();

    eng.step_down();

    assert!(eng.leader.is_none());
    assert!(eng.candidate_ref().is_none());
    assert_eq!(Vote::new(2, 1), *eng.state.vote_ref(), "same term, uncommitted");
    assert_ne!(ServerState::Leader, eng.state.server_state);
    assert_eq!(
        vec![Command::QuitLeader, Command::RebuildReplicationStreams { targets: vec![] }],
        eng.output.take_commands()
    );

    // An older vote is refused as before.
    assert!(eng.vote_handler().update_vote(&Vote::new(1, 3)).is_err());
    // A leader of a later term is followed.
    assert!(eng.vote_handler().update_vote(&Vote::new_committed(3, 2)).is_ok());
    assert_eq!(ServerState::Follower, eng.state.server_state);
    Ok(())
}

#[test]
fn test_step_down_of_a_non_leader_does_nothing() -> anyhow::Result<()> {
    let mut eng = leader_of_term_2();
    eng.step_down();
    eng.output.take_commands();

    eng.step_down();

    assert_eq!(Vote::new(2, 1), *eng.state.vote_ref());
    assert_eq!(0, eng.output.take_commands().len());
    Ok(())
}
