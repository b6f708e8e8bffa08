//! The integer engine: runs an [`IntModel`] on a batch, layer by layer,
//! in parallel (rayon) over images, position blocks and output channels.

use crate::error::{InferError, Result};
use crate::format::{floor_shift_wide, ActFormat};
use crate::kernels::{block_channels, col_index, col_len, Isa, BLOCK, LANES, LANE_IMAGES};
use crate::model::{Epilogue, IntModel, Logits, Requant, ShiftLayer, Step};
use crate::weights::CHUNK_ROWS;
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

mod lanes;

/// The first `len` elements of `v` that start on a 64-byte boundary, so
/// that every 16-lane row of a block is one cache line (a 512-bit load that
/// straddles two lines costs two).
fn aligned(v: &mut Vec<i32>, len: usize) -> &mut [i32] {
    v.resize(len + 16, 0);
    let at = v.as_ptr().align_offset(64);
    &mut v[at..at + len]
}

/// Engine settings (the defaults pick the fastest exact path).
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineOptions {
    /// Instruction set of the kernels; `None` detects the best one.
    pub isa: Option<Isa>,
    /// Always use 64-bit bucket sums (same results, slower; for tests).
    pub force_wide: bool,
    /// Lanes per sub-block of a 64-position block (16, 32 or 64, see
    /// [`crate::kernels::LANES`]); `None` picks per layer (16 when the
    /// fan-in exceeds [`CHUNK_ROWS`], else 32). Same results; 64 for every
    /// layer is the former layout, kept for comparisons. Batch-lanes
    /// convolutions (see `im2col_only`) have no sub-blocks and ignore it.
    pub lanes: Option<usize>,
    /// Never use the batch-lanes convolution (same results; for tests and
    /// comparisons). By default convolutions of 16 or more images with
    /// AVX-512 read the activations in place, 16 images per vector
    /// (see `engine/lanes.rs`), instead of through im2col blocks.
    pub im2col_only: bool,
    /// Never use the VNNI dot-product re-expression of the batch-lanes
    /// convolution (same results; for tests and comparisons). By default a
    /// CPU with AVX-512 VNNI runs the layers whose weights fit it
    /// ([`crate::dot`]) with `vpdpbusd`, and the rest shift-add.
    pub shift_add_only: bool,
}

/// One 16-image vector of the batch-lanes layout; a `Vec` of them is
/// 64-byte aligned, so that every vector a kernel loads is one cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Lane([i32; LANE_IMAGES]);

/// `i32` storage starting on a 64-byte boundary (whole [`Lane`]s, of which
/// the first `len` values count).
#[derive(Clone, Debug)]
struct Buf {
    lanes: Vec<Lane>,
    len: usize,
}

impl Buf {
    /// `len` zeros.
    fn zeroed(len: usize) -> Buf {
        Buf {
            lanes: vec![Lane([0; LANE_IMAGES]); len.div_ceil(LANE_IMAGES)],
            len,
        }
    }

    /// A copy of `v`.
    fn from_slice(v: &[i32]) -> Buf {
        let mut b = Buf::zeroed(v.len());
        b.copy_from_slice(v);
        b
    }
}

impl std::ops::Deref for Buf {
    type Target = [i32];
    fn deref(&self) -> &[i32] {
        // SAFETY: `lanes` holds at least `len` initialised `i32`s, contiguous.
        unsafe { std::slice::from_raw_parts(self.lanes.as_ptr().cast(), self.len) }
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [i32] {
        // SAFETY: as in `deref`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.lanes.as_mut_ptr().cast(), self.len) }
    }
}

/// Activations of a batch: `n x c x h x w` (`lanes` = 1, `border` = 0), or
/// in the batch-lanes layout `groups x c x (h + 2 border) x (w + 2 border) x
/// 16` (`lanes` = [`LANE_IMAGES`]), each group holding 16 images (the last
/// one filled up with padding images: zeros at the input, then whatever the
/// layers make of them, dropped from the logits) and each plane surrounded by `border` rows
/// and columns of zeros (a convolution with that padding reads it in place).
#[derive(Debug, Clone)]
struct Act {
    /// Shared so that a residual shortcut costs no copy.
    data: Arc<Buf>,
    c: usize,
    h: usize,
    w: usize,
    /// Images per pixel vector: 1 or [`LANE_IMAGES`].
    lanes: usize,
    /// Zero rows and columns around each plane (0 unless batch lanes).
    border: usize,
    /// An upper bound of `|X|` over the batch (picks the bucket-sum width).
    max_abs: i64,
}

impl Act {
    /// Rows of a stored plane.
    fn hp(&self) -> usize {
        self.h + 2 * self.border
    }

    /// Columns of a stored plane.
    fn wp(&self) -> usize {
        self.w + 2 * self.border
    }

    /// Elements of a stored plane.
    fn plane_len(&self) -> usize {
        self.hp() * self.wp() * self.lanes
    }

    /// The same geometry without the values (holding no reference to the
    /// buffer, so that `Arc::make_mut` on the original does not copy it).
    fn shape(&self) -> Act {
        Act {
            data: Arc::new(Buf::zeroed(0)),
            ..*self
        }
    }

