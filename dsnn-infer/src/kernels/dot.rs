//! AVX-512 VNNI kernels of the dot-product re-expression
//! ([`crate::dot`]): [`pack_quads`] turns four input channels of batch-lanes
//! activations (16 images per vector) into `P` byte planes, and
//! [`dot_avx512_vnni`] accumulates `u8 x i8` products of those planes with
//! a [`crate::dot::DotPlan`]'s weights (`vpdpbusd`: four products per
//! 32-bit lane), then combines the planes in 64 bits into the same
//! accumulators the shift-add kernel makes. For CPUs where one
//! multiply-accumulate instruction does the work of four vector adds; the
//! shift-add kernels ([`super::rows_avx512`]) remain the reference and the
//! path everywhere else.

#[cfg(target_arch = "x86_64")]
use crate::dot::DOT_CHANNELS;

/// Whether this CPU can run the kernels (AVX-512 F, BW and VNNI).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Packs `cols` columns of four input channels: column `i` of channel `t`
/// is the 16-lane vector at `src[t] + i * src_step[t]` (elements); lane `l`
/// of plane `j` of column `i`, written at `dst + (i * P + j) * 16`, holds
/// byte `j` of `X + bias` of channel `t` in its byte `t`
/// (`vpdpbusd`'s four unsigned bytes of a lane). A 4x4 byte transpose in
/// each 128-bit block (`vpshufb`), then byte and word interleaves, so that
/// no lane leaves its block (the images keep their lanes).
///
/// # Safety
/// The CPU has AVX-512 F and BW; every source vector is 16 readable
/// `i32`, and `dst` has `cols * P * 16` writable ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn pack_quads<const P: usize>(
    src: [*const i32; 4],
    src_step: [usize; 4],
    cols: usize,
    bias: i32,
    dst: *mut i32,
) {
    use std::arch::x86_64::*;
    const { assert!(P >= 2 && P <= 4) };
    let b = _mm512_set1_epi32(bias);
    // Output byte o of a block takes input byte (o % 4) * 4 + o / 4: the
    // block's four lanes' byte 0, then their byte 1, and so on.
    let transpose = _mm512_broadcast_i32x4(_mm_setr_epi8(
        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
    ));
    for i in 0..cols {
        let mut v = [_mm512_setzero_si512(); 4];
        for t in 0..4 {
            let p = src[t].add(i * src_step[t]);
            let x = _mm512_add_epi32(_mm512_loadu_si512(p.cast()), b);
            v[t] = _mm512_shuffle_epi8(x, transpose);
        }
        // Bytes 0 and 1 of channels 0 and 1 (lanes interleaved), 2 and 3.
        let ab01 = _mm512_unpacklo_epi8(v[0], v[1]);
        let cd01 = _mm512_unpacklo_epi8(v[2], v[3]);
        let o = dst.add(i * P * 16);
        _mm512_storeu_si512(o.cast(), _mm512_unpacklo_epi16(ab01, cd01));
        _mm512_storeu_si512(o.add(16).cast(), _mm512_unpackhi_epi16(ab01, cd01));
        if P > 2 {
            let ab23 = _mm512_unpackhi_epi8(v[0], v[1]);
            let cd23 = _mm512_unpackhi_epi8(v[2], v[3]);
            _mm512_storeu_si512(o.add(32).cast(), _mm512_unpacklo_epi16(ab23, cd23));
            if P == 4 {
                _mm512_storeu_si512(o.add(48).cast(), _mm512_unpackhi_epi16(ab23, cd23));
            }
        }
    }
}

