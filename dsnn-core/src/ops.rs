//! Fused element-wise ops for the training hot path.
//!
//! candle composes ReLU's and max pooling's backward passes from four to
//! seven full-size tensor passes each; on the CPU these dominate a LeNet
//! training step. The ops here do each direction in one parallel pass.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

const CHUNK: usize = 1 << 14;

/// A vector of `len` floats (with room for `capacity`) built in parallel:
/// `fill(i, out)` writes chunk `i` (`chunk` elements, the last one shorter).
/// Saves the zeroing pass of `vec![0.0; len]`, which runs on the calling
/// thread alone while the pool waits.
///
/// # Safety
/// `fill` must write every element of the chunk it is given.
pub(crate) unsafe fn par_build(
    len: usize,
    capacity: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut v = Vec::with_capacity(capacity.max(len));
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, out)| fill(i, out));
    // SAFETY: `fill` wrote all `len` elements (the caller's promise).
    unsafe { v.set_len(len) };
    v
}

/// The f32 data of a contiguous CPU tensor, the input every dsnn op expects
/// (callers make tensors contiguous before applying an op).
pub(crate) fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => candle_core::bail!("dsnn ops need contiguous f32 tensors"),
    }
}

/// `f` applied to every element, in parallel chunks.
pub(crate) fn par_map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    // SAFETY: each chunk of `y` meets the equally long chunk of `x`.
    unsafe {
        par_build(x.len(), x.len(), CHUNK, |c, y| {
            for (y, &x) in y.iter_mut().zip(&x[c * CHUNK..]) {
                y.write(f(x));
            }
        })
    }
}

/// `f(index, value)` applied to every element, in parallel chunks (the index
/// feeds counter-based random streams).
pub(crate) fn par_map_indexed(x: &[f32], f: impl Fn(usize, f32) -> f32 + Sync) -> Vec<f32> {
    // SAFETY: each chunk of `y` meets the equally long chunk of `x`.
    unsafe {
        par_build(x.len(), x.len(), CHUNK, |c, y| {
            for (i, (y, &x)) in y.iter_mut().zip(&x[c * CHUNK..]).enumerate() {
                y.write(f(c * CHUNK + i, x));
            }
        })
    }
}

/// `f` applied to every pair of elements of two equally long slices, in parallel chunks.
fn par_zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "par_zip_map: lengths differ");
    // SAFETY: each chunk of `y` meets the equally long chunks of `a` and `b`.
    unsafe {
        par_build(a.len(), a.len(), CHUNK, |c, y| {
            for ((y, &a), &b) in y.iter_mut().zip(&a[c * CHUNK..]).zip(&b[c * CHUNK..]) {
                y.write(f(a, b));
            }
        })
    }
}

/// `max(x, 0)` with a one-pass backward (`dy` where the output is positive).
#[derive(Debug, Clone, Copy)]
pub struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "dsnn-relu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = par_map(slice(s, l)?, |x| x.max(0.0));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        Ok((crate::cuda::map("dsnn_relu", &[(s, l)])?, l.shape().clone()))
    }
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?.apply_op2_no_bwd(res, &ReluBackward)?,
        ))
    }
}

/// (`dy`, `y`) -> `dy * (y > 0)`: the backward pass of any op ending in a ReLU.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReluBackward;

impl CustomOp2 for ReluBackward {
    fn name(&self) -> &'static str {
        "dsnn-relu-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, y) = (slice(s1, l1)?, slice(s2, l2)?);
        let dx = par_zip_map(g, y, |g, y| if y > 0.0 { g } else { 0.0 });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let dx = crate::cuda::map("dsnn_relu_bwd", &[(s1, l1), (s2, l2)])?;
        Ok((dx, l1.shape().clone()))
    }
}

/// Applies the fused ReLU.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Relu)
}

fn pool_dims(l: &Layout) -> Result<(usize, usize, usize, usize, usize)> {
    match l.dims() {
        &[n, c, h, w] if h >= 2 && w >= 2 => Ok((n * c, h, w, h / 2, w / 2)),
        d => candle_core::bail!("max pool 2x2 needs N x C x H x W with H, W >= 2, got {d:?}"),
    }
}

/// 2x2 max pooling with stride 2 (odd trailing rows/columns dropped, as PyTorch).
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2x2;

impl CustomOp1 for MaxPool2x2 {
    fn name(&self) -> &'static str {
        "dsnn-max-pool-2x2"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, h, w, ho, wo) = pool_dims(l)?;
        let x = slice(s, l)?;
        let mut y = vec![0f32; planes * ho * wo];
        y.par_chunks_mut(ho * wo).enumerate().for_each(|(p, out)| {
            let src = &x[p * h * w..(p + 1) * h * w];
            for oy in 0..ho {
                let (r0, r1) = (&src[2 * oy * w..], &src[(2 * oy + 1) * w..]);
                for ox in 0..wo {
                    let i = 2 * ox;
                    out[oy * wo + ox] = r0[i].max(r0[i + 1]).max(r1[i].max(r1[i + 1]));
                }
            }
        });
        let d = l.dims();
        Ok((CpuStorage::F32(y), Shape::from((d[0], d[1], ho, wo))))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let dims = pool_dims(l)?;
        let y = crate::cuda::max_pool2x2(s, l, None, dims)?;
        let d = l.dims();
        Ok((y, Shape::from((d[0], d[1], dims.3, dims.4))))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad.contiguous()?,
            &MaxPool2x2Backward,
        )?))
    }
}

