//! The forward convolution computed directly from the stride phases of the
//! input ([`super::planes`]), without the column matrix of im2col.
//!
//! `y[co, q] = sum over (ci, i, j) of w[co, ci, i, j] * stream(ci, i, j)[q]`
//! at the flat positions `q = oh * wq + ow`: a matrix product whose right
//! operand (the streams) is read where it lies instead of being unfolded
//! `kh * kw` times. Register blocks of [`CO_BLOCK`] output channels x
//! [`Q_BLOCK`] vectors of 16 positions accumulate over all `cin * kh * kw`
//! taps (weights broadcast, streams loaded), are stored once into a
//! per-thread row buffer, and the valid `wo` columns of each output row are
//! copied into `y`. Samples run in parallel; every output is one sum in a
//! fixed order, so results do not depend on the thread count.

use super::planes::{aligned, fill_phases, grow, Plan, LANES};
use super::{assume_init, uninit_vec, Dims};
use crate::quant::FixedPointGrid;
use rayon::prelude::*;
use std::cell::RefCell;

/// Output channels per register block (weights broadcast per tap).
const CO_BLOCK: usize = 4;
/// Vectors of positions per register block: with [`CO_BLOCK`] channels, 24
/// accumulators, 4 broadcast weights and one stream vector.
const Q_BLOCK: usize = 6;
/// Positions per register block.
const Q_SPAN: usize = Q_BLOCK * LANES;

/// Which inner kernel runs the register blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    /// AVX-512 where the CPU has it, else [`Kernel::Portable`].
    Dispatched,
    /// Plain Rust on the baseline target (what CPUs without AVX-512 run;
    /// tests force it to check it on any CPU).
    Portable,
}

thread_local! {
    /// Per-thread buffers: one sample's input phases (and its input rounded
    /// to the fixed-point grid), and its output rows of `wq` columns.
    static BUFFERS: RefCell<[Vec<f32>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Whether this kernel computes `d`: ungrouped convolutions.
pub(super) fn supports(d: &Dims) -> bool {
    d.groups == 1
}

/// Output positions per sample and taps per output from which `Auto`
/// takes this kernel. `examples/conv_layers.rs` (batch 128, 2 threads)
/// measured 0.8-0.95x im2col's time on ResNet20's 16- and 32-channel
/// layers on 32x32 and 16x16 images (stride 1 and 2, at or below
/// Winograd's on 32 channels), but 1.1x on 8x8 images (the register
/// block spans 96 positions; with `wq = 10` columns a quarter is padding)
/// and on the first layer (27 taps: too few to amortise a block's stores).
const MIN_POSITIONS: usize = 256;
const MIN_TAPS: usize = 64;

/// Whether `Auto` takes this kernel for `d` ([`MIN_POSITIONS`],
/// [`MIN_TAPS`], ungrouped, a CPU with AVX-512: the portable loop was not
/// measured to beat the `gemm` crate).
pub(super) fn pays(d: &Dims) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        supports(d)
            && d.p() >= MIN_POSITIONS
            && d.k() >= MIN_TAPS
            && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = d;
        false
    }
}

/// One register block's operands: the weight rows of `CO_BLOCK` channels
/// (`k` taps each) and the streams of one sample from position `q0`.
struct Block<'a> {
    w: &'a [f32],
    rows: [usize; CO_BLOCK],
    k: usize,
    x: &'a [f32],
    q0: usize,
    streams: &'a [usize],
}

/// The block's sums by `kernel`, written to `out` (`CO_BLOCK` rows of
/// [`Q_SPAN`] positions, `stride` apart).
fn block_sums(block: &Block, kernel: Kernel, out: &mut [f32], stride: usize) {
    assert!((CO_BLOCK - 1) * stride + Q_SPAN <= out.len());
    // Every read below stays inside the buffers (checked once per block).
    assert!(block
        .rows
        .iter()
        .all(|&r| (r + 1) * block.k <= block.w.len()));
    assert_eq!(block.streams.len(), block.k);
    let reach = block.streams.iter().max().copied().unwrap_or(0) + block.q0 + Q_SPAN;
    assert!(reach <= block.x.len());
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Dispatched && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F; the asserts above bound every read.
        return unsafe { block_sums_avx512(block, out, stride) };
    }
    let _ = kernel;
    block_sums_portable(block, out, stride)
}

