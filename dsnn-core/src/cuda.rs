//! CUDA implementations of dsnn's custom ops (the `cuda` feature).
//!
//! The kernels are in `kernels/dsnn_ops.cu`, compiled to PTX by `build.rs`
//! and loaded once per device through candle's module cache. Each function
//! here launches them for one op's `cuda_fwd`; the ops' backward passes are
//! written with candle tensor ops or further custom ops, so they run on the
//! GPU unchanged.
//!
//! The shift convolution is im2col (a kernel) followed by cuBLAS through
//! candle's batched `matmul`; its input gradient is cuBLAS followed by col2im,
//! its weight gradient one cuBLAS gemm over the whole batch. Grouped and
//! depthwise convolutions use direct kernels instead ([`grouped_conv`]);
//! max pooling with any window is in [`pool`].

mod grouped_conv;
mod pool;

pub(crate) use pool::{max_pool, max_pool_backward, PoolSizes};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, Layout, Result, Shape, Storage, Tensor};

/// The PTX of `kernels/dsnn_ops.cu`, one variant per architecture built
/// (`dsnn_kernel_build::compile_ptx`).
const PTX: &[dsnn_kernel_build::Ptx] = include!(concat!(env!("OUT_DIR"), "/dsnn_ops.ptx.rs"));
/// The module's name in candle's per-device cache of custom modules
/// (`get_or_load_custom_func` loads it once per device).
const MODULE: &str = "dsnn_ops";

/// The PTX of `kernels/dsnn_ops.cu` for `dev`: the variant that
/// [`dsnn_kernel_build::select_ptx`] picks for its compute capability,
/// remembered per device (one driver query per device).
fn ptx(dev: &CudaDevice) -> Result<&'static str> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Chosen = Mutex<HashMap<candle_core::cuda_backend::DeviceId, &'static str>>;
    static CHOSEN: OnceLock<Chosen> = OnceLock::new();
    let key = dev.id();
    let chosen = CHOSEN.get_or_init(Default::default);
    if let Some(&text) = chosen.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(text);
    }
    let (major, minor) = dev.cuda_stream().context().compute_capability().w()?;
    let ptx = dsnn_kernel_build::select_ptx(PTX, major as u32, minor as u32)
        .map_err(candle_core::Error::wrap)?;
    log::debug!(
        "CUDA device {major}.{minor}: loading the compute_{} PTX of dsnn_ops",
        ptx.arch
    );
    chosen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, ptx.text);
    Ok(ptx.text)
}

/// Threads per block (the reduction kernels assume exactly this).
const THREADS: u32 = 256;

/// A grid-stride launch over `n` elements.
fn grid(n: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(THREADS).clamp(1, 1 << 16), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per channel (or other reduced quantity: `c` of them), for the
/// reduction kernels.
fn per_channel(c: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (c.max(1), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// An element count as the kernels' 32-bit index.
fn count(n: usize) -> Result<u32> {
    u32::try_from(n)
        .map_err(|_| candle_core::Error::Msg(format!("dsnn CUDA ops: {n} elements exceed 2^32")))
}

/// The f32 data of a contiguous CUDA tensor.
fn view<'a>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, f32>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(s.as_cuda_slice::<f32>()?.slice(a..b)),
        None => candle_core::bail!("dsnn ops need contiguous f32 tensors"),
    }
}

/// Wraps a result buffer as candle storage on `dev`.
fn storage(out: CudaSlice<f32>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(out, dev.clone())
}

/// Allocates `n` floats that the next kernel overwrites entirely.
fn alloc(dev: &CudaDevice, n: usize) -> Result<CudaSlice<f32>> {
    // SAFETY: every caller launches a kernel that writes all n elements
    // before the buffer is read.
    unsafe { dev.alloc::<f32>(n.max(1)) }
}

/// The constants of one fixed-point format as the rounding kernel takes
/// them (computed by `quant`, which owns the rules).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FixedPointKernelArgs {
    /// The reference's `integer_bits == 1` special case.
    pub special: bool,
    /// `2^fraction_bits`.
    pub scale: f32,
    /// `2^-fraction_bits`.
    pub delta: f32,
    /// `2^(integer_bits - 1)`.
    pub bound: f32,
}

