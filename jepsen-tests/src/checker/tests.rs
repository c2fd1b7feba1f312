//! The checker catches what it claims: each anomaly planted in a hand-made history is reported
//! (and only it), and a clean history passes.

use super::check;
use super::Verdict;
use crate::history::Action;
use crate::history::History;
use crate::history::Kind;
use crate::history::Op;

/// How a final read of the builder ended, beside its records.
struct FinalReadEnd {
    target: u64,
    log_start: u64,
    error: Option<&'static str>,
    out_of_service: bool,
}

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

    /// A final read of every record of `records`, to their end.
    fn final_read(&mut self, node: u64, partition: u32, records: &[(u64, u64)]) -> &mut Self {
        self.final_read_from(node, partition, 0, records)
    }

    /// A final read that node `node` refused: its replica is out of service.
    fn final_read_out_of_service(&mut self, node: u64, partition: u32) -> &mut Self {
        self.push_final_read(
            node,
            partition,
            &[],
            FinalReadEnd {
                target: 0,
                log_start: 0,
                error: Some("node 3's replica is out of service"),
                out_of_service: true,
            },
        )
    }

    /// A final read of a replica whose log starts at `log_start` (retention deleted the rest).
    fn final_read_from(
        &mut self,
        node: u64,
        partition: u32,
        log_start: u64,
        records: &[(u64, u64)],
    ) -> &mut Self {
        let end = records.last().map_or(log_start, |(offset, _)| offset + 1);
        self.push_final_read(
            node,
            partition,
            records,
            FinalReadEnd {
                target: end,
                log_start,
                error: None,
                out_of_service: false,
            },
        )
    }

    /// A final read that had to reach `target` (and got to the end of `records`).
    fn final_read_to(
        &mut self,
        node: u64,
        partition: u32,
        records: &[(u64, u64)],
        target: u64,
    ) -> &mut Self {
        self.push_final_read(
            node,
            partition,
            records,
            FinalReadEnd {
                target,
                log_start: 0,
                error: Some("gave up"),
                out_of_service: false,
            },
        )
    }

    /// A final read of `records`, reaching past the last of them (or the log start).
    fn push_final_read(
        &mut self,
        node: u64,
        partition: u32,
        records: &[(u64, u64)],
        end: FinalReadEnd,
    ) -> &mut Self {
        let reached = records
            .last()
            .map_or(end.log_start, |(offset, _)| offset + 1);
        self.push(
            0,
            Kind::Ok,
            Action::FinalRead {
                node,
                partition,
                records: records.to_vec(),
                target: end.target,
                reached,
                error: end.error.map(str::to_owned),
                out_of_service: end.out_of_service,
                log_start: end.log_start,
            },
        )
    }

    /// A fetch of `partition` at `offset` refused with `reason`.
    fn refused(&mut self, process: u64, partition: u32, offset: u64, reason: &str) -> &mut Self {
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
            Kind::Fail,
            Action::ConsumeError {
                partition: Some(partition),
                offset: Some(offset),
                reason: Some(reason.into()),
                message: format!("refused: {reason}"),
            },
        )
    }

    /// Lets `ns` nanoseconds pass.
    fn wait(&mut self, ns: u64) -> &mut Self {
        self.time_ns += ns;
        self
    }

    /// A group member's join (or heartbeat) answered with `generation` and `assignment`, under
    /// a session timeout of 1 ms.
    fn member_view(
        &mut self,
        process: u64,
        join: bool,
        generation: u64,
        assignment: &[u32],
    ) -> &mut Self {
        let member = format!("m{process}");
        self.push(
            process,
            Kind::Invoke,
            Action::Heartbeat {
                group: "g".into(),
                join,
                member: if join { String::new() } else { member.clone() },
                generation: 0,
                assignment: Vec::new(),
                session_timeout_ms: 1,
                reason: None,
            },
        );
        self.push(
            process,
            Kind::Ok,
            Action::Heartbeat {
                group: "g".into(),
                join,
                member,
                generation,
                assignment: assignment.to_vec(),
                session_timeout_ms: 1,
                reason: None,
            },
        )
    }

    /// A commit of group positions (an explicit reset if `reset`).
    fn commit(
        &mut self,
        process: u64,
        offsets: &[(u32, u64)],
        reset: bool,
        outcome: Kind,
    ) -> &mut Self {
        let action = Action::Commit {
            group: "g".into(),
            member: if reset {
                String::new()
            } else {
                format!("m{process}")
            },
            generation: 1,
            offsets: offsets.to_vec(),
            reset,
            reason: None,
        };
        self.push(process, Kind::Invoke, action.clone());
        self.push(process, outcome, action)
    }

    /// A read of the group's committed positions.
    fn committed(&mut self, process: u64, offsets: &[(u32, u64)]) -> &mut Self {
        self.push(
            process,
            Kind::Invoke,
            Action::CommittedOffsets {
                group: "g".into(),
                offsets: Vec::new(),
            },
        );
        self.push(
            process,
            Kind::Ok,
            Action::CommittedOffsets {
                group: "g".into(),
                offsets: offsets.to_vec(),
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
fn values_retention_deleted_are_not_lost_and_a_loss_above_the_log_start_still_is() {
    // Four values acknowledged; retention moved the log start to 2 before anyone read 0 and 1.
    let mut b = Builder::default();
    b.send(1, 0, &[1], Kind::Ok, &[0])
        .send(1, 0, &[2], Kind::Ok, &[1])
        .send(1, 0, &[3], Kind::Ok, &[2])
        .send(1, 0, &[4], Kind::Ok, &[3]);
    for node in 1..=3 {
        b.final_read_from(node, 0, 2, &[(2, 3), (3, 4)]);
    }
    let report = check(&b.history());
    assert!(report.valid, "{}", report.table());
    // Value 3 at offset 2, above the start, missing from every replica: lost.
    let mut b = Builder::default();
    b.send(1, 0, &[1], Kind::Ok, &[0])
        .send(1, 0, &[2], Kind::Ok, &[1])
        .send(1, 0, &[3], Kind::Ok, &[2])
        .send(1, 0, &[4], Kind::Ok, &[3]);
    for node in 1..=3 {
        b.final_read_from(node, 0, 2, &[(3, 4)]);
    }
    let report = check(&b.history());
    assert!(!report.valid, "{}", report.table());
    assert!(report.table().contains("lost-write"), "{}", report.table());
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
    b.final_read(1, 0, &[(0, 1), (1, 2)]);
    assert!(check(&b.history()).valid, "{}", check(&b.history()).table());
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
    // A lagging node (a prefix whose read stopped short of its target) is not divergence: the
    // run is INCOMPLETE.
    let mut lagging = Builder::default();
    lagging
        .send(1, 0, &[1], Kind::Ok, &[0])
        .send(1, 0, &[2], Kind::Ok, &[1]);
    lagging
        .final_read(1, 0, &[(0, 1), (1, 2)])
        .final_read_to(2, 0, &[(0, 1)], 2);
    let report = check(&lagging.history());
    assert_eq!(report.verdict, Verdict::Incomplete, "{}", report.table());
    assert_eq!(
        report.anomalies["divergence"].count,
        0,
        "{}",
        report.table()
    );
}

/// Final reads of partition 0 from three nodes, each holding `values` from offset 0.
fn read_to_the_end(b: &mut Builder, values: &[u64]) {
    let records: Vec<(u64, u64)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u64, *v))
        .collect();
    for node in 1..=3 {
        b.final_read(node, 0, &records);
    }
}

#[test]
fn refusing_an_offset_known_to_exist_as_out_of_range_is_a_denied_record() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2, 3], Kind::Ok, &[0, 1, 2])
        .refused(5, 0, 2, "OFFSET_OUT_OF_RANGE");
    read_to_the_end(&mut b, &[1, 2, 3]);
    assert_only(b.history(), "denied-record");
    // The end itself is a valid position too (answered empty), and a read proves existence
    // as well as an acknowledgement does.
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2], Kind::Info, &[])
        .poll(5, &[(0, 0, 1), (0, 1, 2)])
        .refused(5, 0, 2, "PARTITION_NOT_FOUND");
    read_to_the_end(&mut b, &[1, 2]);
    assert_only(b.history(), "denied-record");
}

