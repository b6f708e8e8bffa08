// CUDA kernels for dsnn-core's custom ops (compiled to PTX by build.rs when
// the `cuda` feature is on, loaded by src/cuda.rs).
//
// Every kernel mirrors a CPU implementation in src/quant.rs, src/conv.rs,
// src/batchnorm.rs or src/ops.rs; the comments name it. Element-wise results
// are meant to be bit-identical to the CPU's: the module is compiled with
// --fmad=false (Rust never contracts a*b+c into an FMA), IEEE division and
// square root, and the logarithm of the Q quantiser is taken in double
// precision so that it is correctly rounded to f32. Reductions (batch-norm
// statistics, channel sums) accumulate in double precision, in another order
// than the CPU: they agree to a relative 1e-6 or so, not bit for bit.
//
// All tensors are contiguous f32; element counts fit in 32 bits (checked on
// the Rust side: `count` in src/cuda.rs); every element-wise kernel uses a
// grid-stride loop. The loops count in 64 bits, as dsnn-infer's integer
// kernels do, so that `i + blockDim.x * gridDim.x` cannot wrap around for
// counts close to 2^32; the index handed to the body is the counter's value,
// which is below the 32-bit count, so that the index divisions stay 32-bit
// (a 64-bit division is a long software sequence on a GPU). Every product
// that can reach an element count (sample * channels * plane, row * width,
// ...) is taken in 64 bits (size_t).

#include <stdint.h>

