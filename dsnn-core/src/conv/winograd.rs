//! Winograd F(2x2, 3x3): the forward convolution of 3x3, stride-1, pad-1
//! layers with 2.25x fewer multiplications than im2col + gemm.
//!
//! The output is cut into 2x2 tiles, each computed from the 4x4 input patch
//! around it. With `B`, `G`, `A` the transforms of Lavin and Gray (2015),
//! a tile is `A^T [(G g G^T) ⊙ (B^T d B)] A` summed over input channels: per
//! position `ξ` of the 4x4 transformed tile that sum is a matrix product,
//! `M_ξ (tiles x cout) = V_ξ (tiles x cin) * U_ξ (cin x cout)`, so a block
//! of tiles costs 16 gemms with inner dimension `cin`, where im2col's has
//! `9 * cin` for four times as many output columns. Blocks of tiles (across
//! image rows and samples) run in parallel over rayon, each in this thread's
//! scratch buffers: input transform, 16 gemms, output transform, written
//! straight into the NCHW output. The transforms take only additions
//! (and halvings of the weight), so the result differs from im2col's by
//! float rounding only (a few ulps of the sums; `tests/winograd.rs`).
//!
//! The transforms' loops are compiled twice, for AVX-512 and for the
//! baseline target, and chosen at run time; both give the same bits.

use super::{matmul, uninit_vec, Dims};
use crate::quant::FixedPointGrid;
use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Positions of a transformed 4x4 tile: one gemm each.
const POSITIONS: usize = 16;

/// Scratch bytes one block's transformed input and gemm output may take,
/// so that they stay in a core's L2 cache between the three stages.
const BLOCK_BYTES: usize = 768 * 1024;