/// The rounding of one weight quantiser as its kernel takes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WeightKernelArgs {
    /// Lowest shift exponent.
    pub lo: i32,
    /// Highest shift exponent.
    pub hi: i32,
    /// Stochastic (else deterministic) rounding.
    pub stochastic: bool,
    /// Seed of the counter-based random stream.
    pub seed: u64,
    /// Step of the counter-based random stream.
    pub step: u64,
}

/// `quant::QuantizeActivation`: fixed-point rounding.
pub(crate) fn round_to_fixed(
    s: &CudaStorage,
    l: &Layout,
    args: FixedPointKernelArgs,
) -> Result<CudaStorage> {
    let dev = s.device();
    let x = view(s, l)?;
    let n = count(x.len())?;
    let mut y = alloc(dev, x.len())?;
    let special = i32::from(args.special);
    let (scale, delta, bound) = (args.scale, args.delta, args.bound);
    let f = dev.get_or_load_custom_func("dsnn_round_to_fixed", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&n).arg(&x).arg(&mut y).arg(&special);
    b.arg(&scale).arg(&delta).arg(&bound);
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(n)) }.w()?;
    Ok(storage(y, dev))
}

/// `quant::QuantizeWeightQ`: DeepShift-Q weights.
pub(crate) fn quantize_q(
    s: &CudaStorage,
    l: &Layout,
    args: WeightKernelArgs,
) -> Result<CudaStorage> {
    let dev = s.device();
    let w = view(s, l)?;
    let n = count(w.len())?;
    let mut y = alloc(dev, w.len())?;
    let lo = args.lo;
    let stochastic = i32::from(args.stochastic);
    let (seed, step) = (args.seed, args.step);
    let f = dev.get_or_load_custom_func("dsnn_quantize_q", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&n).arg(&w).arg(&mut y).arg(&lo);
    b.arg(&stochastic).arg(&seed).arg(&step);
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(n)) }.w()?;
    Ok(storage(y, dev))
}

/// `quant::PsWeight`: DeepShift-PS weights from shift and sign.
pub(crate) fn ps_weight(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    args: WeightKernelArgs,
) -> Result<CudaStorage> {
    let dev = s1.device();
    let (shift, sign) = (view(s1, l1)?, view(s2, l2)?);
    if shift.len() != sign.len() {
        candle_core::bail!("PS shift and sign parameters differ in size");
    }
    let n = count(shift.len())?;
    let mut y = alloc(dev, shift.len())?;
    let (lo, hi) = (args.lo, args.hi);
    let stochastic = i32::from(args.stochastic);
    let (seed, step) = (args.seed, args.step);
    let f = dev.get_or_load_custom_func("dsnn_ps_weight", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&n)
        .arg(&shift)
        .arg(&sign)
        .arg(&mut y)
        .arg(&lo)
        .arg(&hi);
    b.arg(&stochastic).arg(&seed).arg(&step);
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(n)) }.w()?;
    Ok(storage(y, dev))
}

/// `params::ParamStore::project` for a Q weight: `clamp_abs` in place.
pub(crate) fn clamp_abs_inplace(s: &mut CudaStorage, l: &Layout, lo: i32) -> Result<()> {
    let dev = s.device().clone();
    let Some((a, b_end)) = l.contiguous_offsets() else {
        candle_core::bail!("dsnn ops need contiguous f32 tensors");
    };
    let n = count(b_end - a)?;
    let f = dev.get_or_load_custom_func("dsnn_clamp_abs", MODULE, ptx(&dev)?)?;
    let mut w = s.as_cuda_slice_mut::<f32>()?.slice_mut(a..b_end);
    let mut b = f.builder();
    b.arg(&n).arg(&mut w).arg(&lo);
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(n)) }.w()?;
    Ok(())
}

