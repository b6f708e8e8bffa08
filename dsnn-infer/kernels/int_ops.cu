// CUDA kernels for dsnn-infer's integer steps (compiled to PTX by build.rs
// when the `cuda` feature is on, launched by src/cuda.rs in the order that
// src/gpu.rs's `run` gives).
//
// They implement the integer semantics of docs/integer-inference.md exactly:
// activations are int32, accumulators int64, the batch-norm requantisation
// is done in 128 bits (__int128). No floating-point operation runs here.
// Unlike the CPU engine, bucket sums are always accumulated in 64 bits: that
// is exact for every input (a bucket holds at most 2^24 inputs of magnitude
// at most 2^31), so no 32-bit fast path and no fallback rule are needed, and
// the results equal the CPU engine's (whose 32-bit sums are exact by its own
// check) bit for bit.
//
// A shift layer is one thread per output value (image, channel, position),
// positions fastest. A linear layer runs as a 1x1 convolution of a 1x1
// image with `fan_in` channels. Two weight forms:
//   * packed (dsnn_int_shift_packed): the stored sign + shift codes, decoded
//     per weight; each input is shifted left by S - m and added. Used when
//     every weight has m <= S (no bucket is floored), where the bucket sums'
//     definition reduces to that exact linear sum;
//   * buckets (dsnn_int_shift_buckets): the CPU engine's plan (inputs grouped
//     by channel, shift and sign); each bucket's sum is shifted once with
//     `shl` (an arithmetic right shift, i.e. floor, when S < m).
// Both end with the layer's requantisation (shift, affine or logits).
//
// Sizes fit in 32 bits (checked on the Rust side); loops are grid-stride
// with a 64-bit counter.

#include <stdint.h>

#define GRID_STRIDE(i, n)                                                        \
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (uint64_t)(n); \
       i += (uint64_t)blockDim.x * gridDim.x)

// Requantisation modes (gpu.rs `MODE_*`).
#define MODE_SHIFT 0
#define MODE_AFFINE 1
#define MODE_LOGITS 2

// format.rs `shl`: v * 2^n for n >= 0, floor(v / 2^-n) for n < 0.
__device__ __forceinline__ int64_t int_shl(int64_t v, int n) {
  if (n >= 0) return n >= 64 ? 0 : (int64_t)((uint64_t)v << n);
  int r = -n;
  return v >> (r > 63 ? 63 : r);
}

