//! The `raftlog` command itself: config errors, and `cluster up` as the README uses it.

use std::io::BufRead;
use std::io::Write;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;

use raftlog_testkit::config::write_config;
use raftlog_testkit::ClusterSpec;

use crate::kit::RAFTLOG;

fn run_node_with_config(text: &str) -> (i32, String) {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).expect("write config");
    let output = Command::new(RAFTLOG)
        .args(["node", "--config"])
        .arg(&path)
        .args(["--id", "1"])
        .output()
        .expect("run raftlog");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    (output.status.code().unwrap_or(-1), stderr)
}

#[test]
fn malformed_config_files_name_the_key_and_exit_nonzero() {
    let base = "cluster_id = \"c\"\n[[nodes]]\nid = 1\nclient_addr = \"127.0.0.1:1\"\npeer_addr = \"127.0.0.1:2\"\n";
    let cases = [
        (format!("{base}colour = \"blue\"\n"), "colour"),
        (
            format!("{base}[raft]\nheartbeat_interval_ms = 5\n"),
            "raft.heartbeat_interval_ms",
        ),
        (
            base.replace("127.0.0.1:1", "nowhere"),
            "nodes[0].client_addr",
        ),
        ("this is not toml".to_owned(), "bad.toml"),
    ];
    for (text, key) in cases {
        let (code, stderr) = run_node_with_config(&text);
        assert_ne!(code, 0, "accepted: {text}");
        assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(key),
            "{key} not named in: {stderr}"
        );
    }
}

