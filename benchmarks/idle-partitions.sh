#!/usr/bin/env bash
# Many idle partitions: starts a fresh local 3-node cluster (release build), creates a topic with
# PARTITIONS partitions (default 1000, RF 3), measures the CPU the three nodes use over 20 s of
# idleness, then SIGKILLs node 1 and measures how long until every partition has a leader on
# the survivors again.
#
#   benchmarks/idle-partitions.sh              # 1000 partitions
#   PARTITIONS=200 benchmarks/idle-partitions.sh
#   SKIP_BUILD=1 benchmarks/idle-partitions.sh  # use target/release/raftlog as it is
#   KEEP_DATA=1 benchmarks/idle-partitions.sh   # keep the nodes' logs and data afterwards
set -euo pipefail
cd "$(dirname "$0")/.."

PARTITIONS=${PARTITIONS:-1000}
IDLE_SECONDS=${IDLE_SECONDS:-20}
target_dir=${CARGO_TARGET_DIR:-target}
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release -p raftlog-cli >&2
fi
raftlog="$target_dir/release/raftlog"
[[ -x "$raftlog" ]] || { echo "error: $raftlog not found; build it first" >&2; exit 1; }

dir=$(mktemp -d -t raftlog-idle.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n "${KEEP_DATA:-}" ]]; then
        echo "kept the nodes' logs and data in $dir" >&2
    else
        rm -rf "$dir"
    fi
}
trap cleanup EXIT

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        port_is_free "$port" && { echo "$port"; return; }
    done
}

{
    echo "cluster_id = \"idle-bench\""
    echo "data_dir = \"$dir/data\""
    for id in 1 2 3; do
        echo "[[nodes]]"
        echo "id = $id"
        echo "client_addr = \"127.0.0.1:$(free_port)\""
        echo "peer_addr = \"127.0.0.1:$(free_port)\""
    done
} > "$dir/cluster.toml"
addrs=$(grep client_addr "$dir/cluster.toml" | cut -d'"' -f2 | paste -sd,)
survivors=$(grep client_addr "$dir/cluster.toml" | cut -d'"' -f2 | tail -2 | paste -sd,)

for id in 1 2 3; do
    "$raftlog" node --config "$dir/cluster.toml" --id "$id" > "$dir/node-$id.log" 2>&1 &
    pids+=($!)
done

# Number of partitions whose leader is known and not `$2` (0: any), asked through `$1`.
leaders() {
    RAFTLOG_BOOTSTRAP=$1 "$raftlog" topic describe idle --format json 2>/dev/null \
        | jq --argjson down "$2" '[.partitions[] | select(.leader_id != null and .leader_id != $down)] | length' \
        2>/dev/null || echo 0
}
now() { date +%s.%N; }

for _ in $(seq 50); do
    RAFTLOG_BOOTSTRAP=$addrs "$raftlog" cluster status >/dev/null 2>&1 && break
    sleep 0.2
done
started=$(now)
RAFTLOG_BOOTSTRAP=$addrs "$raftlog" topic create idle --partitions "$PARTITIONS" --replicas 3 >&2
until [[ $(leaders "$addrs" 0) == "$PARTITIONS" ]]; do sleep 0.5; done
echo "all $PARTITIONS partitions have leaders $(echo "$(now) - $started" | bc) s after create"

sleep 5
cpu_ticks() {
    for pid in "${pids[@]}"; do awk '{print $14 + $15}' "/proc/$pid/stat"; done | paste -sd+ | bc
}
ticks_per_second=$(getconf CLK_TCK)
before=$(cpu_ticks)
sleep "$IDLE_SECONDS"
after=$(cpu_ticks)
echo "idle CPU of the 3 nodes: $(echo "scale=1; 100 * ($after - $before) / $ticks_per_second / $IDLE_SECONDS" | bc)% of one core"

kill -9 "${pids[0]}"
killed=$(now)
echo "SIGKILL of node 1 at $(date -u -d @"$killed" +%H:%M:%S.%N)" >&2
until [[ $(leaders "$survivors" 1) == "$PARTITIONS" ]]; do sleep 0.1; done
echo "after SIGKILL of node 1: every partition led by a survivor within $(echo "$(now) - $killed" | bc) s (including the polling CLI calls)"
