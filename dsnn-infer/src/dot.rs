//! The multiply-accumulate re-expression of a convolution's shift-add sums,
//! for CPUs where an 8-bit dot-product instruction (AVX-512 VNNI
//! `vpdpbusd`: four `u8 x i8` products added into each 32-bit lane) is
//! faster than the separate vector adds of the shift-add kernels.
//!
//! It computes exactly the integers the bucketed shift-add kernel forms,
//! and nothing else. In output channel `c`, the weights `±2^-m` of the
//! buckets with `m <= top_c` (the *dense* part) become the small integers
//! `±2^(top_c - m)`, at most `2^6` so that they fit `i8`, and the channel's
//! dense sum is `sum_m shl(P_m, S - m) = (sum_k X_k w_k) << (S - top_c)`:
//! exact because `top_c <= S` (no dense bucket is floored, so `shl` is a
//! plain left shift and distributes over the sum). Activations are signed
//! and up to 32 bits wide, so each `X` is offset by a bias `B = 2^(8P - 1)`
//! (`|X| < B`) and split into `P` unsigned bytes, `X + B = sum_j 2^(8j)
//! byte_j`; the dot product of plane `j` with the weights is a sum of `u8 x
//! i8` products whose magnitude is at most `255 * sum_k |w_k| < 2^31`
//! ([`DotPlan::new`] checks it), so its 32-bit lane sum is exact, and
//! `sum_k X_k w_k = sum_j 2^(8j) dot_j - B sum_k w_k` in 64 bits. The
//! buckets with `m > top_c` (weights too small beside the channel's
//! largest, floored ones included) stay shift-add: [`DotPlan::residual`]
//! holds them as whole buckets, so their sums and floors are those of the
//! shift-add kernel. The shift-add kernels stay the reference and the path
//! on CPUs without VNNI; [`DotPlan::channel_sum`] is this re-expression in
//! plain Rust, tested against the bucket sums on every CPU.

use crate::weights::{Plan, ShiftWeight};

/// Inputs per 32-bit lane of the dot-product instruction (four bytes).
pub const QUAD: usize = 4;

/// Output channels a kernel call accumulates together (the weights of a
/// quad are stored in groups of this many channels).
pub const DOT_CHANNELS: usize = 4;

/// Most octaves between a channel's largest dense weight and its smallest:
/// `2^6 = 64` is the largest power of two whose negation and itself fit `i8`.
pub const MAX_OCTAVES: u8 = 6;

/// Largest share of a layer's non-zero weights left to the residual
/// shift-add pass (`1 / RESIDUAL_DIVISOR`); with more, the layer keeps the
/// shift-add kernel (the residual pass would cost more than it saves).
pub const RESIDUAL_DIVISOR: usize = 8;

/// A square convolution's weights as `i8` multipliers for the
/// dot-product kernel, grouped by quads of input channels, plus the
/// shift-add residual (see the module documentation).
#[derive(Debug, Clone)]
pub struct DotPlan {
    /// Output channels (a multiple of [`DOT_CHANNELS`]).
    pub cout: usize,
    /// Input channels.
    pub cin: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Quads of inputs per output: `ceil(cin / 4) x kernel x kernel`, quad
    /// `q = (cq * kernel + ky) * kernel + kx` holding input channels `4 cq ..
    /// 4 cq + 4` (zero weights past `cin`) at kernel position `(ky, kx)`.
    pub quads: usize,
    /// `cout / DOT_CHANNELS` groups of `quads x DOT_CHANNELS` lanes: the four
    /// `i8` weights of quad `q` for channel `n` of group `g` (byte `t` for
    /// input channel `4 cq + t`) at `(g * quads + q) * DOT_CHANNELS + n`.
    pub weights: Vec<i32>,
    /// `S - top_c` per channel: the left shift of the channel's dense sum.
    pub shift: Vec<u32>,
    /// Sum of the channel's `i8` weights (for the bias correction).
    pub weight_sum: Vec<i64>,
    /// The buckets left to the shift-add kernel (one row chunk).
    pub residual: Plan,
    /// The channels that have residual buckets.
    pub residual_channels: Vec<usize>,
    /// Non-zero weights in the dense part.
    pub dense_weights: usize,
    /// Non-zero weights in [`DotPlan::residual`].
    pub residual_weights: usize,
}