/// Sizes of one convolution, as the kernels take them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvSizes {
    /// Batch.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding.
    pub pad: usize,
    /// Channel groups (1: an ordinary convolution, cuBLAS; more: the
    /// direct kernels of [`grouped_conv`]).
    pub groups: usize,
}

impl ConvSizes {
    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }
    fn p(&self) -> usize {
        self.ho * self.wo
    }
}

/// Unfolds the batch `x` into a column matrix; `(s_stride, r_stride)` place
/// element (sample, row, position) (see `dsnn_im2col`).
fn im2col(
    dev: &CudaDevice,
    x: &CudaView<'_, f32>,
    d: &ConvSizes,
    strides: (usize, usize),
) -> Result<CudaSlice<f32>> {
    let total = d.n * d.k() * d.p();
    let t = count(total)?;
    let mut col = alloc(dev, total)?;
    let v = [
        d.cin, d.h, d.w, d.kh, d.kw, d.ho, d.wo, d.stride, d.pad, strides.0, strides.1,
    ]
    .map(|v| v as u32);
    let f = dev.get_or_load_custom_func("dsnn_im2col", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&t).arg(x).arg(&mut col);
    for v in &v {
        b.arg(v);
    }
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(t)) }.w()?;
    Ok(col)
}

/// `conv::Conv2dOp`: y (n x cout x p) = W (cout x k) * col_s (k x p) per sample.
pub(crate) fn conv2d(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    d: &ConvSizes,
) -> Result<CudaStorage> {
    if d.groups != 1 {
        return grouped_conv::forward(s1, l1, s2, l2, d);
    }
    let dev = s1.device();
    let x = view(s1, l1)?;
    let (k, p) = (d.k(), d.p());
    let col = storage(im2col(dev, &x, d, (k * p, p))?, dev);
    // The weight broadcast over the batch (batch stride 0).
    let wl = Layout::new(
        Shape::from((d.n, d.cout, k)),
        vec![0, k, 1],
        l2.start_offset(),
    );
    let cl = Layout::contiguous((d.n, k, p));
    s2.matmul(&col, (d.n, d.cout, p, k), &wl, &cl)
}

/// `conv::Conv2dBackwardInput`: col_s = W^T dy_s per sample, then col2im.
pub(crate) fn conv2d_backward_input(
    dy: &CudaStorage,
    dyl: &Layout,
    w: &CudaStorage,
    wl: &Layout,
    d: &ConvSizes,
) -> Result<CudaStorage> {
    if d.groups != 1 {
        return grouped_conv::backward_input(dy, dyl, w, wl, d);
    }
    let dev = dy.device();
    let (k, p) = (d.k(), d.p());
    // W^T: k x cout, read from the cout x k weight, broadcast over the batch.
    let wt = Layout::new(
        Shape::from((d.n, k, d.cout)),
        vec![0, 1, k],
        wl.start_offset(),
    );
    let dyl3 = Layout::contiguous_with_offset((d.n, d.cout, p), dyl.start_offset());
    if !dyl.is_contiguous() {
        candle_core::bail!("dsnn ops need contiguous f32 tensors");
    }
    let col = w.matmul(dy, (d.n, k, p, d.cout), &wt, &dyl3)?;
    let col = col.as_cuda_slice::<f32>()?;
    let total = d.n * d.cin * d.h * d.w;
    let t = count(total)?;
    let mut dx = alloc(dev, total)?;
    let v = [d.cin, d.h, d.w, d.kh, d.kw, d.ho, d.wo, d.stride, d.pad].map(|v| v as u32);
    let f = dev.get_or_load_custom_func("dsnn_col2im", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&t).arg(col).arg(&mut dx);
    for v in &v {
        b.arg(v);
    }
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(t)) }.w()?;
    Ok(storage(dx, dev))
}

