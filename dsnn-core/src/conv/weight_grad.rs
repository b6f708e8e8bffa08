//! The weight gradient computed directly from the zero-padded input, without
//! the column matrix of im2col.
//!
//! `dw[co, ci, i, j] = sum over samples and output positions (oh, ow) of
//! dy[co, oh, ow] * x[ci, oh * s + i - pad, ow * s + j - pad]`. Each sample's
//! input is copied once into its stride phases and `dy` into rows of the
//! same flat positions, zeros in the extra columns ([`super::planes`]);
//! every weight gradient entry is then a dot product of one `dy` row with
//! one tap's stream, the zero columns of `dy` cancelling the stream entries
//! that wrap across rows. There is no `cin * kh * kw`-row column matrix and
//! no transposed copy of `dy`; the price is the `wq / wo` extra positions
//! (6% on 32x32 images, 25% on 8x8 ones).
//!
//! The dot products run in register blocks of [`CO_BLOCK`] `dy` rows x
//! [`STREAM_BLOCK`] streams, 16 positions a step (one AVX-512 vector per
//! row and stream), summed over a chunk of samples in vector registers and
//! reduced to scalars once per chunk. Samples are split into a fixed number
//! of tasks (depending on the batch size only) whose partial gradients are
//! added in order, so results do not depend on the thread count.

use super::planes::{aligned, fill_dy, fill_phases, grow, Plan, LANES};
use super::Dims;
use crate::quant::FixedPointGrid;
use rayon::prelude::*;
use std::cell::RefCell;

/// Output channels (`dy` rows) per register block.
const CO_BLOCK: usize = 4;
/// Input streams (input channel x kernel tap) per register block: with
/// [`CO_BLOCK`] rows, 24 accumulators, 4 `dy` vectors and one stream vector
/// fill the 32 AVX-512 registers.
const STREAM_BLOCK: usize = 6;
/// Samples' input phases and `dy` rows per chunk at most, in bytes: a chunk
/// is streamed once per register block, so it should stay in L2.
const CHUNK_BYTES: usize = 768 * 1024;
/// Vector steps per accumulator a chunk aims for, so that the horizontal
/// sums at its end stay a small share of the work.
const CHUNK_STEPS: usize = 64;
/// Tasks the batch is split into (fewer when the batch is smaller).
const TASKS: usize = 8;

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
    /// Per-thread buffers: the input phases of a chunk of samples, its
    /// `dy` rows, and one sample's input rounded to the fixed-point grid.
    static BUFFERS: RefCell<[Vec<f32>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// One register block's operands: `dy` rows `rows` and streams `offsets` of
/// `samples` consecutive samples in the chunk buffers.
struct Block<'a> {
    dy: &'a [f32],
    x: &'a [f32],
    rows: [usize; CO_BLOCK],
    offsets: [usize; STREAM_BLOCK],
    samples: usize,
    plan: &'a Plan,
}

/// The block's dot products, `[row][stream]`, by `kernel`.
fn block_sums(block: &Block, kernel: Kernel) -> [[f32; STREAM_BLOCK]; CO_BLOCK] {
    let plan = block.plan;
    // Every read below stays inside the buffers (checked once per block).
    let last = block.samples - 1;
    assert!(block
        .rows
        .iter()
        .all(|&r| last * plan.dy_sample + (r + 1) * plan.len <= block.dy.len()));
    assert!(block
        .offsets
        .iter()
        .all(|&o| last * plan.x_sample + o + plan.len <= block.x.len()));
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Dispatched && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F; the asserts above bound every read.
        return unsafe { block_sums_avx512(block) };
    }
    let _ = kernel;
    block_sums_portable(block)
}

