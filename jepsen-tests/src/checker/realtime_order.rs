//! realtime-order.

use std::collections::HashMap;

use super::Analysis;
use crate::history::Kind;

/// One-line definition.
pub const DEFINITION: &str = "send A was acknowledged before send B was invoked, yet B got a lower offset in the same partition";

/// Sweeps events in time order, remembering the highest offset acknowledged so far per
/// partition; every send must land above what was acknowledged before it was invoked.
pub fn check(analysis: &Analysis) -> Vec<String> {
    enum Event {
        Invoke(usize),
        Ack(usize),
    }
    let mut events: Vec<(u64, u8, Event)> = Vec::new();
    for (i, send) in analysis.sends.iter().enumerate() {
        if send.outcome == Kind::Ok {
            // Acks sort before invocations at the same instant only if strictly earlier.
            events.push((send.invoked_ns, 1, Event::Invoke(i)));
            events.push((send.completed_ns, 0, Event::Ack(i)));
        }
    }
    events.sort_by_key(|(t, order, _)| (*t, *order));
    let mut acked_high: HashMap<u32, (u64, usize)> = HashMap::new();
    let mut floor_at_invoke: HashMap<usize, (u64, usize)> = HashMap::new();
    let mut found = Vec::new();
    for (_, _, event) in events {
        match event {
            Event::Invoke(i) => {
                if let Some(floor) = acked_high.get(&analysis.sends[i].partition) {
                    floor_at_invoke.insert(i, *floor);
                }
            }
            Event::Ack(i) => {
                let send = &analysis.sends[i];
                if let (Some((floor, earlier)), Some(lowest)) =
                    (floor_at_invoke.get(&i), send.offsets.iter().min())
                {
                    if lowest <= floor {
                        found.push(format!(
                            "send of {:?} landed at {}/{lowest}, below {}/{floor} acknowledged (values {:?}) before it was invoked",
                            send.values, send.partition, send.partition, analysis.sends[*earlier].values
                        ));
                    }
                }
                if let Some(highest) = send.offsets.iter().max() {
                    let entry = acked_high.entry(send.partition).or_insert((*highest, i));
                    if *highest > entry.0 {
                        *entry = (*highest, i);
                    }
                }
            }
        }
    }
    found
}
