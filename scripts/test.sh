#!/usr/bin/env bash
# README's test command: installs what a fresh Debian machine lacks for the tests, then runs
# every test: the doc examples, and with nextest the unit and integration tests including the
# `needs-root` group (iptables partitions, a tmpfs mount). CI (.ci/run) runs it after fmt and
# clippy. Without root, `cargo nextest run --workspace` runs everything but that group.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) != 0 ]]; then
    echo "scripts/test.sh: error: the tests cut links with iptables and mount a tmpfs, which needs root; run it as root, or run \`cargo nextest run --workspace\` for every test but those" >&2
    exit 2
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi
# The storage tests mount a tiny tmpfs (util-linux `mount`); the fault-injection tests cut
# links with iptables and skew clocks with libfaketime.
missing=()
command -v mount >/dev/null || missing+=(mount)
command -v iptables >/dev/null || missing+=(iptables)
command -v faketime >/dev/null || missing+=(faketime)
# The reflection test (crates/raftlog-cli/tests/cluster/reflection.rs) asks a node what it serves
# with Python's grpcio-reflection, as a new user would. Debian packages no grpcio-reflection, so
# it goes from PyPI into a virtualenv (Debian's python3 needs python3-venv for one), and the test
# runs that virtualenv's Python, named by RAFTLOG_TEST_PYTHON.
if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3 python3-venv)
fi
if ((${#missing[@]})); then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
python_venv="$PWD/target/python-venv"
if ! "$python_venv/bin/python" -c 'import grpc, grpc_reflection' 2>/dev/null; then
    python3 -m venv "$python_venv"
    "$python_venv/bin/pip" install --quiet --disable-pip-version-check \
        -r crates/raftlog-cli/tests/reflection/requirements.txt
fi
export RAFTLOG_TEST_PYTHON="$python_venv/bin/python"

cargo test --workspace --doc --locked
cargo nextest run --workspace --locked --profile all
