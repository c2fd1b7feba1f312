#!/usr/bin/env bash
# Builds raftlog (release), starts a fresh local 3-node cluster on free ports in a temporary
# directory, runs the benchmark scenarios with `raftlog bench ... --json`, and writes
# benchmarks/results/<date>.md (a table), <date>.json (every report) and <date>.svg (latency by
# percentile and throughput of every scenario, drawn by `raftlog bench plot`). The cluster and its
# data are removed on exit, whatever happens. See benchmarks/README.md.
#
# Environment:
#   E2E_RATE=20000      records/s of the end-to-end scenario
#   SCENARIO_SET=retention instead of the usual scenarios, b3 without and with retention deleting
#                           segments all along (b3, b3r, b3, b3r: alternating pairs in one sitting)
#   SKIP_BUILD=1        use the binary already built
#   KEEP_DATA=1         keep the temporary cluster directory (logs and data) after the run
#   RESULTS_DIR=DIR     where to write results (default: benchmarks/results)
#   CARGO_TARGET_DIR    as for cargo; the binary is $CARGO_TARGET_DIR/release/raftlog
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS_DIR=${RESULTS_DIR:-$ROOT/benchmarks/results}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/raftlog
E2E_RATE=${E2E_RATE:-20000}

die() {
    echo "run.sh: error: $*" >&2
    exit 1
}
say() { echo "run.sh: $*" >&2; }

command -v jq >/dev/null || die "jq is required (apt-get install jq)"
command -v cargo >/dev/null || [[ ${SKIP_BUILD:-0} == 1 ]] || die "cargo is required to build raftlog"

WORK=""
UP_PID=""
STAMP=$(date +%Y-%m-%d-%H%M%S)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)

stop_cluster() {
    if [[ -n $UP_PID ]] && kill -0 "$UP_PID" 2>/dev/null; then
        # `cluster up` stops its nodes (SIGTERM, then SIGKILL after 10 s) when it gets SIGTERM.
        kill -TERM "$UP_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "$UP_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$UP_PID" 2>/dev/null || true
        wait "$UP_PID" 2>/dev/null || true
    fi
    UP_PID=""
    # Nodes outlive `cluster up` only if it was killed hard; their pids are in its pid file.
    if [[ -n $WORK && -f $WORK/data/cluster.pids ]]; then
        while read -r pid; do
            [[ $pid =~ ^[0-9]+$ ]] && kill -KILL "$pid" 2>/dev/null || true
        done <"$WORK/data/cluster.pids"
    fi
}