/// `conv::Conv2dBackwardWeight`: dw (cout x k) = dy' (cout x n*p) * col'^T,
/// with col' = im2col as k x (n*p) and dy' the gradient as cout x n x p.
pub(crate) fn conv2d_backward_weight(
    xs: &CudaStorage,
    xl: &Layout,
    dys: &CudaStorage,
    dyl: &Layout,
    d: &ConvSizes,
) -> Result<CudaStorage> {
    if d.groups != 1 {
        return grouped_conv::backward_weight(xs, xl, dys, dyl, d);
    }
    let dev = xs.device();
    let (k, p) = (d.k(), d.p());
    let np = d.n * p;
    let x = view(xs, xl)?;
    let col = storage(im2col(dev, &x, d, (p, np))?, dev);
    let dy = view(dys, dyl)?;
    let total = d.n * d.cout * p;
    let t = count(total)?;
    let mut dyt = alloc(dev, total)?;
    let (a, bb, c) = (d.n as u32, d.cout as u32, p as u32);
    let f = dev.get_or_load_custom_func("dsnn_swap01", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&t).arg(&dy).arg(&mut dyt).arg(&a).arg(&bb).arg(&c);
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(t)) }.w()?;
    let dyt = storage(dyt, dev);
    // col'^T: (n*p) x k, read from the k x (n*p) matrix.
    let colt = Layout::new(Shape::from((1, np, k)), vec![np * k, 1, np], 0);
    dyt.matmul(
        &col,
        (1, d.cout, k, np),
        &Layout::contiguous((1, d.cout, np)),
        &colt,
    )
}

/// `batchnorm::BatchNormTrain`: returns the output and the batch's per-channel
/// mean and biased variance as device tensors (views of the statistics
/// kernel's buffer: nothing is copied to the host, the stream does not wait).
#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm_train(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    (n, c, hw): (usize, usize, usize),
    eps: f32,
    relu: bool,
) -> Result<(CudaStorage, (Tensor, Tensor))> {
    let dev = s1.device();
    let (x, gamma, beta) = (view(s1, l1)?, view(s2, l2)?, view(s3, l3)?);
    if gamma.len() != c || beta.len() != c {
        candle_core::bail!("batch norm: {c} channels but {} scales", gamma.len());
    }
    let total = count(x.len())?;
    let (nn, cc, hh) = (count(n)?, count(c)?, count(hw)?);
    let mut stats = alloc(dev, 4 * c)?;
    let f = dev.get_or_load_custom_func("dsnn_bn_stats", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&x).arg(&gamma).arg(&beta).arg(&mut stats);
    b.arg(&nn).arg(&cc).arg(&hh).arg(&eps);
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(per_channel(cc)) }.w()?;
    let mut y = alloc(dev, x.len())?;
    let relu = i32::from(relu);
    let f = dev.get_or_load_custom_func("dsnn_bn_apply", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&total).arg(&x).arg(&stats).arg(&mut y);
    b.arg(&cc).arg(&hh).arg(&relu);
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(total)) }.w()?;
    // [mean, var, scale, shift] per channel; the first two are the batch's.
    let stats = Tensor::from_storage(
        Storage::Cuda(storage(stats, dev)),
        4 * c,
        BackpropOp::none(),
        false,
    );
    let (mean, var) = (stats.narrow(0, 0, c)?, stats.narrow(0, c, c)?);
    Ok((storage(y, dev), (mean, var)))
}