/// (`x`, `dy`) -> `dx`: each window's gradient goes to its first maximum.
#[derive(Debug, Clone, Copy)]
struct MaxPool2x2Backward;

impl CustomOp2 for MaxPool2x2Backward {
    fn name(&self) -> &'static str {
        "dsnn-max-pool-2x2-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (planes, h, w, ho, wo) = pool_dims(l1)?;
        let (x, g) = (slice(s1, l1)?, slice(s2, l2)?);
        if g.len() != planes * ho * wo {
            candle_core::bail!(
                "max pool backward: gradient has {} elements, expected {}",
                g.len(),
                planes * ho * wo
            );
        }
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(h * w).enumerate().for_each(|(p, d)| {
            let src = &x[p * h * w..(p + 1) * h * w];
            let gp = &g[p * ho * wo..(p + 1) * ho * wo];
            for oy in 0..ho {
                for ox in 0..wo {
                    let cands = [
                        2 * oy * w + 2 * ox,
                        2 * oy * w + 2 * ox + 1,
                        (2 * oy + 1) * w + 2 * ox,
                        (2 * oy + 1) * w + 2 * ox + 1,
                    ];
                    let mut best = cands[0];
                    for &c in &cands[1..] {
                        if src[c] > src[best] {
                            best = c;
                        }
                    }
                    d[best] += gp[oy * wo + ox];
                }
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let dims = pool_dims(l1)?;
        let dx = crate::cuda::max_pool2x2(s1, l1, Some((s2, l2)), dims)?;
        Ok((dx, l1.shape().clone()))
    }
}

/// Applies fused 2x2 max pooling.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool2x2)
}

/// Adds a per-channel bias to `N x C x ...`, with a fused backward
/// (the bias gradient is the per-channel sum of `dy`).
#[derive(Debug, Clone, Copy)]
pub struct AddChannelBias;

fn nc_rest(l: &Layout) -> Result<(usize, usize, usize)> {
    let d = l.dims();
    if d.len() < 2 {
        candle_core::bail!("channel bias needs at least N x C, got {d:?}");
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

impl CustomOp2 for AddChannelBias {
    fn name(&self) -> &'static str {
        "dsnn-add-channel-bias"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, hw) = nc_rest(l1)?;
        let (x, b) = (slice(s1, l1)?, slice(s2, l2)?);
        if b.len() != c {
            candle_core::bail!("channel bias has {} values for {c} channels", b.len());
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(hw.max(1))
            .enumerate()
            .for_each(|(row, out)| {
                let bias = b[row % c];
                for (o, &v) in out.iter_mut().zip(&x[row * hw..(row + 1) * hw]) {
                    *o = v + bias;
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (_, c, hw) = nc_rest(l1)?;
        let y = crate::cuda::add_channel_bias(s1, l1, s2, l2, (c, hw))?;
        Ok((y, l1.shape().clone()))
    }
    fn bwd(
        &self,
        _x: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let db = grad.apply_op1_no_bwd(&ChannelSum)?;
        Ok((Some(grad), Some(db)))
    }
}

/// `N x C x ...` -> `C`: the sum over every axis but the channel one.
#[derive(Debug, Clone, Copy)]
struct ChannelSum;

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "dsnn-channel-sum"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, hw) = nc_rest(l)?;
        let g = slice(s, l)?;
        let sums: Vec<f32> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let mut acc = 0f64;
                for i in 0..n {
                    let base = (i * c + ch) * hw;
                    acc += g[base..base + hw]
                        .iter()
                        .map(|&v| f64::from(v))
                        .sum::<f64>();
                }
                acc as f32
            })
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let dims = nc_rest(l)?;
        Ok((crate::cuda::channel_sum(s, l, dims)?, Shape::from(dims.1)))
    }
}

/// Adds `bias` (`C`) to every channel of `x` (`N x C x ...`).
pub fn add_channel_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&bias.contiguous()?, AddChannelBias)
}

