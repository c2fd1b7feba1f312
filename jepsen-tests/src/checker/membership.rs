//! Consumer-group ownership as the members saw it: per member and partition, the intervals in
//! which the member owned the partition while it was live, and the records it delivered then.
//!
//! The promise checked against (the proto's consumer-group comment): a member owns a partition
//! from the join or heartbeat answer that lists it until it stops consuming it, which it does
//! when an answer no longer lists it, when it joins again or leaves, and at the latest once its
//! session timeout has passed since it sent its last answered heartbeat (the coordinator saw
//! that heartbeat no earlier, so it expires the member no earlier). Times are the history's:
//! invocations are recorded before the request is sent and completions after the answer
//! arrived, so each interval here is at least as long as the real one.

use std::collections::BTreeMap;

use super::Analysis;
use crate::history::Kind;

/// One member's ownership of one partition.
#[derive(Clone, Debug)]
pub struct Tenure {
    /// Client process.
    pub process: u64,
    /// Member id.
    pub member: String,
    /// Generation of the answer that gave it.
    pub generation: u64,
    /// The partition.
    pub partition: u32,
    /// From the answer that gave it.
    pub start_ns: u64,
    /// Until the member let it go or stopped being live.
    pub end_ns: u64,
    /// Records delivered meanwhile: (delivery time, first offset, last offset) per poll.
    pub deliveries: Vec<(u64, u64, u64)>,
}

/// What happens to a member, in its time order.
enum Event {
    /// It sends a join or leaves: it gives up everything.
    GiveUp,
    /// An answer (index in `heartbeats`).
    Answer(usize),
}

/// Every tenure of every member, with the deliveries inside it. Deliveries outside every tenure
/// of their member are not counted: only what live owners delivered is promised exclusive.
pub fn tenures(analysis: &Analysis) -> Vec<Tenure> {
    let mut events: BTreeMap<u64, Vec<(u64, Event)>> = BTreeMap::new();
    for (index, heartbeat) in analysis.heartbeats.iter().enumerate() {
        let member = events.entry(heartbeat.process).or_default();
        if heartbeat.join {
            member.push((heartbeat.invoked_ns, Event::GiveUp));
        }
        if heartbeat.outcome == Kind::Ok {
            member.push((heartbeat.completed_ns, Event::Answer(index)));
        }
    }
    for (process, at) in &analysis.leaves {
        if let Some(member) = events.get_mut(process) {
            member.push((*at, Event::GiveUp));
        }
    }
    let mut tenures = Vec::new();
    for (_, mut member) in events {
        member.sort_by_key(|(at, _)| *at);
        tenures.extend(member_tenures(analysis, &member));
    }
    for tenure in &mut tenures {
        for poll in analysis
            .polls
            .iter()
            .filter(|p| p.process == tenure.process)
        {
            if poll.completed_ns < tenure.start_ns || poll.completed_ns >= tenure.end_ns {
                continue;
            }
            let offsets = poll
                .reads
                .iter()
                .filter(|(partition, _, _)| *partition == tenure.partition)
                .map(|(_, offset, _)| *offset);
            if let (Some(first), Some(last)) = (offsets.clone().min(), offsets.max()) {
                tenure.deliveries.push((poll.completed_ns, first, last));
            }
        }
    }
    tenures
}

/// One member's tenures, from its events in time order.
fn member_tenures(analysis: &Analysis, events: &[(u64, Event)]) -> Vec<Tenure> {
    let mut done = Vec::new();
    let mut held: BTreeMap<u32, Tenure> = BTreeMap::new();
    let mut live_until_ns = 0u64;
    for (at, event) in events {
        if live_until_ns <= *at {
            close_all(&mut held, &mut done, live_until_ns);
        }
        match event {
            Event::GiveUp => close_all(&mut held, &mut done, *at),
            Event::Answer(index) => {
                let answer = &analysis.heartbeats[*index];
                live_until_ns = answer
                    .invoked_ns
                    .saturating_add(answer.session_timeout_ms.saturating_mul(1_000_000));
                if live_until_ns <= *at {
                    // Answered too late to be live: the member must not use it.
                    continue;
                }
                let released: Vec<u32> = held
                    .keys()
                    .filter(|p| !answer.assignment.contains(p))
                    .copied()
                    .collect();
                for partition in released {
                    if let Some(mut tenure) = held.remove(&partition) {
                        tenure.end_ns = *at;
                        done.push(tenure);
                    }
                }
                for partition in &answer.assignment {
                    held.entry(*partition).or_insert_with(|| Tenure {
                        process: answer.process,
                        member: answer.member.clone(),
                        generation: answer.generation,
                        partition: *partition,
                        start_ns: *at,
                        end_ns: u64::MAX,
                        deliveries: Vec::new(),
                    });
                }
            }
        }
    }
    close_all(&mut held, &mut done, live_until_ns);
    done
}

fn close_all(held: &mut BTreeMap<u32, Tenure>, done: &mut Vec<Tenure>, at_ns: u64) {
    for (_, mut tenure) in std::mem::take(held) {
        tenure.end_ns = at_ns.max(tenure.start_ns);
        done.push(tenure);
    }
}