#[test]
fn a_node_whose_port_is_taken_says_which_in_one_line() {
    for (what, taken) in [("client_addr", 0), ("peer_addr", 1)] {
        let ip = raftlog_testkit::config::cluster_ip();
        let holders: Vec<std::net::TcpListener> = (0..2)
            .map(|_| std::net::TcpListener::bind((ip, 0)).expect("bind"))
            .collect();
        let addrs: Vec<String> = holders
            .iter()
            .map(|l| l.local_addr().expect("addr").to_string())
            .collect();
        // Only the `taken` one stays bound; the other is free again for the node.
        let free = std::net::TcpListener::bind((ip, 0)).expect("bind");
        let other = free.local_addr().expect("addr").to_string();
        drop(free);
        let (client, peer) = if taken == 0 {
            (&addrs[0], &other)
        } else {
            (&other, &addrs[1])
        };
        let dir = TempDir::new().expect("temp dir");
        let config = format!(
            "cluster_id = \"c\"\ndata_dir = \"{}\"\n[[nodes]]\nid = 1\nclient_addr = \"{client}\"\npeer_addr = \"{peer}\"\n",
            dir.path().join("data").display()
        );
        let (code, stderr) = run_node_with_config(&config);
        assert_ne!(code, 0, "started with {what} taken");
        assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
        let address = if taken == 0 { client } else { peer };
        assert!(
            stderr.contains(&format!("cannot listen on {address} ({what})"))
                && stderr.contains("in use"),
            "{what} not named in: {stderr}"
        );
        drop(holders);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_up_starts_a_working_cluster_and_stops_it_on_sigterm() {
    let dir = TempDir::new().expect("temp dir");
    let generated = write_config(dir.path(), &ClusterSpec::new(3)).expect("write config");
    let config = generated.path;
    let data_dir = dir.path().join("up-data");
    let mut up = StopClusterOnDrop {
        pids_file: data_dir.join("cluster.pids"),
        up: Command::new(RAFTLOG)
            .args(["cluster", "up", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cluster up"),
    };
    let mut stdout = std::io::BufReader::new(up.up.stdout.take().expect("stdout"));
    let mut banner = String::new();
    let mut line = String::new();
    while stdout.read_line(&mut line).expect("read") > 0 && !line.contains("is up") {
        banner.push_str(&line);
        line.clear();
    }
    assert!(line.contains("is up"), "cluster up printed: {banner}");

    let bootstrap: Vec<String> = generated
        .nodes
        .iter()
        .map(|n| n.client_addr.clone())
        .collect();
    let run = |args: &[&str], input: Option<&str>| {
        let mut child = Command::new(RAFTLOG)
            .arg("--bootstrap")
            .arg(bootstrap.join(","))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run raftlog");
        let mut stdin = child.stdin.take().expect("stdin");
        if let Some(input) = input {
            stdin.write_all(input.as_bytes()).expect("write stdin");
        }
        drop(stdin);
        let output = child.wait_with_output().expect("wait");
        assert!(
            output.status.success(),
            "raftlog {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    run(
        &[
            "topic",
            "create",
            "tour",
            "--partitions",
            "3",
            "--replicas",
            "3",
        ],
        None,
    );
    let mut produced = false;
    for _ in 0..50 {
        let status = Command::new(RAFTLOG)
            .arg("--bootstrap")
            .arg(bootstrap.join(","))
            .args(["produce", "tour", "--partition", "0"])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut c| {
                c.stdin
                    .take()
                    .expect("stdin")
                    .write_all(b"hello\nworld\n")?;
                c.wait()
            })
            .expect("produce");
        if status.success() {
            produced = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(produced, "produce never succeeded");
    let consumed = run(&["consume", "tour", "--partition", "0"], None);
    assert_eq!(consumed, "hello\nworld\n");
    let status = run(&["cluster", "status"], None);
    assert_eq!(status.matches(" yes ").count(), 3, "{status}");

    // SIGTERM, as Ctrl-C would: every node stops and `cluster up` exits cleanly.
    // SAFETY: signals the child this test started.
    unsafe { libc_kill(up.up.id() as i32, libc::SIGTERM) };
    let exit = up.up.wait().expect("wait for cluster up");
    assert!(exit.success(), "cluster up exited with {exit}");
    for addr in generated.nodes.iter().map(|n| &n.client_addr) {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "a node still listens on {addr}"
        );
    }
}

unsafe fn libc_kill(pid: i32, signal: libc::c_int) {
    // SAFETY: the caller passes the pid of a process it started.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// `cluster up` and the nodes it started, stopped when the test ends, also when it fails
/// half-way: a `std::process::Child` is not killed on drop, and a failed run used to leave all
/// four processes behind.
struct StopClusterOnDrop {
    up: std::process::Child,
    pids_file: std::path::PathBuf,
}

impl Drop for StopClusterOnDrop {
    fn drop(&mut self) {
        if matches!(self.up.try_wait(), Ok(Some(_))) {
            return;
        }
        let node_pids: Vec<i32> = std::fs::read_to_string(&self.pids_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect();
        // SAFETY: signals the child this test started.
        unsafe { libc_kill(self.up.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if matches!(self.up.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.up.kill();
        let _ = self.up.wait();
        for pid in node_pids {
            // SAFETY: the pids `cluster up` wrote for the nodes it started for this test.
            unsafe { libc_kill(pid, libc::SIGKILL) };
        }
    }
}

/// `raftlog topic create --config`, `topic alter` and `topic describe` (text and JSON), and a
/// bad config refused in one line with a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_configs_are_set_altered_and_shown_by_the_cli() {
    let cluster = crate::kit::start(3).await;
    let bootstrap = cluster.addrs().join(",");
    let raftlog = |args: &[&str]| {
        let output = Command::new(RAFTLOG)
            .arg("--bootstrap")
            .arg(&bootstrap)
            .args(args)
            .output()
            .expect("run raftlog");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        )
    };
    let (code, _, stderr) = raftlog(&[
        "topic",
        "create",
        "configured",
        "--config",
        "retention.ms=86400000",
        "--config",
        "cleanup.policy=compact",
    ]);
    assert_eq!(code, 0, "{stderr}");

    let describe_json = || {
        let (code, stdout, stderr) =
            raftlog(&["topic", "describe", "configured", "--format", "json"]);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout).expect("one JSON object")
    };
    let described = describe_json();
    let configs = &described["configs"];
    assert_eq!(configs["retention.ms"]["value"], "86400000");
    assert_eq!(configs["retention.ms"]["source"], "topic");
    assert_eq!(configs["cleanup.policy"]["value"], "compact");
    assert_eq!(configs["retention.bytes"]["source"], "default");

    let (code, stdout, stderr) = raftlog(&[
        "topic",
        "alter",
        "configured",
        "--config",
        "retention.bytes=1048576",
        "--delete-config",
        "cleanup.policy",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.lines().any(|l| l
            .split_whitespace()
            .eq(["retention.bytes", "1048576", "topic"])),
        "{stdout}"
    );
    let configs = describe_json()["configs"].clone();
    assert_eq!(configs["retention.bytes"]["value"], "1048576");
    assert_eq!(configs["cleanup.policy"]["value"], "delete");
    assert_eq!(configs["cleanup.policy"]["source"], "default");
    let (code, stdout, _) = raftlog(&["topic", "describe", "configured"]);
    assert_eq!(code, 0);
    assert!(
        stdout.lines().any(|l| l
            .split_whitespace()
            .eq(["retention.ms", "86400000", "topic"])),
        "{stdout}"
    );

    // Bad input: a non-zero exit and one `error:` line naming the problem (clap adds a
    // `--help` hint under its own), nothing changed.
    for args in [
        vec![
            "topic",
            "alter",
            "configured",
            "--config",
            "retention.ms=-7",
        ],
        vec![
            "topic",
            "alter",
            "configured",
            "--config",
            "retention.days=1",
        ],
        vec!["topic", "alter", "configured", "--config", "retention.ms"],
        vec!["topic", "alter", "configured"],
    ] {
        let (code, _, stderr) = raftlog(&args);
        assert_ne!(code, 0, "{args:?} succeeded");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    assert_eq!(describe_json()["configs"], configs);
}