/// Why a layer keeps the shift-add kernel (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoDot {
    /// The output channels are not a multiple of [`DOT_CHANNELS`], or the
    /// fan-in is not `cin x kernel x kernel`.
    Shape,
    /// More than `1 / RESIDUAL_DIVISOR` of the weights would be residual.
    Residual {
        /// Residual weights.
        residual: usize,
        /// All non-zero weights.
        nonzero: usize,
    },
    /// `255 * sum_k |w_k|` of some channel reaches `2^31`: a byte plane's
    /// 32-bit dot product could wrap.
    Bound {
        /// The channel.
        channel: usize,
        /// Its `sum_k |w_k|`.
        abs_sum: i64,
    },
}

/// Whether byte-plane dot products with multipliers summing (in absolute
/// value) to `abs_sum` are exact in 32-bit lanes: `255 * abs_sum < 2^31`.
pub fn plane_sums_fit(abs_sum: i64) -> bool {
    abs_sum.checked_mul(255).is_some_and(|v| v < 1 << 31)
}

/// Byte planes for activations with `|X| <= max_abs`: the fewest `P` in
/// 2..=4 with `max_abs < 2^(8P - 1)` (so `X + B` is in `[0, 2^(8P))`), and
/// 4 for anything an `i32` holds.
pub fn planes_for(max_abs: i64) -> usize {
    (2..4).find(|&p| max_abs < 1 << (8 * p - 1)).unwrap_or(4)
}

/// The bias `B = 2^(8P - 1)` added to every activation before its bytes
/// are taken (wrapping to `i32::MIN` for `P = 4`, as the kernels add it).
pub fn plane_bias(planes: usize) -> i32 {
    (1u32 << (8 * planes - 1)) as i32
}

impl DotPlan {
    /// The plan of a `cout x (cin x kernel x kernel)` convolution with
    /// accumulator shift `acc_shift`, or why it keeps the shift-add kernel.
    pub fn new(
        weights: &[ShiftWeight],
        cout: usize,
        cin: usize,
        kernel: usize,
        acc_shift: u32,
    ) -> Result<DotPlan, NoDot> {
        let kk = kernel * kernel;
        let fan_in = cin * kk;
        if cout == 0
            || !cout.is_multiple_of(DOT_CHANNELS)
            || kk == 0
            || weights.len() != cout * fan_in
        {
            return Err(NoDot::Shape);
        }
        let quads = cin.div_ceil(QUAD) * kk;
        let mut plan = DotPlan {
            cout,
            cin,
            kernel,
            quads,
            weights: vec![0; cout * quads],
            shift: vec![0; cout],
            weight_sum: vec![0; cout],
            residual: Plan::default(),
            residual_channels: Vec::new(),
            dense_weights: 0,
            residual_weights: 0,
        };
        let mut residual = vec![ShiftWeight::Zero; weights.len()];
        for c in 0..cout {
            let row = &weights[c * fan_in..(c + 1) * fan_in];
            let m_min = row
                .iter()
                .filter_map(|w| match w {
                    ShiftWeight::Pow { m, .. } => Some(u32::from(*m)),
                    ShiftWeight::Zero => None,
                })
                .min();
            // The largest m kept dense: at most S (no floored dense bucket)
            // and MAX_OCTAVES below the channel's largest weight.
            let top = m_min.map_or(acc_shift, |m| (m + u32::from(MAX_OCTAVES)).min(acc_shift));
            plan.shift[c] = acc_shift - top;
            let (g, n) = (c / DOT_CHANNELS, c % DOT_CHANNELS);
            let mut abs_sum = 0i64;
            let mut has_residual = false;
            for (k, w) in row.iter().enumerate() {
                let ShiftWeight::Pow { negative, m } = *w else {
                    continue;
                };
                if u32::from(m) > top {
                    residual[c * fan_in + k] = *w;
                    plan.residual_weights += 1;
                    has_residual = true;
                    continue;
                }
                let magnitude = 1i32 << (top - u32::from(m));
                let v = if negative { -magnitude } else { magnitude };
                let (ci, at) = (k / kk, k % kk);
                let q = (ci / QUAD) * kk + at;
                let lane = &mut plan.weights[(g * quads + q) * DOT_CHANNELS + n];
                let byte = 8 * (ci % QUAD);
                *lane |= ((v as i8 as u8 as u32) << byte) as i32;
                plan.weight_sum[c] += i64::from(v);
                abs_sum += i64::from(magnitude);
                plan.dense_weights += 1;
            }
            if !plane_sums_fit(abs_sum) {
                return Err(NoDot::Bound {
                    channel: c,
                    abs_sum,
                });
            }
            if has_residual {
                plan.residual_channels.push(c);
            }
        }
        let nonzero = plan.dense_weights + plan.residual_weights;
        if plan.residual_weights * RESIDUAL_DIVISOR > nonzero {
            return Err(NoDot::Residual {
                residual: plan.residual_weights,
                nonzero,
            });
        }
        // One chunk: the residual is small, and its floored buckets (if
        // any) must not be split.
        plan.residual = Plan::chunked(&residual, cout, fan_in, acc_shift, usize::MAX);
        Ok(plan)
    }

