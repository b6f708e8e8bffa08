#!/usr/bin/env bash
# Training and inference images/s of dsnn's built-in backbones on the CPU
# beside PyTorch's (the same networks, scripts/torch-reference/networks.py,
# with DeepShift's layers), float / Q / PS, network by network back to back
# (dsnn, then PyTorch) so that machine load hits both alike.
#
#   scripts/bench-backbones.sh [NETWORKS]   # default: every built-in CIFAR network
#
# PYTHON: an interpreter with torch (default python3); REFERENCE: the
# PyTorch DeepShift reference (default ../shared/bench/pytorch-deepshift);
# BATCH (default 32) and STEPS (timed steps after one warm-up, default 3).
# Images are random 3x32x32; the figures are medians of the timed steps.
# PyTorch's OpenMP threads keep their own waiting policy unless
# OMP_WAIT_POLICY is set: on a quiet machine spinning at barriers is
# PyTorch's fastest (ResNet20 training at batch 32: 392 img/s with ACTIVE
# against 220 with PASSIVE, 2026-12-07); on a machine shared with other jobs
# OMP_WAIT_POLICY=PASSIVE avoids the spinning that made it 15x slower there
# (4 vs 74 img/s at a load of 7 on 2 cores). Say which in the results.
if [[ -n "${OMP_WAIT_POLICY:-}" ]]; then export OMP_WAIT_POLICY; fi
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
REFERENCE=${REFERENCE:-../shared/bench/pytorch-deepshift}
export REFERENCE="$(cd "$REFERENCE" && pwd)"
BATCH=${BATCH:-32}
STEPS=${STEPS:-3}
NETWORKS=${1:-resnet20,resnet32,resnet44,resnet56,resnet110,resnet18,vgg11,vgg19,mobilenetv2,googlenet}
cargo build --release -q -p dsnn-core --example train_throughput --example backbone_table
echo "# $(date -u) on $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg); OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}"
echo "# batch $BATCH, $STEPS timed steps after one warm-up; dsnn = dsnn-core train_throughput, PyTorch = scripts/torch-reference/bench.py"
./target/release/examples/backbone_table
for net in ${NETWORKS//,/ }; do
    echo "## $net ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
    ./target/release/examples/train_throughput --models "$net" --batch "$BATCH" --steps "$STEPS" --no-candle 2>/dev/null | grep -v '^peak'
    "$PYTHON" scripts/torch-reference/bench.py --models "$net" --batch "$BATCH" --steps "$STEPS" --threads "$(nproc)" --header
done
echo "# done $(date -u)"