thread_local! {
    /// Per-thread work buffers: transformed input `V`, gemm output `M`, and
    /// the de-interleaved input rows and output rows of one tile row.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// One thread's buffers, grown as needed and never zeroed between uses:
/// every element read is written first.
#[derive(Default)]
struct Scratch {
    v: Vec<f32>,
    m: Vec<f32>,
    rows: Vec<f32>,
    out: Vec<f32>,
}

impl Scratch {
    fn grow(buf: &mut Vec<f32>, len: usize) {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
    }
}

/// Whether a convolution of sizes `d` can run as Winograd F(2x2, 3x3):
/// a 3x3 kernel, stride 1, padding 1, no groups.
pub(super) fn supports(d: &Dims) -> bool {
    d.kh == 3 && d.kw == 3 && d.stride == 1 && d.pad == 1 && d.groups == 1
}

/// Whether Winograd is the faster kernel for `d` on this machine (measured
/// with `examples/conv_layers.rs`, see `docs/benchmarks.md`): at 32 or more
/// channels in and out on images of 16x16 or more, or 64 or more on 8x8
/// ones, and at least [`MIN_TILES`] tiles in the call. With 16 channels the
/// gemms' inner dimension is too short to pay for the transforms (16 -> 16
/// on 32x32 ran 1.1-1.65x slower than im2col); on small images the rows of
/// tiles are short and many tiles lie on the border (32 -> 32 on 8x8 and
/// 64 -> 64 on 4x4 ran 1.2-1.3x slower); small batches leave too few tiles
/// to fill the gemms' row tiles (batch 1 ran 1.3-1.9x slower).
pub(super) fn pays(d: &Dims) -> bool {
    let (channels, side) = (d.cin.min(d.cout), d.h.min(d.w));
    supports(d)
        && channels >= 32
        && (side >= 16 || (side >= 8 && channels >= 64))
        && d.n * d.h.div_ceil(2) * d.w.div_ceil(2) >= MIN_TILES
}

/// Tiles a call needs for Winograd to pay (see [`pays`]).
const MIN_TILES: usize = 512;

/// The tile grid of one sample.
#[derive(Debug, Clone, Copy)]
struct Tiles {
    /// Tile rows and columns (`ceil(h / 2)`, `ceil(w / 2)`).
    rows: usize,
    cols: usize,
}

impl Tiles {
    fn per_sample(&self) -> usize {
        self.rows * self.cols
    }
}

/// A run of tiles in one tile row of one sample: columns `cols` of tile row
/// `row` of sample `sample`, stored from index `at` of its block.
#[derive(Debug, Clone)]
struct Segment {
    sample: usize,
    row: usize,
    cols: std::ops::Range<usize>,
    at: usize,
}

/// The segments that make up tiles `range` (flat index over samples, tile
/// rows and tile columns).
fn segments(tiles: Tiles, range: std::ops::Range<usize>) -> impl Iterator<Item = Segment> {
    let (start, end) = (range.start, range.end);
    let mut t = start;
    std::iter::from_fn(move || {
        if t >= end {
            return None;
        }
        let (sample, r) = (t / tiles.per_sample(), t % tiles.per_sample());
        let (row, c0) = (r / tiles.cols, r % tiles.cols);
        let c1 = tiles.cols.min(c0 + (end - t));
        let seg = Segment {
            sample,
            row,
            cols: c0..c1,
            at: t - start,
        };
        t += c1 - c0;
        Some(seg)
    })
}

/// `U = G g G^T` for every (output, input) channel pair of `w` (`cout x cin
/// x 3 x 3`), laid out `[ξ][cout][cin]` so that `U_ξ^T` is a column-major
/// `cin x cout` gemm operand.
fn transform_weight(w: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut u = vec![0f32; POSITIONS * cout * cin];
    for k in 0..cout {
        for c in 0..cin {
            let g = &w[(k * cin + c) * 9..][..9];
            // G g (4 x 3), rows of g combined.
            let mut gg = [[0f32; 3]; 4];
            for j in 0..3 {
                let (a, b, e) = (g[j], g[3 + j], g[6 + j]);
                gg[0][j] = a;
                gg[1][j] = 0.5 * (a + b + e);
                gg[2][j] = 0.5 * (a - b + e);
                gg[3][j] = e;
            }
            // (G g) G^T (4 x 4), columns combined.
            for (i, r) in gg.iter().enumerate() {
                let vals = [
                    r[0],
                    0.5 * (r[0] + r[1] + r[2]),
                    0.5 * (r[0] - r[1] + r[2]),
                    r[2],
                ];
                for (j, &v) in vals.iter().enumerate() {
                    u[((i * 4 + j) * cout + k) * cin + c] = v;
                }
            }
        }
    }
    u
}

/// The convolution of `x` (`n x cin x h x w`) with `w` (`cout x cin x 3 x
/// 3`), stride 1, padding 1, as Winograd F(2x2, 3x3), rounding the input to
/// `grid` first when given. `d` must satisfy [`supports`]. Returns `y` in
/// NCHW.
pub(super) fn forward(x: &[f32], w: &[f32], d: &Dims, grid: Option<FixedPointGrid>) -> Vec<f32> {
    debug_assert!(supports(d));
    let (cin, cout) = (d.cin, d.cout);
    let tiles = Tiles {
        rows: d.h.div_ceil(2),
        cols: d.w.div_ceil(2),
    };
    let total = d.n * tiles.per_sample();
    let u = transform_weight(w, cin, cout);
    let block = block_tiles(cin, cout, total);
    let mut y = uninit_vec(d.n * d.out_len());
    let out = SharedOut(y.as_mut_ptr());
    let job = Job {
        x,
        u: &u,
        d,
        tiles,
        grid,
        block,
    };
    (0..total.div_ceil(block))
        .into_par_iter()
        .for_each(|b| job.run(b * block..total.min((b + 1) * block), &out));
    // SAFETY: the blocks cover every tile of every sample, and each tile's
    // output transform writes every output pixel it covers for every
    // output channel (`write_outputs`), so every element is initialised.
    unsafe { super::assume_init(y) }
}

/// Tiles per block: as many as keep the block's `V` and `M` within
/// [`BLOCK_BYTES`], a multiple of 16 (the gemm's row tile is 16 or 64
/// floats wide), and small enough that each thread gets several blocks.
fn block_tiles(cin: usize, cout: usize, total: usize) -> usize {
    let fit = BLOCK_BYTES / (POSITIONS * (cin + cout) * 4);
    let threads = rayon::current_num_threads().max(1);
    let spread = total.div_ceil(4 * threads);
    (fit.min(spread) / 16 * 16).max(16)
}

/// `len` rounded up to a whole number of 4 KiB pages plus one cache line:
/// the transforms read or write all 16 position blocks at the same offset,
/// and blocks a multiple of 4 KiB apart would all fall into the same L1
/// cache set.
fn skew(len: usize) -> usize {
    len.next_multiple_of(1024) + 16
}

/// The output tensor's storage, written by several blocks at once at
/// disjoint elements (each output pixel belongs to exactly one tile).
struct SharedOut(*mut MaybeUninit<f32>);

// SAFETY: blocks write disjoint elements (see `Job::run`), and the vector
// outlives the parallel loop that uses the pointer.
unsafe impl Sync for SharedOut {}

/// What every block of one forward call shares.
struct Job<'a> {
    x: &'a [f32],
    u: &'a [f32],
    d: &'a Dims,
    tiles: Tiles,
    grid: Option<FixedPointGrid>,
    block: usize,
}