__device__ __forceinline__ int64_t clamp64(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// Requantises accumulator `acc` of channel `c` and stores output `i`.
__device__ __forceinline__ void requantise(int64_t acc, unsigned int c, uint64_t i, int mode,
                                           unsigned int s, int relu, const int* mul,
                                           const int64_t* add, unsigned int mul_shift,
                                           int64_t lo, int64_t hi, int* y, int64_t* logits) {
  if (mode == MODE_LOGITS) {
    logits[i] = acc;
    return;
  }
  int64_t v;
  if (mode == MODE_AFFINE) {
    // floor((acc * mul + add) / 2^(S + k)) in 128 bits, then clamp.
    __int128 t = (__int128)acc * (__int128)mul[c] + (__int128)add[c];
    unsigned int r = s + mul_shift;
    t >>= (r > 127 ? 127 : r);
    v = t < (__int128)lo ? lo : (t > (__int128)hi ? hi : (int64_t)t);
  } else {
    v = clamp64(acc >> (s > 63 ? 63 : s), lo, hi);
  }
  if (relu && v < 0) v = 0;
  y[i] = (int)v;
}

// The input under kernel tap (ci, ky, kx) of output position (oy, ox), or 0
// in the zero padding.
__device__ __forceinline__ int64_t tap(const int* xi, unsigned int ci, unsigned int ky,
                                       unsigned int kx, unsigned int oy, unsigned int ox,
                                       unsigned int h, unsigned int w, unsigned int stride,
                                       unsigned int pad) {
  long long iy = (long long)oy * stride + ky - pad;
  long long ix = (long long)ox * stride + kx - pad;
  if (iy < 0 || ix < 0 || iy >= (long long)h || ix >= (long long)w) return 0;
  return xi[((uint64_t)ci * h + (uint64_t)iy) * w + (uint64_t)ix];
}

// Code `i` of `bits` bits, little-endian bit order (weights.rs
// `PackedWeights::code`). The buffer has two bytes of padding at the end.
__device__ __forceinline__ unsigned int code_at(const uint8_t* codes, uint64_t i,
                                                unsigned int bits) {
  uint64_t bit = i * bits;
  const uint8_t* p = codes + (bit >> 3);
  unsigned int v = (unsigned int)p[0] | ((unsigned int)p[1] << 8) | ((unsigned int)p[2] << 16);
  return (v >> (bit & 7)) & ((1u << bits) - 1u);
}

// A shift layer on packed codes (every weight has m <= S).
// x: n x cin x h x w; codes: cout x (cin k k) codes of `code_bits` bits;
// acc_init: cout; y (int) or logits (int64): n x cout x oh x ow.
extern "C" __global__ void dsnn_int_shift_packed(
    unsigned int total, const int* x, const uint8_t* codes, unsigned int code_bits, int zero_code,
    const int64_t* acc_init, unsigned int cin, unsigned int h, unsigned int w, unsigned int cout,
    unsigned int k, unsigned int stride, unsigned int pad, unsigned int oh, unsigned int ow,
    unsigned int s, int mode, int relu, const int* mul, const int64_t* add,
    unsigned int mul_shift, int64_t lo, int64_t hi, int* y, int64_t* logits) {
  const unsigned int ohw = oh * ow;
  const unsigned int mag_bits = code_bits - 1;
  const unsigned int mag_mask = (1u << mag_bits) - 1u;
  const uint64_t fan_in = (uint64_t)cin * k * k;
  GRID_STRIDE(i, total) {
    unsigned int pos = (unsigned int)(i % ohw);
    unsigned int c = (unsigned int)((i / ohw) % cout);
    uint64_t img = i / ((uint64_t)ohw * cout);
    unsigned int oy = pos / ow, ox = pos % ow;
    const int* xi = x + img * cin * h * w;
    int64_t acc = acc_init[c];
    uint64_t wi = (uint64_t)c * fan_in;
    for (unsigned int ci = 0; ci < cin; ++ci) {
      for (unsigned int ky = 0; ky < k; ++ky) {
        for (unsigned int kx = 0; kx < k; ++kx, ++wi) {
          unsigned int code = code_at(codes, wi, code_bits);
          unsigned int m = code & mag_mask;
          int negative = (int)(code >> mag_bits);
          if (zero_code && !negative && m == mag_mask) continue;
          int64_t v = tap(xi, ci, ky, kx, oy, ox, h, w, stride, pad);
          int64_t term = (int64_t)((uint64_t)v << (s - m));
          acc += negative ? -term : term;
        }
      }
    }
    requantise(acc, c, i, mode, s, relu, mul, add, mul_shift, lo, hi, y, logits);
  }
}

// A shift layer on the bucket plan (weights.rs `Plan`): channel c's buckets
// are chan[c]..chan[c+1]; bucket b is (shift, start, mid, end) at
// buckets[4b..4b+4] (shift = S - m as a signed int); idx holds the taps
// (ci << 8 | ky << 4 | kx), a bucket's positive ones, then its negative ones.
extern "C" __global__ void dsnn_int_shift_buckets(
    unsigned int total, const int* x, const unsigned int* chan, const int* buckets,
    const unsigned int* idx, const int64_t* acc_init, unsigned int cin, unsigned int h,
    unsigned int w, unsigned int cout, unsigned int stride, unsigned int pad, unsigned int oh,
    unsigned int ow, unsigned int s, int mode, int relu, const int* mul, const int64_t* add,
    unsigned int mul_shift, int64_t lo, int64_t hi, int* y, int64_t* logits) {
  const unsigned int ohw = oh * ow;
  GRID_STRIDE(i, total) {
    unsigned int pos = (unsigned int)(i % ohw);
    unsigned int c = (unsigned int)((i / ohw) % cout);
    uint64_t img = i / ((uint64_t)ohw * cout);
    unsigned int oy = pos / ow, ox = pos % ow;
    const int* xi = x + img * cin * h * w;
    int64_t acc = acc_init[c];
    for (unsigned int b = chan[c]; b < chan[c + 1]; ++b) {
      const int* bk = buckets + 4 * (uint64_t)b;
      unsigned int start = (unsigned int)bk[1], mid = (unsigned int)bk[2],
                   end = (unsigned int)bk[3];
      int64_t sum = 0;
      for (unsigned int j = start; j < end; ++j) {
        unsigned int t = idx[j];
        int64_t v = tap(xi, t >> 8, (t >> 4) & 15u, t & 15u, oy, ox, h, w, stride, pad);
        sum += j < mid ? v : -v;
      }
      acc += int_shl(sum, bk[0]);
    }
    requantise(acc, c, i, mode, s, relu, mul, add, mul_shift, lo, hi, y, logits);
  }
}

// 2x2 max pooling, stride 2, odd edges dropped. x: (n c) x h x w.
extern "C" __global__ void dsnn_int_max_pool2(unsigned int total, const int* x, int* y,
                                              unsigned int h, unsigned int w, unsigned int oh,
                                              unsigned int ow) {
  GRID_STRIDE(i, total) {
    unsigned int ox = (unsigned int)(i % ow);
    unsigned int oy = (unsigned int)((i / ow) % oh);
    uint64_t plane = i / ((uint64_t)oh * ow);
    const int* p = x + plane * h * w + (uint64_t)(2 * oy) * w + 2 * ox;
    int a = p[0] > p[1] ? p[0] : p[1];
    int b = p[w] > p[w + 1] ? p[w] : p[w + 1];
    y[i] = a > b ? a : b;
  }
}

// y = clamp(max(0, x + shortcut)). The shortcut s is sc x sh x sw per image:
// the same shape as x when has_pad is 0; otherwise subsampled by 2 and
// zero-padded by `pad` channels on each side (ResNet option A).
extern "C" __global__ void dsnn_int_add_residual(unsigned int total, const int* x, const int* s,
                                                 int* y, unsigned int c, unsigned int h,
                                                 unsigned int w, unsigned int sc,
                                                 unsigned int sh, unsigned int sw, int has_pad,
                                                 unsigned int pad, int64_t lo, int64_t hi) {
  GRID_STRIDE(i, total) {
    unsigned int xx = (unsigned int)(i % w);
    unsigned int yy = (unsigned int)((i / w) % h);
    unsigned int ch = (unsigned int)((i / ((uint64_t)w * h)) % c);
    uint64_t img = i / ((uint64_t)w * h * c);
    int64_t short_v = 0;
    if (!has_pad) {
      short_v = s[i];
    } else if (ch >= pad && ch - pad < sc) {
      short_v = s[((img * sc + (ch - pad)) * sh + 2 * yy) * sw + 2 * xx];
    }
    int64_t v = (int64_t)x[i] + short_v;
    if (v < 0) v = 0;
    y[i] = (int)clamp64(v, lo, hi);
  }
}

// Global average pooling: y[plane] = floor(sum of the plane's hw values / hw).
extern "C" __global__ void dsnn_int_avg_pool(unsigned int planes, const int* x, int* y,
                                             unsigned int hw) {
  GRID_STRIDE(i, planes) {
    const int* p = x + i * hw;
    int64_t sum = 0;
    for (unsigned int j = 0; j < hw; ++j) sum += p[j];
    int64_t d = (int64_t)hw;
    int64_t q = sum / d;
    if (sum % d != 0 && sum < 0) q -= 1;
    y[i] = (int)q;
  }
}
