#!/usr/bin/env bash
# A soak of the fault-injection harness: back-to-back `raftlog-jepsen test` runs, each on a
# fresh cluster with a random subset of every nemesis (old and new) and a seed of its own, with
# a quiet run (no faults) after every few, until the time is up. Stops at the first run that is
# not VALID and says how to replay it. Needs root (partitions, FUSE) and a release build.
#
#   scripts/soak.sh [MINUTES] [RUN_SECONDS]
#       MINUTES      total time to soak (default 60)
#       RUN_SECONDS  workload seconds per run (default 120)
#   SOAK_SEED        seed of the subset choice and of each run's seed (default: from the clock)
#   SOAK_DIR         where results go (default: target/soak/<date>)
#
# Prints one line per run (nemeses, seed, verdict, acknowledged sends) and a total at the end;
# each run's history, node logs, report.json and timeline.svg stay in SOAK_DIR/run-N.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes="${1:-60}"
run_seconds="${2:-120}"
seed="${SOAK_SEED:-$(date +%s)}"
dir="${SOAK_DIR:-target/soak/$(date -u +%Y-%m-%d-%H%M%S)}"
nemeses=(kill pause partition partition-oneway clock power-loss power-loss-all corrupt disk-stall disk-full)
# A quiet run (nemesis none) after this many faulty ones.
quiet_every=4

if [[ $(id -u) != 0 ]]; then
    echo "soak.sh: error: partitions and the fault file system need root" >&2
    exit 2
fi
cargo build --release --locked -p raftlog-cli -p raftlog-jepsen >&2
jepsen=target/release/raftlog-jepsen
mkdir -p "$dir"
RANDOM=$((seed % 32768))
echo "soak: seed $seed, $minutes min of ${run_seconds}s runs, results in $dir"

deadline=$(($(date +%s) + minutes * 60))
runs=0
sends=0
while (($(date +%s) + run_seconds < deadline)); do
    runs=$((runs + 1))
    if ((runs % (quiet_every + 1) == 0)); then
        mix=none
    else
        # Two to four distinct nemeses.
        count=$((2 + RANDOM % 3))
        mix=$(printf '%s\n' "${nemeses[@]}" | awk -v s="$RANDOM" 'BEGIN{srand(s)} {print rand() "\t" $0}' |
            sort -n | head -n "$count" | cut -f2 | paste -sd, -)
    fi
    run_seed=$((RANDOM * 32768 + RANDOM))
    results="$dir/run-$runs"
    started=$(date +%s)
    status=0
    "$jepsen" test --time-limit "$run_seconds" --nemesis "$mix" --seed "$run_seed" \
        --results "$results" >"$results.log" 2>&1 || status=$?
    read -r verdict acked < <(python3 -c 'import json,sys
try:
    r = json.load(open(sys.argv[1]))
    print(r["verdict"], r["stats"]["sends_ok"])
except Exception:
    print("none", 0)' "$results/report.json")
    sends=$((sends + acked))
    echo "run $runs: nemesis $mix, seed $run_seed, $(($(date +%s) - started)) s, verdict $verdict, $acked acknowledged sends"
    if ((status != 0)) || [[ $verdict != VALID ]]; then
        echo "soak: run $runs is not VALID (exit $status); replay: $jepsen test --time-limit $run_seconds --nemesis $mix --seed $run_seed" >&2
        echo "soak: see $results.log and $results/report.json" >&2
        exit 1
    fi
done
echo "soak: $runs runs VALID, $sends acknowledged sends, seed $seed"
