# Sourced by scripts/build-cuda.sh and .ci/run: the environment in which the
# `cuda` feature builds on a machine without a GPU or CUDA toolkit (nvcc from
# the Python virtual environment that build-cuda.sh installs, stub libraries
# for linking). Both use exactly the same variables, so that cargo reuses
# what the other built (candle's kernels take about 14 minutes of nvcc).
#
# Needs `repo` (the repository root). Sets cuda_root, target, stubs and
# exports PATH, CUDA_HOME, CUDA_ROOT, CUDA_COMPUTE_CAP, CARGO_TARGET_DIR,
# LIBRARY_PATH and RUSTFLAGS (DSNN_PTX_ARCHS passes through when set). Returns 1 (with a message in cuda_env_error)
# when the virtual environment has no nvcc. Installs nothing.

cuda_venv="${DSNN_CUDA_VENV:-$HOME/.cache/dsnn/cuda-venv}"
cuda_root=""
for candidate in "$cuda_venv"/lib/python3*/site-packages/nvidia/cu13; do
  if [ -x "$candidate/bin/nvcc" ]; then
    cuda_root="$candidate"
  fi
done
if [ -z "$cuda_root" ]; then
  cuda_env_error="no nvcc under $cuda_venv (scripts/build-cuda.sh installs it)"
  return 1
fi
target="${DSNN_CUDA_TARGET:-$repo/target/cuda}"
stubs="$target/cuda-stubs"
export PATH="$cuda_root/bin:$PATH"
export CUDA_HOME="$cuda_root" CUDA_ROOT="$cuda_root"
# candle's own kernels are built for one architecture: the oldest that dsnn's
# PTX list covers (8.0, Ampere), as portable PTX that the driver compiles for
# any newer card (8.6, 8.9, 9.0 and Blackwell). 90 would give Hopper-only code
# (cudaforge builds compute_90a). dsnn's kernels are built for every
# architecture of DSNN_PTX_ARCHS (default 80,86,89,90, plus CUDA_COMPUTE_CAP;
# see dsnn-kernel-build) and the loader picks the device's.
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
export CARGO_TARGET_DIR="$target"
export LIBRARY_PATH="$stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$stubs"
return 0