#[test]
fn an_out_of_range_refusal_below_the_final_log_start_is_retention_not_a_denied_record() {
    let history = |refused_at: u64| {
        let mut b = Builder::default();
        b.send(1, 0, &[1, 2, 3, 4], Kind::Ok, &[0, 1, 2, 3])
            .poll(5, &[(0, 0, 1), (0, 1, 2), (0, 2, 3), (0, 3, 4)])
            .refused(5, 0, refused_at, "OFFSET_OUT_OF_RANGE");
        for node in 1..=3 {
            b.final_read_from(node, 0, 2, &[(2, 3), (3, 4)]);
        }
        b.history()
    };
    let report = check(&history(1));
    assert!(report.valid, "{}", report.table());
    assert_only(history(2), "denied-record");
}

#[test]
fn retryable_refusals_and_refusals_past_the_known_end_are_not_denied_records() {
    let mut b = Builder::default();
    // Nothing is known to exist yet.
    b.refused(5, 0, 0, "OFFSET_OUT_OF_RANGE")
        .send(1, 0, &[1, 2, 3], Kind::Ok, &[0, 1, 2])
        .refused(5, 0, 1, "NOT_LEADER")
        .refused(5, 0, 1, "NO_LEADER")
        .refused(5, 0, 2, "OFFSET_NOT_AVAILABLE")
        .refused(5, 0, 3, "TIMEOUT")
        // Past the end of what exists.
        .refused(5, 0, 7, "OFFSET_OUT_OF_RANGE");
    read_to_the_end(&mut b, &[1, 2, 3]);
    let report = check(&b.history());
    assert!(report.valid, "{}", report.table());
    assert_eq!(report.stats.poll_errors, 6);
}

