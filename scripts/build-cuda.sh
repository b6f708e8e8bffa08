#!/usr/bin/env bash
# Builds the CUDA release binaries of dsnn on a machine WITHOUT a GPU or a CUDA
# toolkit, for a GPU machine with the NVIDIA driver and the CUDA 13.0 libraries
# (see docs/gpu.md).
#
#   scripts/build-cuda.sh            # build dsnn + gpu_check into target/cuda-dist/
#
# What it does:
#   1. a Python virtual environment with nvcc 13.0.88 (+ nvvm for cicc, cccl for
#      <nv/target>, the runtime for cuda.h and libcudart) from PyPI;
#   2. stub shared objects for the libraries that are only needed at link time
#      (libcuda, libcublas, libcublasLt, libcurand, libnvrtc), with the SONAMEs
#      of CUDA 13 and one symbol for every function cudarc declares, each of
#      which returns CUDA_ERROR_STUB_LIBRARY (34); the real libraries are loaded
#      on the GPU machine;
#   3. `cargo build --release --features cuda` into a target directory that is
#      kept between builds (candle's own kernels take about 14 minutes of nvcc on
#      2 cores the first time): dsnn's kernels as PTX for every architecture of
#      DSNN_PTX_ARCHS (default 80,86,89,90; the binary loads the one for its GPU,
#      newer cards JIT the newest), candle's for CUDA_COMPUTE_CAP (default 80:
#      portable PTX that every card of the list and newer ones compile);
#   4. packs the stripped binaries into target/cuda-dist/dsnn-cuda.tar.xz
#      (about 12 MB, small enough for the device tool's carry), with the stubs
#      in target/cuda-dist/stubs/ for running them on a machine without a
#      driver (the CPU fallback); unpacked copies in target/cuda/stripped/.
#
# Environment (all optional):
#   DSNN_CUDA_VENV     the virtual environment (default ~/.cache/dsnn/cuda-venv)
#   DSNN_CUDA_TARGET   cargo target dir kept between builds (default target/cuda)
#   DSNN_PTX_ARCHS     architectures of dsnn's PTX, comma-separated (default
#                      80,86,89,90, plus CUDA_COMPUTE_CAP when it is another)
#   CUDA_COMPUTE_CAP   architecture of candle's kernels (default 80; 90 gives
#                      Hopper-only candle kernels; changing it rebuilds them)
#   DSNN_CUDA_NICE     niceness of the build (default 19: other work goes first)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

venv="${DSNN_CUDA_VENV:-$HOME/.cache/dsnn/cuda-venv}"
dist="$repo/target/cuda-dist"
nice_level="${DSNN_CUDA_NICE:-19}"
python="${PYTHON:-python3}"

echo "== CUDA toolkit from PyPI in $venv"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# Pinned to the GPU machine's driver (CUDA 13.0). The crt headers must match
# nvcc; without the pin pip picks the newest.
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "nvidia-cuda-nvcc==13.0.88" "nvidia-nvvm==13.0.88" "nvidia-cuda-crt==13.0.88" \
  "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-runtime==13.0.*"
repo="$repo" DSNN_CUDA_VENV="$venv"
# shellcheck source=scripts/cuda-env.sh
if ! . scripts/cuda-env.sh; then
  echo "error: $cuda_env_error" >&2
  exit 1
fi
nvcc --version | tail -2

echo "== link-time stubs"
mkdir -p "$stubs"
cudarc_src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | sort -V | tail -1)"
if [ -z "$cudarc_src" ]; then
  cargo fetch --quiet
  cudarc_src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | sort -V | tail -1)"
fi
# library name, SONAME, cudarc module declaring its functions
for entry in "cuda libcuda.so.1 driver" "cublas libcublas.so.13 cublas" \
  "cublasLt libcublasLt.so.13 cublaslt" "curand libcurand.so.10 curand" \
  "nvrtc libnvrtc.so.13 nvrtc"; do
  set -- $entry
  name=$1 soname=$2 module=$3
  if [ ! -f "$stubs/$soname" ] || [ "$0" -nt "$stubs/$soname" ]; then
    grep -oE '^pub unsafe fn [A-Za-z0-9_]+\(' "$cudarc_src/src/$module/sys/mod.rs" \
      | sed -E 's/^pub unsafe fn ([A-Za-z0-9_]+)\(/int \1(void) { return 34; }/' \
      | sort -u >"$stubs/$name.c"
    cc -shared -fPIC -Wl,-soname,"$soname" -o "$stubs/$soname" "$stubs/$name.c"
  fi
  ln -sf "$soname" "$stubs/lib$name.so"
done
# The real CUDA runtime comes with the nvcc packages; cargo links -lcudart.
ln -sf "$cuda_root/lib/libcudart.so.13" "$stubs/libcudart.so"
ln -sf "$cuda_root/lib/libcudart.so.13" "$stubs/libcudart.so.13"

echo "== cargo build --release --features cuda (target $target, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, DSNN_PTX_ARCHS=${DSNN_PTX_ARCHS:-default})"
start=$(date +%s)
# Keep these two package selections (and .ci/run's, which mirror them):
# another selection unifies dependency features differently, and cargo then
# rebuilds candle's kernels from scratch.
nice -n "$nice_level" \
  cargo build --release --features cuda --bin dsnn
nice -n "$nice_level" \
  cargo build --release -p dsnn-core --features cuda --example gpu_check
end=$(date +%s)
echo "build took $((end - start)) s"

# What travels to the GPU machine: the stripped binaries, xz-compressed
# (about 6 MB each instead of 120 MB; the device tool carries 64 MiB).
rm -rf "$dist"
mkdir -p "$dist/stubs" "$dist/pack"
cp "$target/release/dsnn" "$target/release/examples/gpu_check" "$dist/pack/"
strip "$dist/pack/dsnn" "$dist/pack/gpu_check"
tar -C "$dist/pack" -cJf "$dist/dsnn-cuda.tar.xz" dsnn gpu_check
# Unpacked copies and the stubs, for running here: with
# LD_LIBRARY_PATH=target/cuda-dist/stubs the binaries start on a machine
# without a driver, and `--device auto` falls back to the CPU.
rm -rf "$target/stripped"
mv "$dist/pack" "$target/stripped"
cp -P "$stubs"/lib*.so* "$dist/stubs/"
rm -f "$dist/stubs/libcudart.so" "$dist/stubs/libcudart.so.13"
cp "$cuda_root/lib/libcudart.so.13" "$dist/stubs/"
du -sh "$dist/dsnn-cuda.tar.xz" "$dist/stubs"
echo "for the GPU machine: carry $dist (scripts/gpu-check.sh unpacks it); stripped binaries for here: $target/stripped/"
