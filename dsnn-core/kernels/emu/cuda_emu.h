// A minimal CUDA emulation for compiling dsnn's kernels as host C++, so that
// their arithmetic and indexing can be tested against the CPU path on a
// machine without a GPU (dsnn-core/tests/cuda_kernels_emulated.rs).
//
// Each block runs as blockDim.x OS threads (so that __syncthreads and
// __shared__ behave as on a GPU); blocks run one after another.
#pragma once
#include <barrier>
#include <cmath>
#include <math.h>
#include <mutex>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;
inline std::barrier<>* emu_barrier = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

inline void __syncthreads() { emu_barrier->arrive_and_wait(); }
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
// exp2f, fabsf, floorf, fmaxf, log, rintf, sqrtf: the C library's (math.h).

inline std::mutex emu_device;

// Runs `kernel` on a grid of `grid` blocks of `block` threads. Launches are
// serialised, as on one stream: the grid, the barrier and every __shared__
// array are process-wide.
template <class F>
void emu_launch(unsigned int grid, unsigned int block, F kernel) {
  std::lock_guard<std::mutex> device(emu_device);
  gridDim.x = grid;
  blockDim.x = block;
  for (unsigned int b = 0; b < grid; ++b) {
    std::barrier<> bar(block);
    emu_barrier = &bar;
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (unsigned int t = 0; t < block; ++t) {
      threads.emplace_back([=] {
        blockIdx.x = b;
        threadIdx.x = t;
        kernel();
      });
    }
    for (auto& th : threads) th.join();
  }
  emu_barrier = nullptr;
}