    /// Whether the dot-product kernel is expected to beat the shift-add
    /// kernel with `planes` byte planes: its `quads x planes` instructions
    /// per output (one per cycle on Zen 4) against the shift-add kernel's
    /// one vector add per non-zero weight (0.78 per cycle there, the rest
    /// of the margin paying for packing and the residual). A layer with few
    /// input channels pads its quads with zero weights (LeNet-5's first
    /// convolution: 25 quads x 3 planes for 25 weights) and keeps shift-add;
    /// with 4 planes it never pays off (`4 ceil(cin / 4) >= cin`).
    pub fn pays_off(&self, planes: usize) -> bool {
        self.quads * planes * self.cout < self.dense_weights + self.residual_weights
    }

    /// The `i8` weight of channel `c` at fan-in index `k` (`(ci, ky, kx)`),
    /// 0 for a zero or residual weight.
    pub fn weight(&self, c: usize, k: usize) -> i8 {
        let kk = self.kernel * self.kernel;
        let (ci, at) = (k / kk, k % kk);
        let q = (ci / QUAD) * kk + at;
        let (g, n) = (c / DOT_CHANNELS, c % DOT_CHANNELS);
        let lane = self.weights[(g * self.quads + q) * DOT_CHANNELS + n];
        (lane >> (8 * (ci % QUAD))) as i8
    }