/// `max(a + b, 0)`: a residual connection and its ReLU in one pass, with a
/// one-pass backward (the same gradient goes to both inputs).
#[derive(Debug, Clone, Copy)]
pub struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "dsnn-add-relu"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "add_relu: shapes {:?} and {:?} differ",
                l1.dims(),
                l2.dims()
            );
        }
        let (a, b) = (slice(s1, l1)?, slice(s2, l2)?);
        let y = par_zip_map(a, b, |a, b| (a + b).max(0.0));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "add_relu: shapes {:?} and {:?} differ",
                l1.dims(),
                l2.dims()
            );
        }
        let y = crate::cuda::map("dsnn_add_relu", &[(s1, l1), (s2, l2)])?;
        Ok((y, l1.shape().clone()))
    }
    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = grad.contiguous()?.apply_op2_no_bwd(res, &ReluBackward)?;
        Ok((Some(d.clone()), Some(d)))
    }
}

/// Applies the fused residual add and ReLU.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
}

/// ResNet's option-A shortcut as one op: `x[:, :, ::2, ::2]` with `pad`
/// channels of zeros on each side (`N x C x H x W` -> `N x (C + 2 pad) x
/// H/2 x W/2`, H and W even). candle's composition (reshape, two narrows,
/// a copy, a zero-padding concatenation) made about ten full-size passes
/// and graph nodes in backward; this op makes one pass each way. CPU only:
/// callers keep the composition on other devices.
#[derive(Debug, Clone, Copy)]
pub struct ShortcutOptionA {
    /// Zero channels added on each side.
    pub pad: usize,
}

/// `(n, c, h, w)` of an option-A shortcut's input, refusing odd sides.
fn option_a_dims(dims: &[usize]) -> Result<(usize, usize, usize, usize)> {
    match *dims {
        [n, c, h, w] if h % 2 == 0 && w % 2 == 0 => Ok((n, c, h, w)),
        _ => candle_core::bail!(
            "option-A shortcut needs N x C x H x W with even H and W, got {dims:?}"
        ),
    }
}

impl CustomOp1 for ShortcutOptionA {
    fn name(&self) -> &'static str {
        "dsnn-shortcut-option-a"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = option_a_dims(l.dims())?;
        let x = slice(s, l)?;
        let (co, ho, wo) = (c + 2 * self.pad, h / 2, w / 2);
        let plane = (ho * wo).max(1);
        let len = n * co * ho * wo;
        // SAFETY: every output plane is written whole (zeros or a subsampled plane).
        let y = unsafe {
            par_build(len, len, plane, |row, out| {
                let ch = row % co;
                if ch < self.pad || ch >= self.pad + c {
                    for o in out.iter_mut() {
                        o.write(0.0);
                    }
                    return;
                }
                let src = &x[((row / co) * c + ch - self.pad) * h * w..][..h * w];
                for (oy, out) in out.chunks_mut(wo.max(1)).enumerate() {
                    let r = &src[2 * oy * w..];
                    for (ox, o) in out.iter_mut().enumerate() {
                        o.write(r[2 * ox]);
                    }
                }
            })
        };
        Ok((CpuStorage::F32(y), Shape::from((n, co, ho, wo))))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, c, h, w) = option_a_dims(arg.dims())?;
        let op = ShortcutOptionABackward {
            pad: self.pad,
            channels: c,
            height: h,
            width: w,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// `dy` (`N x (C + 2 pad) x H/2 x W/2`) -> `dx` (`N x C x H x W`): each
/// subsampled position gets its gradient, every other position zero.
#[derive(Debug, Clone, Copy)]
struct ShortcutOptionABackward {
    pad: usize,
    channels: usize,
    height: usize,
    width: usize,
}

impl CustomOp1 for ShortcutOptionABackward {
    fn name(&self) -> &'static str {
        "dsnn-shortcut-option-a-backward"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (c, h, w) = (self.channels, self.height, self.width);
        let (co, ho, wo) = (c + 2 * self.pad, h / 2, w / 2);
        let n = match *l.dims() {
            [n, cc, hh, ww] if (cc, hh, ww) == (co, ho, wo) => n,
            ref d => candle_core::bail!(
                "option-A shortcut backward: gradient {d:?}, expected N x {co} x {ho} x {wo}"
            ),
        };
        let g = slice(s, l)?;
        let len = n * c * h * w;
        // SAFETY: every input-gradient plane is written whole.
        let dx = unsafe {
            par_build(len, len, (h * w).max(1), |row, out| {
                let src = &g[((row / c) * co + row % c + self.pad) * ho * wo..][..ho * wo];
                for (y, out) in out.chunks_mut(w.max(1)).enumerate() {
                    if y % 2 == 1 {
                        for o in out.iter_mut() {
                            o.write(0.0);
                        }
                        continue;
                    }
                    let r = &src[(y / 2) * wo..][..wo];
                    for (x, o) in out.iter_mut().enumerate() {
                        o.write(if x % 2 == 0 { r[x / 2] } else { 0.0 });
                    }
                }
            })
        };
        Ok((CpuStorage::F32(dx), Shape::from((n, c, h, w))))
    }
}

/// Applies the fused option-A shortcut (CPU tensors).
pub fn shortcut_option_a(x: &Tensor, pad: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(ShortcutOptionA { pad })
}
