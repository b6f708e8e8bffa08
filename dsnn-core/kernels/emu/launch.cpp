// Host wrappers of dsnn's CUDA kernels for the emulation test: each
// `emu_<kernel>(grid, block, args...)` runs the kernel under cuda_emu.h.
#include "cuda_emu.h"

#include "../dsnn_ops.cu"

#define EMU_ARGS(...) __VA_ARGS__
#define EMU(name, params, args)                                                \
  extern "C" void emu_##name(unsigned int emu_grid, unsigned int emu_block,   \
                             EMU_ARGS params) {                                \
    emu_launch(emu_grid, emu_block, [=] { name args; });                       \
  }

typedef unsigned int u32;
EMU(dsnn_round_to_fixed, (u32 n, const float* x, float* y, int special, float scale, float delta, float bound),
    (n, x, y, special, scale, delta, bound))
EMU(dsnn_quantize_q, (u32 n, const float* w, float* y, int lo, int st, uint64_t seed, uint64_t step),
    (n, w, y, lo, st, seed, step))
EMU(dsnn_ps_weight, (u32 n, const float* s, const float* g, float* y, int lo, int hi, int st, uint64_t seed, uint64_t step),
    (n, s, g, y, lo, hi, st, seed, step))
EMU(dsnn_clamp_abs, (u32 n, float* w, int lo), (n, w, lo))
EMU(dsnn_im2col, (u32 t, const float* x, float* col, u32 cin, u32 h, u32 w, u32 kh, u32 kw, u32 ho, u32 wo, u32 s, u32 p, u32 ss, u32 rs),
    (t, x, col, cin, h, w, kh, kw, ho, wo, s, p, ss, rs))
EMU(dsnn_col2im, (u32 t, const float* col, float* dx, u32 cin, u32 h, u32 w, u32 kh, u32 kw, u32 ho, u32 wo, u32 s, u32 p),
    (t, col, dx, cin, h, w, kh, kw, ho, wo, s, p))
EMU(dsnn_swap01, (u32 t, const float* src, float* dst, u32 a, u32 b, u32 c), (t, src, dst, a, b, c))
#define GCONV_ARGS u32 cin, u32 h, u32 w, u32 cout, u32 kh, u32 kw, u32 ho, u32 wo, u32 s, u32 p, u32 groups
#define GCONV_NAMES cin, h, w, cout, kh, kw, ho, wo, s, p, groups
EMU(dsnn_conv_grouped, (u32 t, const float* x, const float* wt, float* y, GCONV_ARGS),
    (t, x, wt, y, GCONV_NAMES))
EMU(dsnn_conv_grouped_bwd_input, (u32 t, const float* dy, const float* wt, float* dx, GCONV_ARGS),
    (t, dy, wt, dx, GCONV_NAMES))
EMU(dsnn_conv_grouped_bwd_weight, (u32 nw, const float* x, const float* dy, float* dw, u32 n, GCONV_ARGS),
    (nw, x, dy, dw, n, GCONV_NAMES))
EMU(dsnn_bn_stats, (const float* x, const float* g, const float* b, float* st, u32 n, u32 c, u32 hw, float eps),
    (x, g, b, st, n, c, hw, eps))
EMU(dsnn_bn_apply, (u32 t, const float* x, const float* st, float* y, u32 c, u32 hw, int relu),
    (t, x, st, y, c, hw, relu))
EMU(dsnn_bn_bwd_stats, (const float* x, const float* g, const float* dy, float* out, float* coef, u32 n, u32 c, u32 hw, float eps),
    (x, g, dy, out, coef, n, c, hw, eps))
EMU(dsnn_bn_bwd_apply, (u32 t, const float* x, const float* dy, const float* coef, float* dx, u32 c, u32 hw),
    (t, x, dy, coef, dx, c, hw))
EMU(dsnn_relu, (u32 n, const float* x, float* y), (n, x, y))
EMU(dsnn_relu_bwd, (u32 n, const float* g, const float* y, float* dx), (n, g, y, dx))
EMU(dsnn_add_relu, (u32 n, const float* a, const float* b, float* y), (n, a, b, y))
EMU(dsnn_add_channel_bias, (u32 t, const float* x, const float* b, float* y, u32 c, u32 hw), (t, x, b, y, c, hw))
EMU(dsnn_channel_sum, (const float* g, float* out, u32 n, u32 c, u32 hw), (g, out, n, c, hw))
EMU(dsnn_max_pool2x2, (u32 t, const float* x, float* y, u32 h, u32 w, u32 ho, u32 wo), (t, x, y, h, w, ho, wo))
EMU(dsnn_max_pool2x2_bwd, (u32 t, const float* x, const float* g, float* dx, u32 h, u32 w, u32 ho, u32 wo),
    (t, x, g, dx, h, w, ho, wo))
#define POOL_ARGS u32 h, u32 w, u32 ho, u32 wo, u32 k, u32 s, u32 p
#define POOL_NAMES h, w, ho, wo, k, s, p
EMU(dsnn_max_pool, (u32 t, const float* x, float* y, POOL_ARGS), (t, x, y, POOL_NAMES))
EMU(dsnn_max_pool_argmax, (u32 t, const float* x, u32* arg, POOL_ARGS), (t, x, arg, POOL_NAMES))
EMU(dsnn_max_pool_bwd, (u32 t, const u32* arg, const float* g, float* dx, POOL_ARGS),
    (t, arg, g, dx, POOL_NAMES))
#define EMU_OPT(name)                                                                   \
  EMU(name, (u32 n, float* w, const float* g, float* st, float lr, float wd, float c0, float c1, \
             float c2, int flags),                                                        \
      (n, w, g, st, lr, wd, c0, c1, c2, flags))
EMU_OPT(dsnn_opt_sgd)
EMU_OPT(dsnn_opt_adam)
EMU_OPT(dsnn_opt_adagrad)
EMU_OPT(dsnn_opt_adadelta)
EMU_OPT(dsnn_opt_rmsprop)
EMU_OPT(dsnn_opt_radam)