cleanup() {
    local status=$?
    stop_cluster
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $status -ne 0 ]]; then
            # Keep the small things worth reading after a failure; the data can be gigabytes.
            local keep="$RESULTS_DIR/failed-$STAMP"
            mkdir -p "$keep"
            cp "$WORK"/*.log "$WORK"/data/node-*.log "$WORK"/*.json "$WORK"/cluster.toml "$keep"/ 2>/dev/null || true
            say "failed; logs kept in $keep"
        fi
        if [[ ${KEEP_DATA:-0} == 1 ]]; then
            say "cluster directory kept: $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$RESULTS_DIR"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    say "building raftlog (release)"
    (cd "$ROOT" && cargo build --release -p raftlog-cli) || die "cargo build failed"
fi
[[ -x $BIN ]] || die "no raftlog binary at $BIN (build it, or set CARGO_TARGET_DIR)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/raftlog-bench.XXXXXX")

# free_port VAR: sets VAR to a port nobody listens on now. Another process may still take it
# before the node binds it; then the node exits at start-up and start_cluster tries again.
declare -A TAKEN=()
free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 40000))
        [[ -z ${TAKEN[$port]:-} ]] || continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            TAKEN[$port]=1
            printf -v "$1" '%s' "$port"
            return 0
        fi
    done
    die "found no free port on 127.0.0.1"
}

BOOTSTRAP=""
start_cluster() {
    local attempt
    for attempt in 1 2 3; do
        rm -rf "$WORK/data"
        local c1 c2 c3 p1 p2 p3 name
        for name in c1 c2 c3 p1 p2 p3; do
            free_port "$name"
        done
        # The default local cluster's settings (cluster-config/local-3.toml), on our ports.
        sed -e "s#^data_dir = .*#data_dir = \"$WORK/data\"#" \
            -e "s#127.0.0.1:7001\"#127.0.0.1:$c1\"#" -e "s#127.0.0.1:7002\"#127.0.0.1:$c2\"#" \
            -e "s#127.0.0.1:7003\"#127.0.0.1:$c3\"#" -e "s#127.0.0.1:7101\"#127.0.0.1:$p1\"#" \
            -e "s#127.0.0.1:7102\"#127.0.0.1:$p2\"#" -e "s#127.0.0.1:7103\"#127.0.0.1:$p3\"#" \
            "$ROOT/cluster-config/local-3.toml" >"$WORK/cluster.toml"
        if grep -qE '127\.0\.0\.1:7[01]0[123]"' "$WORK/cluster.toml"; then
            die "cluster-config/local-3.toml changed shape; update the port substitution in run.sh"
        fi
        BOOTSTRAP="127.0.0.1:$c1,127.0.0.1:$c2,127.0.0.1:$c3"
        say "starting a 3-node cluster in $WORK (client ports $c1 $c2 $c3), attempt $attempt"
        "$BIN" cluster up --config "$WORK/cluster.toml" --data-dir "$WORK/data" \
            >"$WORK/cluster-up.log" 2>&1 &
        UP_PID=$!
        # `cluster up` prints "is up" once the controller has a leader and every node answers,
        # or exits (non-zero) if a node dies or no leader is elected within 60 s.
        local waited=0
        while ! grep -q "is up" "$WORK/cluster-up.log"; do
            if ! kill -0 "$UP_PID" 2>/dev/null; then
                say "cluster up exited: $(tail -n 1 "$WORK/cluster-up.log")"
                UP_PID=""
                break
            fi
            sleep 0.2
            waited=$((waited + 1))
            ((waited < 450)) || { say "cluster not up after 90 s"; stop_cluster; break; }
        done
        [[ -n $UP_PID ]] || continue
        if wait_ready; then
            return 0
        fi
        stop_cluster
    done
    die "could not start a local cluster (logs: $WORK/cluster-up.log, $WORK/data/node-*.log)"
}

# Every node reachable and a controller leader, as `raftlog cluster status` reports it.
wait_ready() {
    local status
    for _ in $(seq 1 60); do
        if status=$("$BIN" --bootstrap "$BOOTSTRAP" cluster status --format json 2>/dev/null) &&
            jq -e '.controller_leader_id != null and ([.nodes[] | select(.reachable)] | length) == 3' \
                <<<"$status" >/dev/null; then
            return 0
        fi
        sleep 0.5
    done
    say "cluster status never showed 3 reachable nodes and a controller leader"
    return 1
}

# run_scenario ID "DESCRIPTION" ARGS...: runs `raftlog bench ARGS --json`, keeps its report.
SCENARIOS=()
run_scenario() {
    local id=$1 description=$2
    shift 2
    say "scenario $id: $description"
    say "  raftlog bench $*"
    local code=0
    "$BIN" --bootstrap "$BOOTSTRAP" bench "$@" --json >"$WORK/$id.json" 2> >(tee "$WORK/$id.log" >&2) || code=$?
    ((code == 0)) || die "scenario $id failed (exit $code): $(tail -n 1 "$WORK/$id.log")"
    jq -e . "$WORK/$id.json" >/dev/null || die "scenario $id printed no JSON report"
    jq -c --arg id "$id" --arg description "$description" --arg command "raftlog bench $*" \
        '{id: $id, description: $description, command: $command, report: .}' \
        "$WORK/$id.json" >"$WORK/$id.scenario.json"
    SCENARIOS+=("$WORK/$id.scenario.json")
}

# The disk's own bounds, measured where the nodes will keep their data, before they start: with
# every replica on one disk, these cap what any scenario below can reach on this machine.
say "measuring the disk under $WORK (raftlog bench disk)"
"$BIN" bench disk --dir "$WORK" --writers 3 --record-size 1024 --json --quiet >"$WORK/disk.json" ||
    die "raftlog bench disk failed"

start_cluster

COMMON=(--replicas 3 --record-size 1024)
B3=(--partitions 3 "${COMMON[@]}" --producers 6 --in-flight 1 --batch 256 --duration 20s)
if [[ ${SCENARIO_SET:-} == retention ]]; then
    # 16 MiB segments and 64 MiB kept per partition: b3 writes ~30 MB/s to each of its three
    # partitions, so retention deletes a segment about every half second on every replica.
    RETAINED=(--config segment.bytes=16777216 --config retention.bytes=67108864)
    for round in 1 2; do
        run_scenario "b3-$round" "b3 without retention (round $round)" \
            produce --topic "b3-plain-$round" "${B3[@]}"
        run_scenario "b3r-$round" "b3 with retention.bytes 64 MiB, segment.bytes 16 MiB (round $round)" \
            produce --topic "b3-retained-$round" "${B3[@]}" "${RETAINED[@]}"
    done
else
run_scenario a "one synchronous producer: batch 1, 1 in flight, 1 partition, 15 s" \
    produce --topic a-sync --partitions 1 "${COMMON[@]}" --producers 1 --in-flight 1 --batch 1 --duration 15s
run_scenario a100 "one producer at a fixed 100 records/s: batch 1, 1 in flight, 1 partition, 15 s" \
    produce --topic a-rate --partitions 1 "${COMMON[@]}" --producers 1 --in-flight 1 --batch 1 --rate 100 --duration 15s
run_scenario b "pipelined: 6 partitions, 6 producers, 4 in flight, batch 64, 20 s" \
    produce --topic b-pipelined --partitions 6 "${COMMON[@]}" --producers 6 --in-flight 4 --batch 64 --duration 20s
# Bigger requests, fewer of them: the CPU saved per request goes into records.
run_scenario b2 "pipelined, larger batches: 6 partitions, 6 producers, 2 in flight, batch 256, 20 s" \
    produce --topic b2-pipelined --partitions 6 "${COMMON[@]}" --producers 6 --in-flight 2 --batch 256 --duration 20s
# Two producers per partition, one request in flight each: ~1,500 records in flight in all,
# which keeps p99 low at over 100k records/s.
run_scenario b3 "pipelined, 2 producers per partition: 3 partitions, 6 producers, 1 in flight, batch 256, 20 s" \
    produce --topic b3-pipelined "${B3[@]}"
run_scenario c "consume everything (b) wrote, from the beginning, 1 consumer" \
    consume --topic b-pipelined --consumers 1 --duration 120s
run_scenario c3 "consume everything (b) wrote, from the beginning, 3 consumers" \
    consume --topic b-pipelined --consumers 3 --duration 120s
# 8 requests in flight per producer: a paced request slot waits for its acknowledgement, and
# with fewer slots the producers fall behind the rate whenever latency spikes.
run_scenario d "end to end at $E2E_RATE records/s: 6 partitions, 6 producers, 8 in flight, batch 16, 20 s" \
    e2e --topic d-e2e --partitions 6 "${COMMON[@]}" --producers 6 --in-flight 8 --batch 16 --rate "$E2E_RATE" --duration 20s
fi

stop_cluster

# --- Results -------------------------------------------------------------------------------
CPU_MODEL=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
MACHINE=$(jq -n --arg nproc "$(nproc)" --arg cpu "${CPU_MODEL:-unknown}" --arg kernel "$(uname -sr)" \
    --arg memory "$(free -h 2>/dev/null | awk '/^Mem:/ {print $2}')" \
    --arg load_before "$LOAD_BEFORE" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)" \
    --arg rustc "$(rustc --version 2>/dev/null || echo unknown)" \
    --arg commit "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" \
    '{nproc: ($nproc | tonumber), cpu: $cpu, kernel: $kernel, memory: $memory,
      load_average_before: $load_before, load_average_after: $load, rustc: $rustc, commit: $commit}')
jq -n --arg date "$(date -Iseconds)" --argjson machine "$MACHINE" --slurpfile disk "$WORK/disk.json" \
    '{date: $date, machine: $machine, disk: $disk[0], scenarios: [inputs]}' "${SCENARIOS[@]}" \
    >"$RESULTS_DIR/$STAMP.json"

{
    echo "# raftlog benchmarks, $(date '+%Y-%m-%d %H:%M %Z')"
    echo
    jq -r '.machine | "- machine: \(.nproc) CPUs, \(.cpu), \(.memory) RAM, \(.kernel)",
        "- build: \(.commit), \(.rustc)",
        "- load average (1, 5, 15 min) before the run: \(.load_average_before); after: \(.load_average_after)"' "$RESULTS_DIR/$STAMP.json"
    echo "- cluster: 3 local nodes (cluster-config/local-3.toml settings), replicas 3, acks all, 1 KiB records"
    jq -r '.disk | "- disk, before the cluster started (`raftlog bench disk`): fdatasync of a \(.append_bytes)-byte append" +
        " p50 \(.small_appends_alone.sync_latency_ms.p50) ms alone, \(.small_appends_together.sync_latency_ms.p50) ms" +
        " with \(.writers) at once; synced writes by \(.writers) writers " +
        ([.large_appends_together[] | "\(.mb_per_sec | round) MB/s at \(.chunk_bytes / 1024 | round) KiB"] | join(", ")) +
        ", which caps 1 KiB records at 3 replicas on this disk at " +
        ([.large_appends_together[] | "\(.records_per_sec_ceiling / 1000 | round)k"] | join(", ")) + " records/s"' \
        "$RESULTS_DIR/$STAMP.json"
    echo
    echo "| scenario | records/s | MB/s | p50 ms | p99 ms | p99.9 ms | latency of |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    # Fixed decimals, so that the columns line up: jq alone prints 4.3 for 4.30.
    jq -r 'def fixed(digits):
            if . == null then "-" else
                (if digits == 0 then 1 elif digits == 1 then 10 else 100 end) as $scale
                | (. * $scale | round) as $n
                | if digits == 0 then "\($n)"
                  else ($n % $scale | tostring) as $frac
                  | "\(($n - ($n % $scale)) / $scale)." + ("00"[0:(digits - ($frac | length))]) + $frac
                  end
            end;
        .scenarios[] | .report as $r |
        "| \(.id): \(.description) | \($r.records_per_sec | fixed(0)) | \($r.mb_per_sec | fixed(1))" +
        " | \($r.latency_ms.p50 | fixed(2)) | \($r.latency_ms.p99 | fixed(2)) | \($r.latency_ms.p999 | fixed(2))" +
        " | \({produce: "produce request", consume: "fetch", e2e: "send to seen by consumer"}[$r.mode]) |"' \
        "$RESULTS_DIR/$STAMP.json"
    echo
    jq -r '.scenarios[] | select(.report.mode == "e2e") | .report |
        "End to end: producers reached \(.produce.records_per_sec | round) of \(.rate) records/s" +
        " (produce request p50 \(.produce.latency_ms.p50) ms, p99 \(.produce.latency_ms.p99) ms);" +
        " \(.unseen) acknowledged records unseen by consumers."' "$RESULTS_DIR/$STAMP.json"
    jq -r '.scenarios[] | select(.report.mode == "consume") | .report |
        "Consume (\(.consumers) consumer(s), \(.read_mode)): \(.records) records in \(.seconds) s."' \
        "$RESULTS_DIR/$STAMP.json"
    echo
    echo "Commands (each with \`--json\`):"
    echo
    jq -r '.scenarios[] | "- \(.id): `\(.command)`"' "$RESULTS_DIR/$STAMP.json"
    echo
    echo "Anything else running on the machine (builds, other clusters) shows in these numbers."
    echo
    echo "![latency by percentile and throughput of every scenario]($STAMP.svg)"
} >"$RESULTS_DIR/$STAMP.md"
"$BIN" bench plot "$RESULTS_DIR/$STAMP.json" --output "$RESULTS_DIR/$STAMP.svg" ||
    die "could not draw $RESULTS_DIR/$STAMP.svg"

say "results: $RESULTS_DIR/$STAMP.md, $RESULTS_DIR/$STAMP.json and $RESULTS_DIR/$STAMP.svg"
cat "$RESULTS_DIR/$STAMP.md"
