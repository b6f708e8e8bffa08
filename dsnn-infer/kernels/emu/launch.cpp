// Host wrappers of dsnn-infer's CUDA kernels for the emulation test
// (tests/cuda_kernels_emulated.rs): each `emu_<kernel>(grid, block, args...)`
// runs the kernel under dsnn-core's CUDA emulation header, unchanged.
#include "../../../dsnn-core/kernels/emu/cuda_emu.h"

#include "../int_ops.cu"

#define EMU_ARGS(...) __VA_ARGS__
#define EMU(name, params, args)                                                \
  extern "C" void emu_##name(unsigned int emu_grid, unsigned int emu_block,   \
                             EMU_ARGS params) {                                \
    emu_launch(emu_grid, emu_block, [=] { name args; });                       \
  }

typedef unsigned int u32;
typedef int64_t i64;
EMU(dsnn_int_shift_packed,
    (u32 total, const int* x, const uint8_t* codes, u32 code_bits, int zero_code, const i64* acc_init,
     u32 cin, u32 h, u32 w, u32 cout, u32 k, u32 stride, u32 pad, u32 oh, u32 ow, u32 s, int mode,
     int relu, const int* mul, const i64* add, u32 mul_shift, i64 lo, i64 hi, int* y, i64* logits),
    (total, x, codes, code_bits, zero_code, acc_init, cin, h, w, cout, k, stride, pad, oh, ow, s, mode,
     relu, mul, add, mul_shift, lo, hi, y, logits))
EMU(dsnn_int_shift_buckets,
    (u32 total, const int* x, const u32* chan, const int* buckets, const u32* idx, const i64* acc_init,
     u32 cin, u32 h, u32 w, u32 cout, u32 stride, u32 pad, u32 oh, u32 ow, u32 s, int mode, int relu,
     const int* mul, const i64* add, u32 mul_shift, i64 lo, i64 hi, int* y, i64* logits),
    (total, x, chan, buckets, idx, acc_init, cin, h, w, cout, stride, pad, oh, ow, s, mode, relu, mul,
     add, mul_shift, lo, hi, y, logits))
EMU(dsnn_int_max_pool2, (u32 total, const int* x, int* y, u32 h, u32 w, u32 oh, u32 ow),
    (total, x, y, h, w, oh, ow))
EMU(dsnn_int_add_residual,
    (u32 total, const int* x, const int* s, int* y, u32 c, u32 h, u32 w, u32 sc, u32 sh, u32 sw,
     int has_pad, u32 pad, i64 lo, i64 hi),
    (total, x, s, y, c, h, w, sc, sh, sw, has_pad, pad, lo, hi))
EMU(dsnn_int_avg_pool, (u32 planes, const int* x, int* y, u32 hw), (planes, x, y, hw))
