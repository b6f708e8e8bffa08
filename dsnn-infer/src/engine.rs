//! The integer engine: runs an [`IntModel`] on a batch, layer by layer,
//! in parallel (rayon) over images, position blocks and output channels.

use crate::error::{InferError, Result};
use crate::format::{floor_shift_wide, shl, ActFormat};
use crate::kernels::{block_channels, Isa, BLOCK};
use crate::model::{Epilogue, IntModel, Logits, Requant, ShiftLayer, Step};
use rayon::prelude::*;
use std::cell::RefCell;

/// Engine settings (the defaults pick the fastest exact path).
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineOptions {
    /// Instruction set of the kernels; `None` detects the best one.
    pub isa: Option<Isa>,
    /// Always use 64-bit bucket sums (same results, slower; for tests).
    pub force_wide: bool,
}

/// Activations of a batch, `n x c x h x w`.
#[derive(Debug, Clone)]
struct Act {
    data: Vec<i32>,
    c: usize,
    h: usize,
    w: usize,
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
    static SCRATCH: RefCell<(Vec<i32>, Vec<i64>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Where a layer's requantised outputs go.
enum Out<'a> {
    Act(&'a SyncPtr<i32>),
    Logits(&'a SyncPtr<i64>),
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
        let isa = opts.isa.unwrap_or_else(Isa::detect);
        if !isa.available() {
            return Err(InferError::Input(format!(
                "this CPU cannot run the {} kernels",
                isa.name()
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
            data: x,
            c: self.input.channels,
            h: self.input.height,
            w: self.input.width,
        };
        let mut saved: Vec<Act> = Vec::new();
        let ctx = Ctx {
            act: self.act,
            isa,
            wide: opts.force_wide,
            n,
        };
        for step in &self.steps {
            match step {
                Step::Conv {
                    layer,
                    kernel,
                    stride,
                    padding,
                    epilogue,
                    ..
                } => {
                    let geo = Geo {
                        k: *kernel,
                        stride: *stride,
                        pad: *padding,
                    };
                    match ctx.conv(&cur, layer, geo, epilogue)? {
                        Ok(next) => cur = next,
                        Err(values) => return Ok(self.logits(values, layer, n)),
                    }
                }
                Step::Linear { layer, epilogue } => match ctx.linear(&cur, layer, epilogue) {
                    Ok(next) => cur = next,
                    Err(values) => return Ok(self.logits(values, layer, n)),
                },
                Step::MaxPool2 => cur = max_pool2(&cur, n),
                Step::SaveResidual => saved.push(cur.clone()),
                Step::AddResidual { pad } => {
                    let short = saved.pop().ok_or_else(|| {
                        InferError::Input("residual add without a shortcut".into())
                    })?;
                    add_residual(&mut cur, &short, *pad, n, &self.act);
                }
                Step::GlobalAvgPool => cur = avg_pool(&cur, n),
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
    n: usize,
}

impl Ctx {
    /// Whether a layer's bucket sums need 64 bits for this input.
    fn wide_for(&self, x: &[i32], layer: &ShiftLayer) -> bool {
        if self.wide {
            return true;
        }
        let max = x.par_iter().map(|&v| i64::from(v).abs()).max().unwrap_or(0);
        let wide = max.saturating_mul(layer.plan().max_bucket as i64) >= 1 << 31;
        if wide {
            log::debug!("{}: 64-bit bucket sums (max |X| = {max})", layer.name);
        }
        wide
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
        let wide = self.wide_for(&x.data, layer);
        let (oh, ow) = (
            (x.h + 2 * g.pad - g.k) / g.stride + 1,
            (x.w + 2 * g.pad - g.k) / g.stride + 1,
        );
        let p = oh * ow;
        let cout = layer.cout;
        let blocks = p.div_ceil(BLOCK);
        let chunks = Self::channel_chunks(self.n * blocks, cout);
        let per_chunk = cout.div_ceil(chunks);
        let logits = matches!(epi.requant, Requant::Logits);
        let mut out32 = if logits {
            Vec::new()
        } else {
            vec![0i32; self.n * cout * p]
        };
        let mut out64 = if logits {
            vec![0i64; self.n * cout * p]
        } else {
            Vec::new()
        };
        let (p32, p64) = (SyncPtr(out32.as_mut_ptr()), SyncPtr(out64.as_mut_ptr()));
        let out = if logits {
            Out::Logits(&p64)
        } else {
            Out::Act(&p32)
        };
        let in_len = x.c * x.h * x.w;
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
                col.resize(layer.fan_in * BLOCK, 0);
                acc.resize(cs.len() * BLOCK, 0);
                let src = &x.data[img * in_len..(img + 1) * in_len];
                im2col_block(src, x.c, x.h, x.w, g, ow, p0, valid, col);
                block_channels(self.isa, wide, col, plan, cs.clone(), &epi.acc_init, acc);
                for (ci, c) in cs.clone().enumerate() {
                    let a = &acc[ci * BLOCK..ci * BLOCK + valid];
                    let base = (img * cout + c) * p + p0;
                    self.requant(a, c, layer, epi, &out, base, 1);
                }
            });
        });
        Ok(if logits {
            Err(out64)
        } else {
            Ok(Act {
                data: out32,
                c: cout,
                h: oh,
                w: ow,
            })
        })
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
    ) {
        let s = layer.acc_shift;
        // SAFETY (all writes): each (image, channel, position) belongs to one task.
        match (&epi.requant, out) {
            (Requant::Shift { relu }, Out::Act(o)) => {
                let floor = if *relu { 0 } else { i64::MIN };
                for (j, &a) in acc.iter().enumerate() {
                    let v = self.act.clamp((a >> s).max(floor));
                    unsafe { o.write(base + j * stride, v) };
                }
            }
            (
                Requant::Affine {
                    mul,
                    add,
                    mul_shift,
                    relu,
                },
                Out::Act(o),
            ) => {
                let (m, b) = (i128::from(mul[c]), i128::from(add[c]));
                let sh = s + mul_shift;
                for (j, &a) in acc.iter().enumerate() {
                    let mut v = self
                        .act
                        .clamp_wide(floor_shift_wide(i128::from(a) * m + b, sh));
                    if *relu {
                        v = v.max(0);
                    }
                    unsafe { o.write(base + j * stride, v) };
                }
            }
            (Requant::Logits, Out::Logits(o)) => {
                for (j, &a) in acc.iter().enumerate() {
                    unsafe { o.write(base + j * stride, a) };
                }
            }
            _ => unreachable!("output buffer chosen from the requantisation"),
        }
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
        let logits = matches!(epi.requant, Requant::Logits);
        let mut out32 = if logits {
            Vec::new()
        } else {
            vec![0i32; n * cout]
        };
        let mut out64 = if logits {
            vec![0i64; n * cout]
        } else {
            Vec::new()
        };
        let (p32, p64) = (SyncPtr(out32.as_mut_ptr()), SyncPtr(out64.as_mut_ptr()));
        let out = if logits {
            Out::Logits(&p64)
        } else {
            Out::Act(&p32)
        };
        if n >= 16 {
            // Images are the block's lanes: col[k][j] = x[b0 + j][k].
            let wide = self.wide_for(&x.data, layer);
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
                    col.clear();
                    col.resize(k * BLOCK, 0);
                    for j in 0..valid {
                        let row = &x.data[(b0 + j) * k..(b0 + j + 1) * k];
                        for (kk, &v) in row.iter().enumerate() {
                            col[kk * BLOCK + j] = v;
                        }
                    }
                    acc.resize(cs.len() * BLOCK, 0);
                    block_channels(self.isa, wide, col, plan, cs.clone(), &epi.acc_init, acc);
                    for (ci, c) in cs.clone().enumerate() {
                        let a = &acc[ci * BLOCK..ci * BLOCK + valid];
                        self.requant(a, c, layer, epi, &out, b0 * cout + c, cout);
                    }
                });
            });
        } else {
            // Few images: gather the inputs of each bucket, 64-bit sums.
            let chunks = Self::channel_chunks(n, cout);
            let per_chunk = cout.div_ceil(chunks);
            (0..n * chunks).into_par_iter().for_each(|t| {
                let (img, chunk) = (t / chunks, t % chunks);
                let xs = &x.data[img * k..(img + 1) * k];
                let cs = (chunk * per_chunk).min(cout)..((chunk + 1) * per_chunk).min(cout);
                for c in cs {
                    let mut a = epi.acc_init[c];
                    for b in plan.channel(c) {
                        let mut sum = 0i64;
                        for &i in &plan.idx[b.start as usize..b.mid as usize] {
                            sum += i64::from(xs[i as usize]);
                        }
                        for &i in &plan.idx[b.mid as usize..b.end as usize] {
                            sum -= i64::from(xs[i as usize]);
                        }
                        a += shl(sum, b.shift);
                    }
                    self.requant(&[a], c, layer, epi, &out, img * cout + c, 1);
                }
            });
        }
        if logits {
            Err(out64)
        } else {
            Ok(Act {
                data: out32,
                c: cout,
                h: 1,
                w: 1,
            })
        }
    }
}

