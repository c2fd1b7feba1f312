//! The checker catches what it claims: each anomaly planted in a hand-made history is reported
//! (and only it), and a clean history passes.

use super::check;
use crate::history::Action;
use crate::history::History;
use crate::history::Kind;
use crate::history::Op;

/// Builds histories op by op with increasing timestamps.
#[derive(Default)]
struct Builder {
    ops: Vec<Op>,
    time_ns: u64,
}

impl Builder {
    fn push(&mut self, process: u64, kind: Kind, action: Action) -> &mut Self {
        self.time_ns += 10;
        self.ops.push(Op {
            process,
            kind,
            time_ns: self.time_ns,
            action,
        });
        self
    }

    /// A send of `values` that completes at once with `offsets`.
    fn send(
        &mut self,
        process: u64,
        partition: u32,
        values: &[u64],
        outcome: Kind,
        offsets: &[u64],
    ) -> &mut Self {
        self.push(
            process,
            Kind::Invoke,
            Action::Send {
                partition,
                values: values.to_vec(),
                offsets: Vec::new(),
            },
        );
        self.push(
            process,
            outcome,
            Action::Send {
                partition,
                values: values.to_vec(),
                offsets: offsets.to_vec(),
            },
        )
    }

    fn poll(&mut self, process: u64, reads: &[(u32, u64, u64)]) -> &mut Self {
        self.push(
            process,
            Kind::Invoke,
            Action::Poll {
                reads: Vec::new(),
                reset: false,
            },
        );
        self.push(
            process,
            Kind::Ok,
            Action::Poll {
                reads: reads.to_vec(),
                reset: false,
            },
        )
    }

    fn final_read(&mut self, node: u64, partition: u32, records: &[(u64, u64)]) -> &mut Self {
        self.push(
            0,
            Kind::Ok,
            Action::FinalRead {
                node,
                partition,
                records: records.to_vec(),
                target: records.last().map_or(0, |(offset, _)| offset + 1),
                reached: records.last().map_or(0, |(offset, _)| offset + 1),
                error: None,
            },
        )
    }

    fn history(&self) -> History {
        History {
            ops: self.ops.clone(),
        }
    }
}

/// A correct run: two producers, a consumer, final reads from three nodes.
fn clean() -> Builder {
    let mut b = Builder::default();
    b.send(1, 0, &[10, 11], Kind::Ok, &[0, 1])
        .send(2, 0, &[20], Kind::Ok, &[2])
        .send(2, 1, &[21], Kind::Info, &[])
        .send(1, 1, &[12], Kind::Fail, &[])
        .poll(3, &[(0, 0, 10), (0, 1, 11)])
        .poll(3, &[(0, 2, 20)])
        .send(1, 1, &[13], Kind::Ok, &[0]);
    for node in 1..=3 {
        b.final_read(node, 0, &[(0, 10), (1, 11), (2, 20)])
            .final_read(node, 1, &[(0, 13)]);
    }
    b
}

/// Runs the checker and asserts exactly `anomaly` was found.
fn assert_only(history: History, anomaly: &str) {
    let report = check(&history);
    assert!(
        !report.valid,
        "{anomaly} went unnoticed:\n{}",
        report.table()
    );
    for (name, found) in &report.anomalies {
        if *name == anomaly {
            assert!(
                found.count > 0,
                "{anomaly} not reported:\n{}",
                report.table()
            );
        } else {
            assert_eq!(
                found.count,
                0,
                "{name} reported where only {anomaly} was planted:\n{}",
                report.table()
            );
        }
    }
}

#[test]
fn a_clean_history_is_valid() {
    let report = check(&clean().history());
    assert!(report.valid, "{}", report.table());
    assert_eq!(report.stats.sends_ok, 3);
    assert_eq!(report.stats.sends_unknown, 1);
}

#[test]
fn a_value_that_reads_went_past_but_never_saw_is_a_lost_write() {
    let mut b = Builder::default();
    b.send(1, 0, &[1], Kind::Ok, &[0])
        .send(1, 0, &[2], Kind::Ok, &[1])
        .poll(2, &[(0, 1, 2)]);
    assert_only(b.history(), "lost-write");
}

#[test]
fn an_acknowledged_value_no_read_reached_is_unseen() {
    let mut b = Builder::default();
    b.send(1, 0, &[1], Kind::Ok, &[0])
        .send(1, 0, &[2], Kind::Ok, &[1])
        .poll(2, &[(0, 0, 1)]);
    assert_only(b.history(), "unseen");
}

#[test]
fn a_value_at_two_offsets_is_a_duplicate() {
    let mut b = Builder::default();
    b.send(1, 0, &[1], Kind::Ok, &[0])
        .send(1, 0, &[2], Kind::Ok, &[1]);
    b.poll(2, &[(0, 0, 1), (0, 1, 2), (0, 2, 1)]);
    assert_only(b.history(), "duplicate");
}

#[test]
fn two_values_at_one_offset_are_inconsistent_offsets() {
    let mut b = Builder::default();
    b.send(1, 0, &[1], Kind::Ok, &[0])
        .send(2, 1, &[2], Kind::Ok, &[0]);
    b.final_read(1, 0, &[(0, 1)]).final_read(1, 1, &[(0, 2)]);
    // A second reader sees value 1 at partition 1, offset 0 as well.
    b.poll(3, &[(1, 0, 1)]);
    let report = check(&b.history());
    assert!(
        report.anomalies["inconsistent-offsets"].count > 0,
        "{}",
        report.table()
    );
}