/// [`block_sums`] in plain Rust: 16 lanes per accumulator as arrays (the
/// compiler vectorises them at the target's width), then summed per lane.
fn block_sums_portable(block: &Block) -> [[f32; STREAM_BLOCK]; CO_BLOCK] {
    let plan = block.plan;
    let mut acc = [[[0f32; LANES]; STREAM_BLOCK]; CO_BLOCK];
    for n in 0..block.samples {
        let dy = &block.dy[n * plan.dy_sample..];
        let x = &block.x[n * plan.x_sample..];
        for q in (0..plan.len).step_by(LANES) {
            let dv: [&[f32]; CO_BLOCK] =
                std::array::from_fn(|c| &dy[block.rows[c] * plan.len + q..][..LANES]);
            for (t, &o) in block.offsets.iter().enumerate() {
                let xv = &x[o + q..o + q + LANES];
                for c in 0..CO_BLOCK {
                    for l in 0..LANES {
                        acc[c][t][l] += dv[c][l] * xv[l];
                    }
                }
            }
        }
    }
    acc.map(|row| row.map(|lanes| lanes.iter().sum()))
}

/// [`block_sums`] with AVX-512: 24 accumulator registers.
///
/// # Safety
/// The CPU must support AVX-512F, and every row and stream of every sample
/// must lie inside `block.dy` and `block.x` ([`block_sums`] checks).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_sums_avx512(block: &Block) -> [[f32; STREAM_BLOCK]; CO_BLOCK] {
    use std::arch::x86_64::*;
    let plan = block.plan;
    // The 24 accumulators are named variables: as a nested array LLVM kept
    // a third of them on the stack.
    let z = _mm512_setzero_ps();
    let (mut a00, mut a01, mut a02, mut a03, mut a04, mut a05) = (z, z, z, z, z, z);
    let (mut a10, mut a11, mut a12, mut a13, mut a14, mut a15) = (z, z, z, z, z, z);
    let (mut a20, mut a21, mut a22, mut a23, mut a24, mut a25) = (z, z, z, z, z, z);
    let (mut a30, mut a31, mut a32, mut a33, mut a34, mut a35) = (z, z, z, z, z, z);
    for n in 0..block.samples {
        // SAFETY (all pointer arithmetic and loads): in bounds by the caller.
        let dy = unsafe { block.dy.as_ptr().add(n * plan.dy_sample) };
        let x = unsafe { block.x.as_ptr().add(n * plan.x_sample) };
        let (rows, offs, len) = (&block.rows, &block.offsets, plan.len);
        let (r0, r1, r2, r3) = unsafe {
            (
                dy.add(rows[0] * len),
                dy.add(rows[1] * len),
                dy.add(rows[2] * len),
                dy.add(rows[3] * len),
            )
        };
        let (s0, s1, s2) = unsafe { (x.add(offs[0]), x.add(offs[1]), x.add(offs[2])) };
        let (s3, s4, s5) = unsafe { (x.add(offs[3]), x.add(offs[4]), x.add(offs[5])) };
        // The loop in assembly: written with intrinsics, LLVM kept only 21
        // of the 32 vector registers in use and spilled a third of the
        // accumulators to the stack on every step (half the speed).
        // SAFETY: reads `len` floats from each row and stream pointer,
        // in bounds by the caller; `len` is a positive multiple of 16.
        unsafe {
            std::arch::asm!(
                "2:",
                "vmovups zmm24, [{r0} + {q} * 4]",
                "vmovups zmm25, [{r1} + {q} * 4]",
                "vmovups zmm26, [{r2} + {q} * 4]",
                "vmovups zmm27, [{r3} + {q} * 4]",
                "vmovups zmm28, [{s0} + {q} * 4]",
                "vfmadd231ps zmm0, zmm24, zmm28",
                "vfmadd231ps zmm6, zmm25, zmm28",
                "vfmadd231ps zmm12, zmm26, zmm28",
                "vfmadd231ps zmm18, zmm27, zmm28",
                "vmovups zmm28, [{s1} + {q} * 4]",
                "vfmadd231ps zmm1, zmm24, zmm28",
                "vfmadd231ps zmm7, zmm25, zmm28",
                "vfmadd231ps zmm13, zmm26, zmm28",
                "vfmadd231ps zmm19, zmm27, zmm28",
                "vmovups zmm28, [{s2} + {q} * 4]",
                "vfmadd231ps zmm2, zmm24, zmm28",
                "vfmadd231ps zmm8, zmm25, zmm28",
                "vfmadd231ps zmm14, zmm26, zmm28",
                "vfmadd231ps zmm20, zmm27, zmm28",
                "vmovups zmm28, [{s3} + {q} * 4]",
                "vfmadd231ps zmm3, zmm24, zmm28",
                "vfmadd231ps zmm9, zmm25, zmm28",
                "vfmadd231ps zmm15, zmm26, zmm28",
                "vfmadd231ps zmm21, zmm27, zmm28",
                "vmovups zmm28, [{s4} + {q} * 4]",
                "vfmadd231ps zmm4, zmm24, zmm28",
                "vfmadd231ps zmm10, zmm25, zmm28",
                "vfmadd231ps zmm16, zmm26, zmm28",
                "vfmadd231ps zmm22, zmm27, zmm28",
                "vmovups zmm28, [{s5} + {q} * 4]",
                "vfmadd231ps zmm5, zmm24, zmm28",
                "vfmadd231ps zmm11, zmm25, zmm28",
                "vfmadd231ps zmm17, zmm26, zmm28",
                "vfmadd231ps zmm23, zmm27, zmm28",
                "add {q}, 16",
                "cmp {q}, {len}",
                "jb 2b",
                r0 = in(reg) r0,
                r1 = in(reg) r1,
                r2 = in(reg) r2,
                r3 = in(reg) r3,
                s0 = in(reg) s0,
                s1 = in(reg) s1,
                s2 = in(reg) s2,
                s3 = in(reg) s3,
                s4 = in(reg) s4,
                s5 = in(reg) s5,
                q = inout(reg) 0usize => _,
                len = in(reg) plan.len,
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
    // Reduced one named register at a time: gathered into an array first,
    // or in a closure, LLVM spilled accumulators inside the loop or did not
    // inline the reduction.
    let r = |v| _mm512_reduce_add_ps(v);
    [
        [r(a00), r(a01), r(a02), r(a03), r(a04), r(a05)],
        [r(a10), r(a11), r(a12), r(a13), r(a14), r(a15)],
        [r(a20), r(a21), r(a22), r(a23), r(a24), r(a25)],
        [r(a30), r(a31), r(a32), r(a33), r(a34), r(a35)],
    ]
}

/// Adds the weight gradient of one chunk (phases `xb`, `dy` rows `dyb`, of
/// `samples` samples) into `dw` (`cout x k`).
fn chunk_into(
    dw: &mut [f32],
    xb: &[f32],
    dyb: &[f32],
    samples: usize,
    d: &Dims,
    plan: &Plan,
    kernel: Kernel,
) {
    let (k, cout) = (d.k(), d.cout);
    for co0 in (0..cout).step_by(CO_BLOCK) {
        // Past the last channel or stream a block repeats the last one and
        // drops its sums (cheaper than a kernel per remainder).
        let rows = std::array::from_fn(|c| (co0 + c).min(cout - 1));
        for t0 in (0..k).step_by(STREAM_BLOCK) {
            let offsets = std::array::from_fn(|t| plan.streams[(t0 + t).min(k - 1)]);
            let block = Block {
                dy: dyb,
                x: xb,
                rows,
                offsets,
                samples,
                plan,
            };
            let sums = block_sums(&block, kernel);
            for (c, row) in sums.iter().enumerate().take(cout - co0) {
                let dst = &mut dw[(co0 + c) * k + t0..];
                for (o, &v) in dst.iter_mut().zip(row).take(k - t0) {
                    *o += v;
                }
            }
        }
    }
}

/// Whether this kernel computes `d`'s weight gradient: ungrouped
/// convolutions (any kernel, stride and padding).
pub(super) fn supports(d: &Dims) -> bool {
    d.groups == 1
}

/// Output positions per sample from which `Auto` takes this kernel: on
/// ResNet20's 8x8 outputs it measured 1.0-1.2x im2col's CPU time
/// (`examples/conv_layers.rs --pass weight`), the padded columns being a
/// quarter of the work there; on 16x16 and 32x32 outputs 0.6-0.85x.
const MIN_POSITIONS: usize = 256;

/// Whether `Auto` takes this kernel for `d`: ungrouped convolutions with
/// at least [`MIN_POSITIONS`] outputs per sample, on a CPU with AVX-512
/// (elsewhere the portable loop would race the `gemm` crate's tuned
/// kernels, and was not measured to win).
pub(super) fn pays(d: &Dims) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        supports(d) && d.p() >= MIN_POSITIONS && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = d;
        false
    }
}