/// Fills `col` (`cin*k*k x BLOCK`) with the receptive fields of output
/// positions `p0..p0+valid` (zeros for padding and for lanes past `valid`).
#[allow(clippy::too_many_arguments)]
fn im2col_block(
    x: &[i32],
    cin: usize,
    h: usize,
    w: usize,
    g: Geo,
    ow: usize,
    p0: usize,
    valid: usize,
    col: &mut [i32],
) {
    let mut ys = [0isize; BLOCK];
    let mut xs = [0isize; BLOCK];
    for j in 0..valid {
        let p = p0 + j;
        ys[j] = ((p / ow) * g.stride) as isize - g.pad as isize;
        xs[j] = ((p % ow) * g.stride) as isize - g.pad as isize;
    }
    let (hi, wi) = (h as isize, w as isize);
    for ci in 0..cin {
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let r = (ci * g.k + ky) * g.k + kx;
                let row = &mut col[r * BLOCK..(r + 1) * BLOCK];
                for j in 0..valid {
                    let (iy, ix) = (ys[j] + ky as isize, xs[j] + kx as isize);
                    row[j] = if iy >= 0 && ix >= 0 && iy < hi && ix < wi {
                        plane[iy as usize * w + ix as usize]
                    } else {
                        0
                    };
                }
                row[valid..].fill(0);
            }
        }
    }
}