/// `batchnorm::BatchNormBackward`: `[dx, dgamma, dbeta]` packed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm_backward(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    (n, c, hw): (usize, usize, usize),
    eps: f32,
) -> Result<CudaStorage> {
    let dev = s1.device();
    let (x, gamma, dy) = (view(s1, l1)?, view(s2, l2)?, view(s3, l3)?);
    let numel = x.len();
    let total = count(numel)?;
    let (nn, cc, hh) = (count(n)?, count(c)?, count(hw)?);
    let mut out = alloc(dev, numel + 2 * c)?;
    let mut coef = alloc(dev, 5 * c)?;
    let f = dev.get_or_load_custom_func("dsnn_bn_bwd_stats", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&x).arg(&gamma).arg(&dy).arg(&mut out).arg(&mut coef);
    b.arg(&nn).arg(&cc).arg(&hh).arg(&eps);
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(per_channel(cc)) }.w()?;
    {
        let mut dx = out.slice_mut(0..numel);
        let f = dev.get_or_load_custom_func("dsnn_bn_bwd_apply", MODULE, ptx(dev)?)?;
        let mut b = f.builder();
        b.arg(&total).arg(&x).arg(&dy).arg(&coef).arg(&mut dx);
        b.arg(&cc).arg(&hh);
        // SAFETY: the arguments match the kernel's signature.
        unsafe { b.launch(grid(total)) }.w()?;
    }
    Ok(storage(out, dev))
}

/// An element-wise kernel `name(n, inputs..., out)` over equally long inputs.
pub(crate) fn map(name: &str, inputs: &[(&CudaStorage, &Layout)]) -> Result<CudaStorage> {
    let Some(&(first, _)) = inputs.first() else {
        candle_core::bail!("{name}: no inputs");
    };
    let dev = first.device();
    let views = inputs
        .iter()
        .map(|&(s, l)| view(s, l))
        .collect::<Result<Vec<_>>>()?;
    let len = views[0].len();
    if views.iter().any(|v| v.len() != len) {
        candle_core::bail!("{name}: inputs differ in size");
    }
    let n = count(len)?;
    let mut y = alloc(dev, len)?;
    let f = dev.get_or_load_custom_func(name, MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&n);
    for v in &views {
        b.arg(v);
    }
    b.arg(&mut y);
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(n)) }.w()?;
    Ok(storage(y, dev))
}

/// `ops::AddChannelBias`: x (n x c x hw) + bias.
pub(crate) fn add_channel_bias(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    (c, hw): (usize, usize),
) -> Result<CudaStorage> {
    let dev = s1.device();
    let (x, bias) = (view(s1, l1)?, view(s2, l2)?);
    if bias.len() != c {
        candle_core::bail!("channel bias has {} values for {c} channels", bias.len());
    }
    let total = count(x.len())?;
    let (cc, hh) = (count(c)?, count(hw.max(1))?);
    let mut y = alloc(dev, x.len())?;
    let f = dev.get_or_load_custom_func("dsnn_add_channel_bias", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&total)
        .arg(&x)
        .arg(&bias)
        .arg(&mut y)
        .arg(&cc)
        .arg(&hh);
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(grid(total)) }.w()?;
    Ok(storage(y, dev))
}

/// `ops::ChannelSum`: n x c x hw -> c.
pub(crate) fn channel_sum(
    s: &CudaStorage,
    l: &Layout,
    (n, c, hw): (usize, usize, usize),
) -> Result<CudaStorage> {
    let dev = s.device();
    let g = view(s, l)?;
    // The kernel indexes within n * c * hw in 32 bits.
    count(g.len())?;
    let (nn, cc, hh) = (count(n)?, count(c)?, count(hw)?);
    let mut out = alloc(dev, c)?;
    let f = dev.get_or_load_custom_func("dsnn_channel_sum", MODULE, ptx(dev)?)?;
    let mut b = f.builder();
    b.arg(&g).arg(&mut out).arg(&nn).arg(&cc).arg(&hh);
    // SAFETY: the arguments match the kernel's signature.
    unsafe { b.launch(per_channel(cc)) }.w()?;
    Ok(storage(out, dev))
}