    /// Channel `c`'s accumulator for one output position whose inputs
    /// (fan-in order) are `x`, in plain Rust and in the kernels' steps:
    /// `init + ((sum_j 2^(8j) dot_j - B sum_k w_k) << shift_c) + residual`,
    /// each plane's `dot_j` summed in wrapping 32-bit arithmetic as the
    /// instruction does. Equal to the shift-add kernel's
    /// `init + sum_b shl(P_b, S - m_b)` whenever `max|x| <= max_abs`.
    pub fn channel_sum(&self, c: usize, x: &[i32], max_abs: i64, init: i64) -> i64 {
        let planes = planes_for(max_abs);
        let bias = plane_bias(planes);
        let mut dense = 0i64;
        for j in 0..planes {
            let mut lane = 0i32;
            for (k, &v) in x.iter().enumerate() {
                let byte = ((v.wrapping_add(bias) as u32) >> (8 * j)) & 0xff;
                lane = lane.wrapping_add(byte as i32 * i32::from(self.weight(c, k)));
            }
            dense += i64::from(lane) << (8 * j);
        }
        dense -= i64::from(bias as u32) * self.weight_sum[c];
        init + (dense << self.shift[c]) + self.residual.shifted_sum(c, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_rng::Lcg;

    fn random_weights(g: &mut Lcg, len: usize, m_lo: u8, m_hi: u8, zeros: u64) -> Vec<ShiftWeight> {
        (0..len)
            .map(|_| {
                if g.next() % 100 < zeros {
                    ShiftWeight::Zero
                } else {
                    // Half the weights at m_lo, a quarter one octave
                    // below, and so on (as trained and initialised layers).
                    let octaves = (g.next() | 1 << 40).trailing_zeros() as u8;
                    ShiftWeight::Pow {
                        negative: g.next().is_multiple_of(2),
                        m: m_lo + octaves.min(m_hi - m_lo),
                    }
                }
            })
            .collect()
    }

    /// The shift-add kernel's sum, bucket by bucket.
    fn bucket_sum(plan: &Plan, c: usize, x: &[i32], init: i64) -> i64 {
        init + plan.shifted_sum(c, x)
    }

    #[test]
    fn planes_cover_the_activation_range() {
        assert_eq!(planes_for(0), 2);
        assert_eq!(planes_for((1 << 15) - 1), 2);
        assert_eq!(planes_for(1 << 15), 3);
        assert_eq!(planes_for((1 << 23) - 1), 3);
        assert_eq!(planes_for(1 << 23), 4);
        assert_eq!(planes_for(1 << 31), 4);
        assert_eq!(plane_bias(4), i32::MIN);
        assert!(plane_sums_fit(8_421_504));
        assert!(!plane_sums_fit(8_421_505));
        assert!(!plane_sums_fit(i64::MAX));
    }

    #[test]
    fn channel_sums_equal_the_bucket_sums() {
        let mut g = Lcg(7);
        // (cin, kernel, m range, zero %, S, activation bound)
        for (cin, kernel, m_lo, m_hi, zeros, s, max_abs) in [
            (16, 3, 4, 12, 0, 14, 400_000i64),
            (3, 3, 2, 11, 10, 11, 131_071),
            (5, 1, 0, 6, 30, 6, 30_000),
            (8, 3, 4, 15, 5, 15, (1i64 << 31) - 1),
            // S below some m: floored buckets stay in the residual.
            (16, 3, 6, 14, 0, 10, 1 << 20),
        ] {
            let cout = 8;
            let fan_in = cin * kernel * kernel;
            let ws = random_weights(&mut g, cout * fan_in, m_lo, m_hi, zeros);
            let plan = Plan::new(&ws, cout, fan_in, s);
            let dot = DotPlan::new(&ws, cout, cin, kernel, s).unwrap();
            assert_eq!(dot.dense_weights + dot.residual_weights, plan.nonzero);
            if s == 10 {
                assert!(plan.buckets.iter().any(|b| b.shift < 0), "floored buckets");
                assert!(dot.residual.buckets.iter().any(|b| b.shift < 0));
            }
            for trial in 0..20 {
                let x: Vec<i32> = (0..fan_in)
                    .map(|_| {
                        let span = 2 * max_abs as u64 + 1;
                        let v = (g.next() << 31 | g.next()) % span;
                        (v as i64 - max_abs) as i32
                    })
                    .collect();
                let x_max = x.iter().map(|v| i64::from(*v).abs()).max().unwrap();
                for c in 0..cout {
                    let init = c as i64 * 1001 - 3000;
                    assert_eq!(
                        dot.channel_sum(c, &x, x_max, init),
                        bucket_sum(&plan, c, &x, init),
                        "cin {cin} k {kernel} S {s} channel {c} trial {trial}"
                    );
                }
            }
        }
    }

    #[test]
    fn layers_that_do_not_fit_keep_the_shift_add_kernel() {
        let mut g = Lcg(3);
        // Six output channels: not a multiple of DOT_CHANNELS.
        let ws = random_weights(&mut g, 6 * 27, 2, 5, 0);
        assert_eq!(DotPlan::new(&ws, 6, 3, 3, 5).unwrap_err(), NoDot::Shape);
        // Weights spread over 16 octaves evenly: most of them residual.
        let ws: Vec<ShiftWeight> = (0..8 * 144)
            .map(|i| ShiftWeight::Pow {
                negative: i % 3 == 0,
                m: (i % 16) as u8,
            })
            .collect();
        assert!(matches!(
            DotPlan::new(&ws, 8, 16, 3, 15),
            Err(NoDot::Residual { .. })
        ));
        // A fan-in so large that 255 * sum |w| reaches 2^31: with S = 6,
        // weights of 1 become the multiplier 2^6, and 132,000 of them sum
        // to 8,448,000 > 2^31 / 255.
        let cin = 132_000;
        let ws = vec![
            ShiftWeight::Pow {
                negative: false,
                m: 0
            };
            4 * cin
        ];
        assert!(matches!(
            DotPlan::new(&ws, 4, cin, 1, 6),
            Err(NoDot::Bound { channel: 0, .. })
        ));
    }
}