#[test]
fn a_replica_not_read_to_its_end_makes_the_run_incomplete_not_valid() {
    let mut b = clean();
    b.final_read_to(4, 0, &[(0, 10)], 3);
    let report = check(&b.history());
    assert_eq!(report.verdict, Verdict::Incomplete, "{}", report.table());
    assert!(!report.valid);
    assert!(
        report.anomalies.values().all(|a| a.count == 0),
        "{}",
        report.table()
    );
    assert!(
        report.incomplete[0].contains("node 4 partition 0: the final read reached offset 1 of 3"),
        "{:?}",
        report.incomplete
    );
    assert!(report.table().contains("INCOMPLETE"), "{}", report.table());
    // A partition written to but never read at the end leaves the run incomplete as well.
    let mut b = Builder::default();
    b.send(1, 0, &[1], Kind::Ok, &[0]).poll(2, &[(0, 0, 1)]);
    let report = check(&b.history());
    assert_eq!(report.verdict, Verdict::Incomplete, "{}", report.table());
    assert_eq!(
        report.incomplete,
        vec!["partition 0: no final read".to_owned()]
    );
}

/// A replica its node refused as corrupt or lost is listed, not counted as incomplete, as long
/// as another replica of its partition was read to its end; if none was, the run is incomplete.
#[test]
fn a_replica_out_of_service_is_listed_and_its_partition_read_elsewhere() {
    let mut b = clean();
    b.final_read_out_of_service(3, 0);
    let report = check(&b.history());
    assert_eq!(report.verdict, Verdict::Valid, "{}", report.table());
    assert_eq!(
        report.out_of_service.len(),
        1,
        "{:?}",
        report.out_of_service
    );
    assert!(
        report.table().contains("out of service"),
        "{}",
        report.table()
    );

    let mut b = Builder::default();
    b.send(1, 0, &[1], Kind::Ok, &[0]).poll(2, &[(0, 0, 1)]);
    b.final_read_out_of_service(3, 0);
    let report = check(&b.history());
    assert_eq!(report.verdict, Verdict::Incomplete, "{}", report.table());
    assert_eq!(
        report.incomplete,
        vec!["partition 0: no final read".to_owned()]
    );
}

#[test]
fn a_replica_read_to_its_end_below_acknowledged_records_is_divergence() {
    // Node 2 says its log ends at 1 (its read reached its target), node 1 holds offset 1,
    // which was acknowledged: the two logs disagree although one is a prefix of the other.
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2], Kind::Ok, &[0, 1])
        .poll(2, &[(0, 0, 1), (0, 1, 2)]);
    b.final_read(1, 0, &[(0, 1), (1, 2)])
        .final_read(2, 0, &[(0, 1)]);
    assert_only(b.history(), "divergence");
}

/// A replica that caught up by snapshot during its final read had its log start move past
/// records it had not read yet, and the read stepped over them: below its final log start they
/// are deleted, not missing. One missing a record at or above its final log start diverges.
#[test]
fn records_skipped_below_a_log_start_that_moved_during_the_read_are_not_divergence() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2, 3, 4, 5, 6], Kind::Ok, &[0, 1, 2, 3, 4, 5]);
    b.final_read_from(1, 0, 2, &[(2, 3), (3, 4), (4, 5), (5, 6)])
        .final_read_from(2, 0, 4, &[(2, 3), (4, 5), (5, 6)]);
    let report = check(&b.history());
    assert_eq!(
        report.anomalies["divergence"].count,
        0,
        "{}",
        report.table()
    );

    let mut b = Builder::default();
    b.send(1, 0, &[1, 2, 3, 4, 5, 6], Kind::Ok, &[0, 1, 2, 3, 4, 5]);
    b.final_read_from(1, 0, 2, &[(2, 3), (3, 4), (4, 5), (5, 6)])
        .final_read_from(2, 0, 3, &[(2, 3), (4, 5), (5, 6)]);
    let report = check(&b.history());
    assert!(
        report.anomalies["divergence"]
            .examples
            .iter()
            .any(|e| e.contains("node 2 lacks offset 3")),
        "{}",
        report.table()
    );
}