/// Accumulates [`DOT_CHANNELS`] output channels at `R` positions of 16
/// images from packed byte planes ([`pack_quads`]), `P` planes per input:
/// quad `q` of position `r`, plane `j`, is the vector at `x + qoff[q] + r *
/// pos_step + 16 j` (elements), and `w[q * DOT_CHANNELS + n]` holds channel
/// `n`'s four `i8` weights of that quad. Writes channel `n`'s 64-bit
/// accumulators, `init[n] + ((sum_j 2^(8j) dot_j - bias * weight_sum[n])
/// << shift[n])`, as `R x 16` lanes at `out + n * out_stride`.
///
/// Exact when every plane's dot product fits 32 bits
/// ([`crate::dot::plane_sums_fit`]), as [`crate::dot::DotPlan::new`] checks.
///
/// # Safety
/// The CPU has AVX-512 F, BW and VNNI; every vector read lies in readable
/// memory; `w` has `qoff.len() * DOT_CHANNELS` lanes; the four slices have
/// at least [`DOT_CHANNELS`] entries; `out + n * out_stride` starts `R *
/// 16` writable `i64` for every `n < DOT_CHANNELS`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn dot_avx512_vnni<const R: usize, const P: usize>(
    x: *const i32,
    pos_step: usize,
    qoff: &[u32],
    w: *const i32,
    bias: i64,
    weight_sum: &[i64],
    shift: &[u32],
    init: &[i64],
    out: *mut i64,
    out_stride: usize,
) {
    use std::arch::x86_64::*;
    const N: usize = DOT_CHANNELS;
    let mut acc = [[[_mm512_setzero_si512(); P]; N]; R];
    for (q, &o) in qoff.iter().enumerate() {
        let base = x.add(o as usize);
        let wq = w.add(q * N);
        let mut wv = [_mm512_setzero_si512(); N];
        for (n, wn) in wv.iter_mut().enumerate() {
            *wn = _mm512_set1_epi32(*wq.add(n));
        }
        for (r, acc_r) in acc.iter_mut().enumerate() {
            for j in 0..P {
                let xv = _mm512_loadu_si512(base.add(r * pos_step + 16 * j).cast());
                for (acc_rn, wn) in acc_r.iter_mut().zip(&wv) {
                    acc_rn[j] = _mm512_dpbusd_epi32(acc_rn[j], xv, *wn);
                }
            }
        }
    }
    for n in 0..N {
        let corr = _mm512_set1_epi64(bias * weight_sum[n]);
        let sh = _mm_cvtsi32_si128(shift[n] as i32);
        let start = _mm512_set1_epi64(init[n]);
        let o = out.add(n * out_stride);
        for (r, acc_r) in acc.iter().enumerate() {
            let (mut lo, mut hi) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for (j, pj) in acc_r[n].iter().enumerate() {
                let by = _mm_cvtsi32_si128(8 * j as i32);
                let l = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(*pj));
                let h = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(*pj));
                lo = _mm512_add_epi64(lo, _mm512_sll_epi64(l, by));
                hi = _mm512_add_epi64(hi, _mm512_sll_epi64(h, by));
            }
            lo = _mm512_add_epi64(start, _mm512_sll_epi64(_mm512_sub_epi64(lo, corr), sh));
            hi = _mm512_add_epi64(start, _mm512_sll_epi64(_mm512_sub_epi64(hi, corr), sh));
            _mm512_storeu_si512(o.add(r * 16).cast(), lo);
            _mm512_storeu_si512(o.add(r * 16 + 8).cast(), hi);
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::dot::{plane_bias, planes_for, DotPlan, QUAD};
    use crate::weights::ShiftWeight;

    /// Packing and the dot-product kernel for every plane count and tile
    /// width equal [`DotPlan::channel_sum`] (1x1 convolution, no residual).
    #[test]
    fn kernel_equals_the_plain_rust_channel_sums() {
        if !available() {
            eprintln!("no AVX-512 VNNI on this CPU: kernel not tested");
            return;
        }
        let mut s = 11u64;
        let mut next = move || {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            s >> 33
        };
        let (cin, cout, cols) = (10, DOT_CHANNELS, 3);
        let ws: Vec<ShiftWeight> = (0..cout * cin)
            .map(|_| match next() % 9 {
                0 => ShiftWeight::Zero,
                r => ShiftWeight::Pow {
                    negative: r % 2 == 0,
                    m: 3 + (next() % 7) as u8,
                },
            })
            .collect();
        let plan = DotPlan::new(&ws, cout, cin, 1, 9).unwrap();
        assert_eq!(plan.residual_weights, 0);
        let init: Vec<i64> = (0..cout as i64).map(|c| 17 * c - 40).collect();
        for max_abs in [30_000i64, 8_000_000, i64::from(i32::MAX)] {
            let p = planes_for(max_abs);
            // x[(ci * cols + col) * 16 + lane]
            let x: Vec<i32> = (0..cin * cols * 16)
                .map(|_| ((next() << 20 | next()) % (2 * max_abs as u64 + 1)) as i64 - max_abs)
                .map(|v| v as i32)
                .collect();
            let quads = cin.div_ceil(QUAD);
            let zero = [0i32; 16];
            let mut packed = vec![0i32; quads * cols * p * 16];
            for cq in 0..quads {
                let mut src = [zero.as_ptr(); 4];
                let mut step = [0; 4];
                for t in 0..QUAD {
                    if cq * QUAD + t < cin {
                        src[t] = x[(cq * QUAD + t) * cols * 16..].as_ptr();
                        step[t] = 16;
                    }
                }
                let dst = packed[cq * cols * p * 16..].as_mut_ptr();
                // SAFETY: AVX-512 checked; every column read and written lies
                // inside `x`/`zero` and `packed`.
                unsafe {
                    match p {
                        2 => pack_quads::<2>(src, step, cols, plane_bias(p), dst),
                        3 => pack_quads::<3>(src, step, cols, plane_bias(p), dst),
                        _ => pack_quads::<4>(src, step, cols, plane_bias(p), dst),
                    }
                }
            }
            let qoff: Vec<u32> = (0..quads).map(|q| (q * cols * p * 16) as u32).collect();
            let bias = i64::from(plane_bias(p) as u32);
            for r in [1, 2] {
                let mut out = vec![i64::MIN; cout * r * 16];
                // SAFETY: as above; `out` has r * 16 lanes per channel.
                unsafe {
                    let args = (packed.as_ptr(), p * 16, &qoff[..], plan.weights.as_ptr());
                    let f = match (r, p) {
                        (1, 2) => dot_avx512_vnni::<1, 2>,
                        (2, 2) => dot_avx512_vnni::<2, 2>,
                        (1, 3) => dot_avx512_vnni::<1, 3>,
                        (2, 3) => dot_avx512_vnni::<2, 3>,
                        (1, _) => dot_avx512_vnni::<1, 4>,
                        _ => dot_avx512_vnni::<2, 4>,
                    };
                    f(
                        args.0,
                        args.1,
                        args.2,
                        args.3,
                        bias,
                        &plan.weight_sum,
                        &plan.shift,
                        &init,
                        out.as_mut_ptr(),
                        r * 16,
                    );
                }
                for c in 0..cout {
                    for pos in 0..r {
                        for lane in 0..16 {
                            let xs: Vec<i32> = (0..cin)
                                .map(|ci| x[(ci * cols + pos) * 16 + lane])
                                .collect();
                            assert_eq!(
                                out[c * r * 16 + pos * 16 + lane],
                                plan.channel_sum(c, &xs, max_abs, init[c]),
                                "planes {p} tile {r} channel {c} position {pos} lane {lane}"
                            );
                        }
                    }
                }
            }
        }
    }
}
