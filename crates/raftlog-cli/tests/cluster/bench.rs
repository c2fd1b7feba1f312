//! `raftlog bench`: the modes run against a real cluster and report parseable JSON.

use std::process::Command;
use std::process::Output;

use serde_json::Value;

use crate::kit::TestCluster;
use crate::kit::RAFTLOG;

fn raftlog_bench(bootstrap: &str, args: &[&str]) -> Output {
    Command::new(RAFTLOG)
        .arg("--bootstrap")
        .arg(bootstrap)
        .arg("bench")
        .args(args)
        .output()
        .expect("run raftlog bench")
}

/// Runs a benchmark with `--json --quiet` and returns its report.
fn bench_json(bootstrap: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--json", "--quiet"]);
    let output = raftlog_bench(bootstrap, &args);
    assert!(
        output.status.success(),
        "raftlog bench {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "raftlog bench {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn assert_report_shape(report: &Value) {
    for key in ["records_per_sec", "mb_per_sec"] {
        assert!(
            report[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} in {report}"
        );
    }
    for quantile in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            report["latency_ms"][quantile].as_f64().is_some(),
            "latency_ms.{quantile} in {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_consume_reads_everything_bench_produce_wrote() {
    let cluster = TestCluster::start(3).await;
    let bootstrap = cluster.running_addrs().join(",");

    let missing = raftlog_bench(&bootstrap, &["consume", "--topic", "absent"]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success(),
        "consume of a missing topic passed"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");

    let produce = [
        "produce",
        "--topic",
        "b",
        "--partitions",
        "3",
        "--replicas",
        "3",
        "--producers",
        "3",
        "--batch",
        "16",
        "--record-size",
        "100",
        "--duration",
        "2s",
    ];
    let produced = bench_json(&bootstrap, &produce);
    assert_report_shape(&produced);
    let written = produced["records"].as_u64().expect("records");

    let consumed = bench_json(&bootstrap, &["consume", "--topic", "b", "--consumers", "2"]);
    assert_report_shape(&consumed);
    // Requests that timed out may still have been written, so more is possible; less is not.
    let read = consumed["records"].as_u64().expect("records");
    assert!(read >= written, "read {read} of {written} records");
    assert_eq!(consumed["stored_records"].as_u64(), Some(read));

    let e2e = bench_json(
        &bootstrap,
        &[
            "e2e",
            "--topic",
            "b",
            "--rate",
            "500",
            "--batch",
            "5",
            "--duration",
            "2s",
        ],
    );
    assert_report_shape(&e2e);
    assert_eq!(e2e["unseen"].as_u64(), Some(0), "{e2e}");
}