/// [`block_sums`] in plain Rust (the compiler vectorises the position loop).
fn block_sums_portable(block: &Block, out: &mut [f32], stride: usize) {
    let mut acc = [[0f32; Q_SPAN]; CO_BLOCK];
    for (t, &o) in block.streams.iter().enumerate() {
        let xs: &[f32; Q_SPAN] = block.x[o + block.q0..o + block.q0 + Q_SPAN]
            .try_into()
            .expect("a block's span");
        for (c, row) in acc.iter_mut().enumerate() {
            let wv = block.w[block.rows[c] * block.k + t];
            for (y, &v) in row.iter_mut().zip(xs) {
                *y += wv * v;
            }
        }
    }
    for (c, row) in acc.iter().enumerate() {
        out[c * stride..c * stride + Q_SPAN].copy_from_slice(row);
    }
}

/// [`block_sums`] with AVX-512: 24 accumulator registers over all taps.
///
/// # Safety
/// The CPU must support AVX-512F, and every weight row and stream span
/// must lie inside `block.w` and `block.x`, and `out` must hold
/// `CO_BLOCK` rows of `Q_SPAN` floats `stride` apart ([`block_sums`] checks).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_sums_avx512(block: &Block, out: &mut [f32], stride: usize) {
    use std::arch::x86_64::*;
    let z = _mm512_setzero_ps();
    let (mut a00, mut a01, mut a02, mut a03, mut a04, mut a05) = (z, z, z, z, z, z);
    let (mut a10, mut a11, mut a12, mut a13, mut a14, mut a15) = (z, z, z, z, z, z);
    let (mut a20, mut a21, mut a22, mut a23, mut a24, mut a25) = (z, z, z, z, z, z);
    let (mut a30, mut a31, mut a32, mut a33, mut a34, mut a35) = (z, z, z, z, z, z);
    let w = block.w.as_ptr();
    // SAFETY (pointer arithmetic and the loop's reads): in bounds by the caller.
    let (w0, w1, w2, w3) = unsafe {
        (
            w.add(block.rows[0] * block.k),
            w.add(block.rows[1] * block.k),
            w.add(block.rows[2] * block.k),
            w.add(block.rows[3] * block.k),
        )
    };
    let x = unsafe { block.x.as_ptr().add(block.q0) };
    if block.k > 0 {
        // In assembly, as the weight gradient's loop (`weight_grad.rs`): with
        // intrinsics LLVM spilled accumulators on every step.
        unsafe {
            std::arch::asm!(
                "2:",
                "mov {off}, qword ptr [{tab} + {t} * 8]",
                "vbroadcastss zmm24, dword ptr [{w0} + {t} * 4]",
                "vbroadcastss zmm25, dword ptr [{w1} + {t} * 4]",
                "vbroadcastss zmm26, dword ptr [{w2} + {t} * 4]",
                "vbroadcastss zmm27, dword ptr [{w3} + {t} * 4]",
                "vmovups zmm28, zmmword ptr [{x} + {off} * 4]",
                "vfmadd231ps zmm0, zmm24, zmm28",
                "vfmadd231ps zmm6, zmm25, zmm28",
                "vfmadd231ps zmm12, zmm26, zmm28",
                "vfmadd231ps zmm18, zmm27, zmm28",
                "vmovups zmm28, zmmword ptr [{x} + {off} * 4 + 64]",
                "vfmadd231ps zmm1, zmm24, zmm28",
                "vfmadd231ps zmm7, zmm25, zmm28",
                "vfmadd231ps zmm13, zmm26, zmm28",
                "vfmadd231ps zmm19, zmm27, zmm28",
                "vmovups zmm28, zmmword ptr [{x} + {off} * 4 + 128]",
                "vfmadd231ps zmm2, zmm24, zmm28",
                "vfmadd231ps zmm8, zmm25, zmm28",
                "vfmadd231ps zmm14, zmm26, zmm28",
                "vfmadd231ps zmm20, zmm27, zmm28",
                "vmovups zmm28, zmmword ptr [{x} + {off} * 4 + 192]",
                "vfmadd231ps zmm3, zmm24, zmm28",
                "vfmadd231ps zmm9, zmm25, zmm28",
                "vfmadd231ps zmm15, zmm26, zmm28",
                "vfmadd231ps zmm21, zmm27, zmm28",
                "vmovups zmm28, zmmword ptr [{x} + {off} * 4 + 256]",
                "vfmadd231ps zmm4, zmm24, zmm28",
                "vfmadd231ps zmm10, zmm25, zmm28",
                "vfmadd231ps zmm16, zmm26, zmm28",
                "vfmadd231ps zmm22, zmm27, zmm28",
                "vmovups zmm28, zmmword ptr [{x} + {off} * 4 + 320]",
                "vfmadd231ps zmm5, zmm24, zmm28",
                "vfmadd231ps zmm11, zmm25, zmm28",
                "vfmadd231ps zmm17, zmm26, zmm28",
                "vfmadd231ps zmm23, zmm27, zmm28",
                "inc {t}",
                "cmp {t}, {k}",
                "jb 2b",
                tab = in(reg) block.streams.as_ptr(),
                w0 = in(reg) w0,
                w1 = in(reg) w1,
                w2 = in(reg) w2,
                w3 = in(reg) w3,
                x = in(reg) x,
                t = inout(reg) 0usize => _,
                k = in(reg) block.k,
                off = out(reg) _,
                inout("zmm0") a00,
                inout("zmm1") a01,
                inout("zmm2") a02,
                inout("zmm3") a03,
                inout("zmm4") a04,
                inout("zmm5") a05,
                inout("zmm6") a10,
                inout("zmm7") a11,
                inout("zmm8") a12,
                inout("zmm9") a13,
                inout("zmm10") a14,
                inout("zmm11") a15,
                inout("zmm12") a20,
                inout("zmm13") a21,
                inout("zmm14") a22,
                inout("zmm15") a23,
                inout("zmm16") a24,
                inout("zmm17") a25,
                inout("zmm18") a30,
                inout("zmm19") a31,
                inout("zmm20") a32,
                inout("zmm21") a33,
                inout("zmm22") a34,
                inout("zmm23") a35,
                out("zmm24") _,
                out("zmm25") _,
                out("zmm26") _,
                out("zmm27") _,
                out("zmm28") _,
                options(nostack, readonly),
            );
        }
    }
    let rows = [
        [a00, a01, a02, a03, a04, a05],
        [a10, a11, a12, a13, a14, a15],
        [a20, a21, a22, a23, a24, a25],
        [a30, a31, a32, a33, a34, a35],
    ];
    for (c, row) in rows.into_iter().enumerate() {
        for (v, acc) in row.into_iter().enumerate() {
            // SAFETY: row `c` of `out` holds Q_SPAN floats from `c * stride`.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(c * stride + v * LANES), acc) };
        }
    }
}