/// `ops::MaxPool2x2` forward (`backward = None`) or backward (with `dy`).
pub(crate) fn max_pool2x2(
    s: &CudaStorage,
    l: &Layout,
    backward: Option<(&CudaStorage, &Layout)>,
    (planes, h, w, ho, wo): (usize, usize, usize, usize, usize),
) -> Result<CudaStorage> {
    let dev = s.device();
    let x = view(s, l)?;
    let total = count(planes * ho * wo)?;
    let dims = [h, w, ho, wo].map(|v| v as u32);
    match backward {
        None => {
            let mut y = alloc(dev, planes * ho * wo)?;
            let f = dev.get_or_load_custom_func("dsnn_max_pool2x2", MODULE, ptx(dev)?)?;
            let mut b = f.builder();
            b.arg(&total).arg(&x).arg(&mut y);
            for v in &dims {
                b.arg(v);
            }
            // SAFETY: the arguments match the kernel's signature.
            unsafe { b.launch(grid(total)) }.w()?;
            Ok(storage(y, dev))
        }
        Some((gs, gl)) => {
            let g = view(gs, gl)?;
            if g.len() != planes * ho * wo {
                candle_core::bail!(
                    "max pool backward: gradient has {} elements, expected {}",
                    g.len(),
                    planes * ho * wo
                );
            }
            let mut dx = dev.alloc_zeros::<f32>(x.len().max(1))?;
            let f = dev.get_or_load_custom_func("dsnn_max_pool2x2_bwd", MODULE, ptx(dev)?)?;
            let mut b = f.builder();
            b.arg(&total).arg(&x).arg(&g).arg(&mut dx);
            for v in &dims {
                b.arg(v);
            }
            // SAFETY: the arguments match the kernel's signature.
            unsafe { b.launch(grid(total)) }.w()?;
            Ok(storage(dx, dev))
        }
    }
}

/// One optimiser rule's kernel and arguments (built by `optim::update`,
/// which owns the rules): `kernel(n, w, g, state, lr, weight_decay, c[0],
/// c[1], c[2], flags)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OptimizerKernelArgs {
    /// The kernel (`dsnn_opt_*`).
    pub kernel: &'static str,
    /// Learning rate.
    pub lr: f32,
    /// L2 weight decay.
    pub weight_decay: f32,
    /// The rule's constants (see the kernel).
    pub c: [f32; 3],
    /// The rule's flags (see the kernel).
    pub flags: i32,
    /// State buffers of the parameter's length the rule keeps.
    pub state_buffers: usize,
}

/// One optimiser step on the device, in place: the parameter `w`, its
/// gradient `g` and the rule's state buffers, in one fused kernel.
pub(crate) fn optimizer_step(
    args: OptimizerKernelArgs,
    ws: &mut CudaStorage,
    wl: &Layout,
    gs: &CudaStorage,
    gl: &Layout,
    state: &mut CudaSlice<f32>,
) -> Result<()> {
    let dev = ws.device().clone();
    let g = view(gs, gl)?;
    let Some((a, b_end)) = wl.contiguous_offsets() else {
        candle_core::bail!("dsnn ops need contiguous f32 tensors");
    };
    let len = b_end - a;
    if g.len() != len {
        candle_core::bail!(
            "optimiser: a gradient of {} values for {len} weights",
            g.len()
        );
    }
    if state.len() < args.state_buffers * len {
        candle_core::bail!(
            "optimiser: state of {} values for {len} weights and {} buffers",
            state.len(),
            args.state_buffers
        );
    }
    // The kernel indexes state buffer j at j * n + i.
    let n = count(len)?;
    count(args.state_buffers * len)?;
    let (lr, wd) = (args.lr, args.weight_decay);
    let [c0, c1, c2] = args.c;
    let flags = args.flags;
    let mut w = ws.as_cuda_slice_mut::<f32>()?.slice_mut(a..b_end);
    let f = dev.get_or_load_custom_func(args.kernel, MODULE, ptx(&dev)?)?;
    let mut b = f.builder();
    b.arg(&n).arg(&mut w).arg(&g).arg(state);
    b.arg(&lr).arg(&wd).arg(&c0).arg(&c1).arg(&c2).arg(&flags);
    // SAFETY: the arguments match the kernel's signature (the same for
    // every dsnn_opt_* kernel).
    unsafe { b.launch(grid(n)) }.w()?;
    Ok(())
}
