//! `raftlog bench`: the modes run against a real cluster and report parseable JSON.

use std::process::Command;
use std::process::Output;

use serde_json::Value;

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
    // The spectrum climbs from the fastest sample to the slowest, which is the max.
    let spectrum: Vec<(f64, f64)> = report["latency_ms"]["spectrum"]
        .as_array()
        .unwrap_or_else(|| panic!("latency_ms.spectrum in {report}"))
        .iter()
        .filter_map(|point| Some((point["percentile"].as_f64()?, point["ms"].as_f64()?)))
        .collect();
    assert!(spectrum.len() > 5, "spectrum in {report}");
    assert!(
        spectrum
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "spectrum not ascending in {report}"
    );
    assert_eq!(spectrum.last().map(|p| p.0), Some(100.0));
    assert_eq!(
        spectrum.last().map(|p| p.1),
        report["latency_ms"]["max"].as_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_consume_reads_everything_bench_produce_wrote() {
    let cluster = crate::kit::start(3).await;
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

    // The three reports, as benchmarks/run.sh collects them, drawn as one picture.
    let dir = tempfile::tempdir().expect("temp dir");
    let results = dir.path().join("results.json");
    let scenarios: Vec<Value> = [("p", &produced), ("c", &consumed), ("e", &e2e)]
        .into_iter()
        .map(|(id, report)| serde_json::json!({"id": id, "description": id, "report": report}))
        .collect();
    std::fs::write(
        &results,
        serde_json::json!({"date": "test", "scenarios": scenarios}).to_string(),
    )
    .expect("write results");
    let plot = Command::new(RAFTLOG)
        .args(["bench", "plot"])
        .arg(&results)
        .output()
        .expect("run raftlog bench plot");
    assert!(
        plot.status.success(),
        "raftlog bench plot failed: {}",
        String::from_utf8_lossy(&plot.stderr)
    );
    let svg = std::fs::read_to_string(dir.path().join("results.svg")).expect("read the plot");
    for label in [
        "p (produce request)",
        "c (fetch)",
        "e (send to seen by a consumer)",
    ] {
        assert!(svg.contains(label), "{label} missing from the plot");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_produce_with_a_count_sends_exactly_that_many_idempotent_records() {
    let cluster = crate::kit::start(3).await;
    let bootstrap = cluster.running_addrs().join(",");

    // 1,000 records in requests of 64 from 2 producers with 2 slots each: the last requests
    // are partial, and the run must still stop at exactly 1,000.
    let produced = bench_json(
        &bootstrap,
        &[
            "produce",
            "--topic",
            "counted",
            "--partitions",
            "2",
            "--producers",
            "2",
            "--in-flight",
            "2",
            "--batch",
            "64",
            "--record-size",
            "100",
            "--idempotent",
            "--count",
            "1000",
            "--acks",
            "leader",
        ],
    );
    assert_report_shape(&produced);
    assert_eq!(produced["records"].as_u64(), Some(1000), "{produced}");
    assert_eq!(produced["idempotent"].as_bool(), Some(true), "{produced}");
    assert_eq!(produced["errors"].as_u64(), Some(0), "{produced}");
    // Leader-only durability is asked for, and a majority fsync is what every receipt reports.
    assert_eq!(produced["acks"].as_str(), Some("leader"), "{produced}");
    assert_eq!(
        produced["acks_below_majority"].as_u64(),
        Some(0),
        "{produced}"
    );

    // Each acknowledged record is stored once: the partitions hold exactly 1,000.
    let consumed = bench_json(&bootstrap, &["consume", "--topic", "counted"]);
    assert_eq!(
        consumed["stored_records"].as_u64(),
        Some(1000),
        "{consumed}"
    );
    assert_eq!(consumed["records"].as_u64(), Some(1000), "{consumed}");

    let both = raftlog_bench(
        &bootstrap,
        &["produce", "--count", "10", "--duration", "1s"],
    );
    assert!(!both.status.success(), "--count with --duration passed");
}

#[test]
fn bench_disk_measures_synced_appends_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let dir_arg = dir.path().to_str().expect("utf-8 temporary path");
    // `bench disk` needs no cluster; the bootstrap address is never dialled.
    let report = bench_json(
        "127.0.0.1:1",
        &[
            "disk",
            "--dir",
            dir_arg,
            "--duration",
            "200ms",
            "--writers",
            "2",
            "--chunk-bytes",
            "65536,131072",
        ],
    );
    for measurement in ["small_appends_alone", "small_appends_together"] {
        let measured = &report[measurement];
        assert!(
            measured["syncs"].as_u64().is_some_and(|n| n > 0),
            "{measurement} in {report}"
        );
        let p50 = measured["sync_latency_ms"]["p50"].as_f64();
        let max = measured["sync_latency_ms"]["max"].as_f64();
        assert!(
            p50.is_some_and(|p50| p50 > 0.0 && Some(p50) <= max),
            "{measurement} latency in {report}"
        );
    }
    let bandwidth = report["large_appends_together"]
        .as_array()
        .unwrap_or_else(|| panic!("large_appends_together in {report}"));
    let chunks: Vec<u64> = bandwidth
        .iter()
        .filter_map(|m| m["chunk_bytes"].as_u64())
        .collect();
    assert_eq!(chunks, [65536, 131072], "{report}");
    for measured in bandwidth {
        let mb_per_sec = measured["mb_per_sec"].as_f64().unwrap_or(0.0);
        let syncs = measured["syncs"].as_u64().unwrap_or(0);
        assert!(mb_per_sec > 0.0 && syncs > 0, "{measured}");
        // Two replicas on this disk: each 1 KiB record is written twice.
        let ceiling = measured["records_per_sec_ceiling"].as_f64().unwrap_or(0.0);
        let expected = mb_per_sec * 1e6 / 2048.0;
        assert!(
            (ceiling - expected).abs() <= expected * 0.01 + 1.0,
            "ceiling {ceiling} for {mb_per_sec} MB/s in {measured}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read the directory")
        .collect();
    assert!(left.is_empty(), "bench disk left {left:?} behind");
}

#[test]
fn bench_disk_on_a_missing_directory_or_with_no_duration_fails_with_one_line() {
    let missing = tempfile::tempdir()
        .expect("temporary directory")
        .path()
        .join("missing");
    let output = raftlog_bench(
        "127.0.0.1:1",
        &[
            "disk",
            "--dir",
            missing.to_str().expect("utf-8 path"),
            "--quiet",
        ],
    );
    assert!(!output.status.success(), "bench disk on {missing:?} passed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot create a directory in") && stderr.contains("missing"),
        "{stderr}"
    );

    let output = raftlog_bench("127.0.0.1:1", &["disk", "--duration", "0s", "--quiet"]);
    assert!(!output.status.success(), "bench disk --duration 0s passed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--duration must be longer than 0"),
        "{stderr}"
    );
}

#[test]
fn bench_disk_interrupted_removes_its_files() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let child = Command::new(RAFTLOG)
        .args(["bench", "disk", "--quiet", "--duration", "10s", "--dir"])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start raftlog bench disk");
    // Interrupt it while its writers have their files open.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let files_while_running = std::fs::read_dir(dir.path())
        .expect("read the directory")
        .count();
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -INT failed");
    let output = child
        .wait_with_output()
        .expect("wait for raftlog bench disk");
    assert_eq!(files_while_running, 1, "its scratch directory while it ran");
    assert!(
        !output.status.success(),
        "an interrupted bench disk exited 0"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read the directory")
        .collect();
    assert!(left.is_empty(), "bench disk left {left:?} behind");
}
