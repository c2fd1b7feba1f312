//! Server reflection on the client port, as generic tools see it: Python's grpcio-reflection
//! speaks v1alpha, tonic's client and newer grpcurl speak v1. Both list the public services,
//! health and reflection, and not the internal transport, which only the peer port serves.

use std::path::PathBuf;
use std::process::Command;

use tokio_stream::StreamExt;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/reflection/reflection_lists_public_services.py"
);

/// The Python to run the script with: `RAFTLOG_TEST_PYTHON` (CI sets it to the virtualenv it
/// installs `tests/reflection/requirements.txt` into), else that virtualenv in the workspace's
/// `target/python-venv` when a developer made it, else `python3`.
fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("RAFTLOG_TEST_PYTHON") {
        return PathBuf::from(path);
    }
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/python-venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Whether `python` can import what the script needs; why not, if it cannot.
fn python_lacks_packages(python: &PathBuf) -> Option<String> {
    match Command::new(python)
        .args([
            "-c",
            "import grpc, grpc_reflection.v1alpha.reflection_pb2_grpc",
        ])
        .output()
    {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
        Err(error) => Some(format!("cannot run {}: {error}", python.display())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_reflection_lists_the_public_services_and_health_only() {
    let python = python();
    if let Some(why) = python_lacks_packages(&python) {
        // CI installs them (.ci/run); a developer without them is told, not failed.
        assert!(
            std::env::var_os("CI").is_none(),
            "{} cannot run the reflection check: {why}",
            python.display()
        );
        eprintln!(
            "skipped: {} lacks grpcio and grpcio-reflection ({why}); `pip install -r \
             crates/raftlog-cli/tests/reflection/requirements.txt` or set RAFTLOG_TEST_PYTHON",
            python.display()
        );
        return;
    }
    let cluster = crate::kit::start(1).await;
    let output = tokio::process::Command::new(&python)
        .arg(SCRIPT)
        .arg(cluster.addr(1))
        .output()
        .await
        .expect("run the reflection script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{SCRIPT} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("ok"), "{stdout}\n{stderr}");
    eprintln!("{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_lists_the_same_services() {
    let cluster = crate::kit::start(1).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.addr(1)))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1")
        .into_inner();
    let answer = answers
        .next()
        .await
        .expect("an answer")
        .expect("a response");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "raftlog.v1.Admin",
            "raftlog.v1.Fetch",
            "raftlog.v1.Groups",
            "raftlog.v1.Produce",
        ]
    );
}
