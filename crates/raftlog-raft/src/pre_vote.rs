//! PreVote (Raft thesis, 9.6): before a replica stands for election, it asks the group's other
//! voters whether they would vote for it, and stands only where a majority would. Standing
//! raises the term, and openraft 0.9 has no PreVote of its own, so a node cut off from its
//! group (or whose followers-to-leader link alone is cut) would otherwise raise its term at
//! every election timeout and, once it is heard again, depose a leader that was working.
//!
//! Questions are batched per peer, like light heartbeats: when a node dies, the hundreds of
//! groups it led stand at once, and each survivor sends one `PreVote` call per peer, not one
//! per group. An answer changes nothing on the voter.

use std::collections::HashMap;
use std::collections::HashSet;
use std::time::Duration;

use openraft::CommittedLeaderId;
use openraft::ServerState;
use raftlog_proto::internal::GroupPreVote;
use raftlog_proto::internal::LastLogId;
use raftlog_proto::internal::PreVoteRequest;
use raftlog_types::type_config::LogId;
use raftlog_types::GroupId;
use raftlog_types::NodeId;

use crate::registry::RaftHost;
use crate::RaftGroup;

/// One group this node would stand in, and who must say yes.
struct Candidacy {
    group: GroupId,
    raft: RaftGroup,
    voters: Vec<NodeId>,
}

fn to_wire(log_id: Option<LogId>) -> Option<LastLogId> {
    log_id.map(|id| LastLogId {
        term: id.leader_id.term,
        node_id: id.leader_id.node_id,
        index: id.index,
    })
}

fn from_wire(log_id: Option<&LastLogId>) -> Option<LogId> {
    log_id.map(|id| LogId::new(CommittedLeaderId::new(id.term, id.node_id), id.index))
}

impl RaftHost {
    /// How long a candidate waits for pre-vote answers: a voter answers from memory, so this
    /// only bounds an unreachable one. Half the shortest election timeout, so that a round
    /// ends well before the group's next timeout.
    fn pre_vote_timeout(&self) -> Duration {
        Duration::from_millis(self.timing.election_timeout_min_ms / 2)
    }

    /// Of the groups due for election, those in which a majority of the voters (this node
    /// included) would grant this node's candidacy.
    pub(crate) async fn pre_vote(
        &self,
        due: Vec<(GroupId, RaftGroup)>,
    ) -> Vec<(GroupId, RaftGroup)> {
        let mut questions: HashMap<NodeId, (String, Vec<GroupPreVote>)> = HashMap::new();
        let mut candidacies = Vec::with_capacity(due.len());
        for (group, raft) in due {
            let Some(hosted) = self.hosted(group) else {
                continue;
            };
            let (term, voters) = {
                let metrics = raft.metrics();
                let metrics = metrics.borrow();
                let membership = metrics.membership_config.membership();
                let voters: Vec<NodeId> = membership.voter_ids().collect();
                for voter in &voters {
                    if *voter == self.node_id {
                        continue;
                    }
                    let Some(info) = membership.get_node(voter) else {
                        continue;
                    };
                    questions
                        .entry(*voter)
                        .or_insert_with(|| (info.peer_addr.clone(), Vec::new()))
                        .1
                        .push(GroupPreVote {
                            group_id: group.0,
                            term: metrics.current_term + 1,
                            last_log_id: to_wire(hosted.log.last_log_id()),
                        });
                }
                (metrics.current_term, voters)
            };
            tracing::debug!(group = group.0, term, "asking for pre-votes");
            candidacies.push(Candidacy {
                group,
                raft,
                voters,
            });
        }
        let timeout = self.pre_vote_timeout();
        let asks = questions.into_iter().map(|(voter, (peer_addr, groups))| {
            self.ask_pre_votes(voter, peer_addr, groups, timeout)
        });
        let answers: HashMap<NodeId, HashSet<u64>> =
            futures::future::join_all(asks).await.into_iter().collect();
        candidacies
            .into_iter()
            .filter(|candidacy| {
                let grants = candidacy
                    .voters
                    .iter()
                    .filter(|voter| {
                        **voter == self.node_id
                            || answers
                                .get(voter)
                                .is_some_and(|granted| granted.contains(&candidacy.group.0))
                    })
                    .count();
                let won = grants > candidacy.voters.len() / 2;
                if !won {
                    tracing::info!(
                        group = candidacy.group.0,
                        grants,
                        voters = candidacy.voters.len(),
                        "pre-vote refused by a majority: not standing"
                    );
                }
                won
            })
            .map(|candidacy| (candidacy.group, candidacy.raft))
            .collect()
    }

    /// One voter's pre-votes: the groups it would grant. An unreachable voter grants none; a
    /// node of an older version without the call grants all (as it would have voted before
    /// PreVote existed), so a rolling upgrade still elects leaders.
    async fn ask_pre_votes(
        &self,
        voter: NodeId,
        peer_addr: String,
        groups: Vec<GroupPreVote>,
        timeout: Duration,
    ) -> (NodeId, HashSet<u64>) {
        let Ok(mut client) = self.peers.client(&peer_addr) else {
            return (voter, HashSet::new());
        };
        let asked: Vec<u64> = groups.iter().map(|g| g.group_id).collect();
        let mut request = tonic::Request::new(PreVoteRequest {
            candidate_id: self.node_id,
            groups,
        });
        request.set_timeout(timeout);
        match client.pre_vote(request).await {
            Ok(response) => (
                voter,
                response
                    .into_inner()
                    .granted_group_ids
                    .into_iter()
                    .collect(),
            ),
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                (voter, asked.into_iter().collect())
            }
            Err(status) => {
                tracing::debug!(node = voter, %status, "pre-vote unanswered");
                (voter, HashSet::new())
            }
        }
    }

    /// Whether this replica would vote for `candidate` in the group and term of `question`:
    /// it is a voter that does not lead the group, no leader reached it within the
    /// vote-refusal window, its term is not above the asked one, and the candidate's log is at
    /// least as up to date as its own (the checks a real vote makes, without recording one).
    pub fn grants_pre_vote(&self, candidate: NodeId, question: &GroupPreVote) -> bool {
        let group = GroupId(question.group_id);
        let Some(hosted) = self.hosted(group) else {
            return false;
        };
        if self.refuses_votes(group) {
            return false;
        }
        {
            let metrics = hosted.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            let voters_know_candidate = membership.voter_ids().any(|id| id == candidate);
            if metrics.state == ServerState::Leader
                || !voters_know_candidate
                || question.term < metrics.current_term
            {
                return false;
            }
        }
        from_wire(question.last_log_id.as_ref()) >= hosted.log.last_log_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ids_cross_the_wire_unchanged() {
        for id in [
            None,
            Some(LogId::new(CommittedLeaderId::new(0, 0), 0)),
            Some(LogId::new(CommittedLeaderId::new(7, 3), 1_000)),
        ] {
            assert_eq!(from_wire(to_wire(id).as_ref()), id);
        }
        // An empty log is behind any log, even one at index 0.
        assert!(from_wire(None) < Some(LogId::new(CommittedLeaderId::new(0, 0), 0)));
    }
}