// for (i = first; i < n; i += grid size), with a 64-bit counter and `i` a
// 32-bit copy of it (exact: the counter is below n < 2^32). `continue` and
// `break` act on the loop.
#define GRID_STRIDE(i, n)                                                      \
  for (uint64_t i##_wide = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;   \
       i##_wide < (uint64_t)(n); i##_wide += (uint64_t)blockDim.x * gridDim.x) \
    if (unsigned int i = (unsigned int)i##_wide; true)

// The same over one block's threads (the reduction kernels: one block per
// channel strides over that channel's `n` values).
#define BLOCK_STRIDE(i, n)                                                     \
  for (uint64_t i##_wide = threadIdx.x; i##_wide < (uint64_t)(n);             \
       i##_wide += blockDim.x)                                                 \
    if (unsigned int i = (unsigned int)i##_wide; true)

// ---------------------------------------------------------------- helpers

// quant.rs `splitmix64`.
__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// quant.rs `RandomStream::uniform`: 24 random bits in [0, 1), a function of
// (seed, step, index) only, so the GPU draws exactly the CPU's numbers.
__device__ __forceinline__ float uniform(uint64_t seed, uint64_t step, uint64_t index) {
  uint64_t h = splitmix64(seed ^ splitmix64(step + 0x9E3779B97F4A7C15ull) ^
                          (index * 0xD6E8FEB86659FD93ull));
  return (float)(unsigned int)(h >> 40) * (1.0f / 16777216.0f);
}

// quant.rs `sign` (torch.sign; NaN stays NaN).
__device__ __forceinline__ float sign_of(float x) {
  return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x);
}

// quant.rs `round_with`: ties to even, or floor + Bernoulli(frac).
__device__ __forceinline__ float round_with(float x, int stochastic, float u) {
  if (!stochastic) return rintf(x);
  float fl = floorf(x);
  float frac = x - fl;
  return u < frac ? fl + 1.0f : fl;
}

// quant.rs `pow2` for an integer-valued e: exact for normal and subnormal
// results (the CPU's exp2 is exact there too).
__device__ __forceinline__ float pow2(float e) {
  if (e >= -126.0f && e <= 127.0f) return __int_as_float(((int)e + 127) << 23);
  if (e >= -149.0f && e < -126.0f) return __int_as_float(1 << ((int)e + 149));
  return exp2f(e);
}

// Rust's f32::clamp: NaN passes through.
__device__ __forceinline__ float clamp_nan(float x, float lo, float hi) {
  if (x < lo) x = lo;
  if (x > hi) x = hi;
  return x;
}

#define LN2F 0.693147180559945309417232121458176568f

// ----------------------------------------------------------- quantisers

// quant.rs `FixedPointGrid::round`: floor to a 2^-F grid, clamp to
// [-bound, bound - 1]; `special` (one integer bit) gives sign(x) - 1.
extern "C" __global__ void dsnn_round_to_fixed(unsigned int n, const float* x, float* y,
                                               int special, float scale, float delta,
                                               float bound) {
  GRID_STRIDE(i, n) {
    float v = x[i];
    if (special) {
      y[i] = sign_of(v) - 1.0f;
    } else {
      y[i] = clamp_nan(floorf(v * scale) * delta, -bound, bound - 1.0f);
    }
  }
}

// quant.rs `quantize_q` after `clamp_abs`: sign(c) * 2^round(ln|c| / ln 2).
extern "C" __global__ void dsnn_quantize_q(unsigned int n, const float* w, float* y, int lo,
                                           int stochastic, uint64_t seed, uint64_t step) {
  float min = pow2((float)lo);
  GRID_STRIDE(i, n) {
    float c = clamp_nan(w[i], -1.0f, 1.0f);
    if (c != 0.0f && fabsf(c) < min) c = sign_of(c) * min;
    if (c == 0.0f) {
      y[i] = 0.0f;
      continue;
    }
    float u = stochastic ? uniform(seed, step, (uint64_t)i) : 0.0f;
    // Correctly rounded ln, then the same f32 division as the CPU.
    float l = (float)log((double)fabsf(c));
    float shift = round_with(l / LN2F, stochastic, u);
    y[i] = sign_of(c) * pow2(shift);
  }
}

// quant.rs `ps_weight`: 2^round(clamp(shift, lo, hi)) * sign(round(sign)).
// The sign's uniforms follow the shift's in the stream (indices n + i).
extern "C" __global__ void dsnn_ps_weight(unsigned int n, const float* shift, const float* sgn,
                                          float* y, int lo, int hi, int stochastic,
                                          uint64_t seed, uint64_t step) {
  GRID_STRIDE(i, n) {
    float us = 0.0f, ug = 0.0f;
    if (stochastic) {
      us = uniform(seed, step, (uint64_t)i);
      ug = uniform(seed, step, (uint64_t)n + (uint64_t)i);
    }
    float s = round_with(clamp_nan(shift[i], (float)lo, (float)hi), stochastic, us);
    y[i] = sign_of(round_with(sgn[i], stochastic, ug)) * pow2(s);
  }
}

// params.rs `project` for Q weights: quant.rs `clamp_abs` in place.
extern "C" __global__ void dsnn_clamp_abs(unsigned int n, float* w, int lo) {
  float min = pow2((float)lo);
  GRID_STRIDE(i, n) {
    float c = clamp_nan(w[i], -1.0f, 1.0f);
    if (c != 0.0f && fabsf(c) < min) c = sign_of(c) * min;
    w[i] = c;
  }
}

// ----------------------------------------------------------- convolution

// conv.rs `im2col` for a whole batch: element (sample s, row r = (c*kh+i)*kw+j,
// position q = oh*wo+ow) goes to col[s*s_stride + r*r_stride + q]. With
// s_stride = k*p, r_stride = p the matrix is batch x k x p (forward and
// input gradient); with s_stride = p, r_stride = n*p it is k x (n*p)
// (weight gradient, one gemm over the batch). Padding reads as zero.
extern "C" __global__ void dsnn_im2col(unsigned int total, const float* x, float* col,
                                       unsigned int cin, unsigned int h, unsigned int w,
                                       unsigned int kh, unsigned int kw, unsigned int ho,
                                       unsigned int wo, unsigned int stride, unsigned int pad,
                                       unsigned int s_stride, unsigned int r_stride) {
  // total = n * k * p; one thread per column-matrix element.
  unsigned int p = ho * wo;
  unsigned int k = cin * kh * kw;
  GRID_STRIDE(t, total) {
    unsigned int q = t % p;
    unsigned int r = (t / p) % k;
    unsigned int s = t / (p * k);
    unsigned int j = r % kw;
    unsigned int i = (r / kw) % kh;
    unsigned int c = r / (kw * kh);
    int ih = (int)((q / wo) * stride + i) - (int)pad;
    int iw = (int)((q % wo) * stride + j) - (int)pad;
    float v = 0.0f;
    if (ih >= 0 && ih < (int)h && iw >= 0 && iw < (int)w) {
      v = x[((size_t)s * cin + c) * h * w + (size_t)ih * w + iw];
    }
    col[(size_t)s * s_stride + (size_t)r * r_stride + q] = v;
  }
}

// Along one axis of a convolution: the output position whose tap `i` reads
// input position `in`, or -1 where none does (before the first output,
// between strides, past the last). Shared by the gathering backward kernels.
__device__ __forceinline__ int reading_output(unsigned int in, unsigned int pad, unsigned int i,
                                              unsigned int stride, unsigned int out_size) {
  int o = (int)in + (int)pad - (int)i;
  if (o < 0 || o % (int)stride != 0) return -1;
  o /= (int)stride;
  return o < (int)out_size ? o : -1;
}

// conv.rs `col2im` for a whole batch, gathered per input element (no
// atomics): dx[s, c, y, x] = sum over the kernel taps (i, j) whose output
// position (oh, ow) reads it of col[s, (c*kh+i)*kw+j, oh*wo+ow].
// The column matrix is batch x k x p.
extern "C" __global__ void dsnn_col2im(unsigned int total, const float* col, float* dx,
                                       unsigned int cin, unsigned int h, unsigned int w,
                                       unsigned int kh, unsigned int kw, unsigned int ho,
                                       unsigned int wo, unsigned int stride, unsigned int pad) {
  unsigned int p = ho * wo;
  unsigned int k = cin * kh * kw;
  GRID_STRIDE(t, total) {
    unsigned int xx = t % w;
    unsigned int yy = (t / w) % h;
    unsigned int c = (t / (w * h)) % cin;
    unsigned int s = t / (w * h * cin);
    const float* cs = col + (size_t)s * k * p;
    float acc = 0.0f;
    for (unsigned int i = 0; i < kh; ++i) {
      int oy = reading_output(yy, pad, i, stride, ho);
      if (oy < 0) continue;
      for (unsigned int j = 0; j < kw; ++j) {
        int ox = reading_output(xx, pad, j, stride, wo);
        if (ox < 0) continue;
        unsigned int r = (c * kh + i) * kw + j;
        acc += cs[(size_t)r * p + (unsigned int)oy * wo + (unsigned int)ox];
      }
    }
    dx[t] = acc;
  }
}

// a x b x c -> b x a x c (the output gradient n x cout x p to cout x n x p,
// for the weight gradient's single gemm).
extern "C" __global__ void dsnn_swap01(unsigned int total, const float* src, float* dst,
                                       unsigned int a, unsigned int b, unsigned int c) {
  GRID_STRIDE(t, total) {
    unsigned int z = t % c;
    unsigned int y = (t / c) % b;
    unsigned int x = t / (c * b);
    dst[((size_t)y * a + x) * c + z] = src[t];
  }
}

// ------------------------------------------------------------ reductions

#define BN_THREADS 256

// Block-wide sum of `nvals` doubles per thread (shared scratch of
// BN_THREADS * nvals); every thread gets the totals in `v`.
__device__ void block_sum(double* v, int nvals, double* scratch) {
  for (int k = 0; k < nvals; ++k) scratch[k * BN_THREADS + threadIdx.x] = v[k];
  __syncthreads();
  for (unsigned int s = BN_THREADS / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      for (int k = 0; k < nvals; ++k)
        scratch[k * BN_THREADS + threadIdx.x] += scratch[k * BN_THREADS + threadIdx.x + s];
    }
    __syncthreads();
  }
  for (int k = 0; k < nvals; ++k) v[k] = scratch[k * BN_THREADS];
  __syncthreads();
}

// --------------------------------------------- grouped convolution (direct)
//
// conv.rs with `groups > 1` (depthwise when groups = cin): input channel
// group g (cg = cin / groups channels) feeds output channel group g (og =
// cout / groups channels); the weight is cout x cg x kh x kw. These kernels
// convolve directly instead of im2col + gemm: a depthwise layer's gemm
// would be one launch per channel with a single output row and k = kh * kw
// (9 for 3x3), far too small for cuBLAS, while a thread per output element
// reads its kh * kw window once. Shared arguments, in this order:
// cin, h, w, cout, kh, kw, ho, wo, stride, pad, groups.

#define GCONV_PARAMS                                                                        \
  unsigned int cin, unsigned int h, unsigned int w, unsigned int cout, unsigned int kh,    \
      unsigned int kw, unsigned int ho, unsigned int wo, unsigned int stride, unsigned int pad, \
      unsigned int groups

// Forward: y[s, co, oy, ox] = sum over the group's channels c and taps
// (i, j) of x[s, g*cg + c, oy*stride + i - pad, ox*stride + j - pad] *
// wt[co, c, i, j] (padding reads as zero). One thread per output element.
extern "C" __global__ void dsnn_conv_grouped(unsigned int total, const float* x, const float* wt,
                                             float* y, GCONV_PARAMS) {
  unsigned int cg = cin / groups, og = cout / groups;
  unsigned int p = ho * wo;
  GRID_STRIDE(t, total) {
    unsigned int ox = t % wo, oy = (t / wo) % ho;
    unsigned int co = (t / p) % cout, s = t / (p * cout);
    unsigned int g = co / og;
    const float* wr = wt + (size_t)co * cg * kh * kw;
    int y0 = (int)(oy * stride) - (int)pad, x0 = (int)(ox * stride) - (int)pad;
    float acc = 0.0f;
    for (unsigned int c = 0; c < cg; ++c) {
      const float* plane = x + ((size_t)s * cin + g * cg + c) * h * w;
      for (unsigned int i = 0; i < kh; ++i) {
        int iy = y0 + (int)i;
        if (iy < 0 || iy >= (int)h) continue;
        for (unsigned int j = 0; j < kw; ++j) {
          int ix = x0 + (int)j;
          if (ix < 0 || ix >= (int)w) continue;
          acc += plane[(size_t)iy * w + ix] * wr[(c * kh + i) * kw + j];
        }
      }
    }
    y[t] = acc;
  }
}

// Input gradient, gathered per input element (no atomics): dx[s, c, yy, xx]
// = sum over the group's output channels o and the taps (i, j) whose output
// position (oy, ox) reads (yy, xx) of dy[s, g*og + o, oy, ox] * wt[g*og + o,
// c - g*cg, i, j].
extern "C" __global__ void dsnn_conv_grouped_bwd_input(unsigned int total, const float* dy,
                                                       const float* wt, float* dx,
                                                       GCONV_PARAMS) {
  unsigned int cg = cin / groups, og = cout / groups;
  unsigned int p = ho * wo;
  GRID_STRIDE(t, total) {
    unsigned int xx = t % w, yy = (t / w) % h;
    unsigned int c = (t / (w * h)) % cin, s = t / (w * h * cin);
    unsigned int g = c / cg, cl = c - g * cg;
    float acc = 0.0f;
    for (unsigned int o = 0; o < og; ++o) {
      unsigned int co = g * og + o;
      const float* dyp = dy + ((size_t)s * cout + co) * p;
      const float* wr = wt + ((size_t)co * cg + cl) * kh * kw;
      for (unsigned int i = 0; i < kh; ++i) {
        int oy = reading_output(yy, pad, i, stride, ho);
        if (oy < 0) continue;
        for (unsigned int j = 0; j < kw; ++j) {
          int ox = reading_output(xx, pad, j, stride, wo);
          if (ox < 0) continue;
          acc += dyp[(unsigned int)oy * wo + (unsigned int)ox] * wr[i * kw + j];
        }
      }
    }
    dx[t] = acc;
  }
}

// Weight gradient: dw[co, c, i, j] = sum over samples s and output
// positions (oy, ox) of dy[s, co, oy, ox] * x[s, g*cg + c, oy*stride + i -
// pad, ox*stride + j - pad], accumulated in double. One block (BN_THREADS
// threads) per weight element, striding over the nw = cout*cg*kh*kw elements
// when the grid is smaller; the block's threads stride over n * ho * wo.
extern "C" __global__ void dsnn_conv_grouped_bwd_weight(unsigned int nw, const float* x,
                                                        const float* dy, float* dw,
                                                        unsigned int n, GCONV_PARAMS) {
  __shared__ double scratch[BN_THREADS];
  unsigned int cg = cin / groups, og = cout / groups;
  unsigned int p = ho * wo;
  unsigned int count = n * p;  // <= the output's element count < 2^32 (src/cuda.rs)
  for (unsigned int r = blockIdx.x; r < nw; r += gridDim.x) {
    unsigned int j = r % kw, i = (r / kw) % kh;
    unsigned int cl = (r / (kw * kh)) % cg, co = r / (kw * kh * cg);
    unsigned int c = (co / og) * cg + cl;
    double v[1] = {0.0};
    BLOCK_STRIDE(t, count) {
      unsigned int q = t % p, s = t / p;
      int iy = (int)((q / wo) * stride + i) - (int)pad;
      int ix = (int)((q % wo) * stride + j) - (int)pad;
      if (iy >= 0 && iy < (int)h && ix >= 0 && ix < (int)w) {
        double a = (double)x[((size_t)s * cin + c) * h * w + (size_t)iy * w + ix];
        v[0] += a * (double)dy[((size_t)s * cout + co) * p + q];
      }
    }
    block_sum(v, 1, scratch);
    if (threadIdx.x == 0) dw[r] = (float)v[0];
  }
}

// ------------------------------------------------------------ batch norm

// batchnorm.rs `channel_stats` + the per-channel affine of the forward.
// One block per channel; writes stats[ch] = mean, stats[c + ch] = biased
// variance, stats[2c + ch] = scale, stats[3c + ch] = shift.
extern "C" __global__ void dsnn_bn_stats(const float* x, const float* gamma, const float* beta,
                                         float* stats, unsigned int n, unsigned int c,
                                         unsigned int hw, float eps) {
  __shared__ double scratch[2 * BN_THREADS];
  unsigned int ch = blockIdx.x;
  double v[2] = {0.0, 0.0};
  unsigned int count = n * hw;  // <= n * c * hw < 2^32 (checked by src/cuda.rs)
  BLOCK_STRIDE(t, count) {
    unsigned int s = t / hw, q = t % hw;
    double a = (double)x[((size_t)s * c + ch) * hw + q];
    v[0] += a;
    v[1] += a * a;
  }
  block_sum(v, 2, scratch);
  if (threadIdx.x == 0) {
    double mean = v[0] / (double)count;
    double var = v[1] / (double)count - mean * mean;
    if (var < 0.0) var = 0.0;
    float meanf = (float)mean, varf = (float)var;
    float scale = gamma[ch] / sqrtf(varf + eps);
    stats[ch] = meanf;
    stats[(size_t)c + ch] = varf;
    stats[2 * (size_t)c + ch] = scale;
    stats[3 * (size_t)c + ch] = beta[ch] - meanf * scale;
  }
}

// The forward's element-wise part: y = x * scale + shift (then ReLU).
extern "C" __global__ void dsnn_bn_apply(unsigned int total, const float* x, const float* stats,
                                         float* y, unsigned int c, unsigned int hw, int relu) {
  GRID_STRIDE(t, total) {
    unsigned int ch = (t / hw) % c;
    float o = x[t] * stats[2 * (size_t)c + ch] + stats[3 * (size_t)c + ch];
    y[t] = relu ? fmaxf(o, 0.0f) : o;
  }
}

// batchnorm.rs `BatchNormBackward`, per-channel part. One block per channel.
// out is [dx (total), dgamma (c), dbeta (c)]; this writes dgamma and dbeta
// and leaves mean, inv std, k = gamma * inv, mean(dy), mean(dy * xhat) in
// coef[5 * ch ..].
extern "C" __global__ void dsnn_bn_bwd_stats(const float* x, const float* gamma, const float* dy,
                                             float* out, float* coef, unsigned int n,
                                             unsigned int c, unsigned int hw, float eps) {
  __shared__ double scratch[4 * BN_THREADS];
  unsigned int ch = blockIdx.x;
  double v[4] = {0.0, 0.0, 0.0, 0.0};
  unsigned int count = n * hw;  // <= n * c * hw < 2^32 (checked by src/cuda.rs)
  BLOCK_STRIDE(t, count) {
    unsigned int s = t / hw, q = t % hw;
    size_t idx = ((size_t)s * c + ch) * hw + q;
    double a = (double)x[idx], g = (double)dy[idx];
    v[0] += a;
    v[1] += a * a;
    v[2] += g;
    v[3] += g * a;
  }
  block_sum(v, 4, scratch);
  if (threadIdx.x == 0) {
    double cnt = (double)count;
    double mean = v[0] / cnt;
    double var = v[1] / cnt - mean * mean;
    if (var < 0.0) var = 0.0;
    double inv = 1.0 / sqrt(var + (double)eps);
    double sg = v[2];
    double sgx = inv * (v[3] - mean * sg);
    size_t total = (size_t)n * c * hw;
    out[total + ch] = (float)sgx;
    out[total + c + ch] = (float)sg;
    float invf = (float)inv;
    float* k = coef + 5 * (size_t)ch;
    k[0] = (float)mean;
    k[1] = invf;
    k[2] = gamma[ch] * invf;
    k[3] = (float)(sg / cnt);
    k[4] = (float)(sgx / cnt);
  }
}

// dx = k * (dy - mean(dy) - xhat * mean(dy * xhat)).
extern "C" __global__ void dsnn_bn_bwd_apply(unsigned int total, const float* x, const float* dy,
                                             const float* coef, float* dx, unsigned int c,
                                             unsigned int hw) {
  GRID_STRIDE(t, total) {
    unsigned int ch = (t / hw) % c;
    const float* k = coef + 5 * (size_t)ch;
    float xhat = (x[t] - k[0]) * k[1];
    dx[t] = k[2] * (dy[t] - k[3] - xhat * k[4]);
  }
}

// ------------------------------------------------------- small fused ops

// ops.rs `Relu`.
extern "C" __global__ void dsnn_relu(unsigned int n, const float* x, float* y) {
  GRID_STRIDE(i, n) { y[i] = fmaxf(x[i], 0.0f); }
}

// ops.rs `ReluBackward`: dy where y > 0.
extern "C" __global__ void dsnn_relu_bwd(unsigned int n, const float* g, const float* y,
                                         float* dx) {
  GRID_STRIDE(i, n) { dx[i] = y[i] > 0.0f ? g[i] : 0.0f; }
}

// ops.rs `AddRelu`.
extern "C" __global__ void dsnn_add_relu(unsigned int n, const float* a, const float* b,
                                         float* y) {
  GRID_STRIDE(i, n) { y[i] = fmaxf(a[i] + b[i], 0.0f); }
}

// ops.rs `AddChannelBias`: x (N x C x rest) + bias[c].
extern "C" __global__ void dsnn_add_channel_bias(unsigned int total, const float* x,
                                                 const float* b, float* y, unsigned int c,
                                                 unsigned int hw) {
  GRID_STRIDE(t, total) { y[t] = x[t] + b[(t / hw) % c]; }
}

// ops.rs `ChannelSum`: one block per channel, double accumulation.
extern "C" __global__ void dsnn_channel_sum(const float* g, float* out, unsigned int n,
                                            unsigned int c, unsigned int hw) {
  __shared__ double scratch[BN_THREADS];
  unsigned int ch = blockIdx.x;
  double v[1] = {0.0};
  unsigned int count = n * hw;  // <= n * c * hw < 2^32 (checked by src/cuda.rs)
  BLOCK_STRIDE(t, count) {
    unsigned int s = t / hw, q = t % hw;
    v[0] += (double)g[((size_t)s * c + ch) * hw + q];
  }
  block_sum(v, 1, scratch);
  if (threadIdx.x == 0) out[ch] = (float)v[0];
}

// ops.rs `MaxPool2x2` over planes of h x w (odd trailing row/column dropped).
extern "C" __global__ void dsnn_max_pool2x2(unsigned int total, const float* x, float* y,
                                            unsigned int h, unsigned int w, unsigned int ho,
                                            unsigned int wo) {
  GRID_STRIDE(t, total) {
    unsigned int ox = t % wo, oy = (t / wo) % ho, plane = t / (wo * ho);
    const float* r0 = x + (size_t)plane * h * w + (size_t)(2 * oy) * w + 2 * ox;
    const float* r1 = r0 + w;
    y[t] = fmaxf(fmaxf(r0[0], r0[1]), fmaxf(r1[0], r1[1]));
  }
}

// ops.rs `MaxPool2x2Backward`: each window's gradient to its first maximum.
// dx must be zeroed (windows do not overlap, so plain stores suffice).
extern "C" __global__ void dsnn_max_pool2x2_bwd(unsigned int total, const float* x,
                                                const float* g, float* dx, unsigned int h,
                                                unsigned int w, unsigned int ho,
                                                unsigned int wo) {
  GRID_STRIDE(t, total) {
    unsigned int ox = t % wo, oy = (t / wo) % ho, plane = t / (wo * ho);
    size_t base = (size_t)plane * h * w;
    size_t cand[4] = {base + (size_t)(2 * oy) * w + 2 * ox, base + (size_t)(2 * oy) * w + 2 * ox + 1,
                      base + (size_t)(2 * oy + 1) * w + 2 * ox,
                      base + (size_t)(2 * oy + 1) * w + 2 * ox + 1};
    size_t best = cand[0];
    for (int k = 1; k < 4; ++k)
      if (x[cand[k]] > x[best]) best = cand[k];
    dx[best] = g[t];
  }
}

// pool.rs `PoolWindow::argmax`: the index within its h x w plane of the
// element that output position (oy, ox) takes from its k x k window
// (moved by `stride`, padding `pad` read as minus infinity): the first
// largest in row-major order, except that a NaN replaces whatever was
// chosen (so the last NaN wins), exactly as the CPU chooses. Every window
// holds at least one element (pad <= k / 2, checked on the Rust side).
__device__ __forceinline__ unsigned int pool_argmax(const float* plane, unsigned int h,
                                                    unsigned int w, unsigned int oy,
                                                    unsigned int ox, unsigned int k,
                                                    unsigned int stride, unsigned int pad) {
  int y0 = (int)(oy * stride) - (int)pad, x0 = (int)(ox * stride) - (int)pad;
  float best = 0.0f;
  int at = -1;
  for (int ky = 0; ky < (int)k; ++ky) {
    int yy = y0 + ky;
    if (yy < 0 || yy >= (int)h) continue;
    for (int kx = 0; kx < (int)k; ++kx) {
      int xx = x0 + kx;
      if (xx < 0 || xx >= (int)w) continue;
      int i = yy * (int)w + xx;
      float v = plane[i];
      if (v > best || at < 0 || v != v) {
        best = v;
        at = i;
      }
    }
  }
  return (unsigned int)at;
}

// pool.rs `MaxPool`: planes of h x w to ho x wo, any window, stride and
// padding. One thread per output element.
extern "C" __global__ void dsnn_max_pool(unsigned int total, const float* x, float* y,
                                         unsigned int h, unsigned int w, unsigned int ho,
                                         unsigned int wo, unsigned int k, unsigned int stride,
                                         unsigned int pad) {
  GRID_STRIDE(t, total) {
    unsigned int ox = t % wo, oy = (t / wo) % ho, plane = t / (wo * ho);
    const float* xp = x + (size_t)plane * h * w;
    y[t] = xp[pool_argmax(xp, h, w, oy, ox, k, stride, pad)];
  }
}

// The first half of pool.rs `MaxPoolBackward`: the chosen element of every
// window (its index within the plane), as `dsnn_max_pool` chooses it.
extern "C" __global__ void dsnn_max_pool_argmax(unsigned int total, const float* x,
                                                unsigned int* arg, unsigned int h,
                                                unsigned int w, unsigned int ho,
                                                unsigned int wo, unsigned int k,
                                                unsigned int stride, unsigned int pad) {
  GRID_STRIDE(t, total) {
    unsigned int ox = t % wo, oy = (t / wo) % ho, plane = t / (wo * ho);
    arg[t] = pool_argmax(x + (size_t)plane * h * w, h, w, oy, ox, k, stride, pad);
  }
}

// The second half: each input element gathers the gradients of the windows
// that chose it (no atomics), visiting them in the CPU's order (rows, then
// columns, ascending) so that overlapping windows (stride < k) sum exactly
// as the CPU sums them. One thread per input element.
extern "C" __global__ void dsnn_max_pool_bwd(unsigned int total, const unsigned int* arg,
                                             const float* g, float* dx, unsigned int h,
                                             unsigned int w, unsigned int ho, unsigned int wo,
                                             unsigned int k, unsigned int stride,
                                             unsigned int pad) {
  GRID_STRIDE(t, total) {
    unsigned int xx = t % w, yy = (t / w) % h, plane = t / (w * h);
    unsigned int me = yy * w + xx;
    // Windows oy with oy*stride - pad <= yy <= oy*stride - pad + k - 1.
    int ylo = (int)yy + (int)pad - (int)k + 1, xlo = (int)xx + (int)pad - (int)k + 1;
    int oy0 = ylo <= 0 ? 0 : (ylo + (int)stride - 1) / (int)stride;
    int ox0 = xlo <= 0 ? 0 : (xlo + (int)stride - 1) / (int)stride;
    int oy1 = ((int)yy + (int)pad) / (int)stride, ox1 = ((int)xx + (int)pad) / (int)stride;
    if (oy1 > (int)ho - 1) oy1 = (int)ho - 1;
    if (ox1 > (int)wo - 1) ox1 = (int)wo - 1;
    size_t base = (size_t)plane * ho * wo;
    float acc = 0.0f;
    for (int oy = oy0; oy <= oy1; ++oy) {
      for (int ox = ox0; ox <= ox1; ++ox) {
        size_t o = base + (size_t)oy * wo + ox;
        if (arg[o] == me) acc += g[o];
      }
    }
    dx[t] = acc;
  }
}

// ------------------------------------------------------------ optimisers
//
// optim/update.rs `host_update`, one kernel per rule, in place on the
// parameter w, with its gradient g and the rule's state buffers (buffer j of
// n values at st[j * n ..]). Every kernel has the same signature:
// (n, w, g, st, lr, wd, c0, c1, c2, flags); the constants and flags are
// named per kernel. The L2 term comes first (g + wd * w when wd != 0), then
// the same operations in the same order as the host loop, so that with
// --fmad=false, IEEE division and square root the result is bit-identical.

#define OPT_PARAMS                                                                          \
  unsigned int n, float *w, const float *g, float *st, float lr, float wd, float c0, float c1, \
      float c2, int flags

__device__ __forceinline__ float with_l2(float g, float w, float wd) {
  return wd != 0.0f ? g + wd * w : g;
}

#define ADAM_BETA1 0.9f
#define ADAM_BETA2 0.999f

// SGD: c0 = momentum (0: w -= lr * g); flags & 1: the first step (the buffer
// st[0..n) takes the gradient), else buf = momentum * buf + g; w -= lr * buf.
extern "C" __global__ void dsnn_opt_sgd(OPT_PARAMS) {
  float* buf = st;
  GRID_STRIDE(i, n) {
    float gi = with_l2(g[i], w[i], wd);
    if (c0 == 0.0f) {
      w[i] -= lr * gi;
    } else {
      buf[i] = (flags & 1) ? gi : c0 * buf[i] + gi;
      w[i] -= lr * buf[i];
    }
  }
}

// Adam: c0 = 1 - beta1^t, c1 = 1 - beta2^t; moments in st[0..n), st[n..2n).
extern "C" __global__ void dsnn_opt_adam(OPT_PARAMS) {
  float* m = st;
  float* v = st + (size_t)n;
  GRID_STRIDE(i, n) {
    float gi = with_l2(g[i], w[i], wd);
    m[i] = ADAM_BETA1 * m[i] + (1.0f - ADAM_BETA1) * gi;
    v[i] = ADAM_BETA2 * v[i] + (1.0f - ADAM_BETA2) * gi * gi;
    float denom = sqrtf(v[i] / c1) + 1e-8f;
    w[i] -= lr * (m[i] / c0) / denom;
  }
}

// Adagrad: the sum of squares in st[0..n).
extern "C" __global__ void dsnn_opt_adagrad(OPT_PARAMS) {
  float* sum = st;
  GRID_STRIDE(i, n) {
    float gi = with_l2(g[i], w[i], wd);
    sum[i] += gi * gi;
    w[i] -= lr * gi / (sqrtf(sum[i]) + 1e-10f);
  }
}

// Adadelta (rho 0.9, eps 1e-6): squared gradients in st[0..n), squared
// updates in st[n..2n).
extern "C" __global__ void dsnn_opt_adadelta(OPT_PARAMS) {
  const float rho = 0.9f, eps = 1e-6f;
  float* sq = st;
  float* acc = st + (size_t)n;
  GRID_STRIDE(i, n) {
    float gi = with_l2(g[i], w[i], wd);
    sq[i] = rho * sq[i] + (1.0f - rho) * gi * gi;
    float delta = sqrtf(acc[i] + eps) / sqrtf(sq[i] + eps) * gi;
    acc[i] = rho * acc[i] + (1.0f - rho) * delta * delta;
    w[i] -= lr * delta;
  }
}

// RMSprop (alpha 0.99): c0 = momentum (> 0: the buffer st[n..2n)); the
// squared average in st[0..n).
extern "C" __global__ void dsnn_opt_rmsprop(OPT_PARAMS) {
  const float alpha = 0.99f;
  float* sq = st;
  float* buf = st + (size_t)n;
  GRID_STRIDE(i, n) {
    float gi = with_l2(g[i], w[i], wd);
    sq[i] = alpha * sq[i] + (1.0f - alpha) * gi * gi;
    float step = gi / (sqrtf(sq[i]) + 1e-8f);
    if (c0 > 0.0f) {
      buf[i] = c0 * buf[i] + step;
      w[i] -= lr * buf[i];
    } else {
      w[i] -= lr * step;
    }
  }
}

// RAdam, optionally inside Lookahead (Ranger): c0 = 1 - beta1^t, c1 = the
// rectification r, c2 = sqrt(1 - beta2^t); flags & 1: rectified (else plain
// momentum), flags & 2: copy w into the slow weights st[2n..3n) first (their
// first step), flags & 4: Lookahead synchronises after the update
// (slow += 0.5 (w - slow), w = slow). Moments in st[0..n), st[n..2n).
extern "C" __global__ void dsnn_opt_radam(OPT_PARAMS) {
  float* m = st;
  float* v = st + (size_t)n;
  float* slow = st + 2 * (size_t)n;
  GRID_STRIDE(i, n) {
    if (flags & 2) slow[i] = w[i];
    float gi = with_l2(g[i], w[i], wd);
    m[i] = ADAM_BETA1 * m[i] + (1.0f - ADAM_BETA1) * gi;
    v[i] = ADAM_BETA2 * v[i] + (1.0f - ADAM_BETA2) * gi * gi;
    float mhat = m[i] / c0;
    if (flags & 1) {
      float adaptive = c2 / (sqrtf(v[i]) + 1e-8f);
      w[i] -= lr * mhat * c1 * adaptive;
    } else {
      w[i] -= lr * mhat;
    }
    if (flags & 4) {
      slow[i] += 0.5f * (w[i] - slow[i]);
      w[i] = slow[i];
    }
  }
}
