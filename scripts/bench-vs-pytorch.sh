#!/usr/bin/env bash
# dsnn's CPU benchmarks and the PyTorch DeepShift reference, back to back on
# the same machine (the way docs/benchmarks.md compares them).
#
#   scripts/bench-vs-pytorch.sh infer   # integer / float inference (dsnn-infer)
#   scripts/bench-vs-pytorch.sh train   # training images/s (dsnn-core)
#
# PYTHON: an interpreter with torch installed (default python3);
# REFERENCE: the PyTorch reference (default ../shared/bench/pytorch-deepshift);
# BATCH: training batch size (default 128); STEPS: dsnn's timed training
# rounds (default 8); CANDLE=1 adds dsnn with candle's stock conv2d;
# BASELINE: another build's train_throughput binary (e.g. main's, copied
# aside), run with the same arguments just before this build's, for a
# before/after table from one script.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [[ "$PYTHON" == */* ]]; then PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"; fi
REFERENCE=${REFERENCE:-../shared/bench/pytorch-deepshift}
BATCH=${BATCH:-128}
STEPS=${STEPS:-8}
# PyTorch's results file (bench.py would otherwise write into the reference).
PT_OUT="$PWD/target/pytorch-bench.json"
candle_flag=--no-candle
if [[ "${CANDLE:-0}" == 1 ]]; then candle_flag=; fi
what=${1:-infer}
stamp() { date -u; uptime; }
case "$what" in
infer)
    cargo build --release -q -p dsnn-infer --example bench_infer
    stamp
    ./target/release/examples/bench_infer --iters 10 --iters-b1 100
    stamp
    (cd "$REFERENCE" && "$PYTHON" bench.py --threads 2 --train-steps 1 --warmup 2 \
        --infer-iters 10 --infer-iters-b1 100 --out "$PT_OUT")
    stamp
    ;;
train)
    cargo build --release -q -p dsnn-core --example train_throughput
    stamp
    if [[ -n "${BASELINE:-}" ]]; then
        echo "baseline: $BASELINE"
        "$BASELINE" --steps "$STEPS" --batch "$BATCH" $candle_flag
        stamp
    fi
    ./target/release/examples/train_throughput --steps "$STEPS" --batch "$BATCH" $candle_flag
    stamp
    (cd "$REFERENCE" && "$PYTHON" bench.py --threads 2 --batch "$BATCH" --train-steps 20 \
        --infer-iters 20 --infer-iters-b1 100 --out "$PT_OUT")
    stamp
    ;;
*)
    echo "usage: $0 infer|train" >&2
    exit 2
    ;;
esac