fn max_pool2(x: &Act, n: usize) -> Act {
    let (oh, ow) = (x.h / 2, x.w / 2);
    let mut out = vec![0i32; n * x.c * oh * ow];
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(plane, o)| {
            let src = &x.data[plane * x.h * x.w..(plane + 1) * x.h * x.w];
            for y in 0..oh {
                for xx in 0..ow {
                    let at = |dy: usize, dx: usize| src[(2 * y + dy) * x.w + 2 * xx + dx];
                    o[y * ow + xx] = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                }
            }
        });
    Act {
        data: out,
        c: x.c,
        h: oh,
        w: ow,
    }
}

fn add_residual(cur: &mut Act, short: &Act, pad: Option<usize>, n: usize, act: &ActFormat) {
    let (c, h, w) = (cur.c, cur.h, cur.w);
    cur.data
        .par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(plane, o)| {
            let (img, ch) = (plane / c, plane % c);
            let src_ch = match pad {
                None => Some(ch),
                Some(p) if ch >= p && ch - p < short.c => Some(ch - p),
                Some(_) => None,
            };
            for y in 0..h {
                for x in 0..w {
                    let s = match (src_ch, pad) {
                        (None, _) => 0,
                        (Some(sc), None) => short.data[((img * short.c + sc) * h + y) * w + x],
                        (Some(sc), Some(_)) => {
                            short.data[((img * short.c + sc) * short.h + 2 * y) * short.w + 2 * x]
                        }
                    };
                    let v = &mut o[y * w + x];
                    *v = act.clamp((i64::from(*v) + i64::from(s)).max(0));
                }
            }
        });
    let _ = n;
}

fn avg_pool(x: &Act, n: usize) -> Act {
    let hw = (x.h * x.w) as i64;
    let data = x
        .data
        .chunks_exact(x.h * x.w)
        .map(|plane| {
            plane
                .iter()
                .map(|&v| i64::from(v))
                .sum::<i64>()
                .div_euclid(hw) as i32
        })
        .collect::<Vec<_>>();
    debug_assert_eq!(data.len(), n * x.c);
    Act {
        data,
        c: x.c,
        h: 1,
        w: 1,
    }
}