impl Job<'_> {
    /// Floats from one position's block of `V` (`cin x block`) to the next.
    fn v_stride(&self) -> usize {
        skew(self.d.cin * self.block)
    }

    /// Floats from one position's block of `M` (`cout x block`) to the next.
    fn m_stride(&self) -> usize {
        skew(self.d.cout * self.block)
    }

    /// Computes the output of tiles `range` into `out`.
    fn run(&self, range: std::ops::Range<usize>, out: &SharedOut) {
        let (cin, cout, ld) = (self.d.cin, self.d.cout, self.block);
        let len = range.len();
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let s = &mut *guard;
            let span = self.tiles.cols.next_multiple_of(LANES);
            Scratch::grow(&mut s.v, POSITIONS * self.v_stride());
            // Vector chunks at a segment's end read up to LANES past it.
            Scratch::grow(&mut s.m, POSITIONS * self.m_stride() + LANES);
            Scratch::grow(&mut s.rows, 10 * row_width(self.tiles));
            Scratch::grow(&mut s.out, 6 * span);
            for seg in segments(self.tiles, range.clone()) {
                transform_input(self, &seg, &mut s.v, &mut s.rows);
            }
            for xi in 0..POSITIONS {
                // M_ξ (len x cout) = V_ξ (len x cin) * U_ξ^T (cin x cout),
                // all column-major with leading dimension `ld` or `cin`.
                // SAFETY: `m` holds POSITIONS * m_stride elements, and the
                // gemm writes rows < len <= ld of columns < cout of block ξ.
                unsafe {
                    matmul(
                        len,
                        cout,
                        cin,
                        s.m[xi * self.m_stride()..].as_mut_ptr(),
                        (1, ld as isize),
                        false,
                        &s.v[xi * self.v_stride()..],
                        (1, ld as isize),
                        &self.u[xi * cout * cin..],
                        (1, cin as isize),
                        Parallelism::None,
                    )
                };
            }
            for seg in segments(self.tiles, range) {
                transform_output(self, &seg, &s.m, &mut s.out, out);
            }
        });
    }
}

/// Runs a function compiled for AVX-512 where the CPU has it, else for
/// the baseline target (same arithmetic, so the same bits).
macro_rules! dispatch {
    ($portable:ident, $avx512:ident, ($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        if !portable_only() && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { $avx512($($arg),*) };
        }
        $portable($($arg),*)
    }};
}

/// Whether the unit tests asked for the baseline-target transforms on this
/// thread (so that the path other CPUs take is tested on this one too).
#[cfg(test)]
fn portable_only() -> bool {
    tests::PORTABLE_ONLY.with(|p| p.get())
}

/// Outside the unit tests the CPU decides.
#[cfg(not(test))]
#[inline(always)]
fn portable_only() -> bool {
    false
}

/// Tiles per vector chunk in the transforms at most (floats per AVX-512
/// register). A segment's tiles are transformed a chunk at a time as
/// fixed-size arrays, which the compiler keeps in vector registers; the
/// chunk narrows to 8 or 4 for narrow images, and the last chunk of a
/// segment computes lanes past its end into scratch and keeps only its own.
const LANES: usize = 16;

/// Runs `$body` with the const `$l` set to the chunk width for `$len` tiles.
macro_rules! with_lanes {
    ($len:expr, $l:ident => $body:expr) => {
        match $len {
            9.. => {
                const $l: usize = LANES;
                $body
            }
            5..=8 => {
                const $l: usize = 8;
                $body
            }
            _ => {
                const $l: usize = 4;
                $body
            }
        }
    };
}