#[test]
fn an_offset_missing_inside_a_replica_is_divergence() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2, 3], Kind::Ok, &[0, 1, 2]);
    b.final_read(1, 0, &[(0, 1), (1, 2), (2, 3)])
        .final_read(2, 0, &[(0, 1), (2, 3)]);
    let report = check(&b.history());
    let divergence = &report.anomalies["divergence"];
    assert!(
        divergence
            .examples
            .iter()
            .any(|e| e.contains("node 2 lacks offset 1")),
        "{}",
        report.table()
    );
}

#[test]
fn two_live_members_delivering_one_partition_at_once_break_group_exclusive() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2, 3, 4], Kind::Ok, &[0, 1, 2, 3]);
    // Both are told they own partition 0, and both are within their session.
    b.member_view(10, true, 1, &[0])
        .member_view(11, true, 2, &[0])
        .poll(10, &[(0, 0, 1), (0, 1, 2)])
        .poll(11, &[(0, 2, 3), (0, 3, 4)]);
    read_to_the_end(&mut b, &[1, 2, 3, 4]);
    assert_only(b.history(), "group-exclusive");
}

#[test]
fn a_partition_handed_over_by_an_answer_or_after_a_session_timeout_stays_exclusive() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2], Kind::Ok, &[0, 1])
        .send(1, 1, &[5, 6], Kind::Ok, &[0, 1]);
    // Member 10 gives partition 0 up by adopting an answer without it; 11 then gets it.
    b.member_view(10, true, 1, &[0])
        .poll(10, &[(0, 0, 1)])
        .member_view(10, false, 2, &[])
        .member_view(11, true, 2, &[0])
        .poll(11, &[(0, 1, 2)]);
    // Member 10 gets partition 1, then hears nothing for longer than its session: it is no
    // longer live, so 11 may own partition 1 although 10 was never told to let it go. What 10
    // delivers after its session ran out breaks its own contract, not the group's promise.
    b.member_view(10, false, 3, &[1])
        .poll(10, &[(1, 0, 5)])
        .wait(2_000_000)
        .member_view(11, false, 4, &[0, 1])
        .poll(11, &[(1, 0, 5), (1, 1, 6)])
        .poll(10, &[(1, 1, 6)]);
    read_to_the_end(&mut b, &[1, 2]);
    b.final_read(1, 1, &[(0, 5), (1, 6)]);
    let report = check(&b.history());
    assert!(report.valid, "{}", report.table());
    // 10 and 11 on partition 0, 10 and 11 on partition 1, and 11 on partition 0 again: its
    // session also ran out during the wait, so the answer of generation 4 starts a new tenure.
    assert_eq!(report.stats.group_tenures, 5, "{}", report.table());
}

#[test]
fn a_committed_position_going_back_is_a_nonmonotonic_commit() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2, 3], Kind::Ok, &[0, 1, 2])
        .commit(10, &[(0, 3)], false, Kind::Ok)
        .commit(11, &[(0, 1)], false, Kind::Ok);
    read_to_the_end(&mut b, &[1, 2, 3]);
    assert_only(b.history(), "nonmonotonic-commit");
    // Reading a committed position below one committed before the read began is the same.
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2, 3], Kind::Ok, &[0, 1, 2])
        .commit(10, &[(0, 3)], false, Kind::Ok)
        .committed(12, &[(0, 1)]);
    read_to_the_end(&mut b, &[1, 2, 3]);
    assert_only(b.history(), "nonmonotonic-commit");
}

#[test]
fn an_explicit_reset_may_move_a_committed_position_back() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2, 3], Kind::Ok, &[0, 1, 2])
        .commit(10, &[(0, 3)], false, Kind::Ok)
        .commit(12, &[(0, 0)], true, Kind::Ok)
        .committed(12, &[(0, 0)])
        .commit(11, &[(0, 2)], false, Kind::Ok)
        // A refused commit moved nothing.
        .commit(11, &[(0, 1)], false, Kind::Fail)
        .committed(12, &[(0, 2)]);
    read_to_the_end(&mut b, &[1, 2, 3]);
    let report = check(&b.history());
    assert!(report.valid, "{}", report.table());
}

#[test]
fn a_committed_position_past_the_log_end_is_commit_past_end() {
    let mut b = Builder::default();
    b.send(1, 0, &[1, 2, 3], Kind::Ok, &[0, 1, 2])
        .commit(10, &[(0, 3)], false, Kind::Ok)
        .commit(10, &[(0, 5)], false, Kind::Ok);
    read_to_the_end(&mut b, &[1, 2, 3]);
    assert_only(b.history(), "commit-past-end");
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
