#!/usr/bin/env bash
# Restart time of a node holding a lot of log: starts a fresh local 3-node cluster (release
# build), writes GIB GiB of 1 KiB records into a 6-partition RF-3 topic (pipelined), so every
# node holds that much, then stops node 2 (SIGTERM, or SIGKILL with KILL=1), starts it again and
# reports how long until it runs every partition replica again (its "partition replica running"
# log lines: each replica's log opened, which reads and checks its segments). The lifecycle issue's goal is at
# most 5 s with 5 GiB, which a recovery checkpoint (scanning only what was written after it)
# is to bring; without one, start-up reads and checks every byte of every segment.
#
#   benchmarks/restart.sh                 # 5 GiB per node
#   GIB=1 benchmarks/restart.sh
#   SKIP_BUILD=1 benchmarks/restart.sh    # use target/release/raftlog as it is
#   KEEP_DATA=1 benchmarks/restart.sh     # keep the nodes' logs and data afterwards
set -euo pipefail
cd "$(dirname "$0")/.."

GIB=${GIB:-5}
PARTITIONS=6
target_dir=${CARGO_TARGET_DIR:-target}
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release -p raftlog-cli >&2
fi
raftlog="$target_dir/release/raftlog"
[[ -x "$raftlog" ]] || { echo "error: $raftlog not found; build it first" >&2; exit 1; }

dir=$(mktemp -d -t raftlog-restart.XXXXXX)
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
    echo "cluster_id = \"restart-bench\""
    echo "data_dir = \"$dir/data\""
    for id in 1 2 3; do
        echo "[[nodes]]"
        echo "id = $id"
        echo "client_addr = \"127.0.0.1:$(free_port)\""
        echo "peer_addr = \"127.0.0.1:$(free_port)\""
    done
} >"$dir/cluster.toml"
addrs=$(grep client_addr "$dir/cluster.toml" | cut -d'"' -f2 | paste -sd,)

start_node() {
    "$raftlog" node --config "$dir/cluster.toml" --id "$1" >>"$dir/node-$1.log" 2>&1 &
    pids[$1 - 1]=$!
}
for id in 1 2 3; do start_node "$id"; done
now() { date +%s.%N; }
for _ in $(seq 100); do
    RAFTLOG_BOOTSTRAP=$addrs "$raftlog" cluster status >/dev/null 2>&1 && break
    sleep 0.2
done

records=$((GIB * 1024 * 1024))
echo "writing $GIB GiB ($records records of 1 KiB) to each node" >&2
RAFTLOG_BOOTSTRAP=$addrs "$raftlog" bench produce --topic restart --partitions $PARTITIONS \
    --count "$records" --batch 64 --producers $PARTITIONS --in-flight 4 --quiet >&2
du -sh "$dir/data/node-2" >&2

if [[ -n "${KILL:-}" ]]; then
    kill -9 "${pids[1]}"
    how=SIGKILL
else
    kill -TERM "${pids[1]}"
    how=SIGTERM
fi
wait "${pids[1]}" 2>/dev/null || true
# Dropped from the page cache, as after a reboot: start-up then reads the disk.
sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "(could not drop the page cache: not root)" >&2
lines_before=$(wc -l <"$dir/node-2.log")
started=$(now)
start_node 2
until (($(tail -n +"$((lines_before + 1))" "$dir/node-2.log" | grep -c "partition replica running") >= PARTITIONS)); do
    sleep 0.05
    kill -0 "${pids[1]}" 2>/dev/null || { echo "node 2 exited; its log: $dir/node-2.log" >&2; exit 1; }
done
running=$(now)
echo "after $how of node 2 holding $(du -sh "$dir/data/node-2" | cut -f1): every partition replica running again in $(echo "$running - $started" | bc) s (from exec; the page cache dropped)"
