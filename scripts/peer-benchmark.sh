#!/usr/bin/env bash
# Peer benchmark of dsnn's optimizers (see scripts/peer-benchmark.py and
# docs/search.md). Creates a virtual environment with the peers from PyPI
# (pymoo, Optuna, SMAC3; PEER_VENV, default target/peer-venv), builds dsnn,
# runs every missing run at the lowest CPU priority (resumable: rerun to
# continue), then scores them all and writes the table into docs/search.md.
#   scripts/peer-benchmark.sh [--seeds 5] [--only optuna-tpe dsnn-tpe ...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PEER_VENV:-$root/target/peer-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pymoo==0.6.2 optuna==5.0.0 smac==2.4.1
fi
(cd "$root" && cargo build --release -q --bin dsnn)
nice -n 19 "$venv/bin/python" "$root/scripts/peer-benchmark.py" run "$@"
"$venv/bin/python" "$root/scripts/peer-benchmark.py" score --write-docs
