#!/usr/bin/env bash
# The GPU check: runs on a machine with an NVIDIA GPU, its driver and the CUDA
# 13.0 libraries, with the binaries that scripts/build-cuda.sh made elsewhere
# (no Rust toolchain needed here). See docs/gpu.md.
#
#   scripts/gpu-check.sh [extra gpu_check arguments]
#
# 1. `dsnn train --device auto` must pick the GPU (and train a short epoch);
#    its weights are exported and dsnn-infer's integer GPU kernels must
#    classify the test images exactly as its CPU engine does;
# 2. gpu_check: every CUDA kernel against the CPU path (grouped/depthwise
#    convolution and general max pooling included), training-loss agreement
#    CPU vs GPU (LeNet-5, ResNet20, MobileNetV2, GoogLeNet; float, Q, PS),
#    throughput at batch 128 and NVML energy per image (LeNet-5, ResNet20);
# 3. the PyTorch reference (bench.py and energy_gpu.py) on the same card;
# 4. a side-by-side table: ResNet20 train img/s and inference mJ/image.
#
# Environment (all optional):
#   DSNN_CUDA_DIST    folder with dsnn-cuda.tar.xz (default target/cuda-dist)
#   DSNN_CUDA_BIN     where the binaries are unpacked (default target/cuda-bin)
#   DSNN_TORCH_BENCH  the PyTorch reference folder (default: the first of
#                     shared/bench/pytorch-deepshift, scratch/pytorch-deepshift,
#                     ../shared/bench/pytorch-deepshift)
#   OUT               where logs and JSON go (default target/gpu-check)
#   CUDA_LIB          CUDA libraries (default /usr/local/cuda-13.0/targets/x86_64-linux/lib)
#   SKIP_TORCH=1      leave out the PyTorch reference
#   GPU_CHECK_TIMEOUT seconds allowed for gpu_check (default 360)
# Every step has a time limit, so that the logs in $OUT come back even when
# one hangs; the whole script takes about 5 minutes on an H100 (estimate).
set -uo pipefail
cd "$(dirname "$0")/.."

dist="${DSNN_CUDA_DIST:-target/cuda-dist}"
out="${OUT:-target/gpu-check}"
mkdir -p "$out"
cuda_lib="${CUDA_LIB:-/usr/local/cuda-13.0/targets/x86_64-linux/lib}"
export LD_LIBRARY_PATH="$cuda_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# candle JIT-compiles its PTX on the first CUDA call of a process (about 25 s
# on an H100): keep the driver's cache large enough to hold it.
export CUDA_CACHE_MAXSIZE="${CUDA_CACHE_MAXSIZE:-4294967296}"
# The debug lines of the two cuda modules name the PTX variant each loads.
export RUST_LOG="${RUST_LOG:-warn,dsnn_core::cuda=debug,dsnn_infer::cuda=debug}"

bin="${DSNN_CUDA_BIN:-target/cuda-bin}"
if [ ! -f "$dist/dsnn-cuda.tar.xz" ]; then
  echo "error: $dist/dsnn-cuda.tar.xz is missing: build it with scripts/build-cuda.sh (on any x86-64 Linux machine) and carry $dist here" >&2
  exit 2
fi
mkdir -p "$bin"
tar -C "$bin" -xJf "$dist/dsnn-cuda.tar.xz"

echo "== GPU"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,power.limit --format=csv,noheader || true
status=0

echo "== dsnn train --device auto (must choose the GPU)"
timeout 90 "$bin/dsnn" train --device auto --dataset fashion-mnist --data-dir data/fashion-mnist-small \
  --shift-type ps --epochs 1 --batch-size 128 --save "$out/lenet-ps.safetensors" 2>&1 | tee "$out/train-auto.log"
if ! grep -q "device: CUDA device 0" "$out/train-auto.log"; then
  echo "FAIL: --device auto did not choose the GPU" >&2
  status=1
fi
# Which of the embedded PTX variants the GPU loaded (dsnn-kernel-build::select_ptx).
grep -o "loading the compute_[0-9a-z]* PTX[a-z_ ]*" "$out/train-auto.log" | sort -u || \
  echo "(no PTX selection line in the log: RUST_LOG=$RUST_LOG)"

echo "== integer inference: dsnn-infer's GPU kernels against its CPU engine"
# The same exported model on both; the logits are specified bit for bit, so
# the accuracy lines must be identical.
if timeout 60 "$bin/dsnn" export "$out/lenet-ps.safetensors" -o "$out/lenet-ps.dsnnint" 2>&1 | tee "$out/int-export.log"; then
  for dev in cpu cuda:0; do
    timeout 120 "$bin/dsnn" infer "$out/lenet-ps.dsnnint" --dataset fashion-mnist \
      --data-dir data/fashion-mnist-small --latency-images 100 --device "$dev" \
      >"$out/int-infer-$dev.txt" 2>"$out/int-infer-$dev.log"
    echo "$dev: $(cat "$out/int-infer-$dev.txt")"
  done
  if [ "$(cut -d';' -f1 "$out/int-infer-cpu.txt")" != "$(cut -d';' -f1 "$out/int-infer-cuda:0.txt")" ] \
    || ! grep -q "accuracy" "$out/int-infer-cuda:0.txt"; then
    echo "FAIL: integer inference on the GPU differs from the CPU engine (logs in $out/int-infer-*.log)" >&2
    status=1
  fi
else
  echo "FAIL: dsnn export of the trained LeNet-5 failed" >&2
  status=1
fi

echo "== gpu_check"
# MobileNetV2 and GoogLeNet train only in the loss check: their depthwise
# convolutions and 3x3 poolings run on their own kernels (issue 17).
timeout "${GPU_CHECK_TIMEOUT:-360}" "$bin/gpu_check" --device cuda:0 --models resnet20,lenet5 \
  --train-models resnet20,lenet5,mobilenetv2,googlenet --json "$out/gpu_check.json" "$@" \
  2>&1 | tee "$out/gpu_check.log"
rc=${PIPESTATUS[0]}
if [ "$rc" != 0 ]; then
  echo "FAIL: gpu_check exited with $rc" >&2
  status=1
fi

bench="${DSNN_TORCH_BENCH:-}"
if [ -z "$bench" ]; then
  for d in shared/bench/pytorch-deepshift scratch/pytorch-deepshift ../shared/bench/pytorch-deepshift; do
    if [ -f "$d/bench.py" ]; then bench="$d"; break; fi
  done
fi
if [ "${SKIP_TORCH:-0}" = 1 ]; then
  echo "== PyTorch reference skipped (SKIP_TORCH=1)"
elif [ -z "$bench" ] || [ ! -f "$bench/bench.py" ]; then
  echo "== PyTorch reference not found (copy ../shared/bench/pytorch-deepshift to scratch/ and carry it)"
else
  echo "== PyTorch reference from $bench"
  (cd "$bench" && PYTHONUNBUFFERED=1 timeout 120 python3 bench.py --device cuda --threads 16 --models resnet20 \
    --out "$OLDPWD/$out/torch-bench.json") 2>&1 | tee "$out/torch-bench.log"
  (cd "$bench" && PYTHONUNBUFFERED=1 timeout 90 python3 energy_gpu.py --models resnet20 \
    --out "$OLDPWD/$out/torch-energy.json") 2>&1 | tee "$out/torch-energy.log"
fi

echo "== ResNet20 at batch 128: dsnn against PyTorch on this card"
python3 scripts/gpu_summary.py "$out" | tee "$out/summary.md"
exit $status