/// Samples per chunk: enough vector steps per accumulator, within
/// [`CHUNK_BYTES`] (at least one sample).
fn chunk_samples(plan: &Plan) -> usize {
    let steps = CHUNK_STEPS.div_ceil(plan.len / LANES);
    let fits = CHUNK_BYTES / ((plan.x_sample + plan.dy_sample) * 4);
    steps.min(fits).max(1)
}

/// The weight gradient (`cout x cin x kh x kw`) of the convolution `d` from
/// its input `x` (rounded to `grid` first where the forward rounded it) and
/// the output gradient `dy`.
pub(super) fn backward_weight(
    x: &[f32],
    dy: &[f32],
    d: &Dims,
    grid: Option<FixedPointGrid>,
    kernel: Kernel,
) -> Vec<f32> {
    debug_assert!(supports(d));
    let plan = Plan::new(d);
    let (il, ol, size) = (d.in_len(), d.out_len(), d.cout * d.k());
    // At least a chunk per task (small images need several samples per
    // chunk), but at least two tasks for two threads.
    let per_task =
        d.n.div_ceil(TASKS)
            .max(chunk_samples(&plan).min(d.n.div_ceil(2)))
            .max(1);
    let tasks = d.n.div_ceil(per_task);
    let chunk = chunk_samples(&plan).min(per_task);
    let partials: Vec<Vec<f32>> = (0..tasks)
        .into_par_iter()
        .map(|t| {
            let mut dw = vec![0f32; size];
            BUFFERS.with(|cell| {
                let mut guard = cell.borrow_mut();
                let [xb, dyb, rounded] = &mut *guard;
                let xb = aligned(xb, chunk * plan.x_sample);
                let dyb = aligned(dyb, chunk * plan.dy_sample);
                let end = ((t + 1) * per_task).min(d.n);
                let mut first = t * per_task;
                while first < end {
                    let samples = chunk.min(end - first);
                    for j in 0..samples {
                        let xn = &x[(first + j) * il..][..il];
                        let xn = match grid {
                            Some(grid) => {
                                grow(rounded, il);
                                grid.round_slice(xn, &mut rounded[..il]);
                                &rounded[..il]
                            }
                            None => xn,
                        };
                        fill_phases(xn, d, &plan, &mut xb[j * plan.x_sample..][..plan.x_sample]);
                        let dyn_ = &dy[(first + j) * ol..][..ol];
                        fill_dy(
                            dyn_,
                            d,
                            &plan,
                            &mut dyb[j * plan.dy_sample..][..plan.dy_sample],
                        );
                    }
                    chunk_into(
                        &mut dw,
                        &xb[..samples * plan.x_sample],
                        &dyb[..samples * plan.dy_sample],
                        samples,
                        d,
                        &plan,
                        kernel,
                    );
                    first += samples;
                }
            });
            dw
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut dw = parts.next().unwrap_or_else(|| vec![0f32; size]);
    for part in parts {
        for (a, b) in dw.iter_mut().zip(&part) {
            *a += b;
        }
    }
    dw
}