    /// Offset of pixel `(y, x)` within a stored plane.
    fn at(&self, y: usize, x: usize) -> usize {
        ((y + self.border) * self.wp() + x + self.border) * self.lanes
    }
}

/// The border a step's batch-lanes output gets: the padding of the next
/// convolution, if one comes before any linear layer, so that it reads its
/// input in place (0 otherwise).
fn next_padding(steps: &[Step]) -> usize {
    for step in steps {
        match step {
            Step::Conv { padding, .. } => return *padding,
            Step::Linear { .. } => return 0,
            _ => {}
        }
    }
    0
}

/// Elements per task of element-wise steps: smaller ones run on one thread
/// (waking another costs more than the work at batch 1).
const ELEMENTWISE_GRAIN: usize = 1 << 15;

fn max_abs(x: &[i32]) -> i64 {
    x.par_chunks(ELEMENTWISE_GRAIN)
        .map(|c| c.iter().map(|&v| i64::from(v).abs()).max().unwrap_or(0))
        .max()
        .unwrap_or(0)
}

/// Storage for `len` elements that a layer fills completely through
/// [`SyncPtr`] before [`assume_init`] turns it into a vector (no zeroing pass).
fn uninit<T>(len: usize) -> Vec<MaybeUninit<T>> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` needs no initialisation.
    unsafe { v.set_len(len) };
    v
}

/// # Safety
/// Every element of `v` must have been written.
unsafe fn assume_init<T>(v: Vec<MaybeUninit<T>>) -> Vec<T> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: same allocation, layout and length; elements initialised (caller).
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<T>(), v.len(), v.capacity()) }
}

struct SyncPtr<T>(*mut T);
// SAFETY: tasks write disjoint elements through the pointer (see uses).
unsafe impl<T> Sync for SyncPtr<T> {}
unsafe impl<T> Send for SyncPtr<T> {}
impl<T> SyncPtr<T> {
    /// # Safety
    /// `i` must be in bounds and written by one task only.
    #[inline(always)]
    unsafe fn write(&self, i: usize, v: T) {
        unsafe { self.0.add(i).write(v) }
    }
}

thread_local! {
    /// The im2col blocks a layer shares between channel chunks (few images).
    static SHARED_COL: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
    static SCRATCH: RefCell<(Vec<i32>, Vec<i64>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Where a layer's requantised outputs go.
enum Out<'a> {
    Act(&'a SyncPtr<i32>),
    Logits(&'a SyncPtr<i64>),
}

/// A layer's output, written in parallel through raw pointers: 32-bit
/// activations, or 64-bit logits when the layer ends the network.
struct OutBuf {
    act: Vec<MaybeUninit<Lane>>,
    act_len: usize,
    logits: Vec<MaybeUninit<i64>>,
    p32: SyncPtr<i32>,
    p64: SyncPtr<i64>,
    is_logits: bool,
}

impl OutBuf {
    /// An uninitialised buffer of `len` outputs.
    fn new(len: usize, is_logits: bool) -> Self {
        let mut act = if is_logits {
            Vec::new()
        } else {
            uninit::<Lane>(len.div_ceil(LANE_IMAGES))
        };
        if let Some(last) = act.last_mut() {
            // The values past `len` are never written by a task.
            last.write(Lane([0; LANE_IMAGES]));
        }
        let mut logits = if is_logits {
            uninit::<i64>(len)
        } else {
            Vec::new()
        };
        // Moving the vectors into the struct keeps their heap buffers in place.
        let p32 = SyncPtr(act.as_mut_ptr().cast::<i32>());
        let p64 = SyncPtr(logits.as_mut_ptr().cast::<i64>());
        OutBuf {
            act,
            act_len: if is_logits { 0 } else { len },
            logits,
            p32,
            p64,
            is_logits,
        }
    }

    /// Where the tasks write.
    fn out(&self) -> Out<'_> {
        if self.is_logits {
            Out::Logits(&self.p64)
        } else {
            Out::Act(&self.p32)
        }
    }

    /// The finished output: activations of shape `c x h x w` per image (or
    /// group, with `lanes` and `border` as [`Act`] says), or the logits.
    ///
    /// # Safety
    /// Every element must have been written.
    unsafe fn finish(
        self,
        c: usize,
        h: usize,
        w: usize,
        lanes: usize,
        border: usize,
        max_abs: i64,
    ) -> std::result::Result<Act, Vec<i64>> {
        if self.is_logits {
            // SAFETY: the caller guarantees every element was written.
            Err(unsafe { assume_init(self.logits) })
        } else {
            Ok(Act {
                // SAFETY: as above.
                data: Arc::new(Buf {
                    lanes: unsafe { assume_init(self.act) },
                    len: self.act_len,
                }),
                c,
                h,
                w,
                lanes,
                border,
                max_abs,
            })
        }
    }
}

impl IntModel {
    /// Quantises normalised float images (`n x C x H x W`, as dsnn's
    /// `Batcher` makes them) to the activation format: `clamp(floor(x * 2^F))`.
    pub fn quantize_input(&self, images: &[f32]) -> Vec<i32> {
        images.iter().map(|&x| self.act.quantize(x)).collect()
    }

    /// Quantised input of raw pixels (`n x C x H x W` bytes), normalised in
    /// `f32` exactly as dsnn's `Batcher` does, through a 256-entry table per channel.
    pub fn quantize_pixels(&self, pixels: &[u8]) -> Result<Vec<i32>> {
        let t = self.input_transform.as_ref().ok_or_else(|| {
            InferError::Input("the model has no pixel normalisation; pass float images".into())
        })?;
        let c = self.input.channels;
        if t.normalization.mean.len() != c || t.normalization.std.len() != c {
            return Err(InferError::Input(format!(
                "normalisation has {} channels, the model {c}",
                t.normalization.mean.len()
            )));
        }
        let tables: Vec<Vec<i32>> = (0..c)
            .map(|ch| {
                let (m, s) = (t.normalization.mean[ch], t.normalization.std[ch]);
                let scale = 1.0 / (s * t.pixel_max);
                let shift = -m / s;
                (0..256)
                    .map(|p| self.act.quantize(f32::from(p as u8) * scale + shift))
                    .collect()
            })
            .collect();
        let hw = self.input.height * self.input.width;
        Ok(pixels
            .iter()
            .enumerate()
            .map(|(i, &p)| tables[(i / hw) % c][usize::from(p)])
            .collect())
    }

    /// Integer logits of normalised float images (`n x C x H x W`).
    pub fn infer(&self, images: &[f32]) -> Result<Logits> {
        let n = self.batch_of(images.len())?;
        self.infer_quantized(self.quantize_input(images), n, &EngineOptions::default())
    }

    /// Integer logits of raw pixels (`n x C x H x W` bytes).
    pub fn infer_pixels(&self, pixels: &[u8]) -> Result<Logits> {
        let n = self.batch_of(pixels.len())?;
        self.infer_quantized(self.quantize_pixels(pixels)?, n, &EngineOptions::default())
    }

    fn batch_of(&self, len: usize) -> Result<usize> {
        let per = self.input.channels * self.input.height * self.input.width;
        if per == 0 || !len.is_multiple_of(per) {
            return Err(InferError::Input(format!(
                "{len} values is not a whole number of {}x{}x{} images",
                self.input.channels, self.input.height, self.input.width
            )));
        }
        Ok(len / per)
    }

    /// Integer logits of `n` quantised images (activation integers, see
    /// [`IntModel::quantize_input`]).
    pub fn infer_quantized(&self, x: Vec<i32>, n: usize, opts: &EngineOptions) -> Result<Logits> {
        // The kernels' bounds rest on a consistent geometry (the fields are
        // public, so a hand-built model may not have one).
        self.validate()?;
        let isa = opts.isa.unwrap_or_else(Isa::detect);
        if !isa.available() {
            return Err(InferError::Input(format!(
                "this CPU cannot run the {} kernels",
                isa.name()
            )));
        }
        let lanes = opts.lanes;
        if let Some(lanes) = lanes.filter(|l| !LANES.contains(l)) {
            return Err(InferError::Input(format!(
                "{lanes} lanes per sub-block; allowed: {LANES:?}"
            )));
        }
        let per = self.input.channels * self.input.height * self.input.width;
        if x.len() != n * per {
            return Err(InferError::Input(format!(
                "{} values for {n} images of {per}",
                x.len()
            )));
        }
        let (lo, hi) = (self.act.lo(), self.act.hi());
        if let Some(v) = x.iter().find(|&&v| i64::from(v) < lo || i64::from(v) > hi) {
            return Err(InferError::Input(format!(
                "input integer {v} is outside the activation range [{lo}, {hi}]"
            )));
        }
        let mut cur = Act {
            max_abs: max_abs(&x),
            data: Arc::new(Buf::from_slice(&x)),
            c: self.input.channels,
            h: self.input.height,
            w: self.input.width,
            lanes: 1,
            border: 0,
        };
        let mut saved: Vec<Act> = Vec::new();
        let ctx = Ctx {
            act: self.act,
            isa,
            wide: opts.force_wide,
            lanes,
            batch_lanes: !opts.im2col_only,
            dot: isa == Isa::Avx512 && !opts.shift_add_only && crate::kernels::dot::available(),
            n,
        };
        for (i, step) in self.steps.iter().enumerate() {
            // Border of a batch-lanes output of this step.
            let border = next_padding(&self.steps[i + 1..]);
            match step {
                Step::Conv {
                    layer,
                    kernel,
                    stride,
                    padding,
                    groups,
                    epilogue,
                    ..
                } => {
                    let geo = Geo {
                        k: *kernel,
                        stride: *stride,
                        pad: *padding,
                    };
                    if ctx.lanes_conv(&cur, layer, epilogue) {
                        cur = ctx.conv_lanes(
                            &to_layout(&cur, n, LANE_IMAGES, *padding),
                            layer,
                            geo,
                            *groups,
                            epilogue,
                            border,
                        );
                        continue;
                    }
                    if *groups != 1 {
                        let x = to_layout(&cur, n, 1, 0);
                        match ctx.conv_grouped(&x, layer, geo, *groups, epilogue) {
                            Ok(next) => cur = next,
                            Err(values) => return Ok(self.logits(values, layer, n)),
                        }
                        continue;
                    }
                    match ctx.conv(&to_layout(&cur, n, 1, 0), layer, geo, epilogue)? {
                        Ok(next) => cur = next,
                        Err(values) => return Ok(self.logits(values, layer, n)),
                    }
                }
                Step::Linear { layer, epilogue } => {
                    match ctx.linear(&to_layout(&cur, n, 1, 0), layer, epilogue) {
                        Ok(next) => cur = next,
                        Err(values) => return Ok(self.logits(values, layer, n)),
                    }
                }
                Step::MaxPool2 => cur = max_pool2(&cur, border),
                Step::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => cur = max_pool(&cur, *kernel, *stride, *padding, border),
                Step::Concat { parts } => {
                    let branches = saved.split_off(saved.len().saturating_sub(parts - 1));
                    if branches.len() + 1 != *parts {
                        return Err(InferError::Input(
                            "concatenation without its saved branches".into(),
                        ));
                    }
                    cur = concat(&branches, &cur, n);
                }
                Step::SaveResidual => saved.push(cur.clone()),
                Step::SwapResidual => {
                    let top = saved.last_mut().ok_or_else(|| {
                        InferError::Input("residual swap without a saved tensor".into())
                    })?;
                    std::mem::swap(&mut cur, top);
                }
                Step::AddResidual { pad, relu } => {
                    let short = saved.pop().ok_or_else(|| {
                        InferError::Input("residual add without a shortcut".into())
                    })?;
                    let short = to_layout(&short, n, cur.lanes, cur.border);
                    add_residual(&mut cur, &short, *pad, *relu, &self.act);
                }
                Step::GlobalAvgPool => cur = avg_pool(&cur),
            }
        }
        Err(InferError::unsupported("model", "no step produced logits"))
    }

    fn logits(&self, values: Vec<i64>, layer: &ShiftLayer, n: usize) -> Logits {
        Logits {
            n,
            classes: self.classes,
            values,
            fraction_bits: self.act.fraction_bits + layer.acc_shift,
        }
    }
}

#[derive(Clone, Copy)]
struct Geo {
    k: usize,
    stride: usize,
    pad: usize,
}

struct Ctx {
    act: ActFormat,
    isa: Isa,
    wide: bool,
    /// Lanes per sub-block, `None` to pick per layer.
    lanes: Option<usize>,
    /// Batch-lanes convolutions allowed (see [`EngineOptions::im2col_only`]).
    batch_lanes: bool,
    /// The VNNI dot-product kernel allowed and available.
    dot: bool,
    n: usize,
}

impl Ctx {
    /// Whether a layer's bucket sums need 64 bits for this input.
    fn wide_for(&self, x: &Act, layer: &ShiftLayer) -> bool {
        if self.wide {
            return true;
        }
        let max = x.max_abs;
        let wide = max.saturating_mul(layer.plan().max_bucket as i64) >= 1 << 31;
        if wide {
            log::debug!("{}: 64-bit bucket sums (max |X| = {max})", layer.name);
        }
        wide
    }

    /// Lanes per sub-block for a layer: 16-lane rows keep a large fan-in's
    /// row chunks ([`crate::weights::Plan::chunks`]) in L1; up to
    /// [`CHUNK_ROWS`] rows, 32 lanes spend each bucket's loop on two
    /// registers, with the block (at most 40 KB) about the size of L1.
    fn lanes_for(&self, layer: &ShiftLayer) -> usize {
        self.lanes
            .unwrap_or(if layer.fan_in > CHUNK_ROWS { 16 } else { 32 })
    }

    fn threads() -> usize {
        rayon::current_num_threads().max(1)
    }

    /// Splits `cout` channels into chunks so that `tasks * chunks` covers the threads.
    fn channel_chunks(tasks: usize, cout: usize) -> usize {
        let want = (4 * Self::threads()).div_ceil(tasks.max(1));
        want.clamp(1, cout.div_ceil(8).max(1))
    }

    /// A convolution; `Err(logits)` when it is the logits layer.
    fn conv(
        &self,
        x: &Act,
        layer: &ShiftLayer,
        g: Geo,
        epi: &Epilogue,
    ) -> Result<std::result::Result<Act, Vec<i64>>> {
        let plan = layer.plan();
        let wide = self.wide_for(x, layer);
        let (oh, ow) = (
            (x.h + 2 * g.pad - g.k) / g.stride + 1,
            (x.w + 2 * g.pad - g.k) / g.stride + 1,
        );
        let p = oh * ow;
        let cout = layer.cout;
        let blocks = p.div_ceil(BLOCK);
        let chunks = Self::channel_chunks(self.n * blocks, cout);
        let per_chunk = cout.div_ceil(chunks);
        let buf = OutBuf::new(self.n * cout * p, matches!(epi.requant, Requant::Logits));
        let out = buf.out();
        let seen = AtomicI64::new(0);
        let in_len = x.c * x.h * x.w;
        let col_len = col_len(layer.fan_in);
        // With several channel chunks per block (few images), the blocks'
        // im2col is built once and shared instead of once per chunk.
        let (isa, lanes) = (self.isa, self.lanes_for(layer));
        // (`shared_at`: where its 64-byte aligned blocks start.)
        let (shared, shared_at): (Vec<i32>, usize) = if chunks > 1 {
            // Reused between layers: every element a task reads is written
            // first (im2col fills each sub-block up to `valid`), so stale
            // values need no zeroing pass.
            let mut all = SHARED_COL.with_borrow_mut(std::mem::take);
            // Blocks of `col_len` (a multiple of 16 values) stay aligned.
            aligned(&mut all, self.n * blocks * col_len)
                .par_chunks_mut(col_len)
                .enumerate()
                .for_each(|(t, col)| {
                    let (img, blk) = (t / blocks, t % blocks);
                    let src = &x.data[img * in_len..(img + 1) * in_len];
                    let p0 = blk * BLOCK;
                    im2col_block(
                        isa,
                        src,
                        x.c,
                        x.h,
                        x.w,
                        g,
                        ow,
                        p0,
                        BLOCK.min(p - p0),
                        lanes,
                        col,
                    );
                });
            let at = all.as_ptr().align_offset(64);
            (all, at)
        } else {
            (Vec::new(), 0)
        };
        (0..self.n * blocks * chunks).into_par_iter().for_each(|t| {
            let (img, rest) = (t / (blocks * chunks), t % (blocks * chunks));
            let (blk, chunk) = (rest / chunks, rest % chunks);
            let cs = (chunk * per_chunk).min(cout)..((chunk + 1) * per_chunk).min(cout);
            if cs.is_empty() {
                return;
            }
            let p0 = blk * BLOCK;
            let valid = BLOCK.min(p - p0);
            SCRATCH.with_borrow_mut(|(col, acc)| {
                acc.resize(cs.len() * BLOCK, 0);
                let col: &[i32] = if chunks > 1 {
                    let at = shared_at + (img * blocks + blk) * col_len;
                    &shared[at..at + col_len]
                } else {
                    let col = aligned(col, col_len);
                    let src = &x.data[img * in_len..(img + 1) * in_len];
                    im2col_block(isa, src, x.c, x.h, x.w, g, ow, p0, valid, lanes, col);
                    &*col
                };
                let (init, cs2) = (&epi.acc_init, cs.clone());
                block_channels(isa, wide, col, lanes, valid, plan, cs2, init, acc);
                let mut m = 0;
                for (ci, c) in cs.clone().enumerate() {
                    let a = &acc[ci * BLOCK..ci * BLOCK + valid];
                    let base = (img * cout + c) * p + p0;
                    m = m.max(self.requant(a, c, layer, epi, &out, base, 1));
                }
                seen.fetch_max(m, Ordering::Relaxed);
            });
        });
        if chunks > 1 {
            SHARED_COL.with_borrow_mut(|v| *v = shared);
        }
        // SAFETY: every task wrote its (image, channel, position) outputs.
        Ok(unsafe { buf.finish(cout, oh, ow, 1, 0, seen.into_inner()) })
    }

    /// A grouped convolution (`groups` > 1, depthwise when each group has
    /// one input channel) on `n x c x h x w` activations: each group's
    /// im2col block covers its own input channels, and its output channels
    /// add their buckets over it as a dense layer's do. A task takes one
    /// block of positions of one image and a run of groups. `Err(logits)`
    /// when it is the logits layer.
    fn conv_grouped(
        &self,
        x: &Act,
        layer: &ShiftLayer,
        g: Geo,
        groups: usize,
        epi: &Epilogue,
    ) -> std::result::Result<Act, Vec<i64>> {
        assert!(x.lanes == 1 && x.border == 0, "{}: layout", layer.name);
        let plan = layer.plan();
        let wide = self.wide_for(x, layer);
        let (oh, ow) = (
            (x.h + 2 * g.pad - g.k) / g.stride + 1,
            (x.w + 2 * g.pad - g.k) / g.stride + 1,
        );
        let (p, cout) = (oh * ow, layer.cout);
        let (cin_g, cout_g) = (x.c / groups, cout / groups);
        assert_eq!(layer.fan_in, cin_g * g.k * g.k, "{}: fan-in", layer.name);
        let blocks = p.div_ceil(BLOCK);
        // Runs of groups, so that there are enough tasks for the threads.
        let runs = Self::channel_chunks(self.n * blocks, groups);
        let per_run = groups.div_ceil(runs);
        let buf = OutBuf::new(self.n * cout * p, matches!(epi.requant, Requant::Logits));
        let out = buf.out();
        let seen = AtomicI64::new(0);
        let (in_len, group_len) = (x.c * x.h * x.w, cin_g * x.h * x.w);
        let col_len = col_len(layer.fan_in);
        let (isa, lanes) = (self.isa, self.lanes_for(layer));
        (0..self.n * blocks * runs).into_par_iter().for_each(|t| {
            let (img, rest) = (t / (blocks * runs), t % (blocks * runs));
            let (blk, run) = (rest / runs, rest % runs);
            let gs = (run * per_run).min(groups)..((run + 1) * per_run).min(groups);
            let p0 = blk * BLOCK;
            let valid = BLOCK.min(p - p0);
            SCRATCH.with_borrow_mut(|(col, acc)| {
                acc.resize(cout_g * BLOCK, 0);
                let col = aligned(col, col_len);
                let mut m = 0;
                for gi in gs {
                    let src = &x.data[img * in_len + gi * group_len..][..group_len];
                    im2col_block(isa, src, cin_g, x.h, x.w, g, ow, p0, valid, lanes, col);
                    let cs = gi * cout_g..(gi + 1) * cout_g;
                    let init = &epi.acc_init;
                    block_channels(isa, wide, col, lanes, valid, plan, cs.clone(), init, acc);
                    for (ci, c) in cs.enumerate() {
                        let a = &acc[ci * BLOCK..ci * BLOCK + valid];
                        let base = (img * cout + c) * p + p0;
                        m = m.max(self.requant(a, c, layer, epi, &out, base, 1));
                    }
                }
                seen.fetch_max(m, Ordering::Relaxed);
            });
        });
        // SAFETY: every task wrote its (image, channel, position) outputs.
        unsafe { buf.finish(cout, oh, ow, 1, 0, seen.into_inner()) }
    }

    /// Requantises `acc` of channel `c`, writing element `j` at `base + j * stride`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn requant(
        &self,
        acc: &[i64],
        c: usize,
        layer: &ShiftLayer,
        epi: &Epilogue,
        out: &Out,
        base: usize,
        stride: usize,
    ) -> i64 {
        let s = layer.acc_shift;
        let mut max = 0i64;
        // SAFETY (all writes): each (image, channel, position) belongs to one task.
        match (&epi.requant, out) {
            (Requant::Shift { relu }, Out::Act(o)) => {
                let floor = if *relu { 0 } else { i64::MIN };
                #[cfg(target_arch = "x86_64")]
                if stride == 1 && self.isa == Isa::Avx512 {
                    let o = unsafe { o.0.add(base) };
                    let (lo, hi) = (self.act.lo(), self.act.hi());
                    // SAFETY: AVX-512F checked when the context was made
                    // (`Isa::available`); `o` has `acc.len()` elements of this task.
                    // Without the multiply, the affine form is floor(acc / 2^S).
                    let ret =
                        unsafe { affine_avx512::<false>(acc, o, s, 1, 0, 0, 0, floor, lo, hi) };
                    return ret.expect("no range condition without the multiply");
                }
                for (j, &a) in acc.iter().enumerate() {
                    let v = self.act.clamp((a >> s).max(floor));
                    max = max.max(i64::from(v).abs());
                    unsafe { o.write(base + j * stride, v) };
                }
            }
            (
                Requant::Affine {
                    mul,
                    add,
                    mul_shift,
                    relu,
                    ..
                },
                Out::Act(o),
            ) => {
                let (m, b) = (i64::from(mul[c]), add[c]);
                let floor = if *relu { 0 } else { i64::MIN };
                // Exact 64-bit form: with acc = q 2^S + r and add = cq 2^S + cr,
                // floor((acc m + add) / 2^(S+k)) = floor((q m + cq + floor((r m + cr) / 2^S)) / 2^k),
                // valid when |q| < 2^31, S <= 31 and |cq| < 2^61; else 128 bits.
                let low = (1i64 << s.min(62)) - 1;
                let (cq, cr) = (b >> s.min(62), b & low);
                let fits = |a: i64| (a >> s).unsigned_abs() < 1 << 31;
                let shape_ok = s <= 31 && cq.unsigned_abs() < 1 << 61;
                #[cfg(target_arch = "x86_64")]
                if shape_ok && stride == 1 && self.isa == Isa::Avx512 {
                    let o = unsafe { o.0.add(base) };
                    let (lo, hi) = (self.act.lo(), self.act.hi());
                    // SAFETY: the CPU has AVX-512F (checked when the
                    // context was made); `o` has `acc.len()` elements of
                    // this task. `None` (some |acc / 2^S| >= 2^31) leaves
                    // them to be rewritten below.
                    let ret = unsafe {
                        affine_avx512::<true>(acc, o, s, m, cq, cr, *mul_shift, floor, lo, hi)
                    };
                    if let Some(m2) = ret {
                        return m2;
                    }
                }
                let fast = shape_ok && acc.iter().all(|&a| fits(a));
                if fast {
                    for (j, &a) in acc.iter().enumerate() {
                        let (q, r) = (a >> s, a & low);
                        let t = (q * m + cq + ((r * m + cr) >> s)) >> mul_shift;
                        let v = self.act.clamp(t.max(floor));
                        max = max.max(i64::from(v).abs());
                        unsafe { o.write(base + j * stride, v) };
                    }
                } else {
                    let (m, b) = (i128::from(m), i128::from(b));
                    let sh = s + mul_shift;
                    for (j, &a) in acc.iter().enumerate() {
                        let t = floor_shift_wide(i128::from(a) * m + b, sh);
                        let v = self.act.clamp_wide(t.max(i128::from(floor)));
                        max = max.max(i64::from(v).abs());
                        unsafe { o.write(base + j * stride, v) };
                    }
                }
            }
            (Requant::Logits, Out::Logits(o)) => {
                for (j, &a) in acc.iter().enumerate() {
                    unsafe { o.write(base + j * stride, a) };
                }
            }
            _ => unreachable!("output buffer chosen from the requantisation"),
        }
        max
    }

    /// A linear layer on the flattened activations; `Err(logits)` for the logits layer.
    fn linear(
        &self,
        x: &Act,
        layer: &ShiftLayer,
        epi: &Epilogue,
    ) -> std::result::Result<Act, Vec<i64>> {
        let plan = layer.plan();
        let (k, cout, n) = (layer.fan_in, layer.cout, self.n);
        let buf = OutBuf::new(n * cout, matches!(epi.requant, Requant::Logits));
        let out = buf.out();
        let seen = AtomicI64::new(0);
        if n >= 16 {
            // Images are the block's lanes: col[k][j] = x[b0 + j][k].
            let wide = self.wide_for(x, layer);
            let blocks = n.div_ceil(BLOCK);
            let chunks = Self::channel_chunks(blocks, cout);
            let per_chunk = cout.div_ceil(chunks);
            (0..blocks * chunks).into_par_iter().for_each(|t| {
                let (blk, chunk) = (t / chunks, t % chunks);
                let cs = (chunk * per_chunk).min(cout)..((chunk + 1) * per_chunk).min(cout);
                if cs.is_empty() {
                    return;
                }
                let b0 = blk * BLOCK;
                let valid = BLOCK.min(n - b0);
                SCRATCH.with_borrow_mut(|(col, acc)| {
                    let lanes = self.lanes_for(layer);
                    col.clear();
                    col.resize(col_len(k), 0);
                    for j in 0..valid {
                        let row = &x.data[(b0 + j) * k..(b0 + j + 1) * k];
                        for (kk, &v) in row.iter().enumerate() {
                            col[col_index(k, lanes, kk, j)] = v;
                        }
                    }
                    acc.resize(cs.len() * BLOCK, 0);
                    let (init, cs2) = (&epi.acc_init, cs.clone());
                    block_channels(self.isa, wide, col, lanes, valid, plan, cs2, init, acc);
                    let mut m = 0;
                    for (ci, c) in cs.clone().enumerate() {
                        let a = &acc[ci * BLOCK..ci * BLOCK + valid];
                        m = m.max(self.requant(a, c, layer, epi, &out, b0 * cout + c, cout));
                    }
                    seen.fetch_max(m, Ordering::Relaxed);
                });
            });
        } else if let Some(d) = layer.dense() {
            // Few images: eight units at a time, one shift per weight.
            use crate::weights::DENSE_LANES;
            (0..n * d.groups).into_par_iter().for_each(|t| {
                let (img, g) = (t / d.groups, t % d.groups);
                let xs = &x.data[img * k..(img + 1) * k];
                let span = g * k * DENSE_LANES..(g + 1) * k * DENSE_LANES;
                let mut sums = [0i64; 8];
                crate::kernels::dense_group(
                    self.isa,
                    xs,
                    &d.pos[span.clone()],
                    &d.neg[span],
                    &mut sums,
                );
                let mut m = 0;
                for (l, &sum) in sums.iter().enumerate() {
                    let c = g * DENSE_LANES + l;
                    if c < cout {
                        let a = epi.acc_init[c] + sum;
                        m = m.max(self.requant(&[a], c, layer, epi, &out, img * cout + c, 1));
                    }
                }
                seen.fetch_max(m, Ordering::Relaxed);
            });
        } else {
            // Few images, truncated accumulator: gather the inputs of each bucket.
            let chunks = Self::channel_chunks(n, cout);
            let per_chunk = cout.div_ceil(chunks);
            (0..n * chunks).into_par_iter().for_each(|t| {
                let (img, chunk) = (t / chunks, t % chunks);
                let xs = &x.data[img * k..(img + 1) * k];
                let cs = (chunk * per_chunk).min(cout)..((chunk + 1) * per_chunk).min(cout);
                let mut m = 0;
                for c in cs {
                    let a = epi.acc_init[c] + plan.shifted_sum(c, xs);
                    m = m.max(self.requant(&[a], c, layer, epi, &out, img * cout + c, 1));
                }
                seen.fetch_max(m, Ordering::Relaxed);
            });
        }
        // SAFETY: every task wrote its (image, channel) outputs.
        unsafe { buf.finish(cout, 1, 1, 1, 0, seen.into_inner()) }
    }
}

/// Fills `col` (sub-blocks of `cin*k*k` rows of `lanes` positions, see
/// [`col_index`]) with the receptive fields of output positions
/// `p0..p0+valid`: zeros for padding and, in the last sub-block, for the
/// lanes past `valid`; sub-blocks past `valid` are not written. Works on runs
/// of positions within one output row and one sub-block, so that a stride-1
/// row is one slice copy between its zero-padded edges.
#[allow(clippy::too_many_arguments)]
fn im2col_block(
    isa: Isa,
    x: &[i32],
    cin: usize,
    h: usize,
    w: usize,
    g: Geo,
    ow: usize,
    p0: usize,
    valid: usize,
    lanes: usize,
    col: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && g.stride == 1 {
        // SAFETY: the caller checked that the CPU has AVX-512F; see the
        // function for the bounds of every access.
        unsafe { im2col_stride1_avx512(x, cin, h, w, g, ow, p0, valid, lanes, col) };
        return;
    }
    let _ = isa;
    let rows = cin * g.k * g.k;
    let stride = rows * lanes;
    let (s, pad) = (g.stride as isize, g.pad as isize);
    let mut j0 = 0;
    while j0 < valid {
        let (oy, ox0) = ((p0 + j0) / ow, (p0 + j0) % ow);
        let len = (ow - ox0).min(valid - j0).min(lanes - j0 % lanes);
        let sub = &mut col[(j0 / lanes) * stride..(j0 / lanes + 1) * stride];
        let lane0 = j0 % lanes;
        for ci in 0..cin {
            let plane = &x[ci * h * w..(ci + 1) * h * w];
            for ky in 0..g.k {
                let iy = (oy * g.stride + ky) as isize - pad;
                for kx in 0..g.k {
                    let r = (ci * g.k + ky) * g.k + kx;
                    let dst = &mut sub[r * lanes + lane0..r * lanes + lane0 + len];
                    if iy < 0 || iy >= h as isize {
                        dst.fill(0);
                        continue;
                    }
                    let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                    // Lanes t in [lo, hi) read inside the row: 0 <= (ox0+t)*s + kx - pad < w.
                    let first = ox0 as isize * s + kx as isize - pad;
                    let lo = if first >= 0 {
                        0
                    } else {
                        ((-first) + s - 1) / s
                    } as usize;
                    let hi = if first >= w as isize {
                        0
                    } else {
                        (((w as isize - 1 - first) / s + 1) as usize).min(len)
                    };
                    let lo = lo.min(hi);
                    dst[..lo].fill(0);
                    dst[hi..].fill(0);
                    if lo == hi {
                        // The whole run lies in the padding.
                        continue;
                    }
                    let start = (first + (lo as isize) * s) as usize;
                    if g.stride == 1 {
                        dst[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
                    } else {
                        for (t, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = src[start + t * g.stride];
                        }
                    }
                }
            }
        }
        j0 += len;
    }
    zero_tail(col, rows, lanes, valid);
}

/// Zeros the lanes past `valid` of the sub-block that holds position `valid`.
fn zero_tail(col: &mut [i32], rows: usize, lanes: usize, valid: usize) {
    let stride = rows * lanes;
    let (s, t) = (valid / lanes, valid % lanes);
    if t != 0 {
        let sub = &mut col[s * stride..(s + 1) * stride];
        for r in 0..rows {
            sub[r * lanes + t..(r + 1) * lanes].fill(0);
        }
    }
}

thread_local! {
    /// The zero-padded input rows of one block (see `im2col_stride1_avx512`).
    static PADDED: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

/// [`im2col_block`] for stride 1 with AVX-512: the input rows the block
/// reads are first copied, zero-padded, into a small buffer (`cin` planes of
/// `out rows + k - 1` rows of `w + 2 pad`), so that every run of a row is
/// plain 16-lane loads from it, stored with a mask for the run's length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn im2col_stride1_avx512(
    x: &[i32],
    cin: usize,
    h: usize,
    w: usize,
    g: Geo,
    ow: usize,
    p0: usize,
    valid: usize,
    lanes: usize,
    col: &mut [i32],
) {
    use std::arch::x86_64::*;
    let rows = cin * g.k * g.k;
    assert!(x.len() >= cin * h * w && col.len() >= rows * BLOCK && valid <= BLOCK);
    assert!(BLOCK.is_multiple_of(lanes) && valid > 0 && g.stride == 1);
    let pad = g.pad;
    let (oy0, oy1) = (p0 / ow, (p0 + valid - 1) / ow);
    // Padded rows oy0 .. oy1 + k - 1 (input rows shifted by `pad`).
    let (ph, pw) = (oy1 - oy0 + g.k, w + 2 * pad);
    PADDED.with_borrow_mut(|buf| {
        // 16 spare lanes: a 16-lane load may run past the last row (their
        // values are never stored).
        let need = cin * ph * pw + 16;
        if buf.len() < need {
            buf.resize(need, 0);
        }
        // Every padded row, 16 columns at a time: the columns inside the
        // input row are loaded (masked loads), the others are zero.
        let bp = buf.as_mut_ptr();
        for ci in 0..cin {
            for r in 0..ph {
                let iy = (oy0 + r) as isize - pad as isize;
                let inside = iy >= 0 && iy < h as isize;
                let src = if inside {
                    x.as_ptr().add(ci * h * w + iy as usize * w)
                } else {
                    x.as_ptr()
                };
                let dst = bp.add((ci * ph + r) * pw);
                let mut c0 = 0;
                while c0 < pw {
                    let n = (pw - c0).min(16);
                    let store: u16 = if n == 16 { u16::MAX } else { (1u16 << n) - 1 };
                    // Lane t is input column c0 + t - pad, read when in [0, w).
                    let at = c0 as isize - pad as isize;
                    let lo = (-at).clamp(0, 16) as u32;
                    let hi = (w as isize - at).clamp(0, n as isize) as u32;
                    let mut mask = 0u16;
                    if inside && hi > lo {
                        mask = (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16;
                    }
                    let v = _mm512_maskz_loadu_epi32(mask, src.wrapping_offset(at));
                    _mm512_mask_storeu_epi32(dst.add(c0), store, v);
                    c0 += 16;
                }
            }
        }
        let dst0 = col.as_mut_ptr();
        let pb = buf.as_ptr();
        let mut j0 = 0;
        while j0 < valid {
            let (oy, ox0) = ((p0 + j0) / ow, (p0 + j0) % ow);
            // The run stays inside one sub-block row: lanes j0 % lanes .. + len.
            let len = (ow - ox0).min(valid - j0).min(lanes - j0 % lanes);
            let sub = dst0.add((j0 / lanes) * rows * lanes + j0 % lanes);
            for ci in 0..cin {
                for ky in 0..g.k {
                    // Output (oy, ox) reads padded row oy + ky, column ox + kx.
                    let row = pb.add((ci * ph + oy - oy0 + ky) * pw + ox0);
                    for kx in 0..g.k {
                        let r = (ci * g.k + ky) * g.k + kx;
                        let dst = sub.add(r * lanes);
                        let mut t0 = 0;
                        while t0 < len {
                            let n = (len - t0).min(16);
                            let store: u16 = if n == 16 { u16::MAX } else { (1u16 << n) - 1 };
                            // In bounds: column ox0 + kx + t0 + 15 < pw + 16.
                            let v = _mm512_loadu_si512(row.add(kx + t0).cast());
                            _mm512_mask_storeu_epi32(dst.add(t0), store, v);
                            t0 += 16;
                        }
                    }
                }
            }
            j0 += len;
        }
    });
    zero_tail(col, rows, lanes, valid);
}

/// The requantisation of `Ctx::requant`, 16 outputs per store; returns the
/// largest `|X|` written. With `MUL`, the 64-bit folded batch norm
/// `floor((q m + cq + floor((r m + cr) / 2^S)) / 2^k)` (`acc = q 2^S + r`),
/// whose products are 32 x 32-bit multiplies since `|q| < 2^31`,
/// `0 <= r < 2^S <= 2^31` and `|m| <= 2^30`: `None` when some `|q|` is
/// `2^31` or more (the outputs written are then to be rewritten). Without
/// `MUL`, `floor(acc / 2^S)` (the shift requantisation; `m`, `cq`, `cr` and
/// `k` unused).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn affine_avx512<const MUL: bool>(
    acc: &[i64],
    out: *mut i32,
    s: u32,
    m: i64,
    cq: i64,
    cr: i64,
    k: u32,
    floor: i64,
    lo: i64,
    hi: i64,
) -> Option<i64> {
    use std::arch::x86_64::*;
    let (ns, nk) = (_mm_cvtsi32_si128(s as i32), _mm_cvtsi32_si128(k as i32));
    let low = _mm512_set1_epi64((1i64 << s) - 1);
    let (vm, vcq, vcr) = (
        _mm512_set1_epi64(m),
        _mm512_set1_epi64(cq),
        _mm512_set1_epi64(cr),
    );
    let (qmin, qmax) = (_mm512_set1_epi64(-(1 << 31)), _mm512_set1_epi64(1 << 31));
    let (vlo, vhi) = (_mm512_set1_epi64(lo.max(floor)), _mm512_set1_epi64(hi));
    let mut vmax = _mm512_setzero_si512();
    let mut fits: u8 = u8::MAX;
    // Eight lanes: the clamped values in 64-bit lanes.
    let mut eight = |j: usize| {
        let n = acc.len().saturating_sub(j).min(8);
        let mask: u8 = if n == 8 {
            u8::MAX
        } else {
            (1u16 << n) as u8 - 1
        };
        // Masked-off lanes are not read (and `j` may be past the end).
        let a = _mm512_maskz_loadu_epi64(mask, acc.as_ptr().wrapping_add(j));
        let q = _mm512_sra_epi64(a, ns);
        let t = if MUL {
            // Lanes outside the mask are 0 and fit.
            fits &= _mm512_cmpgt_epi64_mask(q, qmin) & _mm512_cmplt_epi64_mask(q, qmax);
            let r = _mm512_and_si512(a, low);
            let frac = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(r, vm), vcr), ns);
            let t = _mm512_add_epi64(_mm512_add_epi64(_mm512_mul_epi32(q, vm), vcq), frac);
            _mm512_sra_epi64(t, nk)
        } else {
            q
        };
        let t = _mm512_min_epi64(_mm512_max_epi64(t, vlo), vhi);
        vmax = _mm512_max_epi64(vmax, _mm512_maskz_abs_epi64(mask, t));
        t
    };
    // The low 32 bits of every 64-bit lane of two vectors, in order.
    let low_halves = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let mut j = 0;
    while j < acc.len() {
        let (t0, t1) = (eight(j), eight(j + 8));
        let v = _mm512_permutex2var_epi32(t0, low_halves, t1);
        let n = (acc.len() - j).min(16);
        if n == 16 {
            _mm512_storeu_si512(out.add(j).cast(), v);
        } else {
            _mm512_mask_storeu_epi32(out.add(j), ((1u32 << n) - 1) as u16, v);
        }
        j += 16;
    }
    (fits == u8::MAX).then(|| _mm512_reduce_max_epi64(vmax))
}

/// An activation shape with zeros everywhere (borders included); the
/// border is kept only in the batch-lanes layout.
fn zeros_like(c: usize, h: usize, w: usize, lanes: usize, images: usize, border: usize) -> Act {
    let border = if lanes == 1 { 0 } else { border };
    let len = images * c * (h + 2 * border) * (w + 2 * border) * lanes;
    Act {
        data: Arc::new(Buf::zeroed(len)),
        c,
        h,
        w,
        lanes,
        border,
        max_abs: 0,
    }
}

/// Images (or groups of 16) of a batch.
fn planes_of(x: &Act) -> usize {
    x.data.len() / x.plane_len()
}

/// 2x2 max pooling, stride 2, in either layout (a pixel is `lanes` values).
/// A batch-lanes output gets `border`.
fn max_pool2(x: &Act, border: usize) -> Act {
    let (oh, ow, l) = (x.h / 2, x.w / 2, x.lanes);
    let mut out = zeros_like(x.c, oh, ow, l, planes_of(x) / x.c, border);
    let shape = out.shape();
    let (in_len, out_len) = (x.plane_len(), shape.plane_len());
    Arc::make_mut(&mut out.data)
        .par_chunks_mut(out_len)
        .with_min_len(ELEMENTWISE_GRAIN.div_ceil(out_len))
        .enumerate()
        .for_each(|(plane, o)| {
            let src = &x.data[plane * in_len..(plane + 1) * in_len];
            for y in 0..oh {
                for xx in 0..ow {
                    let at = |dy: usize, dx: usize| x.at(2 * y + dy, 2 * xx + dx);
                    let (a, b, c, d) = (at(0, 0), at(0, 1), at(1, 0), at(1, 1));
                    let dst = &mut o[shape.at(y, xx)..][..l];
                    for (j, v) in dst.iter_mut().enumerate() {
                        *v = src[a + j].max(src[b + j]).max(src[c + j]).max(src[d + j]);
                    }
                }
            }
        });
    out.max_abs = x.max_abs;
    out
}

/// Max pooling with a `k x k` window, `stride` and minus-infinity `pad`
/// (see [`Step::MaxPool`]), in either layout; a batch-lanes output gets
/// `border`. Every window holds at least one input (`2 pad <= k`).
fn max_pool(x: &Act, k: usize, stride: usize, pad: usize, border: usize) -> Act {
    let (oh, ow, l) = (
        (x.h + 2 * pad - k) / stride + 1,
        (x.w + 2 * pad - k) / stride + 1,
        x.lanes,
    );
    let mut out = zeros_like(x.c, oh, ow, l, planes_of(x) / x.c, border);
    let shape = out.shape();
    let (in_len, out_len) = (x.plane_len(), shape.plane_len());
    // The input rows (or columns) a window starting at `o` covers.
    let span = |o: usize, n: usize| {
        let start = (o * stride).saturating_sub(pad);
        let end = (o * stride + k).saturating_sub(pad).min(n);
        start..end
    };
    Arc::make_mut(&mut out.data)
        .par_chunks_mut(out_len)
        .with_min_len(ELEMENTWISE_GRAIN.div_ceil(out_len.saturating_mul(k * k)))
        .enumerate()
        .for_each(|(plane, o)| {
            let src = &x.data[plane * in_len..(plane + 1) * in_len];
            for y in 0..oh {
                for xx in 0..ow {
                    let dst = &mut o[shape.at(y, xx)..][..l];
                    dst.fill(i32::MIN);
                    for iy in span(y, x.h) {
                        for ix in span(xx, x.w) {
                            let s = &src[x.at(iy, ix)..][..l];
                            dst.iter_mut().zip(s).for_each(|(d, &v)| *d = (*d).max(v));
                        }
                    }
                }
            }
        });
    out.max_abs = x.max_abs;
    out
}

/// Channel concatenation of `branches` (saved, the earliest first) and
/// `last` (see [`Step::Concat`]), in `last`'s layout; `n` is the number of
/// real images.
fn concat(branches: &[Act], last: &Act, n: usize) -> Act {
    let parts: Vec<Act> = branches
        .iter()
        .map(|b| to_layout(b, n, last.lanes, last.border))
        .chain(std::iter::once(last.clone()))
        .collect();
    let c = parts.iter().map(|p| p.c).sum();
    let images = planes_of(last) / last.c;
    let mut out = zeros_like(c, last.h, last.w, last.lanes, images, last.border);
    let plane = out.plane_len();
    Arc::make_mut(&mut out.data)
        .par_chunks_mut(c * plane)
        .with_min_len(ELEMENTWISE_GRAIN.div_ceil(c * plane))
        .enumerate()
        .for_each(|(img, o)| {
            let mut at = 0;
            for p in &parts {
                let len = p.c * plane;
                o[at..at + len].copy_from_slice(&p.data[img * len..(img + 1) * len]);
                at += len;
            }
        });
    out.max_abs = parts.iter().map(|p| p.max_abs).max().unwrap_or(0);
    out
}

/// The residual add (see [`Step::AddResidual`]); `short` is in `cur`'s
/// layout. Borders stay zero: `clamp(max(0 + 0, 0)) = clamp(0 + 0) = 0`.
fn add_residual(cur: &mut Act, short: &Act, pad: Option<usize>, relu: bool, act: &ActFormat) {
    let (c, l) = (cur.c, cur.lanes);
    debug_assert!(short.lanes == l && short.border == cur.border);
    let plane_len = cur.plane_len();
    let short_plane = short.plane_len();
    let shape = cur.shape();
    let data = Arc::make_mut(&mut cur.data);
    let hi = act.hi() as i32;
    // The activation range fits `i32` (`I + F <= 32`).
    let floor = if relu { 0 } else { act.lo() as i32 };
    let max = data
        .par_chunks_mut(plane_len)
        .with_min_len(ELEMENTWISE_GRAIN.div_ceil(plane_len))
        .enumerate()
        .map(|(plane, o)| {
            let (img, ch) = (plane / c, plane % c);
            // clamp(max(v + s, 0)) (or clamp(v + s)) exactly: a saturated
            // i32 sum lies beyond `floor` or `hi` on the same side as the
            // exact one, and the i32 form vectorises.
            let add = |v: &mut i32, s: i32| {
                *v = v.saturating_add(s).max(floor).min(hi);
            };
            match pad {
                None => {
                    let src = &short.data[(img * short.c + ch) * plane_len..][..plane_len];
                    o.iter_mut().zip(src).for_each(|(v, &s)| add(v, s));
                }
                Some(p) if ch >= p && ch - p < short.c => {
                    let src = &short.data[(img * short.c + ch - p) * short_plane..][..short_plane];
                    for y in 0..shape.h {
                        for x in 0..shape.w {
                            let s = &src[short.at(2 * y, 2 * x)..][..l];
                            let d = &mut o[shape.at(y, x)..][..l];
                            d.iter_mut().zip(s).for_each(|(v, &s)| add(v, s));
                        }
                    }
                }
                Some(_) => o.iter_mut().for_each(|v| add(v, 0)),
            }
            // In 32-bit lanes (`unsigned_abs` is exact for every i32), so
            // that the pass vectorises.
            o.iter()
                .map(|&v| v.unsigned_abs())
                .max()
                .map_or(0, i64::from)
        })
        .max()
        .unwrap_or(0);
    cur.max_abs = max;
}

/// Global average pooling, `floor(sum / (h * w))` per channel and image
/// (the zero borders add nothing).
fn avg_pool(x: &Act) -> Act {
    let (hw, l) = (x.h * x.w, x.lanes);
    let data: Vec<i32> = x
        .data
        .chunks_exact(x.plane_len())
        .flat_map(|plane| {
            (0..l).map(move |j| {
                plane
                    .iter()
                    .skip(j)
                    .step_by(l)
                    .map(|&v| i64::from(v))
                    .sum::<i64>()
                    .div_euclid(hw as i64) as i32
            })
        })
        .collect();
    Act {
        data: Arc::new(Buf::from_slice(&data)),
        c: x.c,
        h: 1,
        w: 1,
        lanes: l,
        border: 0,
        max_abs: x.max_abs,
    }
}

/// `x` in the layout with `lanes` images per pixel vector (1 or
/// [`LANE_IMAGES`], then with `border`); `n` is the number of real images.
/// A copy, unless `x` already has that layout.
fn to_layout(x: &Act, n: usize, lanes: usize, border: usize) -> Act {
    if x.lanes == lanes && (lanes == 1 || x.border == border) {
        return x.clone();
    }
    if x.lanes == lanes {
        return lanes::padded(x, border);
    }
    let l = LANE_IMAGES;
    let images = if lanes == 1 { n } else { n.div_ceil(l) };
    let mut out = zeros_like(x.c, x.h, x.w, lanes, images, border);
    let shape = out.shape();
    let (src_plane, dst_plane) = (x.plane_len(), shape.plane_len());
    let (c, h, w) = (x.c, x.h, x.w);
    let dst = Arc::make_mut(&mut out.data);
    if lanes == 1 {
        // groups x c x planes x 16 -> n x c x h x w, dropping the padding images.
        dst.par_chunks_mut(c * dst_plane)
            .enumerate()
            .for_each(|(img, o)| {
                let (g, j) = (img / l, img % l);
                for ch in 0..c {
                    let src = &x.data[(g * c + ch) * src_plane..][..src_plane];
                    for y in 0..h {
                        for xx in 0..w {
                            o[ch * dst_plane + shape.at(y, xx)] = src[x.at(y, xx) + j];
                        }
                    }
                }
            });
    } else {
        dst.par_chunks_mut(c * dst_plane)
            .enumerate()
            .for_each(|(g, o)| {
                // Row by row: each image's row is read once, its values
                // spread over the row's vectors (which stay in L1).
                let (xd, b, wp): (&[i32], usize, usize) = (&x.data, shape.border, shape.wp());
                for ch in 0..c {
                    for y in 0..h {
                        let row = &mut o[ch * dst_plane + ((y + b) * wp + b) * l..][..w * l];
                        for j in 0..l.min(n - g * l) {
                            let src = &xd[(((g * l + j) * c + ch) * h + y) * w..][..w];
                            for (v, &s) in row.iter_mut().skip(j).step_by(l).zip(src) {
                                *v = s;
                            }
                        }
                    }
                }
            });
    }
    out.max_abs = x.max_abs;
    out
}