/// Writes `B^T d B` of the segment's tiles, for every input channel, into
/// `v` (`[ξ][cin][ld]`), reading the input through `rows`.
fn transform_input(job: &Job, seg: &Segment, v: &mut [f32], rows: &mut [f32]) {
    dispatch!(
        transform_input_portable,
        transform_input_avx512,
        (job, seg, v, rows)
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transform_input_avx512(job: &Job, seg: &Segment, v: &mut [f32], rows: &mut [f32]) {
    transform_input_portable(job, seg, v, rows)
}

/// [`transform_input`] on the baseline target.
///
/// The 4x4 patch of tile column `t` in tile row `r` starts at input row
/// `2r - 1` and column `2t - 1`. Each of the four input rows is split once,
/// zero-padded and rounded to the grid when there is one, into an even and
/// an odd half (`e[m] = padded[2m]`, `o[m] = padded[2m + 1]` with
/// `padded[j] = row[j - 1]`), so that the patch of tile `t` is `e[t], o[t],
/// e[t + 1], o[t + 1]` in every row and the transform reads only unit
/// strides.
#[inline(always)]
fn transform_input_portable(job: &Job, seg: &Segment, v: &mut [f32], rows: &mut [f32]) {
    let d = job.d;
    let (cin, ld, hw) = (d.cin, job.block, d.hw());
    let (c0, len) = (seg.cols.start, seg.cols.len());
    let (width, stride) = (row_width(job.tiles), job.v_stride());
    let sample = &job.x[seg.sample * d.in_len()..][..d.in_len()];
    with_lanes!(len, L => {
        // Entries of each half the chunks read (tile t reads t and t + 1).
        let entries = (len + 1).next_multiple_of(L);
        for c in 0..cin {
            let plane = &sample[c * hw..(c + 1) * hw];
            for r in 0..4 {
                let (e, o) = rows[2 * r * width..(2 * r + 2) * width].split_at_mut(width);
                let iy = (2 * seg.row + r) as isize - 1;
                if iy < 0 || iy >= d.h as isize {
                    zero(&mut e[..entries]);
                    zero(&mut o[..entries]);
                } else {
                    let src = &plane[iy as usize * d.w..(iy as usize + 1) * d.w];
                    split_row(src, c0, entries, e, o, job.grid);
                }
            }
            let rows: &[f32] = rows;
            let half = |i: usize| &rows[i * width..(i + 1) * width];
            let halves = [
                (half(0), half(1)),
                (half(2), half(3)),
                (half(4), half(5)),
                (half(6), half(7)),
            ];
            for t in (0..len).step_by(L) {
                let at = c * ld + seg.at + t;
                input_tiles::<L>(&halves, t, v, stride, at, L.min(len - t));
            }
        }
    });
}

/// Floats in each of the eight row halves of [`transform_input`]'s
/// scratch: a tile row's columns rounded up to whole vectors, plus one
/// vector (the odd half is written one entry ahead).
fn row_width(tiles: Tiles) -> usize {
    tiles.cols.next_multiple_of(LANES) + LANES
}

/// Splits input row `src` into entries `c0..c0 + entries` of the even
/// half `e` and odd half `o` of its zero-padded form, rounding the values
/// to `grid` when given (padding stays zero, as the reference pads the
/// already rounded input). `e` and `o` hold at least `entries + LANES`.
#[inline(always)]
fn split_row(
    src: &[f32],
    c0: usize,
    entries: usize,
    e: &mut [f32],
    o: &mut [f32],
    grid: Option<FixedPointGrid>,
) {
    match grid {
        None => split_row_with(src, c0, entries, e, o, |v| v),
        Some(g) => split_row_with(src, c0, entries, e, o, |v| g.round(v)),
    }
}

/// [`split_row`] with `round` applied to every value read. `o[i] =
/// src[2(c0 + i)]` and `e[i + 1] = src[2(c0 + i) + 1]`: the row read in
/// pairs from `2 c0`, each pair split into two vectors.
#[inline(always)]
fn split_row_with(
    src: &[f32],
    c0: usize,
    entries: usize,
    e: &mut [f32],
    o: &mut [f32],
    round: impl Fn(f32) -> f32,
) {
    let w = src.len();
    let start = (2 * c0).min(w);
    let avail = (w - start).min(2 * entries);
    e[0] = if c0 > 0 && 2 * c0 - 1 < w {
        round(src[2 * c0 - 1])
    } else {
        0.0
    };
    let src = &src[start..start + avail];
    let pairs = avail / 2;
    {
        // One loop over exactly sized slices: the compiler turns it into
        // vector loads and shuffles.
        let (src, o, e) = (&src[..2 * pairs], &mut o[..pairs], &mut e[1..pairs + 1]);
        for i in 0..pairs {
            o[i] = round(src[2 * i]);
            e[i] = round(src[2 * i + 1]);
        }
    }
    // An odd row's last value pairs with the padding.
    let (o_end, e_end) = if avail % 2 == 1 {
        o[pairs] = round(src[avail - 1]);
        (pairs + 1, pairs + 1)
    } else {
        (pairs, pairs + 1)
    };
    zero(&mut o[o_end.min(entries)..entries]);
    zero(&mut e[e_end.min(entries)..entries]);
}

/// `to.fill(0.0)` as inline vector stores: these runs are a few dozen
/// floats, where a call to `memset` costs as much as the fill.
#[inline(always)]
fn zero(to: &mut [f32]) {
    let mut chunks = to.chunks_exact_mut(LANES);
    for t in &mut chunks {
        let t: &mut [f32; LANES] = t.try_into().expect("LANES floats");
        *t = [0.0; LANES];
    }
    for t in chunks.into_remainder() {
        *t = 0.0;
    }
}

/// `to.copy_from_slice(from)` as inline vector moves, as [`zero`].
#[inline(always)]
fn copy(from: &[f32], to: &mut [f32]) {
    let mut chunks = to.chunks_exact_mut(LANES);
    let mut sources = from.chunks_exact(LANES);
    for (t, f) in (&mut chunks).zip(&mut sources) {
        let (t, f): (&mut [f32; LANES], &[f32; LANES]) = (
            t.try_into().expect("LANES floats"),
            f.try_into().expect("LANES floats"),
        );
        *t = *f;
    }
    for (t, &f) in chunks.into_remainder().iter_mut().zip(sources.remainder()) {
        *t = f;
    }
}

/// Column `j` of `d B` for the four rows of tiles `t..t + L`: `f(d0, d1,
/// d2, d3)` with `d = (e[t], o[t], e[t + 1], o[t + 1])` per row.
#[inline(always)]
fn row_column<const L: usize>(
    halves: &[(&[f32], &[f32]); 4],
    t: usize,
    f: impl Fn(f32, f32, f32, f32) -> f32,
) -> [[f32; L]; 4] {
    let load =
        |s: &[f32], from: usize| -> [f32; L] { s[from..from + L].try_into().expect("L elements") };
    let mut out = [[0f32; L]; 4];
    for (r, &(e, o)) in halves.iter().enumerate() {
        let (d0, d1, d2, d3) = (load(e, t), load(o, t), load(e, t + 1), load(o, t + 1));
        for l in 0..L {
            out[r][l] = f(d0[l], d1[l], d2[l], d3[l]);
        }
    }
    out
}

/// `B^T d B` of tiles `t..t + L` of a segment, from the even and odd
/// halves of its four input rows, into `v[ξ * stride + at..][..keep]`.
#[inline(always)]
fn input_tiles<const L: usize>(
    halves: &[(&[f32], &[f32]); 4],
    t: usize,
    v: &mut [f32],
    stride: usize,
    at: usize,
    keep: usize,
) {
    // d B per row: (d0 - d2, d1 + d2, d2 - d1, d1 - d3); then B^T (d B),
    // the same combination of the rows, one column j at a time.
    let dst = Stores { stride, at, keep };
    let c0 = row_column::<L>(halves, t, |d0, _, d2, _| d0 - d2);
    column_out(0, c0, v, dst);
    let c1 = row_column::<L>(halves, t, |_, d1, d2, _| d1 + d2);
    column_out(1, c1, v, dst);
    let c2 = row_column::<L>(halves, t, |_, d1, d2, _| d2 - d1);
    column_out(2, c2, v, dst);
    let c3 = row_column::<L>(halves, t, |_, d1, _, d3| d1 - d3);
    column_out(3, c3, v, dst);
}

/// Where [`column_out`] stores a chunk: position `ξ` at `v[ξ * stride +
/// at..]`, `keep` tiles of it.
#[derive(Clone, Copy)]
struct Stores {
    stride: usize,
    at: usize,
    keep: usize,
}

/// `B^T` applied to column `j` of `d B` (`db`, one vector per row), stored
/// at positions `(i, j)`: `v[(4i + j) * stride + at..][..keep]`.
#[inline(always)]
fn column_out<const L: usize>(
    j: usize,
    db: [[f32; L]; 4],
    v: &mut [f32],
    Stores { stride, at, keep }: Stores,
) {
    let mut out = [[0f32; L]; 4];
    for l in 0..L {
        out[0][l] = db[0][l] - db[2][l];
        out[1][l] = db[1][l] + db[2][l];
        out[2][l] = db[2][l] - db[1][l];
        out[3][l] = db[1][l] - db[3][l];
    }
    for (i, vals) in out.iter().enumerate() {
        let dst = &mut v[(i * 4 + j) * stride + at..];
        if keep == L {
            // A fixed-size copy: one vector store.
            dst[..L].copy_from_slice(vals);
        } else {
            copy(&vals[..keep], &mut dst[..keep]);
        }
    }
}

/// Writes `A^T M A` of the segment's tiles, for every output channel, into
/// the output (`out`, NCHW), clipping the last tile row and column of odd
/// image sizes.
fn transform_output(job: &Job, seg: &Segment, m: &[f32], rows: &mut [f32], out: &SharedOut) {
    dispatch!(
        transform_output_portable,
        transform_output_avx512,
        (job, seg, m, rows, out)
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transform_output_avx512(
    job: &Job,
    seg: &Segment,
    m: &[f32],
    rows: &mut [f32],
    out: &SharedOut,
) {
    transform_output_portable(job, seg, m, rows, out)
}

/// [`transform_output`] on the baseline target: both output rows of the
/// segment are assembled in `rows` and then copied into place.
#[inline(always)]
fn transform_output_portable(
    job: &Job,
    seg: &Segment,
    m: &[f32],
    rows: &mut [f32],
    out: &SharedOut,
) {
    let d = job.d;
    let (cout, ld) = (d.cout, job.block);
    let (c0, len) = (seg.cols.start, seg.cols.len());
    let span = job.tiles.cols.next_multiple_of(LANES);
    let (top, rest) = rows[..6 * span].split_at_mut(2 * span);
    let (bottom, scratch_bottom) = rest.split_at_mut(2 * span);
    // The output columns this segment covers, clipped to the image.
    let x0 = 2 * c0;
    let x1 = (2 * seg.cols.end).min(d.w);
    let y0 = 2 * seg.row;
    let y_rows = if y0 + 1 < d.h { 2 } else { 1 };
    let width = x1 - x0;
    for k in 0..cout {
        let at = k * ld + seg.at;
        let plane = (seg.sample * cout + k) * d.hw();
        let row = |r: usize| -> &mut [f32] {
            let start = plane + (y0 + r) * d.w + x0;
            // SAFETY: the row lies inside sample `seg.sample`'s channel `k`
            // plane, and only this tile segment writes columns x0..x1 of
            // it (this call, once per channel).
            unsafe { std::slice::from_raw_parts_mut(out.0.add(start).cast::<f32>(), width) }
        };
        // A missing second row (odd height) is written to scratch.
        let (dst_top, dst_bottom) = (
            row(0),
            if y_rows == 2 {
                row(1)
            } else {
                &mut bottom[..width]
            },
        );
        let stride = job.m_stride();
        with_lanes!(len, L => {
            for t in (0..len).step_by(L) {
                if 2 * (t + L) <= width {
                    output_tiles::<L>(m, stride, at + t, &mut dst_top[2 * t..], &mut dst_bottom[2 * t..]);
                } else {
                    // The last chunk runs past the image: through scratch.
                    output_tiles::<L>(m, stride, at + t, &mut top[2 * t..], &mut scratch_bottom[2 * t..]);
                    let keep = width - 2 * t;
                    copy(&top[2 * t..2 * t + keep], &mut dst_top[2 * t..]);
                    copy(&scratch_bottom[2 * t..2 * t + keep], &mut dst_bottom[2 * t..]);
                }
            }
        });
    }
}

/// `A^T M A` of the `L` tiles at `m[ξ * stride + at..][..L]` into their
/// two output rows, the first `2L` entries of `top` and `bottom`.
#[inline(always)]
fn output_tiles<const L: usize>(
    m: &[f32],
    stride: usize,
    at: usize,
    top: &mut [f32],
    bottom: &mut [f32],
) {
    let load = |xi: usize| -> [f32; L] {
        m[xi * stride + at..xi * stride + at + L]
            .try_into()
            .expect("L elements")
    };
    let (top, bottom) = (&mut top[..2 * L], &mut bottom[..2 * L]);
    // A^T M: (row0 + row1 + row2, row1 - row2 - row3), per column j.
    let mut s0 = [[0f32; L]; 4];
    let mut s1 = [[0f32; L]; 4];
    for j in 0..4 {
        let (a, b, c, e) = (load(j), load(4 + j), load(8 + j), load(12 + j));
        for l in 0..L {
            s0[j][l] = a[l] + b[l] + c[l];
            s1[j][l] = b[l] - c[l] - e[l];
        }
    }
    // (A^T M) A: the same combination of the columns, interleaved into the
    // rows (tile t covers columns 2t and 2t + 1).
    for (s, dst) in [(&s0, &mut *top), (&s1, &mut *bottom)] {
        for l in 0..L {
            dst[2 * l] = s[0][l] + s[1][l] + s[2][l];
            dst[2 * l + 1] = s[1][l] - s[2][l] - s[3][l];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Set by a test to run the baseline-target transforms.
        pub(super) static PORTABLE_ONLY: Cell<bool> = const { Cell::new(false) };
    }

    /// The direct definition: `y[k, i, j] = sum_c sum_{a,b} w[k, c, a, b] *
    /// x[c, i + a - 1, j + b - 1]`, zero outside the image.
    fn direct(x: &[f32], w: &[f32], d: &Dims) -> Vec<f32> {
        let (h, wd) = (d.h as isize, d.w as isize);
        let mut y = vec![0f32; d.n * d.out_len()];
        for n in 0..d.n {
            for k in 0..d.cout {
                for i in 0..h {
                    for j in 0..wd {
                        let mut sum = 0f64;
                        for c in 0..d.cin {
                            for a in 0..3isize {
                                for b in 0..3isize {
                                    let (yy, xx) = (i + a - 1, j + b - 1);
                                    if yy < 0 || xx < 0 || yy >= h || xx >= wd {
                                        continue;
                                    }
                                    let xv = x
                                        [((n * d.cin + c) * d.h + yy as usize) * d.w + xx as usize];
                                    let wv = w[((k * d.cin + c) * 3 + a as usize) * 3 + b as usize];
                                    sum += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        y[((n * d.cout + k) * d.h + i as usize) * d.w + j as usize] = sum as f32;
                    }
                }
            }
        }
        y
    }

    fn dims(n: usize, cin: usize, h: usize, w: usize, cout: usize) -> Dims {
        let g = super::super::ConvGeometry {
            stride: 1,
            padding: 1,
        };
        Dims::new(&[n, cin, h, w], &[cout, cin, 3, 3], g, 1).unwrap()
    }

    /// A deterministic spread of values in [-1, 1).
    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn both_transform_paths_match_the_direct_convolution_bit_for_bit() {
        for (i, &(n, cin, h, w, cout)) in [
            (2, 3, 5, 7, 4),
            (1, 16, 32, 32, 16),
            (3, 5, 1, 9, 2),
            (2, 7, 18, 34, 3),
        ]
        .iter()
        .enumerate()
        {
            let d = dims(n, cin, h, w, cout);
            let x = values(d.n * d.in_len(), 2 * i as u32 + 1);
            let wt = values(d.cout * d.k(), 2 * i as u32 + 2);
            let reference = direct(&x, &wt, &d);
            // rayon runs the blocks on its own threads: pin the choice
            // there too by running the whole call inside a one-thread pool.
            let run = |portable: bool| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .start_handler(move |_| PORTABLE_ONLY.with(|p| p.set(portable)))
                    .build()
                    .unwrap();
                pool.install(|| {
                    PORTABLE_ONLY.with(|p| p.set(portable));
                    forward(&x, &wt, &d, None)
                })
            };
            let (portable, dispatched) = (run(true), run(false));
            assert_eq!(portable, dispatched, "paths differ for {d:?}");
            let scale = reference.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let err = portable
                .iter()
                .zip(&reference)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
                / scale;
            assert!(err < 1e-5, "{d:?}: {err}");
        }
    }
}
