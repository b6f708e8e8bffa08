#!/usr/bin/env bash
# Kill test of a real DSNN search: the quick start's LeNet-5 search on the
# bundled Fashion-MNIST subset with the processes executor (2 workers),
# killed with SIGKILL at random points KILLS times (default 10), resumed
# after each kill, then run to the end. Checks and prints:
#   - every trial counted once and none lost (the log's results);
#   - no orphaned `dsnn trial` process after any kill;
#   - how many trial processes were started (re-runs after kills);
#   - the run's recorded wall time against the time the sessions ran.
# Exits non-zero when a check fails. Usage:
#   scripts/kill-test.sh            # KILLS=10 SEED=1 TRIALS=16
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${KILLS:-10}"
seed="${SEED:-1}"
trials="${TRIALS:-16}"

cargo build --release --quiet
bin="$(pwd)/target/release/dsnn"
dir="$(mktemp -d /tmp/dsnn-kill-test.XXXXXX)"
trap 'pkill -9 -f "$dir" 2>/dev/null || true' EXIT
exp="$dir/kill.toml"
sed -e "s/^seed = 0/seed = $seed/" \
    -e "s/^name = \"quickstart\"/name = \"kill\"\noutput_dir = \"${dir//\//\\/}\/out\"/" \
    -e "s/^kind = \"threads\"/kind = \"processes\"/" \
    -e "s/^workers = 1/workers = 2/" \
    -e "s/^trials = 12/trials = $trials/" \
    examples/experiments/quickstart.toml > "$exp"
export RAYON_NUM_THREADS=1

sessions_s=0
orphans_total=0
rng_state="$seed"
echo "kill test: $kills kills of a $trials-trial LeNet-5 search (processes executor, 2 workers) in $dir"
printf '%-6s %-10s %-8s\n' kill "after s" orphans
for i in $(seq 1 "$kills"); do
  # A kill point between 1 and 8 s into the session (seeded).
  rng_state=$(( (rng_state * 1103515245 + 12345) % 2147483648 ))
  after=$(awk -v r="$rng_state" 'BEGIN { printf "%.2f", 1 + 7 * r / 2147483648 }')
  t0=$(date +%s.%N)
  "$bin" run "$exp" >"$dir/session-$i.log" 2>&1 &
  pid=$!
  sleep "$after"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  t1=$(date +%s.%N)
  sessions_s=$(awk -v a="$sessions_s" -v b="$t0" -v c="$t1" 'BEGIN { print a + c - b }')
  sleep 0.5
  orphans=$(pgrep -f "trial --input $dir" | wc -l || true)
  orphans_total=$((orphans_total + orphans))
  printf '%-6s %-10s %-8s\n' "$i" "$after" "$orphans"
done
t0=$(date +%s.%N)
"$bin" run "$exp" >"$dir/final.log" 2>&1
t1=$(date +%s.%N)
sessions_s=$(awk -v a="$sessions_s" -v b="$t0" -v c="$t1" 'BEGIN { print a + c - b }')

python3 - "$dir/out/kill" "$trials" "$sessions_s" "$orphans_total" <<'EOF'
import json, os, sys
run, trials, sessions_s, orphans = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
records = [json.loads(l) for l in open(os.path.join(run, "trials.jsonl")) if l.strip()]
results = [r for r in records if r["event"] == "result"]
ids = [r["report"]["id"] for r in results]
default = 2**64 - 1
optimizer_results = [i for i in ids if i != default]
started = [f for f in os.listdir(os.path.join(run, "processes")) if f.endswith(".json") and not f.endswith(".result.json")]
sessions = sum(1 for r in records if r["event"] == "session")
elapsed = max(r.get("elapsed_s", 0.0) for r in records)
failed = [r for r in results if "Failure" in r["report"]["outcome"]]
checks = {
    "every trial counted once": len(ids) == len(set(ids)),
    f"no trial lost ({trials} trials and the default)": len(optimizer_results) == trials and default in ids,
    "no orphaned trial process": orphans == 0,
    "no trial failed": not failed,
    "recorded wall time within 10% + 2 s per kill of the sessions' time":
        abs(elapsed - sessions_s) <= 0.1 * sessions_s + 2.0 * (sessions - 1),
}
print(f"sessions: {sessions}; trial processes started: {len(started)} for {len(ids)} results")
print(f"wall time: recorded {elapsed:.1f} s, sessions ran {sessions_s:.1f} s")
ok = True
for name, passed in checks.items():
    print(f"{'ok  ' if passed else 'FAIL'} {name}")
    ok &= passed
sys.exit(0 if ok else 1)
EOF