/// The forward convolution of `x` with `w` (sizes `d`, ungrouped) in NCHW,
/// rounding the input to `grid` first where given.
pub(super) fn forward(
    x: &[f32],
    w: &[f32],
    d: &Dims,
    grid: Option<FixedPointGrid>,
    kernel: Kernel,
) -> Vec<f32> {
    debug_assert!(supports(d));
    let plan = Plan::new(d);
    let (il, ol, p, k) = (d.in_len(), d.out_len(), d.p(), d.k());
    let span = plan.len.div_ceil(Q_SPAN) * Q_SPAN;
    let mut y = uninit_vec(d.n * ol);
    y.par_chunks_mut(ol).enumerate().for_each(|(n, yn)| {
        BUFFERS.with(|cell| {
            let mut guard = cell.borrow_mut();
            let [xb, rows, rounded] = &mut *guard;
            // Slack past the planes: the last block of a row reads up to
            // `span` positions from a stream's start.
            let xb = aligned(xb, plan.x_sample + span);
            let rows = aligned(rows, d.cout.next_multiple_of(CO_BLOCK) * span);
            let xn = &x[n * il..][..il];
            let xn = match grid {
                Some(grid) => {
                    grow(rounded, il);
                    grid.round_slice(xn, &mut rounded[..il]);
                    &rounded[..il]
                }
                None => xn,
            };
            fill_phases(xn, d, &plan, &mut xb[..plan.x_sample]);
            xb[plan.x_sample..].fill(0.0);
            for co0 in (0..d.cout).step_by(CO_BLOCK) {
                let block_rows = std::array::from_fn(|c| (co0 + c).min(d.cout - 1));
                for q0 in (0..plan.len).step_by(Q_SPAN) {
                    let block = Block {
                        w,
                        rows: block_rows,
                        k,
                        x: xb,
                        q0,
                        streams: &plan.streams,
                    };
                    block_sums(&block, kernel, &mut rows[co0 * span + q0..], span);
                }
            }
            // The valid `wo` columns of each output row.
            for co in 0..d.cout {
                let src = &rows[co * span..co * span + d.ho * plan.wq];
                let dst = &mut yn[co * p..(co + 1) * p];
                for (o, line) in dst.chunks_exact_mut(d.wo).zip(src.chunks_exact(plan.wq)) {
                    for (a, &b) in o.iter_mut().zip(line) {
                        a.write(b);
                    }
                }
            }
        });
    });
    // SAFETY: every output row of every sample was written above.
    unsafe { assume_init(y) }
}