#[test]
fn reading_a_failed_send_is_an_aborted_read() {
    let mut b = Builder::default();
    b.send(1, 0, &[1], Kind::Ok, &[0])
        .send(1, 0, &[2], Kind::Fail, &[])
        .poll(2, &[(0, 0, 1), (0, 1, 2)]);
    assert_only(b.history(), "aborted-read");
}

#[test]
fn reading_what_nobody_sent_is_unexpected() {
    let mut b = Builder::default();
    b.send(1, 0, &[1], Kind::Ok, &[0])
        .poll(2, &[(0, 0, 1), (0, 1, 99)]);
    assert_only(b.history(), "unexpected");
}

#[test]
fn jumping_over_existing_offsets_between_polls_is_a_poll_skip() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2, 3], Kind::Ok, &[0, 1, 2]);
    b.poll(2, &[(0, 0, 1)])
        .poll(2, &[(0, 2, 3)])
        .poll(3, &[(0, 0, 1), (0, 1, 2), (0, 2, 3)]);
    assert_only(b.history(), "poll-skip");
}

#[test]
fn going_back_between_polls_is_a_nonmonotonic_poll() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2], Kind::Ok, &[0, 1]);
    b.poll(2, &[(0, 0, 1), (0, 1, 2)]).poll(2, &[(0, 0, 1)]);
    assert_only(b.history(), "nonmonotonic-poll");
}

#[test]
fn a_reset_poll_may_go_back() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2], Kind::Ok, &[0, 1]);
    b.poll(2, &[(0, 0, 1), (0, 1, 2)]);
    b.push(
        2,
        Kind::Invoke,
        Action::Poll {
            reads: Vec::new(),
            reset: true,
        },
    );
    b.push(
        2,
        Kind::Ok,
        Action::Poll {
            reads: vec![(0, 0, 1)],
            reset: true,
        },
    );
    assert!(check(&b.history()).valid);
}

#[test]
fn a_gap_inside_one_poll_is_an_int_poll_skip() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2, 3], Kind::Ok, &[0, 1, 2]);
    b.poll(2, &[(0, 0, 1), (0, 2, 3)]).poll(3, &[(0, 1, 2)]);
    assert_only(b.history(), "int-poll-skip");
}

#[test]
fn disorder_inside_one_poll_is_an_int_nonmonotonic_poll() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2], Kind::Ok, &[0, 1]);
    b.poll(2, &[(0, 1, 2), (0, 0, 1)]);
    assert_only(b.history(), "int-nonmonotonic-poll");
}

#[test]
fn a_later_send_landing_lower_is_a_nonmonotonic_send() {
    let mut b = Builder::default();
    // Process 1's sends land at 1 then 0; another process wrote in between, so real-time
    // order alone cannot explain it... it is also a real-time violation, so both are expected.
    b.send(1, 0, &[1], Kind::Ok, &[1])
        .send(1, 0, &[2], Kind::Ok, &[0]);
    b.poll(2, &[(0, 0, 2), (0, 1, 1)]);
    let report = check(&b.history());
    assert!(
        report.anomalies["nonmonotonic-send"].count > 0,
        "{}",
        report.table()
    );
    assert!(
        report.anomalies["realtime-order"].count > 0,
        "{}",
        report.table()
    );
}

#[test]
fn disorder_inside_one_send_is_an_int_nonmonotonic_send() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2], Kind::Ok, &[1, 0]);
    b.poll(2, &[(0, 0, 2), (0, 1, 1)]);
    assert_only(b.history(), "int-nonmonotonic-send");
}

#[test]
fn an_earlier_acknowledged_send_above_a_later_one_is_a_realtime_order_violation() {
    let mut b = Builder::default();
    b.send(1, 0, &[1], Kind::Ok, &[1])
        .send(2, 0, &[2], Kind::Ok, &[0]);
    b.poll(3, &[(0, 0, 2), (0, 1, 1)]);
    assert_only(b.history(), "realtime-order");
}

#[test]
fn final_reads_that_disagree_are_divergence() {
    let mut b = Builder::default();
    b.send(1, 0, &[1], Kind::Ok, &[0])
        .send(1, 0, &[2], Kind::Info, &[]);
    b.final_read(1, 0, &[(0, 1), (1, 2)])
        .final_read(2, 0, &[(0, 1)])
        .final_read(3, 0, &[(0, 1), (1, 7)]);
    let report = check(&b.history());
    assert!(
        report.anomalies["divergence"].count > 0,
        "{}",
        report.table()
    );
    // A lagging node (a prefix) alone is not divergence.
    let mut lagging = Builder::default();
    lagging
        .send(1, 0, &[1], Kind::Ok, &[0])
        .send(1, 0, &[2], Kind::Ok, &[1]);
    lagging
        .final_read(1, 0, &[(0, 1), (1, 2)])
        .final_read(2, 0, &[(0, 1)]);
    assert!(check(&lagging.history()).valid);
}

#[test]
fn histories_round_trip_through_json_lines() {
    let history = clean().history();
    let dir = std::env::temp_dir().join(format!("raftlog-jepsen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("history.jsonl");
    std::fs::write(&path, history.to_json_lines()).expect("write");
    let loaded = History::load(&path).expect("load");
    assert_eq!(loaded, history);
    std::fs::write(&path, "{\"process\": 1}\n").expect("write");
    let error = History::load(&path)
        .expect_err("accepted a bad line")
        .to_string();
    assert!(error.contains("line 1"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
